package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	"countd/internal/poll"
	"countd/internal/proc"
)

// Redis runs beside countd as a peer (-redis): redis-server started by the
// tool on a free port of 127.0.0.1 (it has no port 0), with no persistence
// and, when the fsync yardstick runs too (durable nodes the tool started),
// with `--appendonly yes --appendfsync always` (its data in a temporary
// directory beside the nodes'), each loaded by `redis-benchmark -t incr` with as
// many clients as the run's, its CPU time per INCR read from /proc around
// the load. Skipped with a note when either program is not on PATH.

// Peer is one peer server's row of a load run.
type Peer struct {
	// Name says which server and how it persists ("redis", "redis
	// appendfsync always").
	Name       string  `json:"name"`
	Requests   int64   `json:"requests"`
	Throughput float64 `json:"throughput_rps"`
	// RatioToBare is its throughput over the bare server's.
	RatioToBare *float64 `json:"ratio_to_bare,omitempty"`
	P50MS       *float64 `json:"p50_ms,omitempty"`
	P99MS       *float64 `json:"p99_ms,omitempty"`
	// CPUUSPerChange is the server's CPU time over the load divided by
	// Requests, in µs.
	CPUUSPerChange *float64 `json:"cpu_us_per_change,omitempty"`
}

// redisVariants are the peers' names and their persistence flags.
var redisVariants = []struct {
	name string
	args []string
}{
	{"redis", []string{"--save", "", "--appendonly", "no"}},
	{"redis appendfsync always", []string{"--save", "", "--appendonly", "yes", "--appendfsync", "always"}},
}

// runRedis measures each Redis variant with clients clients and n INCRs,
// adding its row to res, or a note saying why not.
func (b *bench) runRedis(ctx context.Context, res *Result, clients int, n int64) {
	server, err1 := exec.LookPath("redis-server")
	bench, err2 := exec.LookPath("redis-benchmark")
	if err1 != nil || err2 != nil {
		res.Notes = append(res.Notes, "redis skipped: redis-server or redis-benchmark is not on PATH (Debian: apt-get install redis-server redis-tools)")
		return
	}
	for _, v := range redisVariants {
		if slices.Contains(v.args, "always") && !b.cfg.measureFsync() {
			continue // as the fsync yardstick: only beside durable nodes
		}
		p, err := measureRedis(ctx, server, bench, v.args, clients, n, b.cfg.StopTimeout)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			res.Notes = append(res.Notes, v.name+": "+err.Error())
			continue
		}
		p.Name = v.name
		if res.Bare != nil && res.Bare.Throughput > 0 {
			p.RatioToBare = ptr(p.Throughput / res.Bare.Throughput)
		}
		res.Peers = append(res.Peers, *p)
	}
}

// measureRedis starts redis-server with args, loads it with n INCRs from
// redis-benchmark, and stops it.
func measureRedis(ctx context.Context, server, bench string, args []string, clients int, n int64, stopTimeout time.Duration) (*Peer, error) {
	dir, err := os.MkdirTemp("", "countd-bench-redis-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	ports, err := proc.FreePorts(1)
	if err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(ports[0])
	all := append([]string{"--port", strconv.Itoa(ports[0]), "--bind", "127.0.0.1", "--dir", dir,
		"--daemonize", "no", "--logfile", ""}, args...)
	p, err := proc.Start(proc.Spec{Name: "redis-server", Path: server, Args: all})
	if err != nil {
		return nil, err
	}
	defer p.Stop(stopTimeout)
	if _, err := poll.Until(ctx, 30*time.Second, 20*time.Millisecond, "redis-server answers PING", func() (bool, string) {
		if p.Exited() {
			return false, "it exited: " + p.Output.Tail(500)
		}
		return redisPing(addr), "no PONG on " + addr
	}); err != nil {
		return nil, err
	}
	before, err := readProc(p.PID())
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, bench, "-h", "127.0.0.1", "-p", strconv.Itoa(ports[0]),
		"-t", "incr", "-c", strconv.Itoa(clients), "-n", strconv.FormatInt(n, 10), "--csv")
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("redis-benchmark: %v: %s", err, bytes.TrimSpace(out))
	}
	after, err := readProc(p.PID())
	if err != nil {
		return nil, err
	}
	peer, err := parseRedisCSV(out)
	if err != nil {
		return nil, err
	}
	peer.Requests = n
	peer.CPUUSPerChange = ptr(us(after.CPU-before.CPU) / float64(n))
	return peer, nil
}

// redisPing reports whether a Redis server answers PING at addr.
func redisPing(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := io.WriteString(c, "PING\r\n"); err != nil {
		return false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && strings.TrimSpace(line) == "+PONG"
}

// parseRedisCSV reads the INCR row of `redis-benchmark --csv`: a header
// ("test","rps","avg_latency_ms",...,"p50_latency_ms",...,"p99_latency_ms",...)
// then one row per test. Older versions print only "test","rps" pairs.
func parseRedisCSV(out []byte) (*Peer, error) {
	r := csv.NewReader(bytes.NewReader(out))
	r.FieldsPerRecord = -1
	rows, err := r.ReadAll()
	if err != nil {
		return nil, fmt.Errorf("redis-benchmark csv: %w", err)
	}
	var head []string
	for _, row := range rows {
		if len(row) > 0 && row[0] == "test" {
			head = row
			continue
		}
		if len(row) < 2 || row[0] != "INCR" {
			continue
		}
		rps, err := strconv.ParseFloat(row[1], 64)
		if err != nil {
			return nil, fmt.Errorf("redis-benchmark csv: rps %q", row[1])
		}
		p := &Peer{Throughput: rps}
		for i, h := range head {
			if i >= len(row) {
				break
			}
			v, err := strconv.ParseFloat(row[i], 64)
			if err != nil {
				continue
			}
			switch h {
			case "p50_latency_ms":
				p.P50MS = ptr(v)
			case "p99_latency_ms":
				p.P99MS = ptr(v)
			}
		}
		return p, nil
	}
	return nil, errors.New("redis-benchmark printed no INCR row")
}
