package node_test

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"countd/internal/apiclient"
)

// scrape GETs /metrics of the named node and returns its text and families.
func (c *cluster) scrape(t *testing.T, name string) (string, map[string]*dto.MetricFamily) {
	t.Helper()
	resp, err := c.HTTP().Get(c.URL(name) + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %v %v", resp.Status, err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("/metrics is not the Prometheus text format: %v", err)
	}
	return string(body), families
}

// metricValue returns the value of the series of family name whose labels
// include every pair in labels ("k=v"): a counter's or gauge's value, a
// histogram's sample count. ok is false if there is no such series.
func metricValue(families map[string]*dto.MetricFamily, name string, labels ...string) (v float64, ok bool) {
	f := families[name]
	if f == nil {
		return 0, false
	}
	for _, m := range f.GetMetric() {
		if !hasLabels(m, labels) {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

// hasLabels reports whether m carries every pair in labels ("k=v").
func hasLabels(m *dto.Metric, labels []string) bool {
	have := make([]string, len(m.GetLabel()))
	for i, l := range m.GetLabel() {
		have[i] = l.GetName() + "=" + l.GetValue()
	}
	for _, want := range labels {
		if !slices.Contains(have, want) {
			return false
		}
	}
	return true
}

// TestMetricsReportClientChangesReplicationAndPeers drives a two-node
// cluster and checks that GET /metrics counts what happened: client changes
// by outcome, group commits, pushes and their bytes, heartbeats, peers by
// state, counters known and requests by route; and that no counter name or
// client-chosen path shows up as a label.
func TestMetricsReportClientChangesReplicationAndPeers(t *testing.T) {
	c := startCluster(t, 2)
	const secret = "counter-name-not-a-label"
	for i := range 5 {
		if r := c.Change("A", secret, 1); r.Outcome != apiclient.OK {
			t.Fatalf("increment %d: %v", i, r.Err)
		}
	}
	if r := c.Change("A", secret, -2); r.Outcome != apiclient.OK {
		t.Fatalf("decrement: %v", r.Err)
	}
	if r := c.Change("A", "bad name!", 1); r.Status != http.StatusBadRequest {
		t.Fatalf("bad name: status %d, want 400", r.Status)
	}
	resp, err := c.HTTP().Get(c.URL("A") + "/no-such-path-xyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	c.waitConverged(map[string]int64{secret: 3}, "A", "B")
	waitFor(t, 10*time.Second, "B acknowledges every change of A", func() (bool, string) {
		rows, err := c.Peers("A")
		if err != nil || len(rows) != 1 {
			return false, fmt.Sprint(rows, err)
		}
		return rows[0].Behind == 0, fmt.Sprintf("behind %d", rows[0].Behind)
	})

	var text string
	var fams map[string]*dto.MetricFamily
	checks := []struct {
		name   string
		labels []string
		want   func(float64) bool
		what   string
	}{
		{"countd_changes_total", []string{"op=increment", "outcome=ok"}, eq(5), "5"},
		{"countd_changes_total", []string{"op=decrement", "outcome=ok"}, eq(1), "1"},
		{"countd_changes_total", []string{"op=increment", "outcome=rejected"}, eq(1), "1"},
		{"countd_changes_total", []string{"op=increment", "outcome=unavailable"}, eq(0), "0"},
		{"countd_commit_batch_size", nil, atLeast(1), "≥ 1 commit"},
		{"countd_commit_duration_seconds", nil, atLeast(1), "≥ 1 commit"},
		{"countd_replication_pushes_total", nil, atLeast(1), "≥ 1"},
		{"countd_replication_push_bytes_total", nil, atLeast(10), "≥ 10 bytes"},
		{"countd_replication_push_entries", nil, atLeast(1), "≥ 1 push"},
		{"countd_heartbeat_rtt_seconds", nil, atLeast(1), "≥ 1 heartbeat"},
		{"countd_peers", []string{"state=alive"}, eq(1), "1"},
		{"countd_peers", []string{"state=down"}, eq(0), "0"},
		{"countd_counters", nil, eq(1), "1"},
		{"countd_http_request_duration_seconds", []string{"route=/counters/{name}/increment", "code=200"}, eq(5), "5"},
		{"countd_http_request_duration_seconds", []string{"route=/counters/{name}/increment", "code=400"}, eq(1), "1"},
		{"countd_http_request_duration_seconds", []string{"route=unmatched", "code=404"}, eq(1), "1"},
		{"process_resident_memory_bytes", nil, atLeast(1), "> 0"},
		{"go_goroutines", nil, atLeast(1), "> 0"},
	}
	// Heartbeats and pushes go on in the background: poll until all hold.
	waitFor(t, 10*time.Second, "metrics of A", func() (bool, string) {
		text, fams = c.scrape(t, "A")
		for _, ch := range checks {
			v, ok := metricValue(fams, ch.name, ch.labels...)
			if !ok || !ch.want(v) {
				return false, fmt.Sprintf("%s%v = %v (present %v), want %s", ch.name, ch.labels, v, ok, ch.what)
			}
		}
		return true, ""
	})
	for _, leak := range []string{secret, "no-such-path-xyz", c.Addr("B")} {
		if strings.Contains(text, leak) {
			t.Errorf("/metrics contains %q: client-chosen values must not become labels", leak)
		}
	}
	// B received pushes and answered them; it counts its own pushes to A.
	_, fams = c.scrape(t, "B")
	if v, _ := metricValue(fams, "countd_counters"); v != 1 {
		t.Errorf("B: countd_counters = %v, want 1", v)
	}
	if v, _ := metricValue(fams, "countd_http_request_duration_seconds", "route=/replicate", "code=200"); v < 1 {
		t.Errorf("B: /replicate requests = %v, want ≥ 1", v)
	}
}

func eq(want float64) func(float64) bool     { return func(v float64) bool { return v == want } }
func atLeast(min float64) func(float64) bool { return func(v float64) bool { return v >= min } }
