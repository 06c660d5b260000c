package main

import (
	"bufio"
	"bytes"
	"cmp"
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

// wrkLeg is wrk's share of a load run (-wrk): it loads the bare server at
// addr with wrk (-t2, as many connections as clients), the yardstick of
// the load generator, a C client that costs the machine little. Each
// slice is one run of wrk.
type wrkLeg struct {
	addr     string
	requests int64
	elapsed  time.Duration
	err      error // the first failure; later slices are skipped
}

// slice runs wrk for d (whole seconds, at least 1).
func (w *wrkLeg) slice(ctx context.Context, clients int, d time.Duration) {
	if w.err != nil {
		return
	}
	n, el, err := wrkRun(ctx, "http://"+w.addr+"/increment", clients, d)
	if err != nil {
		w.err = err
		return
	}
	w.requests += n
	w.elapsed += el
}

// record sets res.WrkBare and res.BareToWrk, or adds a note saying why
// there are none (wrk is not on PATH, or it failed).
func (w *wrkLeg) record(res *Result) {
	if w.err != nil || w.elapsed <= 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("wrk skipped: %v", cmp.Or(w.err, errors.New("no time measured"))))
		return
	}
	rps := float64(w.requests) / w.elapsed.Seconds()
	res.WrkBare = ptr(rps)
	if res.Bare != nil && rps > 0 {
		res.BareToWrk = ptr(res.Bare.Throughput / rps)
	}
}

// wrkRun runs wrk against url for d and returns the requests it made and
// the time they took.
func wrkRun(ctx context.Context, url string, clients int, d time.Duration) (int64, time.Duration, error) {
	path, err := exec.LookPath("wrk")
	if err != nil {
		return 0, 0, errors.New("wrk is not on PATH (Debian: apt-get install wrk)")
	}
	dir, err := os.MkdirTemp("", "countd-bench-wrk-")
	if err != nil {
		return 0, 0, err
	}
	defer os.RemoveAll(dir)
	script := filepath.Join(dir, "post.lua")
	if err := os.WriteFile(script, []byte(wrkScript), 0o644); err != nil {
		return 0, 0, err
	}
	threads := min(2, clients)
	secs := max(1, int(d.Round(time.Second)/time.Second))
	cmd := exec.CommandContext(ctx, path, "-t"+strconv.Itoa(threads), "-c"+strconv.Itoa(clients),
		"-d"+strconv.Itoa(secs)+"s", "-s", script, url)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return 0, 0, fmt.Errorf("wrk: %v: %s", err, bytes.TrimSpace(out))
	}
	return parseWrk(out)
}

// parseWrk returns the requests and time of wrk's output ("123 requests
// in 1.00s, 4.5MB read"), and an error if wrk saw non-2xx answers or
// socket errors (then its figure is not the server's successful adds).
func parseWrk(out []byte) (int64, time.Duration, error) {
	n, el := int64(-1), time.Duration(0)
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.Contains(line, " requests in "):
			f := strings.Fields(line)
			if len(f) < 4 {
				return 0, 0, fmt.Errorf("wrk: bad line %q", line)
			}
			v, err1 := strconv.ParseInt(f[0], 10, 64)
			d, err2 := time.ParseDuration(strings.TrimSuffix(f[3], ","))
			if err1 != nil || err2 != nil || v < 0 || d <= 0 {
				return 0, 0, fmt.Errorf("wrk: bad line %q", line)
			}
			n, el = v, d
		case strings.HasPrefix(line, "Non-2xx or 3xx responses:"), strings.HasPrefix(line, "Socket errors:"):
			return 0, 0, fmt.Errorf("wrk: %s", line)
		}
	}
	if n < 0 {
		return 0, 0, fmt.Errorf("wrk printed no request count: %s", bytes.TrimSpace(out))
	}
	return n, el, nil
}
