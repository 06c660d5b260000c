package node_test

import (
	"fmt"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"countd/internal/faultnet"
	"countd/internal/testcluster"
	"countd/node"
)

// These tests run whole clusters in one process over real HTTP
// (internal/testcluster, wrapped in harness_test.go) and check the
// invariants of docs/design.md: convergence, no loss and no double count,
// durability across restarts, and membership. No test puts a fault on the
// clients' network, so every client change is acknowledged and every
// expected value is exact.

// counterNames are the counters the load generator changes.
var counterNames = []string{"apples", "pears", "plums"}

// TestPartitionHealConverges splits five nodes 2|3 while clients write on
// both sides: each side must agree on its own sum while cut off, and all
// five on the whole sum once healed (invariants 1 and 2). It logs how long
// agreement took after the heal.
func TestPartitionHealConverges(t *testing.T) {
	c := startCluster(t, 5, withSeed(1))
	left, right := []string{"A", "B"}, []string{"C", "D", "E"}
	hb := c.heartbeat()

	before := newLedger()
	c.load(before, 10, 4, 10, c.Live(), counterNames)
	c.waitConverged(before.exact(t))

	c.Net.Partition(c.Addrs(left...), c.Addrs(right...))
	partitioned := time.Now()
	// Let each side mark the other down, so the heal is measured from where
	// a long partition leaves a cluster: stopped PeerActors, backed-off probes.
	for _, side := range [][]string{left, right} {
		others := right
		if side[0] == right[0] {
			others = left
		}
		for _, name := range side {
			c.waitPeers(name, fmt.Sprintf("sees %v down", others), func(states map[string]string) bool {
				for _, o := range others {
					if states[o] != "down" {
						return false
					}
				}
				return true
			})
		}
	}
	t.Logf("each side saw the other down %v after the cut (heartbeat %v)", time.Since(partitioned).Round(time.Millisecond), hb)

	// Clients on each side talk to their own side's nodes only.
	lw, rw := newLedger(), newLedger()
	var wg sync.WaitGroup
	wg.Go(func() { c.load(lw, 11, 4, 25, left, counterNames) })
	wg.Go(func() { c.load(rw, 12, 4, 25, right, counterNames) })
	wg.Wait()
	base := before.exact(t)
	leftWant, rightWant := sumOf(base, lw.exact(t)), sumOf(base, rw.exact(t))
	if maps.Equal(leftWant, rightWant) {
		t.Fatalf("both sides want %v: the test cannot tell them apart; change the seeds", leftWant)
	}
	// Each side agrees within itself on its own side's sum, and nothing
	// crossed the cut.
	dl := c.waitConverged(leftWant, left...)
	dr := c.waitConverged(rightWant, right...)
	t.Logf("while partitioned: %v agreed on %v in %v, %v on %v in %v", left, leftWant, dl.Round(time.Millisecond),
		right, rightWant, dr.Round(time.Millisecond))

	down := time.Since(partitioned)
	healed := time.Now()
	c.Net.Heal()
	want := sumOf(base, lw.exact(t), rw.exact(t))
	agreed := c.waitConverged(want)
	c.waitMesh(c.Live()...)
	mesh := time.Since(healed)
	t.Logf("partition held %v; after Heal all 5 agreed on %v in %v (%.1f heartbeat intervals of %v; down-probe cap %v); full mesh alive again in %v",
		down.Round(time.Millisecond), want, agreed.Round(time.Millisecond), float64(agreed)/float64(hb), hb,
		node.TestConfig().DownProbeMax, mesh.Round(time.Millisecond))
}

// TestThreeNodesAgree is the plain case: changes on every node, every node
// ends with the same exact values and sees the other two alive.
func TestThreeNodesAgree(t *testing.T) {
	c := startCluster(t, 3, withSeed(2))
	l := newLedger()
	for _, name := range c.Live() {
		for i := range 10 {
			for _, counter := range []string{"default", "hits"} {
				l.Record(name, counter, int64(i+1), c.Change(name, counter, int64(i+1)))
			}
		}
	}
	want := l.exact(t)
	if want["default"] != 3*55 || want["hits"] != 3*55 {
		t.Fatalf("ledger = %v, want 165 each", want)
	}
	c.waitConverged(want)
	for _, name := range c.Live() {
		for counter, v := range want {
			if got, err := c.Get(name, counter); err != nil || got != v {
				t.Errorf("%s: %s = %d (%v), want %d", name, counter, got, err, v)
			}
		}
		rows, err := c.Peers(name)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, r := range rows {
			if r.State != "alive" {
				t.Errorf("%s lists %s as %s, want alive: %s", name, c.NameOf(r.Addr), r.State, c.DescribePeers(rows))
			}
			if r.LastSeen == "" {
				t.Errorf("%s lists %s with no last_seen", name, c.NameOf(r.Addr))
			} else if _, err := time.Parse(time.RFC3339, r.LastSeen); err != nil {
				t.Errorf("%s lists %s with last_seen %q: %v", name, c.NameOf(r.Addr), r.LastSeen, err)
			}
			got = append(got, c.NameOf(r.Addr))
		}
		wantPeers := slices.DeleteFunc(slices.Clone(c.Live()), func(s string) bool { return s == name })
		if !slices.Equal(got, sortedByAddr(c, wantPeers)) {
			t.Errorf("%s: GET /peers lists %v, want %v", name, got, wantPeers)
		}
	}
}

// sortedByAddr orders node names as GET /peers does: by address.
func sortedByAddr(c *cluster, names []string) []string {
	out := slices.Clone(names)
	slices.SortFunc(out, func(a, b string) int { return strings.Compare(c.Addr(a), c.Addr(b)) })
	return out
}

// TestDuplicatesAndReorderingChangeNothing runs node-to-node traffic through
// duplication, jitter (which reorders) and lost replies (which cause retries
// of pushes that did arrive): state merges must make all of it harmless.
func TestDuplicatesAndReorderingChangeNothing(t *testing.T) {
	c := startCluster(t, 3, withSeed(3))
	c.Net.SetAll(faultnet.Rule{Duplicate: 0.5, Jitter: 20 * time.Millisecond, DropReply: 0.2})
	l := newLedger()
	c.load(l, 30, 6, 20, c.Live(), counterNames)
	want := l.exact(t)
	// Converge with the faults still on: retries after lost replies and
	// duplicated, reordered pushes must all merge to the same values.
	d := c.waitConverged(want)
	sent, dup, dropped := c.Net.Sent.Load(), c.Net.Duplicated.Load(), c.Net.Dropped.Load()
	if dup == 0 || dropped == 0 {
		t.Fatalf("faultnet sent %d, duplicated %d, dropped %d: the faults never happened", sent, dup, dropped)
	}
	t.Logf("under faults: agreed in %v; node-to-node requests %d, duplicated %d, replies dropped %d",
		d.Round(time.Millisecond), sent, dup, dropped)
	c.Net.Heal()
	// Once healed, what is still in flight (retries, heartbeats, late
	// duplicates) changes nothing.
	c.waitConverged(want)
	holdFor(t, 10*c.heartbeat(), "values stay exact after heal", func() (bool, string) {
		for _, name := range c.Live() {
			got, err := c.Counters(name)
			if err != nil || !maps.Equal(got, want) {
				return false, fmt.Sprintf("%s = %v (%v), want %v", name, got, err, want)
			}
		}
		return true, ""
	})
}

// TestRestartOnDataDirLosesNothing stops B and restarts it on its data dir
// (invariant 3): it must come back with everything it acknowledged, catch up
// on what changed while it was down, and take a fresh replica id.
func TestRestartOnDataDirLosesNothing(t *testing.T) {
	for _, tc := range []struct {
		name     string
		graceful bool
	}{
		{"graceful", true},
		// B's last changes never leave it: its outgoing traffic is lost from
		// before they are made until it is closed, so its disk holds the only
		// copy, and its peers hear no goodbye flush.
		{"silent", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := startCluster(t, 3, withSeed(4))
			all := newLedger()
			c.load(all, 40, 3, 10, c.Live(), counterNames)
			c.waitConverged(all.exact(t))

			last := newLedger() // B's changes right before it stops
			if tc.graceful {
				c.load(last, 41, 2, 10, []string{"B"}, counterNames)
				c.stop("B")
			} else {
				c.Mute("B", true)
				c.load(last, 41, 2, 10, []string{"B"}, counterNames)
				c.stopSilently("B")
			}
			old := c.Replicas("B")[0]

			whileDown := newLedger() // changes on A and C while B is down
			c.load(whileDown, 42, 2, 10, []string{"A", "C"}, counterNames)
			withoutLast := sumOf(all.exact(t), whileDown.exact(t))
			full := sumOf(withoutLast, last.exact(t))
			if tc.graceful {
				// The shutdown flush delivered B's last changes.
				c.waitConverged(full, "A", "C")
			} else {
				c.waitConverged(withoutLast, "A", "C")
				if maps.Equal(withoutLast, full) {
					t.Fatal("B's last changes add up to nothing; change the seed")
				}
			}

			c.restart("B", testcluster.SameDir)
			if r, err := c.Replica("B"); err != nil || r == old {
				t.Fatalf("B's replica id after restart = %q (%v); before %q: a replica id must never be reused", r, err, old)
			}
			d := c.waitConverged(full)
			t.Logf("after restart on its data dir, all agreed in %v", d.Round(time.Millisecond))

			after := newLedger()
			c.load(after, 43, 3, 10, c.Live(), counterNames)
			c.waitConverged(sumOf(full, after.exact(t)))
		})
	}
}

// TestRestartKeepsEveryEntryOfOneWrite pins the cause of the losses and
// double counts TestRestartOnDataDirLosesNothing finds: one push with
// several entries is merged and written in one store transaction, and every
// entry must come back from disk with its own totals.
func TestRestartKeepsEveryEntryOfOneWrite(t *testing.T) {
	c := startCluster(t, 1, withSeed(9))
	const r1, r2 = "00000000000000a1", "00000000000000b2"
	// From is the node itself, so the push adds no peer.
	body := fmt.Sprintf(`{"from":%q,"replica":%q,"members":[],"entries":[
		{"counter":"apples","replica":%q,"p":10,"n":1},
		{"counter":"pears","replica":%q,"p":20,"n":2},
		{"counter":"apples","replica":%q,"p":5,"n":0},
		{"counter":"plums","replica":%q,"p":30,"n":3}]}`, c.Addr("A"), r1, r1, r1, r2, r2)
	if status, err := c.PostJSON("A", "/replicate", body); err != nil || status != http.StatusOK {
		t.Fatalf("POST /replicate = %d, %v; want 200", status, err)
	}
	want := map[string]int64{"apples": 14, "pears": 18, "plums": 27}
	c.waitConverged(want)
	c.stop("A")
	c.restart("A", testcluster.SameDir)
	got, err := c.Counters("A")
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(got, want) {
		t.Fatalf("after restart on its data dir: %v, want %v as before the restart", got, want)
	}
}

// TestGracefulCloseNotHeldByIdleConnection: a connection that was opened and
// never carried a request must not hold up a graceful stop. Go's
// http.Transport leaves such connections behind whenever it dials for a
// request that another connection then serves, so peers make them all the
// time; http.Server.Shutdown waits up to 5s for each (golang/go#22682),
// which is the whole default shutdown budget: Close then fails, and the
// process would exit 1 after SIGTERM.
func TestGracefulCloseNotHeldByIdleConnection(t *testing.T) {
	c := startCluster(t, 1, withSeed(10))
	conn, err := net.Dial("tcp", c.Addr("A"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// The server accepts in order: once a request on a later connection is
	// answered, the idle one has been accepted.
	fresh := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: testcluster.ClientTimeout}
	resp, err := fresh.Get(c.URL("A") + "/health")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	took, err := c.stop("A")
	if err != nil || took > 2*time.Second {
		t.Errorf("graceful Close with one idle connection took %v and returned %v; want nil within 2s (shutdown budget %v)",
			took.Round(time.Millisecond), err, node.TestConfig().ShutdownTimeout)
	}
}

// TestMemoryRestartNeverDoubleCounts restarts C with nothing (memory mode,
// or a wiped data dir) under a fresh replica id: its old replica's entries,
// held by A and B, must come back to it exactly once, and its new changes
// must count on top of them.
func TestMemoryRestartNeverDoubleCounts(t *testing.T) {
	for _, mode := range []testcluster.RestartMode{testcluster.InMemory, testcluster.WipedDir} {
		t.Run(strings.ReplaceAll(mode.String(), " ", "_"), func(t *testing.T) {
			var opts []clusterOption
			if mode == testcluster.InMemory {
				opts = append(opts, withMemory("C"))
			}
			c := startCluster(t, 3, append(opts, withSeed(5))...)
			l := newLedger()
			c.load(l, 50, 3, 10, c.Live(), counterNames)
			c.load(l, 51, 1, 10, []string{"C"}, counterNames) // C holds entries of its own
			c.waitConverged(l.exact(t))

			// C's last changes reach its peers only through the final
			// flush of a graceful stop; its state is then gone.
			c.load(l, 52, 2, 10, []string{"C"}, counterNames)
			c.stop("C")
			want := l.exact(t)
			c.waitConverged(want, "A", "B")

			old := c.Replicas("C")[0]
			c.restart("C", mode)
			if r, err := c.Replica("C"); err != nil || r == old {
				t.Fatalf("C's replica id after restart = %q (%v); before %q: a replica id must never be reused", r, err, old)
			}
			// C starts empty and must get everything, its old replica's
			// entries included, without counting any of them twice.
			d := c.waitConverged(want)
			t.Logf("C restarted empty (%v); all agreed in %v", mode, d.Round(time.Millisecond))

			c.load(l, 53, 2, 10, []string{"C"}, counterNames)
			c.load(l, 54, 2, 10, c.Live(), counterNames)
			c.waitConverged(l.exact(t))
		})
	}
}

// TestOneWayCut cuts one direction of one link: the cluster must still
// converge, through the third node.
func TestOneWayCut(t *testing.T) {
	c := startCluster(t, 3, withSeed(6))
	// A cannot reach B; B reaches A. Pushes only go out, never pull, so A's
	// changes can reach B only through C, which forwards what it merged.
	c.Net.Set(c.Addr("A"), c.Addr("B"), faultnet.Rule{Cut: true})
	l := newLedger()
	c.load(l, 60, 3, 15, []string{"A"}, counterNames)
	c.load(l, 61, 2, 10, []string{"B", "C"}, counterNames)
	d := c.waitConverged(l.exact(t))
	if c.Net.Dropped.Load() == 0 {
		t.Fatal("nothing was dropped: the cut did not happen")
	}
	t.Logf("with A->B cut, all agreed in %v", d.Round(time.Millisecond))

	// A's changes still get there with the cut in place.
	more := newLedger()
	c.load(more, 62, 2, 10, []string{"A"}, counterNames)
	c.waitConverged(sumOf(l.exact(t), more.exact(t)))
}

// TestNewNodeJoinsThroughGossip starts D knowing only A: membership gossip
// must make all four a full mesh, and D must get every value.
func TestNewNodeJoinsThroughGossip(t *testing.T) {
	c := startCluster(t, 3, withSeed(7))
	l := newLedger()
	c.load(l, 70, 3, 10, c.Live(), counterNames)
	c.waitConverged(l.exact(t))

	c.reserve("D")
	c.start("D", c.Addrs("A"), false) // D knows only A
	d := c.waitConverged(l.exact(t))
	c.waitMesh("A", "B", "C", "D")
	for _, name := range c.Live() {
		rows, err := c.Peers(name)
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) != 3 {
			t.Errorf("%s lists %d peers, want 3: %s", name, len(rows), c.DescribePeers(rows))
		}
	}
	t.Logf("D got every value in %v", d.Round(time.Millisecond))

	c.load(l, 71, 2, 10, []string{"D"}, counterNames)
	c.load(l, 72, 2, 10, c.Live(), counterNames)
	c.waitConverged(l.exact(t))
}

// TestRemovedPeerStaysRemoved removes C on A and B while C keeps running:
// neither contact from C nor gossip may bring it back, yet what C pushes is
// still merged.
func TestRemovedPeerStaysRemoved(t *testing.T) {
	c := startCluster(t, 3, withSeed(8))
	l := newLedger()
	c.load(l, 80, 3, 10, c.Live(), counterNames)
	c.waitConverged(l.exact(t))

	for _, on := range []string{"A", "B"} {
		if err := c.RemovePeer(on, "C"); err != nil {
			t.Fatalf("DELETE /peers/{C} on %s: %v", on, err)
		}
	}
	notListed := func() (bool, string) {
		for _, on := range []string{"A", "B"} {
			rows, err := c.Peers(on)
			if err != nil {
				return false, err.Error()
			}
			for _, r := range rows {
				if r.Addr == c.Addr("C") {
					return false, fmt.Sprintf("%s lists C again: %s", on, c.DescribePeers(rows))
				}
			}
		}
		return true, ""
	}
	if held, desc := notListed(); !held {
		t.Fatalf("right after DELETE: %s", desc)
	}

	// C keeps running and pushing (its own changes, gossip naming A and B)
	// while A and B must never list it again.
	fromC := newLedger()
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.load(fromC, 81, 2, 20, []string{"C"}, counterNames)
	}()
	holdFor(t, 10*c.heartbeat(), "A and B never list C again", notListed)
	<-done
	holdFor(t, 10*c.heartbeat(), "A and B never list C again", notListed)

	// What C pushed was still merged: removal stops replication to C, not
	// from it.
	want := sumOf(l.exact(t), fromC.exact(t))
	c.waitConverged(want)
	if held, desc := notListed(); !held {
		t.Fatal(desc)
	}
}

// TestRestartedNodeKnowsItsMembers: a node that learned its peers by
// gossip knows them again as soon as it restarts on its data dir, with no
// -peers at all (the store keeps the member list). Until it has synced with
// each, it may not forget a deleted counter's tombstone that they lack.
func TestRestartedNodeKnowsItsMembers(t *testing.T) {
	c := startCluster(t, 3, withSeed(9))
	c.reserve("D")
	c.start("D", c.Addrs("A"), false) // D knows only A
	c.waitMesh("A", "B", "C", "D")
	c.stop("D")
	if err := c.SetPeers("D", nil); err != nil {
		t.Fatal(err)
	}
	c.restart("D", testcluster.SameDir)
	rows, err := c.Peers("D")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{c.Addr("A"), c.Addr("B"), c.Addr("C")}
	var got []string
	for _, r := range rows {
		got = append(got, r.Addr)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("right after its restart D lists %v, want every member it knew: %v", got, want)
	}
}
