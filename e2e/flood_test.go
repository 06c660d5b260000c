package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	pollpkg "countd/internal/poll"
	"countd/wire"
)

// metricValues reads the unlabelled samples named in names from n's
// GET /metrics.
func metricValues(t *testing.T, c *http.Client, n *clusterNode, names ...string) map[string]float64 {
	t.Helper()
	resp, err := c.Get(n.url() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	want := map[string]bool{}
	for _, name := range names {
		want[name] = true
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, v, ok := strings.Cut(sc.Text(), " ")
		if !ok || !want[name] {
			continue
		}
		if out[name], err = strconv.ParseFloat(v, 64); err != nil {
			t.Fatalf("metric %s: %v", name, err)
		}
	}
	for _, name := range names {
		if _, ok := out[name]; !ok {
			t.Fatalf("GET /metrics has no %s", name)
		}
	}
	return out
}

// TestGossipFloodLeavesTheNodeBounded is issue 11's flood against a real
// process with the default timers: five /replicate bodies listing 1,000
// closed loopback addresses each. Before candidates, that gave 5,001
// peers and ~1,180 failed pushes a second at half a core. Now the node
// lists only the sender, keeps its goroutines bounded, pushes to none of
// the listed addresses, and answers.
func TestGossipFloodLeavesTheNodeBounded(t *testing.T) {
	n := newClusterNode(t, 0, freePorts(t, 1)[0])
	n.args = n.args[:2] // default timers: the flood as a user meets it
	startAll(t, n)
	c := newClient(t, 2)
	c.Timeout = 5 * time.Second
	const gauges = "go_goroutines"
	before := metricValues(t, c, n, gauges)

	from := "127.77.255.255:1" // nothing listens on port 1 of 127.77.0.0/16
	for b := range 5 {
		members := make([]string, 1000)
		for i := range members {
			k := b*1000 + i
			members[i] = fmt.Sprintf("127.77.%d.%d:1", k/250, k%250)
		}
		body, err := json.Marshal(wire.ReplicateRequest{From: from, Replica: "00000000000000ee", Members: members})
		if err != nil {
			t.Fatal(err)
		}
		resp, err := c.Post(n.url()+"/replicate", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("POST /replicate %d: %s", b, resp.Status)
		}
	}
	const cpu, pushes, ignored = "process_cpu_seconds_total", "countd_replication_pushes_total", "countd_gossip_ignored_total"
	m0 := metricValues(t, c, n, cpu, pushes)
	start := time.Now()
	maxPeers, maxGoroutines := 0, 0.0
	err := pollpkg.While(context.Background(), 5*time.Second, 100*time.Millisecond, "the node answers GET /peers", func() (bool, string) {
		rows, err := peerRows(c, n)
		if err != nil {
			return false, err.Error()
		}
		maxPeers = max(maxPeers, len(rows))
		maxGoroutines = max(maxGoroutines, metricValues(t, c, n, gauges)[gauges])
		return true, ""
	})
	if err != nil {
		t.Fatal(err)
	}
	m1 := metricValues(t, c, n, cpu, pushes, ignored)
	wall := time.Since(start)
	t.Logf("over %v after the flood: peers listed ≤ %d, goroutines ≤ %.0f (%.0f before), %.0f pushes, %.0f addresses ignored (-max-peers), CPU %.2fs (%.0f%% of a core)",
		wall.Round(time.Millisecond), maxPeers, maxGoroutines, before[gauges], m1[pushes]-m0[pushes], m1[ignored],
		m1[cpu]-m0[cpu], 100*(m1[cpu]-m0[cpu])/wall.Seconds())

	if maxPeers > 1 {
		t.Errorf("listed up to %d peers; want at most the sender", maxPeers)
	}
	if maxGoroutines > before[gauges]+100 {
		t.Errorf("up to %.0f goroutines (%.0f before); want at most 100 more", maxGoroutines, before[gauges])
	}
	if m1[ignored] < 5000-256 {
		t.Errorf("%.0f addresses ignored; want all but -max-peers (256) of 5,000", m1[ignored])
	}
	// The sender's PeerActor pushes to it, backing off: a handful.
	if p := m1[pushes] - m0[pushes]; p > 20 {
		t.Errorf("%.0f pushes in %v; want only a few, to the sender", p, wall)
	}
	// CPU is a measurement, not a pass mark (a loaded machine must not fail
	// this): the peer, goroutine and push counts above catch a runaway node.
	t.Logf("the node used %.0f%% of a core over %v", 100*(m1[cpu]-m0[cpu])/wall.Seconds(), wall)
	change(t, c, n, "after-flood", 1)
	n.proc.Stop()
}
