package node_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"countd/internal/apiclient"
	"countd/internal/poll"
	"countd/node"
	"countd/wire"
)

// peerCalls counts the node-to-node requests a node sends, by kind, and
// how many /health checks are in flight at once (at most).
type peerCalls struct {
	base                  http.RoundTripper
	sender                string // pushes to it are counted apart
	pushes, strangers     atomic.Int64
	health, probed        atomic.Int64 // probed: health checks of others than the sender
	inFlight, maxInFlight atomic.Int64
}

func (c *peerCalls) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Path == "/replicate" {
		c.pushes.Add(1)
		if r.URL.Host != c.sender {
			c.strangers.Add(1)
		}
		return c.base.RoundTrip(r)
	}
	c.health.Add(1)
	if r.URL.Host != c.sender {
		c.probed.Add(1)
	}
	n := c.inFlight.Add(1)
	defer c.inFlight.Add(-1)
	for {
		m := c.maxInFlight.Load()
		if n <= m || c.maxInFlight.CompareAndSwap(m, n) {
			break
		}
	}
	return c.base.RoundTrip(r)
}

// cpuTime is the CPU time this process has used, user and system.
func cpuTime(t *testing.T) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestGossipFloodIsBounded posts five /replicate bodies that list 1,000
// closed loopback addresses each (issue 11: before candidates, they made a
// node hold 5,001 peers, each with a PeerActor pushing to it). The node
// must list none of them as peers, keep its goroutines and its health
// checks in flight bounded, push to none of them, and keep answering.
func TestGossipFloodIsBounded(t *testing.T) {
	cfg := node.TestConfig()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Listener = ln
	cfg.Logger = slog.New(slog.DiscardHandler)
	// Nothing listens on port 1 of 127.77.0.0/16: every address is closed,
	// and none is this node.
	const bodies, perBody = 5, 1000
	from := "127.77.255.255:1"
	base := &http.Transport{}
	calls := &peerCalls{base: base, sender: from}
	cfg.RoundTripper = calls
	before := runtime.NumGoroutine()
	n, err := node.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		n.Close()
		base.CloseIdleConnections()
	})

	for b := range bodies {
		members := make([]string, perBody)
		for i := range members {
			k := b*perBody + i
			members[i] = fmt.Sprintf("127.77.%d.%d:1", k/250, k%250)
		}
		body, err := json.Marshal(wire.ReplicateRequest{From: from, Replica: "00000000000000ee", Members: members, Entries: nil})
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.Post(n.URL()+"/replicate", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("POST /replicate %d: status %d", b, resp.StatusCode)
		}
	}
	cpu0, wall0 := cpuTime(t), time.Now()

	client := apiclient.Client{}
	maxPeers, maxGoroutines, unanswered := 0, 0, 0
	window := 40 * cfg.HeartbeatInterval // 2 s: 40 health-check rounds
	err = poll.While(context.Background(), window, 20*time.Millisecond, "the flood stays bounded", func() (bool, string) {
		rows, err := client.Peers(context.Background(), n.URL())
		if err != nil {
			unanswered++
			return true, ""
		}
		maxPeers = max(maxPeers, len(rows))
		maxGoroutines = max(maxGoroutines, runtime.NumGoroutine()-before)
		return true, ""
	})
	if err != nil {
		t.Fatal(err)
	}
	cpu := cpuTime(t) - cpu0
	wall := time.Since(wall0)

	res := client.Change(n.URL(), "flood", 1)
	t.Logf("over %v after the flood: GET /peers unanswered %d times, peers listed ≤ %d, goroutines ≤ %d above the start, %d pushes (%d not to the sender), %d health checks (≤ %d in flight), CPU %v (%.0f%% of a core); an increment after: %v",
		wall.Round(time.Millisecond), unanswered, maxPeers, maxGoroutines, calls.pushes.Load(), calls.strangers.Load(), calls.health.Load(), calls.maxInFlight.Load(),
		cpu.Round(time.Millisecond), 100*cpu.Seconds()/wall.Seconds(), res.Outcome)

	if unanswered > 0 {
		t.Errorf("GET /peers went unanswered %d times", unanswered)
	}
	if maxPeers > 1 {
		t.Errorf("the node listed up to %d peers; want at most 1 (the sender)", maxPeers)
	}
	if maxGoroutines > 200 {
		t.Errorf("up to %d goroutines above the start; want at most 200", maxGoroutines)
	}
	if got := calls.maxInFlight.Load(); got > 16 {
		t.Errorf("%d health checks in flight at once; want at most 16", got)
	}
	// The sender (From) is admitted at once, as any node that pushes is, so
	// its PeerActor may push to it; no candidate gets a push.
	if got := calls.strangers.Load(); got > 0 {
		t.Errorf("%d pushes to addresses learned from gossip; want none", got)
	}
	if res.Outcome != apiclient.OK {
		t.Errorf("an increment after the flood: %v, want ok", res.Outcome)
	}
	// The bounds above hold for a node that drops gossip altogether too:
	// the candidates must really be probed (and none admitted, as none
	// answers).
	if calls.probed.Load() == 0 {
		t.Error("no gossip-learned address was health-checked; want the candidates probed")
	}
}
