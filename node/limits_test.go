package node_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"countd/internal/testcluster"
	"countd/node"
)

// TestCounterLimitRefusesClientsNotPeers: on a node at -max-counters, a
// client change that would create a counter gets 507 and changes nothing,
// existing counters keep working, and counters a peer creates still arrive
// (nodes must agree), counted in countd_replicated_counters_over_limit_total.
func TestCounterLimitRefusesClientsNotPeers(t *testing.T) {
	c := &cluster{t: t, Cluster: testcluster.New(t, testcluster.Options{Config: func(name string, cfg *node.Config) {
		if name == "A" {
			cfg.MaxCounters = 2
		}
	}})}
	t.Cleanup(func() {
		if t.Failed() {
			dumpLogs(t, c.Cluster, 200)
		}
	})
	if err := c.Start(2); err != nil {
		t.Fatal(err)
	}
	post := func(node, counter string) (int, string) {
		t.Helper()
		resp, err := c.HTTP().Post(c.URL(node)+"/counters/"+counter+"/increment", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	for _, name := range []string{"a", "b"} {
		if code, body := post("A", name); code != http.StatusOK {
			t.Fatalf("increment %s on A: %d %s", name, code, body)
		}
	}
	code, body := post("A", "c")
	var e struct{ Error string }
	if code != http.StatusInsufficientStorage || json.Unmarshal([]byte(body), &e) != nil || !strings.Contains(e.Error, "-max-counters") {
		t.Fatalf("a third counter on A: %d %s; want 507 with an error naming -max-counters", code, body)
	}
	c.waitConverged(map[string]int64{"a": 1, "b": 1})

	for _, name := range []string{"x", "y", "z"} { // B has no limit
		if code, body := post("B", name); code != http.StatusOK {
			t.Fatalf("increment %s on B: %d %s", name, code, body)
		}
	}
	if code, body := post("A", "a"); code != http.StatusOK {
		t.Fatalf("an existing counter on A: %d %s", code, body)
	}
	c.waitConverged(map[string]int64{"a": 2, "b": 1, "x": 1, "y": 1, "z": 1})
	if code, _ := post("A", "c"); code != http.StatusInsufficientStorage {
		t.Fatalf("a new counter on A past the limit: %d, want 507", code)
	}
	_, families := c.scrape(t, "A")
	if v, _ := metricValue(families, "countd_replicated_counters_over_limit_total"); v != 3 {
		t.Fatalf("countd_replicated_counters_over_limit_total on A = %v, want 3", v)
	}
	if v, _ := metricValue(families, "countd_changes_total", "op=increment", "outcome=rejected"); v != 2 {
		t.Fatalf("rejected increments on A = %v, want 2", v)
	}
}
