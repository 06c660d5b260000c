package crdt

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"
)

// ---- timelines (README "Deleting counters") --------------------------------

// sync merges the full state of each source into dst.
func sync(t *testing.T, dst *State, srcs ...*State) {
	t.Helper()
	for _, src := range srcs {
		mustMerge(t, dst, src.DeltaSince(0, src.Version()))
	}
}

// syncAll brings every state up to date with every other.
func syncAll(t *testing.T, states ...*State) {
	t.Helper()
	for range 2 {
		for _, dst := range states {
			sync(t, dst, states...)
		}
	}
}

func wantValue(t *testing.T, name string, want int64, states ...*State) {
	t.Helper()
	for _, s := range states {
		v, _, ok := s.Lookup(name)
		if want == 0 && ok && v == 0 {
			continue // a live counter of value 0 is fine where 0 is wanted
		}
		if v != want {
			t.Fatalf("%s: value of %q = %d (live %v), want %d", s.Replica(), name, v, ok, want)
		}
	}
}

func wantGone(t *testing.T, name string, states ...*State) {
	t.Helper()
	for _, s := range states {
		if v, _, ok := s.Lookup(name); ok {
			t.Fatalf("%s: %q is live (value %d), want it deleted", s.Replica(), name, v)
		}
		if _, ok := s.Values(0)[name]; ok {
			t.Fatalf("%s: %q listed by Values after its delete", s.Replica(), name)
		}
	}
}

// TestDeleteTimelines plays the cases README's delete section tabulates.
func TestDeleteTimelines(t *testing.T) {
	const now = 1_000
	t.Run("delete vs a concurrent increment on another node", func(t *testing.T) {
		a, b := New(repA), New(repB)
		mustInc(t, a, "c", 5)
		syncAll(t, a, b) // both see 5
		mustInc(t, b, "c", 3)
		if !a.Delete("c", now) { // A has not seen B's +3
			t.Fatal("Delete of a live counter returned false")
		}
		wantGone(t, "c", a)
		syncAll(t, a, b)
		wantValue(t, "c", 3, a, b) // add wins: the +3 A had not seen survives
	})
	t.Run("delete during a partition", func(t *testing.T) {
		a, b, c := New(repA), New(repB), New(repC)
		mustInc(t, a, "c", 5)
		syncAll(t, a, b, c)
		// Partition {A} | {B, C}.
		a.Delete("c", now)
		mustInc(t, b, "c", 2)
		mustInc(t, c, "c", 4)
		syncAll(t, b, c)
		wantValue(t, "c", 11, b, c)
		wantGone(t, "c", a)
		syncAll(t, a, b, c) // heal
		wantValue(t, "c", 6, a, b, c)
	})
	t.Run("two concurrent deletes", func(t *testing.T) {
		a, b := New(repA), New(repB)
		mustInc(t, a, "c", 5)
		syncAll(t, a, b)
		mustInc(t, b, "c", 1) // seen by B's delete only
		a.Delete("c", now)
		b.Delete("c", now)
		syncAll(t, a, b)
		wantGone(t, "c", a, b)
		mustInc(t, a, "c", 2) // a later increment starts from what survived: nothing
		syncAll(t, a, b)
		wantValue(t, "c", 2, a, b)
	})
	t.Run("delete then restart", func(t *testing.T) {
		lineage := "0000000000aa"
		a1, b := New(ReplicaID(lineage, 1)), New(repB)
		mustInc(t, a1, "c", 5)
		syncAll(t, a1, b)
		a1.Delete("c", now)
		// A restarts on its data file: incarnation 2 folds incarnation 1.
		a2 := restart(t, a1, 2)
		wantGone(t, "c", a2)
		syncAll(t, a2, b)
		wantGone(t, "c", a2, b)
		mustInc(t, a2, "c", 1)
		syncAll(t, a2, b)
		wantValue(t, "c", 1, a2, b)
	})
	t.Run("unknown or dead counter", func(t *testing.T) {
		a := New(repA)
		if a.Delete("never", now) {
			t.Fatal("Delete of an unknown counter returned true")
		}
		mustInc(t, a, "c", 1)
		a.Delete("c", now)
		v := a.Version()
		if a.Delete("c", now) || a.Version() != v {
			t.Fatal("a second Delete of a dead counter changed the state")
		}
	})
}

// restart returns the state the next incarnation k of s's lineage starts
// with: s's entries as its store holds them, folded.
func restart(t *testing.T, s *State, k int) *State {
	t.Helper()
	next := New(ReplicaID(Lineage(s.Replica()), k))
	next.SetHigh(s.High())
	mustMerge(t, next, s.DeltaSince(0, s.Version()))
	next.TakeRemoved()
	next.Fold()
	next.TakeRemoved()
	next.SkipDeadNew(s.skipDead) // as a CounterActor would, once loaded
	return next
}

// ---- expiry -----------------------------------------------------------------

func TestExpiry(t *testing.T) {
	a, b := New(repA), New(repB)
	mustInc(t, a, "w", 1)
	if set, err := a.Expire("w", 5_000, true, 1_000); err != nil || !set {
		t.Fatalf("Expire NX on a counter with none = %v, %v; want set", set, err)
	}
	if set, err := a.Expire("w", 9_000, true, 1_100); err != nil || set {
		t.Fatalf("Expire NX on a counter with one = %v, %v; want not set", set, err)
	}
	if _, exp, _ := a.Lookup("w"); exp != 5_000 {
		t.Fatalf("expiry %d, want 5000 (NX must not extend the window)", exp)
	}
	syncAll(t, a, b)
	if _, exp, _ := b.Lookup("w"); exp != 5_000 {
		t.Fatalf("expiry did not travel with replication: %d", exp)
	}
	// B replaces it; B's clock is behind A's, yet the later setting wins:
	// its stamp is above every stamp B has seen.
	if set, err := b.Expire("w", 7_000, false, 500); err != nil || !set {
		t.Fatalf("Expire = %v, %v", set, err)
	}
	syncAll(t, a, b)
	for _, s := range []*State{a, b} {
		if _, exp, _ := s.Lookup("w"); exp != 7_000 {
			t.Fatalf("%s: expiry %d, want the later setting 7000", s.Replica(), exp)
		}
	}
	if got := a.Values(6_999); len(got) != 1 {
		t.Fatalf("Values before the expiry = %v", got)
	}
	if got := a.Values(7_000); len(got) != 0 {
		t.Fatalf("Values at the expiry = %v, want none", got)
	}
	if due := a.Due(6_999); len(due) != 0 {
		t.Fatalf("Due before the expiry = %v", due)
	}
	if due := a.Due(7_000); !slices.Equal(due, []string{"w"}) {
		t.Fatalf("Due at the expiry = %v, want [w]", due)
	}
	a.Delete("w", 7_000)
	syncAll(t, a, b)
	wantGone(t, "w", a, b)
	// A new window: the counter starts again, with no expiry until set.
	mustInc(t, b, "w", 1)
	if _, exp, ok := b.Lookup("w"); !ok || exp != 0 {
		t.Fatalf("after the delete: live %v expiry %d; want live, no expiry", ok, exp)
	}
	if _, err := a.Expire("nope", 1, false, 1); err == nil {
		t.Fatal("Expire of an unknown counter succeeded")
	}
	// Removing an expiry (at 0) wins like any setting.
	mustMerge(t, a, b.DeltaSince(0, b.Version()))
	a.Expire("w", 20_000, false, 8_000)
	syncAll(t, a, b)
	if set, err := b.Expire("w", 0, false, 8_001); err != nil || !set {
		t.Fatalf("removing the expiry = %v, %v", set, err)
	}
	syncAll(t, a, b)
	if _, exp, _ := a.Lookup("w"); exp != 0 {
		t.Fatalf("expiry %d after a later removal", exp)
	}
}

// ---- folds ------------------------------------------------------------------

// TestFoldKeepsEntriesFlat restarts one node twenty times, changing the
// same counters in every run, and checks the entries it holds, and that a
// peer holds, stay within one fold and one running incarnation per node
// per counter, with every value intact.
func TestFoldKeepsEntriesFlat(t *testing.T) {
	const counters, restarts = 200, 20
	lineage := "00000000beef"
	a, b := New(ReplicaID(lineage, 1)), New(repB)
	want := make(map[string]int64)
	for k := 1; k <= restarts; k++ {
		if k > 1 {
			a = restart(t, a, k)
		}
		for i := range counters {
			name := fmt.Sprintf("c%d", i)
			mustInc(t, a, name, uint64(k))
			mustInc(t, b, name, 1)
			want[name] += int64(k) + 1
		}
		syncAll(t, a, b)
		for _, s := range []*State{a, b} {
			if s.Entries() > 3*counters { // a's fold, a's running incarnation, b
				t.Fatalf("run %d: %s holds %d entries for %d counters", k, s.Replica(), s.Entries(), counters)
			}
		}
	}
	for _, s := range []*State{a, b} {
		if got := valuesOf(s); !maps.Equal(got, want) {
			t.Fatalf("%s: values after %d restarts differ from the changes made", s.Replica(), restarts)
		}
	}
}

// TestFoldedEntryArrivingLate: a peer that holds the raw entries of
// earlier incarnations, and gets the fold after them or before them, ends
// with the same value and without the covered entries.
func TestFoldedEntryArrivingLate(t *testing.T) {
	lineage := "00000000cafe"
	a := New(ReplicaID(lineage, 1))
	mustInc(t, a, "c", 5)
	early := New(repB) // saw incarnation 1
	sync(t, early, a)
	a = restart(t, a, 2)
	mustInc(t, a, "c", 2)
	a = restart(t, a, 3)
	late := New(repC) // sees only the fold
	sync(t, late, a)
	sync(t, early, a)
	mustMerge(t, late, []Entry{{Counter: "c", Replica: ReplicaID(lineage, 1), P: 5}}) // a stale copy arrives after the fold
	for _, s := range []*State{early, late, a} {
		if v := s.Value("c"); v != 7 {
			t.Fatalf("%s: value %d, want 7", s.Replica(), v)
		}
		if _, ok := s.Get("c", ReplicaID(lineage, 1)); ok {
			t.Fatalf("%s still holds an entry the fold covers", s.Replica())
		}
	}
}

// TestFoldOfOwnIncarnationRefused: a fold entry of this node's lineage that
// covers its running incarnation can only come from a copy of its data
// file running elsewhere; merging it would erase this node's changes.
func TestFoldOfOwnIncarnationRefused(t *testing.T) {
	lineage := "0000000000dd"
	a := New(ReplicaID(lineage, 2))
	mustInc(t, a, "c", 1)
	_, err := a.Merge([]Entry{{Counter: "c", Replica: lineage + "0000", P: 9, G: 2}})
	if err == nil {
		t.Fatal("a fold covering the running incarnation was merged")
	}
	if v := a.Value("c"); v != 1 {
		t.Fatalf("value %d after the refused merge, want 1", v)
	}
}

// ---- the whole lifecycle against a reference --------------------------------

// ref is the reference for TestLifecycleMatchesReference: every node keeps
// every entry it ever saw, under the replica id that wrote it, with
// floors; no fold, no collection. Deletes floor what the node holds. Its
// values are what observed-reset means.
type ref map[[2]string]Entry // (counter, replica) -> entry

func (r ref) merge(o ref) {
	for k, e := range o {
		r[k] = join(r[k], e)
	}
}

func (r ref) value(name string) (v int64, live bool) {
	for k, e := range r {
		if k[0] == name {
			p, n := e.live()
			v += int64(p) - int64(n)
			live = live || p > 0 || n > 0
		}
	}
	return v, live
}

// lnode is one process of the lifecycle test, with its reference.
type lnode struct {
	s   *State
	ref ref
}

// TestLifecycleMatchesReference runs random increments, decrements,
// deletes, partial and full merges, pushes as a PeerActor makes them (what
// changed since the peer last held everything, cut in pieces), restarts
// (each folding the earlier incarnations), copies of a node's data (a new
// lineage, as store.DB.Start makes it), and tombstone collection (by every
// node at once, or by one node of what every other holds of it, as Stable
// allows), on four nodes; after a full
// exchange every node must agree, and with the reference: a fold and a
// collection change how state is held, never a value.
func TestLifecycleMatchesReference(t *testing.T) {
	for seed := range uint64(300) {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) { lifecycleRun(t, newRand(seed)) })
	}
}

func lifecycleRun(t *testing.T, r *rand.Rand) {
	nodes := lifecycleSteps(t, r, 200)
	states := make([]*State, len(nodes))
	for i, x := range nodes {
		states[i] = x.s
	}
	syncAll(t, states...)
	all := ref{}
	for _, x := range nodes {
		all.merge(x.ref)
	}
	for _, name := range []string{"a", "b", "c"} {
		want, live := all.value(name)
		for _, s := range states {
			got, _, ok := s.Lookup(name)
			if got != want || ok != live {
				t.Fatalf("%s: %q = %d (live %v), reference %d (live %v)", s.Replica(), name, got, ok, want, live)
			}
		}
	}
}

// lifecycleSteps runs random operations on four nodes and returns them,
// not synced.
func lifecycleSteps(t *testing.T, r *rand.Rand, steps int) []*lnode {
	names := []string{"a", "b", "c"}
	var nodes []*lnode
	lineage := func(i int) string { return fmt.Sprintf("%012x", 0xabc000+i) }
	for i := range 4 {
		n := &lnode{s: New(ReplicaID(lineage(i), 1)), ref: ref{}}
		n.s.SkipDeadNew(true) // as every CounterActor's state does
		nodes = append(nodes, n)
	}
	copies := 0
	acked := map[[2]*lnode]uint64{} // (dst, src) -> src's version dst holds all of
	record := func(n *lnode, changed []Entry) {
		for _, e := range changed {
			n.ref[[2]string{e.Counter, e.Replica}] = join(n.ref[[2]string{e.Counter, e.Replica}], e)
		}
	}
	for step := range steps {
		n := nodes[r.IntN(len(nodes))]
		name := names[r.IntN(len(names))]
		op := r.IntN(20)
		switch {
		case op < 6:
			v := n.s.Version()
			if _, err := n.s.change(name, uint64(r.IntN(5)+1), op%2 == 1); err != nil {
				t.Fatalf("step %d: change: %v", step, err)
			}
			record(n, n.s.DeltaSince(v, n.s.Version()))
		case op < 8:
			// Delete in the reference: floor every entry the node holds
			// there. The state's delete floors what it holds, which a
			// fold may hold as one entry: the same changes.
			n.s.Delete(name, uint64(step))
			for k, e := range n.ref {
				if k[0] == name {
					e.FP, e.FN = e.P, e.N
					n.ref[k] = e
				}
			}
		case op < 11: // a peer's push: what changed since dst last held all of src, in cut pieces
			src := nodes[r.IntN(len(nodes))]
			k := [2]*lnode{n, src}
			since, limit := acked[k], r.IntN(4)+1
			if since > src.s.Version() {
				since = 0 // src restarted: its versions start again
			}
			for since < src.s.Version() {
				var push []Entry
				push, since = src.s.DeltaLimit(since, src.s.Version(), limit)
				mustMerge(t, n.s, push)
			}
			acked[k] = since
			// n holds all src holds, but the tombstones of counters it
			// does not hold (SkipDeadNew): the reference catches up once
			// their deleting nodes push to n, at the latest at the end.
			n.ref.merge(src.ref)
		case op < 14: // a partial push: a random delta
			src := nodes[r.IntN(len(nodes))]
			since := r.Uint64N(src.s.Version() + 1)
			mustMerge(t, n.s, src.s.DeltaSince(since, src.s.Version()))
			n.ref.merge(src.ref)
			// The reference takes the source's whole reference: it
			// models what the node has seen, and a delta carries every
			// entry the node lacks only if since was acknowledged. So
			// merge the full state too, to keep them in step.
			mustMerge(t, n.s, src.s.DeltaSince(0, src.s.Version()))
			acked[[2]*lnode{n, src}] = src.s.Version()
		case op < 16: // restart on the data file: the next incarnation
			k := Incarnation(n.s.Replica()) + 1
			n.s = restart(t, n.s, k)
			for pair := range acked {
				if pair[1] == n {
					delete(acked, pair) // its versions start again
				}
			}
		case op < 17 && copies < 2: // a copy of a node's data runs as a new node
			copies++
			cp := &lnode{s: New(ReplicaID(lineage(10+copies), 1)), ref: ref{}}
			mustMerge(t, cp.s, n.s.DeltaSince(0, n.s.Version()))
			cp.s.SkipDeadNew(true)
			cp.ref.merge(n.ref)
			nodes = append(nodes, cp)
		case op < 18 && r.IntN(2) == 0: // n collects what every other node holds of it (Stable)
			through := n.s.Version()
			for _, x := range nodes {
				if x != n {
					through = min(through, acked[[2]*lnode{x, n}])
				}
			}
			for _, name := range n.s.Collectable(through) {
				n.s.Forget(name)
			}
			n.s.TakeRemoved()
		case op < 18: // collect what every node holds
			full := make([]*State, len(nodes))
			for i, x := range nodes {
				full[i] = x.s
			}
			syncAll(t, full...)
			for _, x := range nodes {
				for _, other := range nodes {
					x.ref.merge(other.ref)
					acked[[2]*lnode{x, other}] = other.s.Version()
				}
			}
			for _, x := range nodes {
				for _, name := range x.s.Collectable(x.s.Version()) {
					x.s.Forget(name)
				}
				x.s.TakeRemoved()
			}
		default:
			for _, x := range nodes {
				x.s.TakeRemoved()
			}
		}
	}
	return nodes
}

// observed is what a reader sees of a state: every live counter's value
// and expiry.
func observed(s *State) map[string]Counter { return s.Values(0) }

// TestLifecycleMergeLaws: with deletes, expiries, folds and shadows, a
// merge stays commutative, associative and idempotent in all a reader
// sees, whatever the order and grouping of one-way merges.
func TestLifecycleMergeLaws(t *testing.T) {
	for seed := range uint64(100) {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			r := newRand(seed)
			nodes := lifecycleSteps(t, r, 120)
			for _, x := range nodes {
				if r.IntN(2) == 0 {
					x.s.Expire("a", uint64(r.IntN(1000)+1), false, uint64(r.IntN(1000)))
				}
			}
			x, y, z := nodes[0].s, nodes[1].s, nodes[2].s
			checkMergeLaws(t, x, y, z)
		})
	}
}

// checkMergeLaws fails t unless merging the full states x, y and z is
// commutative, associative and idempotent in all a reader sees.
func checkMergeLaws(t *testing.T, x, y, z *State) {
	t.Helper()
	into := func(dst *State, srcs ...*State) *State {
		out := restartAs(t, dst)
		for _, src := range srcs {
			sync(t, out, src)
		}
		return out
	}
	if a, b := observed(into(x, y)), observed(into(y, x)); !maps.Equal(a, b) {
		t.Fatalf("not commutative:\n x+y %v\n y+x %v", a, b)
	}
	if a, b := observed(into(into(x, y), z)), observed(into(x, into(y, z))); !maps.Equal(a, b) {
		t.Fatalf("not associative:\n (x+y)+z %v\n x+(y+z) %v", a, b)
	}
	if a, b := observed(into(x, x)), observed(x); !maps.Equal(a, b) {
		t.Fatalf("not idempotent:\n x+x %v\n x %v", a, b)
	}
}

// restartAs returns a copy of s under a replica id of its own (a state
// that merges s, so merging into it leaves s alone).
func restartAs(t *testing.T, s *State) *State {
	t.Helper()
	out := New(ReplicaID("0000000fffff", 1))
	sync(t, out, s)
	return out
}

// TestForgottenTombstoneNotTakenBack: with SkipDeadNew, a tombstone a peer
// sends after this node forgot it is not kept again (it would go round the
// cluster), while a batch that brings the counter back alive is merged
// whole, floors included.
func TestForgottenTombstoneNotTakenBack(t *testing.T) {
	a, b := New(repA), New(repB)
	mustInc(t, a, "c", 5)
	mustInc(t, b, "c", 2)
	syncAll(t, a, b)
	a.Delete("c", 1)
	syncAll(t, a, b)
	a.SkipDeadNew(true)
	for _, name := range a.Collectable(a.Version()) {
		a.Forget(name)
	}
	if a.Held() != 0 {
		t.Fatalf("a holds %d counters after collection", a.Held())
	}
	v := a.Version()
	sync(t, a, b) // b has not collected yet
	if a.Held() != 0 || a.Version() != v {
		t.Fatalf("the forgotten tombstone came back: %d counters held", a.Held())
	}
	// b's entry rises above its floor (b had not seen... a new change):
	// the batch brings the counter alive, with the other entry's floor.
	mustInc(t, b, "c", 1)
	sync(t, a, b)
	if got := a.Value("c"); got != 1 {
		t.Fatalf("value %d after a new change, want 1 (the old 7 stays deleted)", got)
	}
}

// TestForgetGivesMemoryBack: after a wave of counters is created, expires
// and is forgotten, the state's map and queues are rebuilt small, so the
// heap goes back down (a Go map never shrinks by itself).
func TestForgetGivesMemoryBack(t *testing.T) {
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	s := New(repA)
	s.SkipDeadNew(true)
	base := heap()
	const n = 200_000
	for i := range n {
		name := fmt.Sprintf("c%d", i)
		mustInc(t, s, name, 1)
		if _, err := s.Expire(name, 10, true, 1); err != nil {
			t.Fatal(err)
		}
	}
	full := heap()
	for _, name := range s.Due(10) {
		s.Delete(name, 10)
	}
	for _, name := range s.Collectable(s.Version()) {
		s.Forget(name)
	}
	s.TakeRemoved() // as the CounterActor does after each change
	if s.Held() != 0 || s.Entries() != 0 {
		t.Fatalf("after collection: %d counters, %d entries held", s.Held(), s.Entries())
	}
	empty := heap()
	t.Logf("heap: %d KB before, %d KB with %d counters, %d KB after they expired and were forgotten",
		base>>10, full>>10, n, empty>>10)
	if grown := empty - min(empty, base); grown > (full-base)/10 {
		t.Fatalf("forgetting every counter kept %d KB of the %d KB they took", grown>>10, (full-base)>>10)
	}
	runtime.KeepAlive(s)
}

// TestLateSweepKeepsTheNextWindowsExpiry: node A's sweep of an old window
// runs late (or with its clock ahead), after B, having seen the old window
// expire, started the next one with a change and a ttl. A's delete must
// not clear the new window's expiry: the survivor of the delete (B's
// change, which A had not seen) keeps it.
func TestLateSweepKeepsTheNextWindowsExpiry(t *testing.T) {
	a, b := New(repA), New(repB)
	mustInc(t, a, "w", 1)
	a.Expire("w", 1_000, true, 0) // window 1 ends at 1 s
	syncAll(t, a, b)
	// B at 1.1 s: window 1 is over; a change starts window 2.
	b.Delete("w", 1_100)
	mustInc(t, b, "w", 1)
	if _, err := b.Expire("w", 3_100, true, 1_100); err != nil {
		t.Fatal(err)
	}
	// A's sweep at 5 s by its clock (late, or ahead), not having seen B.
	a.Delete("w", 5_000)
	syncAll(t, a, b)
	for _, s := range []*State{a, b} {
		v, exp, ok := s.Lookup("w")
		if !ok || v != 1 || exp != 3_100 {
			t.Fatalf("%s: value %d live %v expiry %d; want B's change, expiring with window 2 at 3100", s.Replica(), v, ok, exp)
		}
	}
}

// TestChangeUnderAWindowExpiresWithIt: B changes the counter just before
// its expiry, A sweeps it first without having seen that change. The
// change survives A's delete (add wins), but it was made in the window,
// so it still expires with it: hidden from reads, and B's sweep deletes
// it, whatever order A's delete and B's sweep come in.
func TestChangeUnderAWindowExpiresWithIt(t *testing.T) {
	for _, aFirst := range []bool{true, false} {
		a, b := New(repA), New(repB)
		mustInc(t, a, "w", 1)
		a.Expire("w", 1_000, true, 0)
		syncAll(t, a, b)
		mustInc(t, b, "w", 5) // at 0.9 s, not yet on A
		a.Delete("w", 1_000)  // A's sweep at 1 s
		if aFirst {
			sync(t, b, a) // A's delete reaches B before B's own sweep
		}
		for _, name := range b.Due(1_000) {
			b.Delete(name, 1_000)
		}
		syncAll(t, a, b)
		for _, s := range []*State{a, b} {
			if got := s.Values(1_000); len(got) != 0 {
				t.Fatalf("aFirst=%v: %s still shows %v after the window ended", aFirst, s.Replica(), got)
			}
			if v, _, live := s.Lookup("w"); live {
				t.Fatalf("aFirst=%v: %s holds w alive (%d) after both sweeps", aFirst, s.Replica(), v)
			}
		}
	}
}

func TestEntriesOfGivesAPeerTheWholeCounter(t *testing.T) {
	a, b := New("aaaaaaaaaaaa0001"), New("bbbbbbbbbbbb0001")
	a.Increment("x", 5)
	b.Increment("x", 7)
	b.Increment("y", 1)
	if _, err := a.Merge(b.EntriesOf("x")); err != nil {
		t.Fatal(err)
	}
	if v := a.Value("x"); v != 12 {
		t.Fatalf("a's x after merging b's entries of x = %d, want 12", v)
	}
	if _, _, ok := a.Lookup("y"); ok {
		t.Fatal("EntriesOf(x) carried another counter")
	}
	if got := a.EntriesOf("nothing"); got != nil {
		t.Fatalf("EntriesOf an unknown counter = %v, want nil", got)
	}
}

// TestFoldWithoutItsShadowAfterForget: a node that forgot a dead counter,
// and then gets in a delta the fold entry of that counter's deleting node
// (the fold entry changed after the delta's start, its shadow before), must
// not take the counter back alive, in one delta or in full pushes of two:
// alone, the fold entry counts the deleted change again. Nor should it
// take the tombstone back (it would go round the cluster).
func TestFoldWithoutItsShadowAfterForget(t *testing.T) {
	lineage := "0000000000f0"
	a := New(ReplicaID(lineage, 1))
	b, c, d := New(repB), New(repC), New(repD)
	for _, s := range []*State{a, b, c, d} {
		s.SkipDeadNew(true)
	}
	mustInc(t, a, "c", 5)
	mustInc(t, b, "c", 3)
	syncAll(t, a, b, c, d)
	a.Delete("c", 1)
	syncAll(t, a, b, c, d)
	acked := b.Version() // c holds b's state up to here
	for _, s := range []*State{c, d} {
		for _, name := range s.Collectable(s.Version()) {
			s.Forget(name)
		}
	}
	a = restart(t, a, 2) // folds incarnation 1: a fold entry and its shadow
	a.SkipDeadNew(true)
	sync(t, b, a)
	wantGone(t, "c", a, b)
	mustMerge(t, c, b.DeltaSince(acked, b.Version()))
	for since := 0; since < int(b.Version()); { // d forgot c: from 0, some pushes hold c
		push, through := b.DeltaLimit(uint64(since), b.Version(), 2)
		// Past the limit only a fold entry that comes first, with its shadows.
		if len(push) > 2 && push[0].G == 0 {
			t.Fatalf("a push of %d entries past the limit of 2: %v", len(push), push)
		}
		mustMerge(t, d, push)
		since = int(through)
	}
	wantGone(t, "c", a, b, c, d)
	for _, s := range []*State{c, d} {
		if s.Held() != 0 {
			t.Fatalf("%s took the forgotten tombstone back: %d counters held", s.Replica(), s.Held())
		}
	}
}
