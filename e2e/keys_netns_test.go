//go:build linux

package e2e

// Keyed changes across real partitions (netns_test.go's namespaces: a
// node's bridge port down cuts it off from its peers while the test's
// clients still reach it) and kill -9. The nodes need root to run; the
// tests skip without it, as the other netns tests do.

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"countd/internal/apiclient"
	"countd/internal/apispec"
	"countd/internal/faultnet"
)

// newNetnsKeysCluster starts n nodes (at most netnsNodes) in namespaces of
// their own, each with the others in -peers, and waits until every one
// lists the others alive.
func newNetnsKeysCluster(t *testing.T, n int) *netnsCluster {
	t.Helper()
	c := newNetns(t)
	addrs := c.addrs[:n]
	for i := range n {
		others := slices.Concat(addrs[:i], addrs[i+1:])
		c.addNode(i, "-peers="+strings.Join(others, ","))
	}
	startAll(t, c.nodes...)
	c.awaitViews("the start", allAliveViews(n)...)
	return c
}

// cut takes node i's bridge port down (it reaches no peer, none reaches
// it); heal brings it up.
func (c *netnsCluster) cut(i int)  { c.ip("-n", c.hub, "link", "set", c.port(i), "down") }
func (c *netnsCluster) heal(i int) { c.ip("-n", c.hub, "link", "set", c.port(i), "up") }

// TestNetnsKeyedChangeAcrossPartition sends one keyed change to A while A
// is cut off, then to B (which has not seen it, so takes it too) and C
// (which has it from B: a replay), heals, and sends it to A and B again
// (replays). It must count once on every node: A's and B's acceptances
// wrote the same key entry.
func TestNetnsKeyedChangeAcrossPartition(t *testing.T) {
	c := newNetnsKeysCluster(t, 3)
	a, b, cc := c.nodes[0], c.nodes[1], c.nodes[2]
	api := apiclient.Client{HTTP: newClient(t, 3)}
	const key, counter, by = "order-7", "orders", 5
	want := map[string]int64{counter: by}

	c.cut(0)
	c.awaitViews("node0 cut off",
		view{observer: 0, notAlive: []int{1, 2}},
		view{observer: 1, alive: []int{2}, notAlive: []int{0}},
		view{observer: 2, alive: []int{1}, notAlive: []int{0}})
	send := func(n *clusterNode, replay bool) {
		t.Helper()
		r := keyedSend(t, api, n, counter, by, key, http.StatusOK)
		if r.Replayed != replay || r.Value != by {
			t.Fatalf("%s: %+v, want value %d, replayed %v", n.name, r, by, replay)
		}
	}
	send(a, false) // A takes it alone
	send(b, false) // B has not seen it: it takes it too, into the same key entry
	awaitNodes(t, "B's acceptance reaches C", []*clusterNode{cc}, valuesAre(want))
	send(cc, true) // C holds B's key entry
	if v := c.counters(0); v[counter] != by {
		t.Fatalf("cut-off node0 reads %v, want %s=%d", v, counter, by)
	}

	c.heal(0)
	c.awaitViews("heal", allAliveViews(3)...)
	awaitNodes(t, "counted once on every node after the heal", c.nodes, valuesAre(want))
	send(a, true)
	send(b, true)
	send(cc, true)
	awaitNodes(t, "still once after the replays", c.nodes, valuesAre(want))
	awaitNodes(t, "one key held on every node", c.nodes, metricsAre(map[string]func(float64) bool{mKeys: equals(1)}))
	for _, n := range c.nodes {
		n.proc.Stop()
	}
}

// keyedLoad sends keyed +1 changes, each with a key of its own, from
// several clients, each change sent until its outcome is known
// (apiclient.Resend), every attempt to a node picked at random.
type keyedLoad struct {
	nodes    []*clusterNode
	counters []string
	total    int64
	next     atomic.Int64 // the next change's number
	acked    atomic.Int64
	resends  atomic.Int64 // attempts after the first
	replays  atomic.Int64 // outcomes known from a replay
	inFlight atomic.Int64
	ledger   apiclient.Ledger
	ctx      context.Context // cancelled when the test ends: clients stop
	wg       sync.WaitGroup
}

// start starts clients clients, each with its own keep-alive pool, all
// through lossy: the clients' network, which loses replies and delivers
// requests twice, so outcomes are unknown after the change was applied
// (its resend is a replay) and copies race on one key (409).
func (l *keyedLoad) start(t *testing.T, clients int, lossy *faultnet.Network) {
	for range clients {
		tr := &http.Transport{Proxy: nil, DialContext: dialNode, MaxIdleConnsPerHost: len(l.nodes), IdleConnTimeout: 30 * time.Second}
		t.Cleanup(tr.CloseIdleConnections)
		hc := &http.Client{Transport: apispec.Transport(t, lossy.Transport("client", tr)), Timeout: 2 * opTimeout}
		api := apiclient.Client{HTTP: hc}
		l.wg.Go(func() {
			for {
				i := l.next.Add(1) - 1
				if i >= l.total || l.ctx.Err() != nil {
					return
				}
				l.one(api, i)
			}
		})
	}
}

// resendFor bounds how long one change is sent again: well past a kill
// and restart or a cut, so an outcome left unknown is a failure.
const resendFor = 30 * time.Second

func (l *keyedLoad) one(api apiclient.Client, i int64) {
	counter, key := l.counters[i%int64(len(l.counters))], fmt.Sprintf("load-%d", i)
	ctx, cancel := context.WithTimeout(l.ctx, resendFor)
	defer cancel()
	var at *clusterNode
	l.inFlight.Add(1)
	r, n := apiclient.Resend(ctx, func(int) apiclient.Result {
		at = l.nodes[rand.N(len(l.nodes))]
		return api.ChangeKey(ctx, at.url(), counter, 1, 0, key)
	})
	l.inFlight.Add(-1)
	l.resends.Add(int64(n - 1))
	if r.Replayed {
		l.replays.Add(1)
	}
	if r.Outcome == apiclient.OK {
		l.acked.Add(1)
	}
	l.ledger.Record(at.name, counter, 1, r)
}

// awaitAcked waits until n changes are acknowledged or the load ends.
func (l *keyedLoad) awaitAcked(t *testing.T, n int64) {
	t.Helper()
	if !poll(progressTimeout, func() bool { return l.acked.Load() >= min(n, l.total) }) {
		t.Fatalf("fewer than %d keyed changes acknowledged within %v: %s", n, progressTimeout, &l.ledger)
	}
}

// TestNetnsKeyedLoadUnderKillsAndPartitions sends 10,000 keyed changes
// from 16 clients to three nodes, each change retried with its key on a
// random node until its outcome is known, while the nodes are cut off in
// turn and another is killed with SIGKILL and restarted on its data dir
// meanwhile, and the clients' network loses 2% of the replies and
// delivers 2% of the requests twice. Every change ends known, so each counter must end at exactly
// its acknowledged count on every node: an acknowledged change lost (by a
// kill) or counted twice (accepted on two nodes, or retried after it was
// applied) is off by one. An outcome left unknown after resendFor fails
// the test rather than widening the bound: the retries exist to make it
// known.
func TestNetnsKeyedLoadUnderKillsAndPartitions(t *testing.T) {
	const total, clients, step = 10_000, 16, 1000
	c := newNetnsKeysCluster(t, 3)
	ctx, cancel := context.WithCancel(context.Background())
	l := &keyedLoad{nodes: c.nodes, counters: clusterCounters, total: total, ctx: ctx}
	began := time.Now()
	lossy := faultnet.New(uint64(time.Now().UnixNano()))
	lossy.SetAll(faultnet.Rule{DropReply: 0.02, Duplicate: 0.02})
	l.start(t, clients, lossy)
	t.Cleanup(func() { // before the nodes' cleanups kill them
		cancel()
		l.wg.Wait()
	})

	var kills, cuts, inFlightAtKill int64
	for round := 0; l.acked.Load() < total-step; round++ {
		x, y := round%3, (round+1)%3
		l.awaitAcked(t, l.acked.Load()+step/2)
		c.cut(x)
		cuts++
		l.awaitAcked(t, l.acked.Load()+step/2)
		inFlightAtKill += l.inFlight.Load()
		c.nodes[y].signal(t, syscall.SIGKILL)
		c.nodes[y].proc.await("SIGKILL")
		kills++
		l.awaitAcked(t, l.acked.Load()+step/2) // on the nodes left
		startAll(t, c.nodes[y])
		c.heal(x)
	}
	l.wg.Wait()
	loadDone := time.Now()
	n := l.ledger.Counts()
	t.Logf("%d keyed changes in %v under %d cuts and %d kills (%d requests in flight at the kills): %s; %d resends, %d known from a replay",
		total, loadDone.Sub(began).Round(time.Millisecond), cuts, kills, inFlightAtKill, n, l.resends.Load(), l.replays.Load())
	if kills == 0 || inFlightAtKill == 0 {
		t.Fatalf("%d kills with %d requests in flight: the load was not killed under", kills, inFlightAtKill)
	}
	if n.Total() != total || n.OK != total {
		t.Fatalf("outcomes %s, want all %d acknowledged: every change is sent until known (errors seen: %s)", n, total, l.ledger.Errors())
	}
	if l.resends.Load() == 0 || l.replays.Load() == 0 {
		t.Fatalf("%d changes sent again, %d known from a replay: the faults did not exercise the keys", l.resends.Load(), l.replays.Load())
	}
	want, err := l.ledger.Exact()
	if err != nil {
		t.Fatal(err)
	}
	c.awaitViews("every node back", allAliveViews(3)...)
	awaitNodes(t, "every node at exactly the acknowledged count", c.nodes, valuesAre(want))
	t.Logf("agreement %v after the load", time.Since(loadDone).Round(time.Millisecond))
	for _, n := range c.nodes {
		n.proc.Stop()
	}
}
