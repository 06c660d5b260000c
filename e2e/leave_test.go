package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"countd/internal/apiclient"
)

// TestRollingRestartUnderLoad restarts each of three nodes in turn with
// SIGTERM while clients write to all of them, each client retrying a change
// that failed (no connection: certainly not applied) on the next node, as a
// client behind a load balancer does. Every graceful stop must show on both
// peers as left at once (never suspect or down first), the restarted node must be back in
// the mesh and hold what was written while it was away, and once the load
// stops every node agrees on values that lose no acknowledged change and
// count none twice (invariants 1 and 2). No change may end failed: a
// client always finds a node that takes it. It logs, per restart, the time
// from SIGTERM to left on each peer and to the node's exit, and the time
// from its start to being back in sync.
func TestRollingRestartUnderLoad(t *testing.T) {
	const clientsPerNode = 3
	nodes := meshNodes(t, freePorts(t, 3))
	startAll(t, nodes...)
	obs := newClient(t, 4)
	obs.Timeout = pollTimeout
	api := apiclient.Client{HTTP: obs}

	l := newClusterLoad(t, clusterCounters)
	var retries sync.Map // node name -> *atomic.Int64, changes retried on another node after a failure there
	for i := range nodes {
		l.addRetryingClients(nodes, i, clientsPerNode, &retries)
	}
	l.waitAcked(t, 300)

	for i, n := range nodes {
		peers := []*clusterNode{nodes[(i+1)%3], nodes[(i+2)%3]}
		acked := l.ledger.Counts().OK
		// Watch each peer's view of n from just before the SIGTERM.
		type seen struct {
			left time.Duration
			path string
		}
		views := make([]chan seen, len(peers))
		term := time.Now()
		for j, p := range peers {
			views[j] = make(chan seen, 1)
			go func() {
				var s seen
				last := ""
				for time.Since(term) < agreeTimeout {
					states, err := peerStates(obs, p)
					if err == nil && states[n.addr] != last {
						last = states[n.addr]
						s.path += fmt.Sprintf(" %s@%v", last, time.Since(term).Round(time.Millisecond))
						if last == "left" {
							s.left = time.Since(term)
							break
						}
					}
					time.Sleep(5 * time.Millisecond)
				}
				views[j] <- s
			}()
		}
		n.signal(t, syscall.SIGTERM)
		n.proc.await("SIGTERM")
		exited := time.Since(term)
		if err := n.proc.Err(); err != nil {
			t.Fatalf("%s did not exit cleanly after SIGTERM: %v", n.name, err)
		}
		for j, p := range peers {
			s := <-views[j]
			t.Logf("%s SIGTERM → left on %s: %v (seen:%s); process exited after %v", n.name, p.name,
				s.left.Round(time.Millisecond), s.path, exited.Round(time.Millisecond))
			if s.left == 0 {
				t.Fatalf("%s never listed %s left within %v (seen:%s)", p.name, n.name, agreeTimeout, s.path)
			}
			if strings.Contains(s.path, "down") || strings.Contains(s.path, "suspect") {
				t.Errorf("%s listed %s suspect or down before left (seen:%s)", p.name, n.name, s.path)
			}
		}
		// While it is away: its peers keep it left (not down), and a change
		// written meanwhile must reach it once it is back.
		marker := "while-" + n.name + "-away"
		if r := api.Change(peers[0].url(), marker, 1); r.Outcome != apiclient.OK {
			t.Fatalf("change on %s: %+v", peers[0].name, r)
		}
		for _, p := range peers {
			if states, err := peerStates(obs, p); err != nil || states[n.addr] != "left" {
				t.Fatalf("%s lists %s as %v (%v) while it is away, want left", p.name, n.name, states, err)
			}
		}

		restarted := time.Now()
		startAll(t, n)
		back := poll(agreeTimeout, func() bool {
			for _, p := range nodes {
				states, err := peerStates(obs, p)
				if err != nil || !allAlive(states, p, nodes) {
					return false
				}
			}
			values, err := api.Counters(context.Background(), n.url())
			return err == nil && values[marker] == 1
		})
		if !back {
			t.Fatalf("%s not back in sync (every node listing every other alive, %s = 1 on it) within %v", n.name, marker, agreeTimeout)
		}
		t.Logf("%s back in sync %v after its restart began (%d changes acknowledged across the restart)",
			n.name, time.Since(restarted).Round(time.Millisecond), l.ledger.Counts().OK-acked)
		l.waitAcked(t, l.ledger.Counts().OK+100)
	}

	l.stop()
	t.Logf("load: %s", l)
	for _, n := range nodes {
		var r int64
		if v, ok := retries.Load(n.name); ok {
			r = v.(*atomic.Int64).Load()
		}
		t.Logf("  %s: %s; %d changes retried on another node after a failure there", n.name, l.nodeStats(n), r)
	}
	values := awaitAgreement(t, nodes, l)
	for _, n := range nodes {
		delete(values, "while-"+n.name+"-away")
	}
	l.checkBounds(t, values)
	// A change that failed on a stopping node (no connection) was taken by
	// the next: none ends failed. None ends unknown either: a stopping node
	// drains its connections (httpapi/drain.go), so every client learns
	// from a reply, or from a refused connection, that it must go
	// elsewhere, and no request is cut off after it was sent.
	c := l.ledger.Counts()
	if c.Failed > 0 || c.Unknown > 0 {
		t.Errorf("clients saw %d failed and %d unknown changes across the rolling restart, want none: %s", c.Failed, c.Unknown, l.ledger.Errors())
	}
	for _, n := range nodes {
		n.proc.Stop()
	}
}

// addRetryingClients starts n clients whose first choice is nodes[home]: a
// change that fails there (no connection was made, so it was not applied:
// apiclient.Classify) is sent to the next node, and so on round the
// cluster, and the last outcome goes in the ledger under the node that
// gave it. retries counts, per node, the changes retried after failing
// there.
func (l *clusterLoad) addRetryingClients(nodes []*clusterNode, home, n int, retries *sync.Map) {
	c := newClient(l.t, n*len(nodes))
	c.Timeout = opTimeout
	api := apiclient.Client{HTTP: c}
	for range n {
		l.wg.Go(func() {
			for !l.halt.Load() && l.ctx.Err() == nil {
				counter := l.counters[rand.N(len(l.counters))]
				delta := 1 + rand.Int64N(5)
				if rand.N(3) == 0 {
					delta = -delta
				}
				l.inFlight.Add(1)
				var r apiclient.Result
				var at *clusterNode
				for k := range nodes {
					at = nodes[(home+k)%len(nodes)]
					if r = api.ChangeContext(l.ctx, at.url(), counter, delta); r.Outcome != apiclient.Failed {
						break
					}
					v, _ := retries.LoadOrStore(at.name, new(atomic.Int64))
					v.(*atomic.Int64).Add(1)
				}
				l.inFlight.Add(-1)
				if r.Outcome == apiclient.OK && (r.Err != nil || r.Counter != counter || r.Node != at.addr) {
					l.bad.Add(1)
				}
				l.ledger.Record(at.name, counter, delta, r)
			}
		})
	}
}
