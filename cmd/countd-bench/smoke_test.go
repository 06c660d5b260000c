package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMain lets the test binary stand in for the tool when the tool starts
// itself as the bare server.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "-bare-server" {
		os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// TestSmoke runs the tool's core end to end: it builds countd, starts one
// durable node and the bare server, loads both with 2 clients for a second,
// and checks that the report holds sane numbers, that the files it writes
// read back, and that no process it started is left.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs countd")
	}
	dir := t.TempDir()
	cfg, err := parseFlags([]string{"-nodes=1", "-clients=2", "-duration=1s", "-chunk=250ms",
		"-json=" + filepath.Join(dir, "r.json"), "-png=" + filepath.Join(dir, "r.png")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	rep, err := execute(ctx, cfg, &stdout, &stderr)
	t.Logf("stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Runs) != 1 {
		t.Fatalf("%d runs, want 1", len(rep.Runs))
	}
	r := rep.Runs[0]
	c := r.Countd
	check := func(ok bool, format string, args ...any) {
		t.Helper()
		if !ok {
			t.Errorf(format, args...)
		}
	}
	check(c.Requests > 0 && c.OK == c.Requests && len(c.Errors) == 0, "countd: %d requests, %d ok, errors %v", c.Requests, c.OK, c.Errors)
	check(c.Seconds >= 0.9 && c.Seconds < 5, "countd load lasted %.2fs, want about 1s", c.Seconds)
	check(c.Throughput > 10, "countd throughput %.0f req/s", c.Throughput)
	l := c.Latency
	check(l.P50MS > 0 && l.P50MS <= l.P99MS && l.P99MS <= l.P999MS && l.P999MS <= l.MaxMS, "latency %+v", l)
	check(r.Bare != nil && r.Bare.Requests > 0 && r.Bare.OK == r.Bare.Requests, "bare side %+v", r.Bare)
	check(r.Ratio != nil && *r.Ratio > 0, "ratio %v", r.Ratio)
	check(r.AgreementMS != nil && *r.AgreementMS >= 0, "agreement %v", r.AgreementMS)
	check(r.Counted != nil && *r.Counted == c.OK, "counted %v for %d acknowledged", r.Counted, c.OK)
	check(len(r.NodeStats) == 1, "node stats %+v", r.NodeStats)
	for _, ns := range r.NodeStats {
		check(ns.PID > 0 && ns.Source == "proc", "node %+v", ns)
		check(ns.CPUSeconds != nil && *ns.CPUSeconds > 0, "node cpu %v", ns.CPUSeconds)
		check(ns.PeakRSSBytes != nil && *ns.PeakRSSBytes > 1e6 && *ns.PeakRSSBytes < 1e9, "node peak rss %v", ns.PeakRSSBytes)
		// The node was stopped and reaped: its PID is gone.
		check(errors.Is(syscall.Kill(ns.PID, 0), syscall.ESRCH), "node pid %d still exists", ns.PID)
	}
	// A single node pushes to nobody; if the node exposes the metric the
	// figure is a real zero, else n/a.
	if p := r.Replication.PushesPerChange; p != nil && *p != 0 {
		t.Errorf("one node made %v pushes per change", *p)
	}
	if kids := children(t); len(kids) > 0 {
		t.Errorf("child processes left running: %v", kids)
	}
	check(strings.Contains(stderr.String(), "req/s"), "no progress line on stderr")
	check(strings.Contains(stdout.String(), "ratio"), "no ratio in the report")

	back, err := readReport(filepath.Join(dir, "r.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(back.Runs) != 1 || back.Runs[0].Countd.Requests != c.Requests || back.Machine.Cores <= 0 {
		t.Errorf("results file does not match the report: %+v", back)
	}
	if fi, err := os.Stat(filepath.Join(dir, "r.png")); err != nil || fi.Size() == 0 {
		t.Errorf("no chart: %v", err)
	}
}

// children lists the processes whose parent is this one (over every thread,
// since Linux records the thread that forked).
func children(t *testing.T) []string {
	t.Helper()
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, f := range tasks {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // the thread ended
		}
		out = append(out, strings.Fields(string(b))...)
	}
	return out
}
