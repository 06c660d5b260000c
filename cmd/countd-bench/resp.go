package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"countd/internal/apiclient"
)

// The resp mode (-resp) measures countd's RESP port (issue 16) with the
// Redis tool everyone has: redis-benchmark -t incr, against a -memory node
// and a durable node, and against redis-server with no persistence and
// with appendfsync always (redis.go starts them and runs the tool), in one
// run. Beside them run the two yardsticks over RESP (bare.go): redcon
// with one atomic add per pipeline, and the same answered after a group
// fdatasync. They are what Go on redcon costs with nothing of countd in
// it, so countd over them is countd's own cost, and they over Redis the
// cost of the network layer. Each round loads every server once at -P 1
// and once at -P -resp-pipeline, in turn, so the machine's noise hits all
// alike; the rows add the rounds up. redis-benchmark's INCRs all go to one key,
// counter:__rand_int__ (a ':' name), so at the end each node's counter of
// that name, read over HTTP, must equal the INCRs sent to it.

// respKey is the key redis-benchmark -t incr increments (no -r).
const respKey = "counter:__rand_int__"

// RESPResult is the resp mode's figures.
type RESPResult struct {
	Rounds   int   `json:"rounds"`
	Requests int64 `json:"requests_per_load"`
	// Rows are each server at each pipeline depth, over every round.
	Rows []RESPRow `json:"rows"`
	// Ratios are the throughputs the issue compares, with its targets,
	// then the yardsticks' (target 0: for information).
	Ratios []RESPRatio `json:"ratios"`
	// Counted is, per countd node, its counter's value against the INCRs
	// sent to it; every one must match.
	Counted []RESPCount `json:"counted"`
}

// The resp mode's servers, in the order they are loaded and printed.
const (
	respCountdMemory  = "countd -memory"
	respRedis         = "redis"
	respBare          = "go redcon"
	respCountdDurable = "countd durable"
	respRedisAlways   = "redis appendfsync always"
	respFsync         = "go redcon + fdatasync"
)

// RESPRow is one server at one pipeline depth.
type RESPRow struct {
	Server   string `json:"server"`
	Pipeline int    `json:"pipeline"`
	// Requests and Seconds add up every round's load; Throughput is their
	// ratio; PerRound is each round's req/s, to show the noise.
	Requests   int64     `json:"requests"`
	Seconds    float64   `json:"seconds"`
	Throughput float64   `json:"throughput_rps"`
	PerRound   []float64 `json:"per_round_rps"`
	// P50MS is the rounds' median p50, P99MS their largest p99.
	P50MS *float64 `json:"p50_ms,omitempty"`
	P99MS *float64 `json:"p99_ms,omitempty"`
	// CPUUSPerChange is the server's CPU time over the loads (/proc) over
	// Requests, in µs.
	CPUUSPerChange float64 `json:"cpu_us_per_change"`
	cpuUS          float64
	p50s           []float64
}

// RESPRatio is one server's throughput over another's.
type RESPRatio struct {
	Name   string  `json:"name"`
	Ratio  float64 `json:"ratio"`
	Target float64 `json:"target"`
}

// RESPCount is one node's check: the counter it holds against the INCRs
// redis-benchmark sent it.
type RESPCount struct {
	Server string `json:"server"`
	Sent   int64  `json:"sent"`
	Value  int64  `json:"value"`
}

// respTarget is one server the mode loads.
type respTarget struct {
	name      string
	port, pid int
	node      *cluster // the countd node, nil for Redis
	sent      int64
}

// runRESPAll runs the resp mode once per client count, each on fresh
// servers, so each count's check of the counters starts from zero.
func (b *bench) runRESPAll(ctx context.Context, rep *Report, clients []int) error {
	return b.runEach(rep, clients, func(c int) (*Result, error) { return b.runRESP(ctx, c) })
}

// runRESP starts the six servers, loads them, and checks the counts.
func (b *bench) runRESP(ctx context.Context, clients int) (_ *Result, err error) {
	server, err1 := exec.LookPath("redis-server")
	bench, err2 := exec.LookPath("redis-benchmark")
	if err1 != nil || err2 != nil {
		return nil, errors.New("-resp needs redis-server and redis-benchmark on PATH (Debian: apt-get install redis-server redis-tools)")
	}
	var closers []func() error
	defer func() {
		for _, c := range closers {
			if cerr := c(); cerr != nil {
				fmt.Fprintln(b.stderr, "countd-bench: warning:", cerr)
			}
		}
	}()
	// Each starts one server and adds it to targets.
	var targets []*respTarget
	countd := func(memory bool) error {
		cfg := *b.cfg
		cfg.Memory = memory
		cl, err := b.clusterOf(ctx, &cfg, 1, security{})
		if err != nil {
			return err
		}
		closers = append(closers, cl.Close)
		port, err := portOf(cl.respAddrs[0])
		if err != nil {
			return fmt.Errorf("resp port of %s: %w", cl.addrs[0], err)
		}
		name := respCountdMemory
		if !memory {
			name = respCountdDurable
		}
		targets = append(targets, &respTarget{name: name, port: port, pid: cl.procs[0].PID(), node: cl})
		return nil
	}
	redis := func(i int) error {
		v := redisVariants[i]
		r, err := startRedis(ctx, server, v.args)
		if err != nil {
			return fmt.Errorf("%s: %w", v.name, err)
		}
		closers = append(closers, func() error { return r.Close(b.cfg.StopTimeout) })
		targets = append(targets, &respTarget{name: v.name, port: r.port, pid: r.p.PID()})
		return nil
	}
	yard := func(name string, start func(context.Context, time.Duration) (*yardstickProc, error)) error {
		y, err := start(ctx, b.cfg.StopTimeout)
		if err != nil {
			return err
		}
		closers = append(closers, func() error { return y.Close(b.cfg.StopTimeout) })
		port, err := portOf(y.addr)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		targets = append(targets, &respTarget{name: name, port: port, pid: y.PID()})
		return nil
	}
	// Each durable server beside its memory-only counterpart.
	for _, start := range []func() error{
		func() error { return countd(true) },
		func() error { return redis(0) },
		func() error { return yard(respBare, startBareRESP) },
		func() error { return countd(false) },
		func() error { return redis(1) },
		func() error { return yard(respFsync, startFsyncRESP) },
	} {
		if err := start(); err != nil {
			return nil, err
		}
	}

	res := &Result{Mode: modeRESP, Nodes: 1, Clients: clients, Target: "one"}
	rr := &RESPResult{Rounds: b.cfg.RESPRounds, Requests: b.cfg.RESPRequests}
	res.RESP = rr
	depths := []int{1, b.cfg.RESPPipeline}
	rows := make([]RESPRow, len(depths)*len(targets)) // depth-major, as printed
	for j, d := range depths {
		for i, t := range targets {
			rows[j*len(targets)+i] = RESPRow{Server: t.name, Pipeline: d}
		}
	}
	// Warm up: open the connections and warm the servers' allocations.
	for _, t := range targets {
		n := int64(20 * clients)
		if _, err := redisBenchmark(ctx, bench, t.port, t.pid, clients, 1, n); err != nil {
			return nil, fmt.Errorf("%s: warm-up: %w", t.name, err)
		}
		t.sent += n
	}
	for round := range b.cfg.RESPRounds {
		for j, d := range depths {
			for i, t := range targets {
				b.logf("resp round %d/%d: %s, -c %d -P %d ...", round+1, b.cfg.RESPRounds, t.name, clients, d)
				p, err := redisBenchmark(ctx, bench, t.port, t.pid, clients, d, b.cfg.RESPRequests)
				if err != nil {
					return nil, fmt.Errorf("%s -P %d: %w", t.name, d, err)
				}
				t.sent += p.Requests
				rows[j*len(targets)+i].add(p)
			}
		}
	}
	for i := range rows {
		rows[i].done()
	}
	rr.Rows = rows
	rr.Ratios = respRatios(rr.Rows, b.cfg.RESPPipeline)

	var bad []string
	for _, t := range targets {
		if t.node == nil {
			continue
		}
		var v struct {
			Value int64 `json:"value"`
		}
		client := apiclient.Client{HTTP: t.node.http}
		if err := client.GetJSON(ctx, "http://"+t.node.addrs[0], "/counters/"+respKey, &v); err != nil {
			return res, fmt.Errorf("%s: read %s over HTTP: %w", t.name, respKey, err)
		}
		rr.Counted = append(rr.Counted, RESPCount{Server: t.name, Sent: t.sent, Value: v.Value})
		if v.Value != t.sent {
			bad = append(bad, fmt.Sprintf("%s counted %d of %d INCRs", t.name, v.Value, t.sent))
		}
	}
	if len(bad) > 0 {
		return res, errors.New(strings.Join(bad, "; "))
	}
	return res, nil
}

// portOf returns the port of a host:port address.
func portOf(addr string) (int, error) {
	_, ps, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(ps)
}

// add adds one load's figures to the row.
func (r *RESPRow) add(p *Peer) {
	r.Requests += p.Requests
	r.Seconds += float64(p.Requests) / p.Throughput
	r.PerRound = append(r.PerRound, p.Throughput)
	if p.CPUUSPerChange != nil {
		r.cpuUS += *p.CPUUSPerChange * float64(p.Requests)
	}
	if p.P50MS != nil {
		r.p50s = append(r.p50s, *p.P50MS)
	}
	if p.P99MS != nil && (r.P99MS == nil || *p.P99MS > *r.P99MS) {
		r.P99MS = ptr(*p.P99MS)
	}
}

// done computes the row's totals once every round is in.
func (r *RESPRow) done() {
	if r.Seconds > 0 {
		r.Throughput = float64(r.Requests) / r.Seconds
	}
	if r.Requests > 0 {
		r.CPUUSPerChange = r.cpuUS / float64(r.Requests)
	}
	if len(r.p50s) > 0 {
		r.P50MS = ptr(median(r.p50s))
	}
}

// median returns the middle of xs (the mean of the two middle ones for an
// even count); xs is sorted in place.
func median(xs []float64) float64 {
	slices.Sort(xs)
	n := len(xs)
	if n%2 == 1 {
		return xs[n/2]
	}
	return (xs[n/2-1] + xs[n/2]) / 2
}

// respRatios are issue 16's comparisons: countd -memory over Redis without
// persistence (≥ 0.8), countd durable over Redis with appendfsync always
// (≥ 0.7), and each pipelined over its Redis pipelined (≥ 0.5); then, for
// information, countd over its yardstick and the yardstick over Redis at
// -P 1.
func respRatios(rows []RESPRow, depth int) []RESPRatio {
	tp := func(server string, d int) float64 {
		for _, r := range rows {
			if r.Server == server && r.Pipeline == d {
				return r.Throughput
			}
		}
		return 0
	}
	var out []RESPRatio
	add := func(num, den string, d int, target float64) {
		name := num + " / " + den
		if d != 1 {
			name += fmt.Sprintf(" (-P %d)", d)
		}
		if n, m := tp(num, d), tp(den, d); m > 0 && n > 0 {
			out = append(out, RESPRatio{Name: name, Ratio: n / m, Target: target})
		}
	}
	add(respCountdMemory, respRedis, 1, 0.8)
	add(respCountdDurable, respRedisAlways, 1, 0.7)
	add(respCountdMemory, respRedis, depth, 0.5)
	add(respCountdDurable, respRedisAlways, depth, 0.5)
	add(respCountdMemory, respBare, 1, 0)
	add(respBare, respRedis, 1, 0)
	add(respCountdDurable, respFsync, 1, 0)
	add(respFsync, respRedisAlways, 1, 0)
	return out
}

// printRESP prints the resp mode's rows, ratios and checks.
func printRESP(w io.Writer, r *RESPResult) {
	if r == nil {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "  %d rounds of %s INCRs per server and depth, interleaved\n", r.Rounds, group(float64(r.Requests)))
	for _, row := range r.Rows {
		per := make([]string, len(row.PerRound))
		for i, v := range row.PerRound {
			per[i] = group(v)
		}
		fmt.Fprintf(tw, "  %s -P %d\t%s req/s\t(rounds %s)\tp50 %s ms, p99 %s ms\tCPU %.1f µs/INCR\n",
			row.Server, row.Pipeline, group(row.Throughput), strings.Join(per, ", "),
			fmtFloat(row.P50MS, "%.2f"), fmtFloat(row.P99MS, "%.2f"), row.CPUUSPerChange)
	}
	for _, q := range r.Ratios {
		verdict := "(the yardstick)"
		switch {
		case q.Target > 0 && q.Ratio < q.Target:
			verdict = fmt.Sprintf("BELOW the target %.1f", q.Target)
		case q.Target > 0:
			verdict = fmt.Sprintf("meets the target %.1f", q.Target)
		}
		fmt.Fprintf(tw, "  %s\t%.2f\t%s\n", q.Name, q.Ratio, verdict)
	}
	for _, c := range r.Counted {
		fmt.Fprintf(tw, "  %s counted\t%s of %s INCRs sent\n", c.Server, group(float64(c.Value)), group(float64(c.Sent)))
	}
	tw.Flush()
}
