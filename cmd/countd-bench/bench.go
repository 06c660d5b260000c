package main

import (
	"context"
	"countd/internal/proc"
	"countd/internal/testcerts"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync/atomic"
	"time"
)

// execute does what cfg asks: it runs every combination of -nodes and
// -clients in the selected mode (or re-reads -from), prints each result as it
// comes and a summary, and writes -json and -png. Whatever was measured is
// written even when a later run fails or the user interrupts.
func execute(ctx context.Context, cfg Config, stdout, stderr io.Writer) (*Report, error) {
	if cfg.From != "" {
		rep, err := readReport(cfg.From)
		if err != nil {
			return nil, err
		}
		printMachine(stdout, rep.Machine)
		for i := range rep.Runs {
			printResult(stdout, &rep.Runs[i])
		}
		printSummary(stdout, rep.Runs)
		return rep, writeOutputs(&cfg, rep, stdout)
	}

	rep := &Report{Machine: machine(), Started: time.Now().UTC(), Args: cfg.Args}
	printMachine(stdout, rep.Machine)
	b := &bench{cfg: &cfg, stdout: stdout, stderr: stderr}
	err := b.runAll(ctx, rep)
	if cerr := b.close(); cerr != nil {
		fmt.Fprintln(stderr, "countd-bench: warning:", cerr)
	}
	printSummary(stdout, rep.Runs)
	if len(rep.Runs) > 0 {
		err = errors.Join(err, writeOutputs(&cfg, rep, stdout))
	}
	return rep, err
}

// writeOutputs writes -json and -png.
func writeOutputs(cfg *Config, rep *Report, stdout io.Writer) error {
	var errs []error
	if cfg.JSON != "" {
		if err := writeReport(cfg.JSON, rep); err != nil {
			errs = append(errs, err)
		} else {
			fmt.Fprintf(stdout, "\nresults written to %s\n", cfg.JSON)
		}
	}
	if cfg.PNG != "" {
		if err := drawCharts(cfg.PNG, rep.Runs); err != nil {
			errs = append(errs, err)
		} else {
			fmt.Fprintf(stdout, "charts drawn in %s\n", cfg.PNG)
		}
	}
	return errors.Join(errs...)
}

// bench holds what lives across runs: the built binary, the yardstick
// servers, and the CA of TLS runs.
type bench struct {
	cfg            *Config
	stdout, stderr io.Writer
	binDir         string // temporary directory of the built binary
	bin            string
	bare, fsync    *yardstickProc
	// bareTLS is the bare server over HTTPS, started for the first TLS
	// run; ca signs its certificate and the nodes', its files in caDir.
	bareTLS *yardstickProc
	ca      *testcerts.CA
	caDir   string
	runs    atomic.Int64 // runs started, to name create-mode counters
}

// close stops the yardstick servers and removes the built binary.
func (b *bench) close() error {
	var errs []error
	for _, y := range []*yardstickProc{b.bare, b.fsync, b.bareTLS} {
		if y != nil {
			errs = append(errs, y.Close(b.cfg.StopTimeout))
		}
	}
	for _, d := range []string{b.binDir, b.caDir} {
		if d != "" {
			errs = append(errs, os.RemoveAll(d))
		}
	}
	return errors.Join(errs...)
}

// runAll runs every combination, one cluster per security and node count
// (reused across client counts), appending each result to rep as it
// completes.
func (b *bench) runAll(ctx context.Context, rep *Report) error {
	clients := b.cfg.Clients
	if b.cfg.mode() == modeIdle {
		clients = []int{0}
	}
	for _, sec := range b.cfg.Security {
		for _, n := range b.cfg.Nodes {
			if b.cfg.mode() == modeRESP {
				if err := b.runRESPAll(ctx, rep, clients); err != nil {
					return err
				}
				continue
			}
			if b.cfg.mode() == modeKeys {
				if err := b.runKeysAll(ctx, rep, sec, n, clients); err != nil {
					return err
				}
				continue
			}
			if b.cfg.mode() == modeChurn {
				if err := b.runChurns(ctx, rep, sec, n, clients); err != nil {
					return err
				}
				continue
			}
			if err := b.runCluster(ctx, rep, clients, func() (*cluster, error) { return b.cluster(ctx, n, sec) }); err != nil {
				return err
			}
			if b.cfg.IdlePeer != "" && sec == b.cfg.Security[0] {
				// The peer after countd, at each node count, once.
				if err := b.runCluster(ctx, rep, clients, func() (*cluster, error) { return b.peerCluster(ctx, n) }); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// runCluster runs every client count on one cluster that start starts.
func (b *bench) runCluster(ctx context.Context, rep *Report, clients []int, start func() (*cluster, error)) error {
	cl, err := start()
	if err != nil {
		return err
	}
	for _, c := range clients {
		res, err := b.runOne(ctx, cl, c)
		if res != nil {
			rep.Runs = append(rep.Runs, *res)
			printResult(b.stdout, res)
		}
		if err != nil {
			if cerr := cl.Close(); cerr != nil {
				fmt.Fprintln(b.stderr, "countd-bench: warning:", cerr)
			}
			return err
		}
	}
	if err := cl.Close(); err != nil {
		fmt.Fprintln(b.stderr, "countd-bench: warning:", err)
	}
	return nil
}

// runEach runs one(c) for every client count c in turn, on servers one
// starts itself, adding and printing each result as it comes, and stops at
// the first error.
func (b *bench) runEach(rep *Report, clients []int, one func(c int) (*Result, error)) error {
	for _, c := range clients {
		res, err := one(c)
		if res != nil {
			rep.Runs = append(rep.Runs, *res)
			printResult(b.stdout, res)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// runChurns runs the churn mode once per -ttl and client count, each on a
// fresh cluster of n nodes with sec, since what it measures is how the
// nodes' memory and disk grow from empty.
func (b *bench) runChurns(ctx context.Context, rep *Report, sec security, n int, clients []int) error {
	for _, ttl := range b.cfg.TTLs {
		for _, c := range clients {
			cl, err := b.cluster(ctx, n, sec)
			if err != nil {
				return err
			}
			b.runs.Add(1)
			res, err := b.runChurn(ctx, cl, c, ttl)
			if res != nil {
				rep.Runs = append(rep.Runs, *res)
				printResult(b.stdout, res)
			}
			if cerr := cl.Close(); cerr != nil {
				fmt.Fprintln(b.stderr, "countd-bench: warning:", cerr)
			}
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// cluster starts n nodes with sec, or returns the -addrs cluster once it
// answers.
func (b *bench) cluster(ctx context.Context, n int, sec security) (*cluster, error) {
	return b.clusterOf(ctx, b.cfg, n, sec)
}

// clusterOf is cluster with the nodes started as cfg says (resp mode starts
// a -memory and a durable one from one Config).
func (b *bench) clusterOf(ctx context.Context, cfg *Config, n int, sec security) (*cluster, error) {
	if len(b.cfg.Addrs) > 0 {
		cl := external(b.cfg.Addrs)
		if err := waitReady(ctx, cl, b.cfg.ReadyTimeout); err != nil {
			return nil, err
		}
		return cl, nil
	}
	if b.bin == "" {
		if b.cfg.Bin != "" {
			b.bin = b.cfg.Bin
		} else {
			dir, err := os.MkdirTemp("", "countd-bench-bin-")
			if err != nil {
				return nil, fmt.Errorf("build countd: %w", err)
			}
			b.binDir = dir
			b.logf("building countd ...")
			if b.bin, err = proc.Build(ctx, dir, false); err != nil {
				return nil, fmt.Errorf("%w (or pass -bin)", err)
			}
		}
	}
	if sec.TLS && b.ca == nil {
		dir, err := os.MkdirTemp("", "countd-bench-ca-")
		if err != nil {
			return nil, fmt.Errorf("make CA: %w", err)
		}
		b.caDir = dir
		if b.ca, err = testcerts.NewCAIn(dir, "countd-bench CA"); err != nil {
			return nil, fmt.Errorf("make CA: %w", err)
		}
	}
	t0 := time.Now()
	b.logf("starting %d node(s), security %s ...", n, sec)
	cl, err := startCluster(ctx, cfg, b.bin, n, sec, b.ca)
	if err != nil {
		return nil, err
	}
	b.logf("%d node(s) up, all see each other alive, after %.1fs", n, time.Since(t0).Seconds())
	return cl, nil
}

// peerCluster starts n nodes of the -idle-peer system.
func (b *bench) peerCluster(ctx context.Context, n int) (*cluster, error) {
	t0 := time.Now()
	b.logf("starting %d %s node(s) ...", n, b.cfg.IdlePeer)
	cl, err := startMemberlist(ctx, b.cfg, n)
	if err != nil {
		return nil, err
	}
	b.logf("%d %s node(s) up, all list each other alive, after %.1fs", n, b.cfg.IdlePeer, time.Since(t0).Seconds())
	return cl, nil
}

// logf prints a status line on stderr unless -quiet.
func (b *bench) logf(format string, args ...any) {
	if !b.cfg.Quiet {
		fmt.Fprintf(b.stderr, "countd-bench: "+format+"\n", args...)
	}
}

// runOne runs one combination in the selected mode.
func (b *bench) runOne(ctx context.Context, cl *cluster, clients int) (*Result, error) {
	b.runs.Add(1)
	switch b.cfg.mode() {
	case modeRounds:
		return b.runRounds(ctx, cl, clients)
	case modeIdle:
		return b.runIdle(ctx, cl)
	case modeCreate:
		return b.runCreate(ctx, cl, clients)
	case modeLevels:
		return b.runLevels(ctx, cl, clients)
	}
	return b.runLoad(ctx, cl, clients)
}

// newResult fills in what describes a run.
func (b *bench) newResult(mode string, cl *cluster, clients int) *Result {
	return &Result{
		Mode: mode, Nodes: len(cl.addrs), Clients: clients, Target: b.cfg.Target,
		Counters: b.cfg.Counters, Memory: b.cfg.Memory, External: cl.procs == nil,
		NodeFlags: b.cfg.NodeFlags, Security: securityLabel(cl.sec),
	}
}

// progress starts the progress line of a run.
func (b *bench) progress(cl *cluster, clients int) *progress {
	var w io.Writer
	if !b.cfg.Quiet {
		w = b.stderr
	}
	return startProgress(w, fmt.Sprintf("[nodes=%d clients=%d]", len(cl.addrs), clients))
}

// warmUp sends 2 requests per client, to open the connections and warm the
// servers' allocations before anything is measured.
func warmUp(ctx context.Context, c *http.Client, token string, clients int, url urlFunc) {
	drive(ctx, driveSpec{client: c, token: token, clients: clients, url: limited(url, 2*clients)})
}

// limited stops url after total requests in all.
func limited(url urlFunc, total int) urlFunc {
	var n atomic.Int64
	return func(client int, seq uint64) (string, bool) {
		if n.Add(1) > int64(total) {
			return "", false
		}
		return url(client, seq)
	}
}

// sleepCtx waits for d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// ms converts a duration to milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
