package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// wrkScript makes wrk send POST, as the load generator does.
const wrkScript = "wrk.method = \"POST\"\n"

// runWrk loads the bare server of leg l with wrk (-t2, as many connections
// as clients, -duration), the yardstick of the load generator: a C client
// that costs the machine little. It sets res.WrkBare and res.BareToWrk, or
// adds a note saying why not (wrk is not on PATH, or it failed).
func (b *bench) runWrk(ctx context.Context, res *Result, l *leg, clients int) {
	rps, err := wrkRate(ctx, "http://"+l.addr+"/increment", clients, b.cfg.Duration)
	if err != nil {
		res.Notes = append(res.Notes, "wrk skipped: "+err.Error())
		return
	}
	res.WrkBare = ptr(rps)
	if res.Bare != nil && rps > 0 {
		res.BareToWrk = ptr(res.Bare.Throughput / rps)
	}
}

// wrkRate runs wrk against url and returns its Requests/sec.
func wrkRate(ctx context.Context, url string, clients int, d time.Duration) (float64, error) {
	path, err := exec.LookPath("wrk")
	if err != nil {
		return 0, errors.New("wrk is not on PATH (Debian: apt-get install wrk)")
	}
	dir, err := os.MkdirTemp("", "countd-bench-wrk-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	script := filepath.Join(dir, "post.lua")
	if err := os.WriteFile(script, []byte(wrkScript), 0o644); err != nil {
		return 0, err
	}
	threads := min(2, clients)
	secs := max(1, int(d.Round(time.Second)/time.Second))
	cmd := exec.CommandContext(ctx, path, "-t"+strconv.Itoa(threads), "-c"+strconv.Itoa(clients),
		"-d"+strconv.Itoa(secs)+"s", "-s", script, url)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("wrk: %v: %s", err, bytes.TrimSpace(out))
	}
	return parseWrk(out)
}

// parseWrk returns the Requests/sec of wrk's output, and an error if wrk
// saw non-2xx answers or socket errors (then its figure is not the
// server's throughput of successful adds).
func parseWrk(out []byte) (float64, error) {
	rps := -1.0
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "Requests/sec:"):
			v, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimPrefix(line, "Requests/sec:")), 64)
			if err != nil {
				return 0, fmt.Errorf("wrk: bad line %q", line)
			}
			rps = v
		case strings.HasPrefix(line, "Non-2xx or 3xx responses:"), strings.HasPrefix(line, "Socket errors:"):
			return 0, fmt.Errorf("wrk: %s", line)
		}
	}
	if rps < 0 {
		return 0, fmt.Errorf("wrk printed no Requests/sec: %s", bytes.TrimSpace(out))
	}
	return rps, nil
}
