package main

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestRESPRowAddsRounds checks a row's totals: throughput is all requests
// over all the time the rounds took (not the mean of their rates), CPU is
// weighted by requests, p50 the median and p99 the largest.
func TestRESPRowAddsRounds(t *testing.T) {
	var r RESPRow
	r.add(&Peer{Requests: 1000, Throughput: 1000, P50MS: ptr(1.0), P99MS: ptr(5.0), CPUUSPerChange: ptr(10.0)})
	r.add(&Peer{Requests: 1000, Throughput: 500, P50MS: ptr(3.0), P99MS: ptr(9.0), CPUUSPerChange: ptr(20.0)})
	r.add(&Peer{Requests: 2000, Throughput: 2000, P50MS: ptr(2.0), P99MS: ptr(4.0), CPUUSPerChange: ptr(40.0)})
	r.done()
	// 4000 requests in 1 + 2 + 1 seconds.
	if r.Requests != 4000 || r.Seconds != 4 || r.Throughput != 1000 {
		t.Errorf("requests %d in %vs = %v req/s, want 4000 in 4s = 1000", r.Requests, r.Seconds, r.Throughput)
	}
	if want := (10.0*1000 + 20*1000 + 40*2000) / 4000; r.CPUUSPerChange != want {
		t.Errorf("CPU %v µs/INCR, want %v", r.CPUUSPerChange, want)
	}
	if r.P50MS == nil || *r.P50MS != 2 || r.P99MS == nil || *r.P99MS != 9 {
		t.Errorf("p50 %v, p99 %v; want 2 and 9", r.P50MS, r.P99MS)
	}
	if len(r.PerRound) != 3 || r.PerRound[1] != 500 {
		t.Errorf("per round %v", r.PerRound)
	}
}

// TestRESPRatios checks the four comparisons are made between the
// right rows, at the right depths, with the right targets, and the
// yardsticks' four after them with none.
func TestRESPRatios(t *testing.T) {
	row := func(server string, d int, rps float64) RESPRow {
		return RESPRow{Server: server, Pipeline: d, Throughput: rps}
	}
	rows := []RESPRow{
		row("countd -memory", 1, 80), row("redis", 1, 100), row("countd durable", 1, 30), row("redis appendfsync always", 1, 40),
		row("countd -memory", 16, 300), row("redis", 16, 1000), row("countd durable", 16, 200), row("redis appendfsync always", 16, 250),
		row("go redcon", 1, 90), row("go redcon + fdatasync", 1, 35), row("go redcon", 16, 900),
	}
	got := respRatios(rows, 16)
	want := []RESPRatio{
		{"countd -memory / redis", 0.8, 0.8},
		{"countd durable / redis appendfsync always", 0.75, 0.7},
		{"countd -memory / redis (-P 16)", 0.3, 0.5},
		{"countd durable / redis appendfsync always (-P 16)", 0.8, 0.5},
		{"countd -memory / go redcon", 80.0 / 90, 0},
		{"go redcon / redis", 0.9, 0},
		{"countd durable / go redcon + fdatasync", 30.0 / 35, 0},
		{"go redcon + fdatasync / redis appendfsync always", 35.0 / 40, 0},
	}
	if len(got) != len(want) {
		t.Fatalf("ratios %+v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("ratio %d: %+v, want %+v", i, got[i], want[i])
		}
	}
}

// TestSmokeRESP runs -resp small end to end: six servers, both depths,
// one round, and each node's counter equal to the INCRs sent to it.
func TestSmokeRESP(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs countd and redis-server")
	}
	for _, prog := range []string{"redis-server", "redis-benchmark"} {
		if _, err := exec.LookPath(prog); err != nil {
			t.Skipf("%s is not on PATH (Debian: apt-get install redis-server redis-tools)", prog)
		}
	}
	rep, stdout, _ := smokeRun(t, "-resp", "-clients=4", "-resp-requests=2000", "-resp-rounds=1",
		"-json="+filepath.Join(t.TempDir(), "r.json"))
	if len(rep.Runs) != 1 || rep.Runs[0].RESP == nil {
		t.Fatalf("runs %+v", rep.Runs)
	}
	r := rep.Runs[0].RESP
	if len(r.Rows) != 12 || len(r.Ratios) != 8 || len(r.Counted) != 2 {
		t.Fatalf("%d rows, %d ratios, %d counts; want 12, 8, 2", len(r.Rows), len(r.Ratios), len(r.Counted))
	}
	cpu := 0.0 // /proc counts in 10 ms ticks: a short load may show none
	for _, row := range r.Rows {
		if row.Requests != 2000 || row.Throughput <= 0 || row.CPUUSPerChange < 0 {
			t.Errorf("row %+v", row)
		}
		cpu += row.CPUUSPerChange
	}
	if cpu <= 0 {
		t.Errorf("no server used any CPU: %+v", r.Rows)
	}
	for _, c := range r.Counted {
		// 20 per client of warm-up, then one load at each depth.
		if c.Sent != 4*20+2*2000 || c.Value != c.Sent {
			t.Errorf("%s: counted %d of %d sent, want %d", c.Server, c.Value, c.Sent, 4*20+2*2000)
		}
	}
	if !strings.Contains(stdout, "countd -memory / redis") || !strings.Contains(stdout, "go redcon / redis") ||
		!strings.Contains(stdout, "counted") {
		t.Errorf("report lacks the ratios or the counts:\n%s", stdout)
	}
}
