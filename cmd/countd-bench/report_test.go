package main

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// fullResult has every field set, the optional ones both nil and not.
func fullResult(mode string, nodes, clients int) Result {
	return Result{
		Mode: mode, Nodes: nodes, Clients: clients, Target: "all", Counters: 10,
		Memory: true, NodeFlags: []string{"-flush-delay=5ms"},
		Countd: Side{Requests: 1000, OK: 998, Unknown: 1, Seconds: 1.5, Throughput: 666.6666666666666,
			Latency: Latency{P50MS: 0.25, P99MS: 3.5, P999MS: 9.75, MaxMS: 12, MeanMS: 0.4},
			Errors:  map[string]int64{"503": 1, "409": 1}, FirstError: "POST x: status 503"},
		Bare:        &Side{Requests: 2000, OK: 2000, Seconds: 1.5, Throughput: 1333.3333333333333, Errors: map[string]int64{}},
		Ratio:       ptr(0.5),
		AgreementMS: ptr(31.25),
		Counted:     ptr(int64(998)),
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
		"p99 3.50 ms", "409: 1, 503: 1", "31.2 ms", "n/a entries/push", "a note"} {
		if !strings.Contains(out, want) {
			t.Errorf("printResult output lacks %q:\n%s", want, out)
		}
	}
	buf.Reset()
	printSummary(&buf, []Result{r, fullResult(modeLoad, 1, 8)})
	if lines := strings.Count(buf.String(), "\n"); lines != 5 {
		t.Errorf("summary has %d lines, want 5:\n%s", lines, buf.String())
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
