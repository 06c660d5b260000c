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
	r, err := startRedis(ctx, server, args)
	if err != nil {
		return nil, err
	}
	defer r.Close(stopTimeout)
	return redisBenchmark(ctx, bench, r.port, r.p.PID(), clients, 1, n)
}

// redisServer is a redis-server the tool started, on a free port of
// 127.0.0.1, its data in a temporary directory.
type redisServer struct {
	p    *proc.Proc
	port int
	dir  string
}

// startRedis starts redis-server with args (its persistence flags) and
// waits until it answers PING.
func startRedis(ctx context.Context, server string, args []string) (_ *redisServer, err error) {
	dir, err := os.MkdirTemp("", "countd-bench-redis-")
	if err != nil {
		return nil, err
	}
	r := &redisServer{dir: dir}
	defer func() {
		if err != nil {
			r.Close(time.Second)
		}
	}()
	ports, err := proc.FreePorts(1)
	if err != nil {
		return nil, err
	}
	r.port = ports[0]
	addr := "127.0.0.1:" + strconv.Itoa(r.port)
	all := append([]string{"--port", strconv.Itoa(r.port), "--bind", "127.0.0.1", "--dir", dir,
		"--daemonize", "no", "--logfile", ""}, args...)
	if r.p, err = proc.Start(proc.Spec{Name: "redis-server", Path: server, Args: all}); err != nil {
		return nil, err
	}
	if _, err := poll.Until(ctx, 30*time.Second, 20*time.Millisecond, "redis-server answers PING", func() (bool, string) {
		if r.p.Exited() {
			return false, "it exited: " + r.p.Output.Tail(500)
		}
		return redisPing(addr), "no PONG on " + addr
	}); err != nil {
		return nil, err
	}
	return r, nil
}

// Close stops the server (SIGTERM, SIGKILL after stopTimeout) and removes
// its directory.
func (r *redisServer) Close(stopTimeout time.Duration) error {
	var err error
	if r.p != nil {
		err = r.p.Stop(stopTimeout)
	}
	return errors.Join(err, os.RemoveAll(r.dir))
}

// redisBenchmark runs `redis-benchmark -t incr` with clients connections,
// pipeline commands in flight on each (-P) and n INCRs in all against the
// server on 127.0.0.1:port, whose process is pid, and returns its figures
// with the process's CPU time per INCR, read from /proc around the load.
// Its INCRs all go to one key, counter:__rand_int__ (no -r).
func redisBenchmark(ctx context.Context, bench string, port, pid, clients, pipeline int, n int64) (*Peer, error) {
	before, err := readProc(pid)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, bench, "-h", "127.0.0.1", "-p", strconv.Itoa(port),
		"-t", "incr", "-c", strconv.Itoa(clients), "-P", strconv.Itoa(pipeline), "-n", strconv.FormatInt(n, 10), "--csv")
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("redis-benchmark: %v: %s", err, bytes.TrimSpace(out))
	}
	after, err := readProc(pid)
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
