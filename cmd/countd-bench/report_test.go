package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"gonum.org/v1/plot/plotter"
)

// fullResult has every field set, the optional ones both nil and not.
func fullResult(mode string, nodes, clients int) Result {
	return Result{
		Mode: mode, Nodes: nodes, Clients: clients, Target: "all", Counters: 10,
		Memory: true, NodeFlags: []string{"-flush-delay=5ms"},
		Countd: Side{Requests: 1000, OK: 998, Unknown: 1, Seconds: 1.5, Throughput: 666.6666666666666,
			Latency: Latency{P50MS: 0.25, P99MS: 3.5, P999MS: 9.75, MaxMS: 12, MeanMS: 0.4},
			Errors:  map[string]int64{"503": 1, "409": 1}, FirstError: "POST x: status 503"},
		Bare:  &Side{Requests: 2000, OK: 2000, Seconds: 1.5, Throughput: 1333.3333333333333, Errors: map[string]int64{}},
		Ratio: ptr(0.5),
		Fsync: &Side{Requests: 1500, OK: 1500, Seconds: 1.5, Throughput: 1000,
			Latency: Latency{P50MS: 1.25, P99MS: 4.5, P999MS: 6, MaxMS: 7, MeanMS: 1.5},
			Errors:  map[string]int64{"503": 2}, FirstError: "POST y: status 503"},
		FsyncRatioToBare: ptr(0.75),
		RatioToFsync:     ptr(2.0 / 3),
		AgreementMS:      ptr(31.25),
		Counted:          ptr(int64(998)),
		Replication: Replication{Changes: ptr(998.0), Pushes: ptr(12.0), PushFailures: ptr(0.0),
			PushBytes: ptr(4096.0), PushesPerChange: ptr(12.0 / 998), BytesPerChange: ptr(4096.0 / 998)},
		NodeStats: []NodeStat{
			{Addr: "127.0.0.1:1", PID: 10, Source: "proc", CPUSeconds: ptr(1.5), RSSBytes: ptr(2e7), PeakRSSBytes: ptr(2.5e7)},
			{Addr: "127.0.0.1:2", Source: "metrics"},
		},
		Rounds: &RoundsResult{Rounds: 2, BurstMS: 200, AgreementMS: []float64{20.5, 31.25}, P50MS: 20.5, P99MS: 31.25, MaxMS: 31.25},
		Idle:   &IdleResult{SettleSeconds: 2, Seconds: 10, CPUSeconds: ptr(0.2), CPUPercentOfCore: ptr(2.0)},
		Create: &CreateResult{Counters: 100, Seconds: 0.5, AgreedCounters: 100},
		Notes:  []string{"a note"},
	}
}

func TestReportJSONRoundTrip(t *testing.T) {
	want := &Report{
		Machine: Machine{CPUModel: "Some CPU", Cores: 2, GoVersion: "go1.26", Kernel: "6.1", OS: "linux", Arch: "amd64"},
		Started: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC),
		Args:    []string{"-nodes=1,3", "-clients=8"},
		Runs:    []Result{fullResult(modeLoad, 3, 8), {Mode: modeIdle, Nodes: 32, NodeStats: []NodeStat{{Addr: "a"}}}},
	}
	path := filepath.Join(t.TempDir(), "r.json")
	if err := writeReport(path, want); err != nil {
		t.Fatal(err)
	}
	got, err := readReport(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("round trip changed the report:\n got %+v\nwant %+v", got, want)
	}
	// A figure that is missing must stay missing (null), not become 0.
	b, _ := os.ReadFile(path)
	if !strings.Contains(string(b), `"ratio_to_bare": null`) {
		t.Errorf("an idle run's ratio should be null in JSON")
	}
	// A run without the fsync yardstick (-memory, -addrs, other modes)
	// writes exactly the fields it wrote before the yardstick existed.
	idle, err := json.Marshal(want.Runs[1])
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(idle), "fsync") {
		t.Errorf("a run without the fsync yardstick has fsync fields: %s", idle)
	}

	if err := os.WriteFile(path, []byte(`{"runs": [{"mode": "load", "surprise": 1}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := readReport(path); err == nil {
		t.Errorf("readReport accepted an unknown field")
	}
	if _, err := readReport(filepath.Join(t.TempDir(), "missing.json")); err == nil {
		t.Errorf("readReport of a missing file gave no error")
	}
}

func TestPrintResult(t *testing.T) {
	var buf bytes.Buffer
	r := fullResult(modeLoad, 3, 8)
	r.Replication.EntriesPerPush = nil
	printResult(&buf, &r)
	out := buf.String()
	for _, want := range []string{"3 node(s)", "8 client(s) on all nodes", "667 req/s", "ratio 0.50",
		"p99 3.50 ms", "409: 1, 503: 1", "31.2 ms", "n/a entries/push", "a note",
		"1,000 req/s (1,500 requests in 1.5s), 0.75 of bare; countd's ratio to fsync 0.67",
		"p50 1.25 ms, p99 4.50 ms", "503: 2 (first: POST y: status 503)"} {
		if !strings.Contains(out, want) {
			t.Errorf("printResult output lacks %q:\n%s", want, out)
		}
	}
	for _, label := range []string{"fsync yardstick", "fsync latency", "fsync errors"} {
		if n := strings.Count(out, "  "+label+" "); n != 1 {
			t.Errorf("printResult has %d %q lines, want 1:\n%s", n, label, out)
		}
	}

	// Without the fsync yardstick (a -memory run) there is no word of it.
	noFsync := r
	noFsync.Fsync, noFsync.FsyncRatioToBare, noFsync.RatioToFsync = nil, nil, nil
	buf.Reset()
	printResult(&buf, &noFsync)
	if strings.Contains(buf.String(), "fsync") {
		t.Errorf("printResult of a run without the fsync yardstick mentions it:\n%s", buf.String())
	}

	tests := []struct {
		name      string
		runs      []Result
		withFsync bool
	}{
		{"fsync", []Result{r, fullResult(modeLoad, 1, 8)}, true},
		{"fsync in one run", []Result{noFsync, r}, true},
		{"no fsync", []Result{noFsync, noFsync}, false},
	}
	for _, tc := range tests {
		t.Run("summary "+tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			printSummary(&buf, tc.runs)
			out := buf.String()
			if lines := strings.Count(out, "\n"); lines != 5 {
				t.Errorf("summary has %d lines, want 5:\n%s", lines, out)
			}
			if got := strings.Contains(out, "fsync req/s") && strings.Contains(out, "to fsync"); got != tc.withFsync {
				t.Errorf("fsync columns shown %v, want %v:\n%s", got, tc.withFsync, out)
			}
			if tc.withFsync && !regexp.MustCompile(`0\.50 +1,000 +0\.67 `).MatchString(out) {
				t.Errorf("summary lacks the fsync figures 1,000 and 0.67:\n%s", out)
			}
			if !tc.withFsync && strings.Contains(out, "fsync") {
				t.Errorf("summary without the fsync yardstick mentions it:\n%s", out)
			}
		})
	}
}

func TestGroup(t *testing.T) {
	for in, want := range map[float64]string{
		0: "0", 999: "999", 1000: "1,000", 1234567.4: "1,234,567", -45678: "-45,678", 999.6: "1,000",
	} {
		if got := group(in); got != want {
			t.Errorf("group(%v) = %q, want %q", in, got, want)
		}
	}
}

func TestDrawCharts(t *testing.T) {
	var runs []Result
	for _, n := range []int{1, 3, 5} {
		for _, c := range []int{1, 8, 64} {
			r := fullResult(modeLoad, n, c)
			r.Countd.Throughput = float64(1000 * c / n)
			runs = append(runs, r)
		}
	}
	tests := []struct {
		name string
		runs []Result
	}{
		{"sweep", runs},
		{"one run", runs[:1]},
		{"one node count", runs[:3]},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.png")
			if err := drawCharts(path, tc.runs); err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")) || len(b) < 10000 {
				t.Fatalf("not a plausible PNG: %d bytes", len(b))
			}
		})
	}
	if err := drawCharts(filepath.Join(t.TempDir(), "c.png"), []Result{{Mode: modeIdle}}); err == nil {
		t.Errorf("drawCharts with no load runs gave no error")
	}
}

// TestYardstickLines checks the grey lines of the throughput panel: one per
// yardstick some run measured, bare dashed and fsync dotted, each averaged
// over the runs at every x.
func TestYardstickLines(t *testing.T) {
	run := func(nodes, clients int, bare, fsync float64) Result {
		r := Result{Mode: modeLoad, Nodes: nodes, Clients: clients, Bare: &Side{Throughput: bare}}
		if fsync > 0 {
			r.Fsync = &Side{Throughput: fsync}
		}
		return r
	}
	byClients := func(r *Result) (x, series int) { return r.Clients, r.Nodes }
	tests := []struct {
		name string
		runs []Result
		want []yardstickLine
	}{
		{"durable", []Result{run(1, 8, 100, 50), run(3, 8, 300, 70), run(1, 1, 10, 5)}, []yardstickLine{
			{"bare net/http", plotter.XYs{{X: 1, Y: 10}, {X: 8, Y: 200}}, yardsticks[0].dashes},
			{"fsync yardstick", plotter.XYs{{X: 1, Y: 5}, {X: 8, Y: 60}}, yardsticks[1].dashes},
		}},
		{"fsync in some runs", []Result{run(1, 8, 100, 0), run(1, 64, 100, 40)}, []yardstickLine{
			{"bare net/http", plotter.XYs{{X: 8, Y: 100}, {X: 64, Y: 100}}, yardsticks[0].dashes},
			{"fsync yardstick", plotter.XYs{{X: 64, Y: 40}}, yardsticks[1].dashes},
		}},
		{"memory", []Result{run(1, 8, 100, 0)}, []yardstickLine{
			{"bare net/http", plotter.XYs{{X: 8, Y: 100}}, yardsticks[0].dashes},
		}},
		{"no yardstick", []Result{{Mode: modeLoad, Clients: 8}}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := yardstickLines(tc.runs, byClients); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
	if reflect.DeepEqual(yardsticks[0].dashes, yardsticks[1].dashes) {
		t.Errorf("bare and fsync lines are drawn alike")
	}
}
