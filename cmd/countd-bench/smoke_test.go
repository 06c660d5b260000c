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
// itself as a yardstick server.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && (os.Args[1] == "-bare-server" || os.Args[1] == "-memberlist-node" || strings.HasPrefix(os.Args[1], "-fsync-server=")) {
		os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// TestSmoke runs the tool's core end to end: it builds countd, starts one
// durable node, the bare server and the fsync yardstick, loads all three
// with 2 clients for a second each, and checks that the report holds sane
// numbers, that the files it writes read back, and that no process or
// temporary directory it made is left.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs countd")
	}
	dir := t.TempDir()
	rep, stdout, stderr := smokeRun(t, "-nodes=1", "-clients=2", "-duration=1s", "-chunk=250ms",
		"-json="+filepath.Join(dir, "r.json"), "-png="+filepath.Join(dir, "r.png"))
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
	f := r.Fsync
	check(f != nil && f.Requests > 0 && f.OK == f.Requests && f.Latency.P50MS > 0, "fsync side %+v", f)
	check(f != nil && f.Seconds >= 0.9 && f.Seconds < 5, "fsync yardstick load lasted %v, want about 1s", f)
	check(r.FsyncRatioToBare != nil && *r.FsyncRatioToBare > 0, "fsync ratio to bare %v", r.FsyncRatioToBare)
	check(r.RatioToFsync != nil && *r.RatioToFsync > 0, "ratio to fsync %v", r.RatioToFsync)
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
	check(strings.Contains(stderr, "req/s"), "no progress line on stderr")
	check(strings.Contains(stdout, "ratio"), "no ratio in the report")
	check(strings.Contains(stdout, "fsync yardstick") && strings.Contains(stdout, "ratio to fsync"),
		"no fsync yardstick in the report")

	back, err := readReport(filepath.Join(dir, "r.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(back.Runs) != 1 || back.Runs[0].Countd.Requests != c.Requests || back.Machine.Cores <= 0 ||
		back.Runs[0].Fsync == nil || back.Runs[0].Fsync.Requests != f.Requests {
		t.Errorf("results file does not match the report: %+v", back)
	}
	if fi, err := os.Stat(filepath.Join(dir, "r.png")); err != nil || fi.Size() == 0 {
		t.Errorf("no chart: %v", err)
	}
}

// TestSmokeMemory checks that with -memory nodes the load mode measures
// bare but not the fsync yardstick, and says nothing of it.
func TestSmokeMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs countd")
	}
	path := filepath.Join(t.TempDir(), "r.json")
	rep, stdout, _ := smokeRun(t, "-memory", "-nodes=1", "-clients=2", "-duration=500ms", "-chunk=250ms", "-json="+path)
	if len(rep.Runs) != 1 {
		t.Fatalf("%d runs, want 1", len(rep.Runs))
	}
	r := rep.Runs[0]
	if r.Bare == nil || r.Bare.Requests == 0 || r.Ratio == nil {
		t.Errorf("bare side %+v, ratio %v", r.Bare, r.Ratio)
	}
	if r.Fsync != nil || r.FsyncRatioToBare != nil || r.RatioToFsync != nil {
		t.Errorf("a -memory run measured the fsync yardstick: %+v", r.Fsync)
	}
	if strings.Contains(stdout, "fsync") {
		t.Errorf("the report of a -memory run mentions fsync:\n%s", stdout)
	}
	if b, err := os.ReadFile(path); err != nil || strings.Contains(string(b), "fsync") {
		t.Errorf("the results of a -memory run mention fsync (read error %v)", err)
	}
}

// TestSmokeRestart runs the create mode with -restart-node on one durable
// node: every figure is read, the node restarted on its data dir lists
// every counter created, and nothing is left running.
func TestSmokeRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs countd")
	}
	rep, stdout, _ := smokeRun(t, "-nodes=1", "-clients=4", "-create-counters=500", "-restart-node")
	if len(rep.Runs) != 1 || rep.Runs[0].Restart == nil {
		t.Fatalf("no -restart-node figures in %+v", rep.Runs)
	}
	m := rep.Runs[0].Restart
	if m.Listed != 500 {
		t.Errorf("the restarted node lists %d counters, want 500", m.Listed)
	}
	for what, nm := range map[string]NodeMemory{"created": m.Created, "listing": m.Listing, "restarted": m.Restarted, "listing after": m.ListingAfter} {
		if nm.RSS == 0 || nm.Anon == 0 || nm.Anon+nm.File > nm.RSS {
			t.Errorf("%s: implausible memory %+v", what, nm)
		}
	}
	if m.Created.Heap == nil || m.Restarted.Heap == nil || m.StopSeconds <= 0 || m.ReadySeconds <= 0 {
		t.Errorf("no heap figure or restart time: %+v", m)
	}
	if !strings.Contains(stdout, "restarted (") {
		t.Errorf("the report does not show the restart:\n%s", stdout)
	}
}

// smokeRun runs the tool with args and returns the report and its output.
// Its temporary directories go in one of the test's own; it fails the test
// if any of them, or any child process, is left afterwards.
func smokeRun(t *testing.T, args ...string) (rep *Report, stdout, stderr string) {
	t.Helper()
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	cfg, err := parseFlags(args, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	rep, err = execute(ctx, cfg, &out, &errOut)
	t.Logf("stdout:\n%s\nstderr:\n%s", out.String(), errOut.String())
	if err != nil {
		t.Fatal(err)
	}
	if kids := children(t); len(kids) > 0 {
		t.Errorf("child processes left running: %v", kids)
	}
	if left, _ := filepath.Glob(filepath.Join(tmp, "countd-bench-*")); len(left) > 0 {
		t.Errorf("temporary directories left behind: %v", left)
	}
	return rep, out.String(), errOut.String()
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

// TestSmokeChurn runs the churn mode on one durable node: 300 counters
// with ttl=1 over a second, then a tail long enough for each to expire
// and be swept (the node sweeps every second) with a wide margin. It
// checks that every counter was created and counted, that all of them
// were then expired and their tombstones collected, so the node ends with
// no counters and no entries, and that memory, the data file and the
// part of it in use were sampled.
func TestSmokeChurn(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs countd")
	}
	const k = 300
	path := filepath.Join(t.TempDir(), "r.json")
	rep, stdout, _ := smokeRun(t, "-churn-counters=300", "-duration=1s", "-ttl=1", "-tail=8s",
		"-sample=500ms", "-clients=4", "-json="+path, "-png="+filepath.Join(t.TempDir(), "r.png"))
	if len(rep.Runs) != 1 || rep.Runs[0].Churn == nil {
		t.Fatalf("runs %+v, want one churn run", rep.Runs)
	}
	cr := rep.Runs[0].Churn
	if cr.Created != k || cr.TTLSeconds != 1 || len(cr.Samples) < 10 {
		t.Fatalf("created %d with ttl %d, %d samples; want %d with ttl 1 and a sample every 500ms for 9s",
			cr.Created, cr.TTLSeconds, len(cr.Samples), k)
	}
	if len(cr.Peak) != 1 || len(cr.Final) != 1 {
		t.Fatalf("peak %+v, final %+v: want one node each", cr.Peak, cr.Final)
	}
	val := func(p *float64) float64 {
		if p == nil {
			return -1
		}
		return *p
	}
	peak, final := cr.Peak[0], cr.Final[0]
	if val(peak.Counters) <= 0 || val(peak.Entries) <= 0 {
		t.Errorf("peak counters %v, entries %v: the node never held the counters", val(peak.Counters), val(peak.Entries))
	}
	if val(final.Counters) != 0 || val(final.Entries) != 0 || val(final.Expired) != k || val(final.Collected) != k {
		t.Errorf("final counters %v, entries %v, expired %v, collected %v; want 0, 0, %d, %d",
			val(final.Counters), val(final.Entries), val(final.Expired), val(final.Collected), k, k)
	}
	if val(peak.RSSBytes) < 1e6 || val(peak.HeapInuseBytes) <= 0 || val(peak.FileBytes) <= 0 || val(peak.BoltInUseBytes) <= 0 {
		t.Errorf("peak rss %v, heap %v, file %v, in use %v: a figure was not sampled",
			val(peak.RSSBytes), val(peak.HeapInuseBytes), val(peak.FileBytes), val(peak.BoltInUseBytes))
	}
	if !strings.Contains(stdout, "ttl=1") || !strings.Contains(stdout, "collected") || !strings.Contains(stdout, "final") {
		t.Errorf("the report lacks the churn table:\n%s", stdout)
	}
	back, err := readReport(path)
	if err != nil {
		t.Fatal(err)
	}
	if c := back.Runs[0].Churn; c == nil || len(c.Samples) != len(cr.Samples) {
		t.Errorf("results file does not hold the samples: %+v", c)
	}
}
