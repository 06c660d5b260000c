package e2e

// The counter lifecycle with real processes (issue 12): deletes, expiry,
// reclaimed storage and the folds of earlier incarnations, on clusters of
// three countd processes. The partition case, which needs network
// namespaces, is in lifecycle_netns_test.go.

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"countd/internal/apiclient"
	pollpkg "countd/internal/poll"
	"countd/internal/proc"
)

// stayFor is how long a test watches that something done stays done: a
// few anti-entropy rounds and sweeps of the nodes (clusterFlags).
const stayFor = 3 * time.Second

// bulkClients is how many clients send one change to each of many
// counters: enough that the node's group commit writes many per fsync.
const bulkClients = 64

// TestDeleteOnOneNodeGoneOnAll deletes a counter on one node of three: it
// must leave GET /counters and countd_counters on every node, GET of it must
// answer as for a counter never created (200, value 0), a counter beside it
// must keep its value, and a later increment starts from nothing.
func TestDeleteOnOneNodeGoneOnAll(t *testing.T) {
	nodes := meshNodes(t, freePorts(t, 3))
	startAll(t, nodes...)
	c := newClient(t, 1)
	api := apiclient.Client{HTTP: c}
	ctx := context.Background()
	change := func(n *clusterNode, name string, delta int64) {
		t.Helper()
		if r := api.Change(n.url(), name, delta); r.Outcome != apiclient.OK {
			t.Fatalf("%s: change %s by %d: %v", n.name, name, delta, r.Err)
		}
	}
	change(nodes[0], "doomed", 5)
	change(nodes[1], "doomed", 3)
	change(nodes[2], "kept", 7)
	awaitNodes(t, "both counters everywhere", nodes, valuesAre(map[string]int64{"doomed": 8, "kept": 7}))
	awaitNodes(t, "countd_counters 2 everywhere", nodes, metricsAre(map[string]func(float64) bool{mCounters: equals(2)}))

	r := api.Delete(ctx, nodes[1].url(), "doomed")
	if r.Outcome != apiclient.OK || r.Status != http.StatusNoContent {
		t.Fatalf("DELETE /counters/doomed on %s: status %d, %v; want 204", nodes[1].name, r.Status, r.Err)
	}
	awaitNodes(t, "doomed gone from GET /counters everywhere", nodes, valuesAre(map[string]int64{"kept": 7}))
	awaitNodes(t, "countd_counters 1 everywhere", nodes, metricsAre(map[string]func(float64) bool{mCounters: equals(1)}))
	for _, n := range nodes {
		got, err := getOne(c, n, "doomed")
		if err != nil || got.Value != 0 || got.ExpiresIn != 0 {
			t.Errorf("%s: GET /counters/doomed after the delete = %+v, %v; want 200 with value 0, as for a counter never created", n.name, got, err)
		}
	}
	m, err := scrape(c, nodes[1])
	if err != nil {
		t.Fatal(err)
	}
	if got := m[mDeleted+`{reason="delete"}`]; got != 1 {
		t.Errorf("%s: %s{reason=\"delete\"} = %v after one delete, want 1", nodes[1].name, mDeleted, got)
	}

	// A later increment starts from what survived: nothing.
	r = api.Change(nodes[2].url(), "doomed", 2)
	if r.Outcome != apiclient.OK || r.Value != 2 {
		t.Fatalf("%s: increment of doomed by 2 after its delete = value %d, %v; want 2", nodes[2].name, r.Value, r.Err)
	}
	awaitNodes(t, "doomed back at 2 everywhere", nodes, valuesAre(map[string]int64{"doomed": 2, "kept": 7}))
	for _, n := range nodes {
		n.proc.Stop()
	}
}

// TestTTLGoneEverywhereAndStorageReclaimed is `?ttl=2` on many counters:
// once they expire they must be gone from every node, countd_counters and
// countd_crdt_entries back to 0, countd_tombstones_collected_total up by
// every counter, and their space in the data file free again.
//
// What "the data file back down" can mean: bbolt never shrinks its file, so
// its size on disk only says how much it ever needed (logged, not checked).
// What is checked is the node's bbolt file measured with bbolt itself
// (fileUse): the entries bucket must hold no key, and the pages in use (the
// high-water mark less the freelist) must be less than half of what they
// were with the counters live, measured on the same node's file. A node
// that kept the dead counters' tombstones (or their entries) would keep at
// least as many pages in use as when they were live: the tombstones have
// larger values.
func TestTTLGoneEverywhereAndStorageReclaimed(t *testing.T) {
	const counters = 1000
	nodes := meshNodes(t, freePorts(t, 3))
	startAll(t, nodes...)
	names := counterNames("w", counters)
	var ledger apiclient.Ledger
	one := func(string) int64 { return 1 }

	// Live first, with no expiry, so that the counters' use of the file
	// can be measured without racing the clock.
	for i, n := range nodes {
		changeEach(t, n, names[i*counters/3:(i+1)*counters/3], one, 0, bulkClients, &ledger)
	}
	live, err := ledger.Exact()
	if err != nil {
		t.Fatal(err)
	}
	awaitNodes(t, "every counter live everywhere", nodes, valuesAre(live))
	awaitNodes(t, "countd_counters at every counter everywhere", nodes,
		metricsAre(map[string]func(float64) bool{mCounters: equals(counters), mEntries: equals(counters)}))
	m := nodes[1]
	m.proc.Stop()
	withLive := measure(t, m)
	t.Logf("%s's data file with %d counters live: %s", m.name, counters, withLive)
	if withLive.entries < counters {
		t.Fatalf("%s's data file holds %d entries with %d counters live", m.name, withLive.entries, counters)
	}
	startAll(t, m)
	awaitNodes(t, "every counter live everywhere after the restart of "+m.name, nodes, valuesAre(live))

	// The rate limiter's pattern: ?ttl= on a change sets an expiry on a
	// counter that has none. One more counter is created with it.
	before := time.Now()
	for i, n := range nodes {
		results := changeEach(t, n, names[i*counters/3:(i+1)*counters/3], one, 2, bulkClients, &ledger)
		for name, r := range results {
			if r.Outcome != apiclient.OK || r.ExpiresIn < 1 || r.ExpiresIn > 2 {
				t.Fatalf("%s: increment of %s with ?ttl=2: %v, expires_in %d; want 200 with expires_in 1 or 2", n.name, name, r.Err, r.ExpiresIn)
			}
		}
	}
	r := apiclient.Client{HTTP: newClient(t, 1)}.ChangeTTL(context.Background(), nodes[2].url(), "window", 1, 2)
	if r.Outcome != apiclient.OK || r.Value != 1 || r.ExpiresIn != 2 {
		t.Fatalf("new counter with ?ttl=2: value %d, expires_in %d, %v; want 1 and 2", r.Value, r.ExpiresIn, r.Err)
	}
	t.Logf("expiries set in %v", time.Since(before).Round(time.Millisecond))

	awaitNodes(t, "every counter gone everywhere", nodes, valuesAre(map[string]int64{}))
	if d := time.Since(before); d < 1*time.Second {
		t.Fatalf("counters gone %v after ?ttl=2 was set: before they expired", d)
	}
	awaitNodes(t, "the dead counters collected everywhere", nodes, metricsAre(map[string]func(float64) bool{
		mCounters:                      equals(0),
		mEntries:                       equals(0),
		mCollected:                     atLeast(counters + 1),
		mDeleted + `{reason="expire"}`: atLeast(1),
	}))
	// Collected for good. A node may take a dead counter back from a
	// member that deleted it too, concurrently (that member's own delete
	// entry is news to it), and collect it again, so the first moment all
	// nodes hold none is not the end. But within agreeTimeout there must
	// be a quiet stayFor in which no node holds an entry or collects
	// anything more, and no node may have collected a counter more often
	// than once per member: more means tombstones circulate among nodes
	// that had all forgotten them.
	watch := newClient(t, len(nodes))
	watch.Timeout = pollTimeout
	collected := func() (map[string]float64, string, error) {
		out := make(map[string]float64)
		var b strings.Builder
		for _, n := range nodes {
			m, err := scrape(watch, n)
			if err != nil {
				return nil, "", fmt.Errorf("%s: %w", n.name, err)
			}
			if m[mEntries] != 0 || m[mCounters] != 0 {
				return nil, "", fmt.Errorf("%s holds %s=%v %s=%v", n.name, mEntries, m[mEntries], mCounters, m[mCounters])
			}
			out[n.name] = m[mCollected]
			fmt.Fprintf(&b, " %s=%v", n.name, m[mCollected])
		}
		return out, b.String(), nil
	}
	_, err = pollpkg.Until(context.Background(), agreeTimeout, lifecyclePoll, "a quiet "+stayFor.String()+" with nothing held or collected", func() (bool, string) {
		first, _, err := collected()
		if err != nil {
			return false, err.Error()
		}
		err = pollpkg.While(context.Background(), stayFor, lifecyclePoll, "quiet", func() (bool, string) {
			now, desc, err := collected()
			if err != nil {
				return false, err.Error()
			}
			return maps.Equal(now, first), mCollected + desc
		})
		if err != nil {
			return false, err.Error()
		}
		return true, ""
	})
	if err != nil {
		t.Error(err)
	}
	for _, n := range nodes {
		m, err := scrape(watch, n)
		if err != nil {
			t.Fatal(err)
		}
		got := m[mCollected]
		t.Logf("%s: %s = %v for %d dead counters (%.1f each)", n.name, mCollected, got, counters+1, got/(counters+1))
		if got > float64(len(nodes)*(counters+1)) {
			t.Errorf("%s collected %v tombstones for %d dead counters, more than once per member each: they circulate", n.name, got, counters+1)
		}
	}
	for _, n := range nodes {
		if got, err := getOne(newClient(t, 1), n, names[0]); err != nil || got.Value != 0 || got.ExpiresIn != 0 {
			t.Errorf("%s: GET /counters/%s after expiry = %+v, %v; want value 0 and no expiry", n.name, names[0], got, err)
		}
	}

	for _, n := range nodes {
		n.proc.Stop()
	}
	after := measure(t, m)
	t.Logf("%s's data file after expiry and collection: %s", m.name, after)
	if after.entries != 0 {
		t.Errorf("%s's data file still holds %d entries after every counter expired and was collected", m.name, after.entries)
	}
	if after.inUse*2 > withLive.inUse {
		t.Errorf("%s's data file has %d pages in use after expiry and collection, with the counters live %d: their space was not reclaimed",
			m.name, after.inUse, withLive.inUse)
	}
}

// TestRestartsDoNotGrowEntries restarts one node of three 20 times (SIGTERM,
// same data dir), changing the same 1,000 counters on it in every run. Each
// start takes a new replica id; without folds every run would add an entry
// per counter. countd_crdt_entries must stay within 2 × members × counters
// on every node after every run, and every value must be exact.
func TestRestartsDoNotGrowEntries(t *testing.T) {
	const (
		counters = 1000
		restarts = 20
		members  = 3
		bound    = 2 * members * counters
	)
	nodes := meshNodes(t, freePorts(t, members))
	startAll(t, nodes...)
	names := counterNames("r", counters)
	var ledger apiclient.Ledger
	// Every member writes every counter, so each has an entry per member.
	for _, n := range nodes[1:] {
		changeEach(t, n, names, func(string) int64 { return 1 }, 0, bulkClients, &ledger)
	}
	n0 := nodes[0]
	c := newClient(t, members)
	c.Timeout = pollTimeout
	most := make(map[string]float64)
	for run := range restarts + 1 {
		began := time.Now()
		if run > 0 {
			n0.proc.Stop()
			startAll(t, n0)
		}
		restarted := time.Since(began)
		delta := int64(run%3 + 1)
		changeEach(t, n0, names, func(string) int64 { return delta }, 0, bulkClients, &ledger)
		changed := time.Since(began) - restarted
		want, err := ledger.Exact()
		if err != nil {
			t.Fatalf("run %d: %v", run, err)
		}
		awaitNodes(t, fmt.Sprintf("run %d: every value exact everywhere", run), nodes, valuesAre(want))
		var line strings.Builder
		for _, n := range nodes {
			m, err := scrape(c, n)
			if err != nil {
				t.Fatalf("run %d: %s: %v", run, n.name, err)
			}
			got, ok := m[mEntries]
			if !ok {
				t.Fatalf("run %d: %s serves no %s", run, n.name, mEntries)
			}
			most[n.name] = max(most[n.name], got)
			fmt.Fprintf(&line, " %s=%v", n.name, got)
			if got > bound {
				t.Errorf("run %d: %s holds %v entries, more than 2 × %d members × %d counters = %d", run, n.name, got, members, counters, bound)
			}
		}
		t.Logf("run %d: %s%s (restart %v, %d changes %v)", run, mEntries, line.String(),
			restarted.Round(time.Millisecond), counters, changed.Round(time.Millisecond))
		if t.Failed() {
			t.FailNow()
		}
	}
	t.Logf("most entries seen: %v (bound %d)", most, bound)
	for _, n := range nodes {
		n.proc.Stop()
	}
}

// TestKill9DuringDeletesAndFoldsLosesNothing SIGKILLs one node of three
// while deletes (and increments) are in flight on it, then again during its
// next starts, where it folds its earlier incarnations, before it starts for
// good. Every acknowledged change that no acknowledged delete could have
// observed must still be counted, every acknowledged delete must hold, and
// the nodes must agree.
//
// Each counter's changes come in phases, so what a delete could observe is
// known: pre (acknowledged on every node before any delete was sent: a
// delete at node0 saw them all), during (increments at node0 of the
// counters no one deletes, cut by the kill), post (acknowledged at node1
// while node0 was dead, so no delete at node0 saw them) and after
// (acknowledged at node0 once it is up for good). The deleted half gets
// post changes only on every other counter, so some acknowledged deletes
// must leave their counter gone.
func TestKill9DuringDeletesAndFoldsLosesNothing(t *testing.T) {
	const (
		counters = 400
		deleters = 8
		changers = 4
	)
	nodes := meshNodes(t, freePorts(t, 3))
	startAll(t, nodes...)
	n0, n1 := nodes[0], nodes[1]
	names := counterNames("k", counters)
	doomed, spared := names[:counters/2], names[counters/2:]
	step := func(name string) int64 { return int64(len(name)%3 + 1 + rand.N(3)) }

	// pre: every node changes every counter, node0 included, so node0 has
	// an entry of its own in every counter for its starts to fold.
	var pre apiclient.Ledger
	for _, n := range nodes {
		changeEach(t, n, names, step, 0, bulkClients, &pre)
	}
	preSums, err := pre.Exact()
	if err != nil {
		t.Fatal(err)
	}
	awaitNodes(t, "pre changes everywhere", nodes, valuesAre(preSums))

	// The kill, with deletes of the doomed half and increments of the
	// spared half in flight on node0.
	c := newClient(t, deleters+changers)
	c.Timeout = requestTimeout
	api := apiclient.Client{HTTP: c}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var (
		mu                sync.Mutex
		deletes           = make(map[string]apiclient.Outcome) // absent: never sent
		acked, inFlight   atomic.Int64
		during            apiclient.Ledger
		wg                sync.WaitGroup
		killAt            = int64(len(doomed) / 4)
		reached           = make(chan struct{})
		work              = make(chan string, len(doomed))
		reachedOnce       sync.Once
		stopChanging      atomic.Bool
		deletesInFlightAt int64
	)
	for _, name := range rand.Perm(len(doomed)) {
		work <- doomed[name]
	}
	close(work)
	for range deleters {
		wg.Go(func() {
			for name := range work {
				if ctx.Err() != nil {
					return
				}
				inFlight.Add(1)
				r := api.Delete(ctx, n0.url(), name)
				inFlight.Add(-1)
				mu.Lock()
				deletes[name] = r.Outcome
				mu.Unlock()
				if r.Outcome == apiclient.OK && acked.Add(1) >= killAt {
					reachedOnce.Do(func() { close(reached) })
				}
			}
		})
	}
	for range changers {
		wg.Go(func() {
			for !stopChanging.Load() {
				name := spared[rand.N(len(spared))]
				d := step(name)
				during.Record(n0.name, name, d, api.ChangeContext(ctx, n0.url(), name, d))
			}
		})
	}
	select {
	case <-reached:
	case <-time.After(progressTimeout):
		t.Fatalf("fewer than %d deletes acknowledged within %v", killAt, progressTimeout)
	}
	deletesInFlightAt = inFlight.Load()
	n0.signal(t, syscall.SIGKILL)
	n0.proc.await("SIGKILL")
	stopChanging.Store(true)
	cancel() // what is left of the deletes is never sent
	wg.Wait()
	var outcomes apiclient.Counts
	for _, name := range doomed {
		if o, sent := deletes[name]; sent {
			outcomes.Add(o)
		}
	}
	t.Logf("at SIGKILL: %d deletes acknowledged, %d in flight; deletes of %d counters: %s (the rest never sent); increments during: %s",
		killAt, deletesInFlightAt, len(doomed), outcomes, &during)
	if deletesInFlightAt == 0 {
		t.Fatal("no delete was in flight at the kill; the test did not kill during deletes")
	}

	// post: node1 changes every other counter while node0 is dead.
	var post apiclient.Ledger
	var postNames []string
	for i, name := range names {
		if i%2 == 0 {
			postNames = append(postNames, name)
		}
	}
	changeEach(t, n1, postNames, step, 0, bulkClients, &post)

	// node0's next starts fold its earlier incarnations into one entry per
	// counter (before it serves anything) and are SIGKILLed: at once, once
	// it logs the fold (or, with nothing left to fold, that it started),
	// and once it serves.
	for _, at := range []string{"exec", "folded earlier incarnations", "node started"} {
		p := spawn(t, n0.args...)
		if at != "exec" {
			if err := waitLine(p.Proc, at, "node started"); err != nil {
				t.Fatal(err)
			}
		}
		p.Kill()
		t.Logf("node0 SIGKILLed at %q, %v after exec; its log: %s", at, time.Since(p.Started).Round(time.Millisecond), strings.TrimSpace(p.Output.Tail(300)))
	}
	startAll(t, n0)

	// after: node0 serves changes of every counter on its folded state.
	var after apiclient.Ledger
	changeEach(t, n0, names, step, 0, bulkClients, &after)

	// What each counter must converge to.
	postSums, err := post.Exact()
	if err != nil {
		t.Fatalf("post: %v", err)
	}
	afterSums, err := after.Exact()
	if err != nil {
		t.Fatalf("after: %v", err)
	}
	duringBounds := during.Bounds()
	type rangeOf struct{ lo, hi int64 }
	want := make(map[string][]rangeOf) // any of these ranges
	for _, name := range doomed {
		kept := postSums[name] + afterSums[name]
		whole := preSums[name] + kept
		switch o, sent := deletes[name]; {
		case sent && o == apiclient.OK:
			want[name] = []rangeOf{{kept, kept}}
		case sent && o == apiclient.Unknown:
			want[name] = []rangeOf{{kept, kept}, {whole, whole}}
		default:
			want[name] = []rangeOf{{whole, whole}}
		}
	}
	for _, name := range spared {
		b := duringBounds[name]
		base := preSums[name] + postSums[name] + afterSums[name]
		want[name] = []rangeOf{{base + b.Lo, base + b.Hi}}
	}
	// Only increments were sent, so a listed counter is above 0, and a
	// counter that is gone reads as 0.
	holds := func(got map[string]int64) (bool, string) {
		var bad []string
		for _, name := range names {
			v, listed := got[name]
			fits := false
			for _, r := range want[name] {
				fits = fits || r.lo <= v && v <= r.hi
			}
			if !fits || listed && v <= 0 {
				bad = append(bad, fmt.Sprintf("%s=%s want %v (delete %v)", name, orAbsent(v, listed), want[name], outcomeOf(deletes, name)))
			}
		}
		if len(bad) == 0 {
			return true, "every counter within its bounds"
		}
		n := len(bad)
		return false, fmt.Sprintf("%d counters out of bounds: %s", n, strings.Join(bad[:min(n, 5)], ", "))
	}
	var agreed map[string]int64
	awaitNodes(t, "every node agrees, within the bounds", nodes, func(c *http.Client, n *clusterNode) (bool, string) {
		got, err := apiclient.Client{HTTP: c}.Counters(context.Background(), n.url())
		if err != nil {
			return false, err.Error()
		}
		if n == nodes[0] {
			agreed = got
		} else if ok, saw := diffValues(got, agreed); !ok {
			return false, "differs from node0: " + saw
		}
		return holds(got)
	})
	gone := 0
	for _, name := range doomed {
		if _, listed := agreed[name]; !listed {
			gone++
		}
	}
	t.Logf("%d doomed counters gone, %d listed", gone, len(doomed)-gone)
	if gone == 0 {
		t.Error("no deleted counter is gone: the test did not check that deletes hold")
	}
	for _, n := range nodes {
		n.proc.Stop()
	}
}

// waitLine waits until p logs a line holding one of msgs, or exits.
func waitLine(p *proc.Proc, msgs ...string) error {
	deadline := time.NewTimer(startTimeout)
	defer deadline.Stop()
	for {
		out, more := p.Output.Snapshot()
		for _, m := range msgs {
			if strings.Contains(out, `"msg":"`+m+`"`) {
				return nil
			}
		}
		select {
		case <-more:
		case <-p.Done():
			return fmt.Errorf("%s exited before logging any of %q: %v", p, msgs, p.Err())
		case <-deadline.C:
			return fmt.Errorf("%s logged none of %q within %v", p, msgs, startTimeout)
		}
	}
}

// outcomeOf names the outcome of a counter's delete, for messages.
func outcomeOf(deletes map[string]apiclient.Outcome, name string) string {
	if o, sent := deletes[name]; sent {
		return o.String()
	}
	return "not sent"
}
