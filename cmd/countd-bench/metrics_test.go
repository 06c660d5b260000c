package main

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// sampleMetrics is a trimmed scrape of a countd node.
const sampleMetrics = `# HELP countd_changes_total Client changes by operation and outcome.
# TYPE countd_changes_total counter
countd_changes_total{op="decrement",outcome="ok"} 3
countd_changes_total{op="increment",outcome="ok"} 1200
countd_changes_total{op="increment",outcome="rejected"} 2
countd_changes_total{op="increment",outcome="unavailable"} 1
# HELP countd_replication_pushes_total Pushes sent.
# TYPE countd_replication_pushes_total counter
countd_replication_pushes_total 40
# TYPE countd_replication_push_bytes_total counter
countd_replication_push_bytes_total 8000
# TYPE countd_replication_push_entries histogram
countd_replication_push_entries_bucket{le="1"} 10
countd_replication_push_entries_bucket{le="4"} 30
countd_replication_push_entries_bucket{le="+Inf"} 40
countd_replication_push_entries_sum 100
countd_replication_push_entries_count 40
# TYPE countd_peers gauge
countd_peers{state="alive"} 2
countd_peers{state="down"} 0
countd_peers{state="suspect"} 0
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 1.25
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes 2.1e+07
`

func TestParseMetrics(t *testing.T) {
	m, err := parseMetrics(strings.NewReader(sampleMetrics))
	if err != nil {
		t.Fatal(err)
	}
	sums := []struct {
		name  string
		match []string
		want  float64
		ok    bool
	}{
		{mChanges, nil, 1206, true},
		{mChanges, []string{"outcome", "ok"}, 1203, true},
		{mChanges, []string{"op", "increment", "outcome", "ok"}, 1200, true},
		{mChanges, []string{"outcome", "nonsense"}, 0, false},
		{mChanges, []string{"outcome"}, 0, false}, // odd match list matches nothing
		{mPushes, nil, 40, true},
		{"countd_peers", []string{"state", "alive"}, 2, true},
		{mProcessCPU, nil, 1.25, true},
		{mProcessRSS, nil, 21e6, true},
		{"countd_not_there", nil, 0, false},
		{mPushEntries, nil, 0, false}, // a histogram has no plain value
	}
	for _, s := range sums {
		got, ok := m.Sum(s.name, s.match...)
		if got != s.want || ok != s.ok {
			t.Errorf("Sum(%s, %v) = %v, %v; want %v, %v", s.name, s.match, got, ok, s.want, s.ok)
		}
	}
	n, sum, ok := m.Hist(mPushEntries)
	if n != 40 || sum != 100 || !ok {
		t.Errorf("Hist(entries) = %v, %v, %v; want 40, 100, true", n, sum, ok)
	}
	if _, _, ok := m.Hist(mPushes); ok {
		t.Errorf("Hist of a counter should not be ok")
	}
}

func TestParseMetricsRejectsMalformed(t *testing.T) {
	for _, in := range []string{
		"countd_x{a=\"1\" 3\n",                    // unclosed labels
		"countd_x 1 2 3\n",                        // junk after timestamp
		"# TYPE countd_x counter\ncountd_x abc\n", // not a number
		"countd_x{le=\"1\"} 1\ncountd_x{le=\"1\"} 2\n# TYPE countd_x histogram\n",
	} {
		if _, err := parseMetrics(strings.NewReader(in)); err == nil {
			t.Errorf("parseMetrics(%q) gave no error", in)
		}
	}
}

func TestMetricDelta(t *testing.T) {
	parse := func(s string) Metrics {
		t.Helper()
		m, err := parseMetrics(strings.NewReader(s))
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	b1 := parse("countd_replication_pushes_total 10\n")
	a1 := parse("countd_replication_pushes_total 25\n")
	b2 := parse("countd_replication_pushes_total 0\n")
	a2 := parse("countd_replication_pushes_total 5\n")
	if d, ok := metricDelta([]Metrics{b1, b2}, []Metrics{a1, a2}, mPushes); d != 20 || !ok {
		t.Errorf("delta = %v, %v; want 20, true", d, ok)
	}
	none := parse("other 1\n")
	if _, ok := metricDelta([]Metrics{b1, none}, []Metrics{a1, a2}, mPushes); ok {
		t.Errorf("delta with a node lacking the metric should be n/a")
	}
	if _, ok := metricDelta(nil, nil, mPushes); ok {
		t.Errorf("delta without scrapes should be n/a")
	}
	hb := parse("# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 6\nh_count 2\n")
	ha := parse("# TYPE h histogram\nh_bucket{le=\"+Inf\"} 5\nh_sum 15\nh_count 5\n")
	if n, s, ok := histDelta([]Metrics{hb}, []Metrics{ha}, "h"); n != 3 || s != 9 || !ok {
		t.Errorf("histDelta = %v, %v, %v; want 3, 9, true", n, s, ok)
	}
}

func TestFetchMetrics(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(sampleMetrics))
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	m, err := fetchMetrics(context.Background(), srv.Client(), srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := m.Sum(mPushes); v != 40 {
		t.Errorf("pushes = %v", v)
	}

	none := httptest.NewServer(http.NotFoundHandler())
	defer none.Close()
	_, err = fetchMetrics(context.Background(), none.Client(), none.URL)
	if !errors.Is(err, errNoMetrics) {
		t.Errorf("a node without /metrics: err = %v, want errNoMetrics", err)
	}
}

// FuzzParseMetrics checks that no scrape text, however broken, panics the
// parser or the figures read from what it accepts.
func FuzzParseMetrics(f *testing.F) {
	f.Add([]byte(sampleMetrics))
	f.Add([]byte(""))
	f.Add([]byte("# TYPE x summary\nx{quantile=\"0.5\"} 1\nx_sum 2\nx_count 3\n"))
	f.Add([]byte("x{a=\"\\\"\\n\"} NaN 123\n"))
	f.Add([]byte("{\"utf8.name\",a=\"b\"} +Inf\n"))
	f.Add([]byte("# TYPE h histogram\nh_bucket{le=\"x\"} 1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := parseMetrics(bytes.NewReader(data))
		if err != nil {
			if m != nil {
				t.Fatalf("error %v with a non-nil result", err)
			}
			return
		}
		for name := range m {
			m.Sum(name)
			m.Sum(name, "outcome", "ok")
			m.Hist(name)
		}
		metricDelta([]Metrics{m}, []Metrics{m}, mPushes)
		histDelta([]Metrics{m}, []Metrics{m}, mPushEntries)
	})
}
