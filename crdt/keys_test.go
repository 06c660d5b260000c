package crdt

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// Times of the keyed-change tests, in unix milliseconds.
const (
	keyAt     = 1_000_000
	keyWindow = 10_000
	afterWin  = keyAt + keyWindow // the window has passed
)

// syncedOK is a sync time by which every member sent what it held when the
// window (and the clock skew margin) passed.
var syncedOK = keyAt + keyWindow + RetireMargin(keyWindow)

// Replica ids of three nodes (three lineages: a node retires the key
// entries its own lineage owns).
const (
	nodeA = "0000000000a10001"
	nodeB = "0000000000b20001"
	nodeC = "0000000000c30001"
)

func mustKeyed(t *testing.T, s *State, name, key string, by uint64, neg bool) (int64, bool) {
	t.Helper()
	v, replayed, err := s.ChangeKeyed(name, key, by, neg, keyAt)
	if err != nil {
		t.Fatalf("%s: ChangeKeyed(%q, %q, %d, %v): %v", s.Replica(), name, key, by, neg, err)
	}
	return v, replayed
}

func TestKeyID(t *testing.T) {
	id := KeyID("order-17")
	if len(id) != KeyIDLen || id[0] != 'k' || !isKeyID(id) || ValidReplica(id) {
		t.Fatalf("KeyID = %q", id)
	}
	if err := Validate([]Entry{{Counter: "a", Replica: id, P: 1, O: repA, A: 1}}); err != nil {
		t.Fatalf("a key entry does not validate: %v", err)
	}
	if KeyID("order-17") != id || KeyID("order-18") == id {
		t.Fatal("KeyID is not a function of the key")
	}
}

func TestChangeKeyed(t *testing.T) {
	type step struct {
		counter, key string
		by           uint64
		neg          bool
		want         int64
		replayed     bool
		err          error
	}
	cases := []struct {
		name  string
		steps []step
	}{
		{"new, then replayed", []step{
			{"a", "k1", 5, false, 5, false, nil},
			{"a", "k1", 5, false, 5, true, nil},
		}},
		{"a replay answers the current value", []step{
			{"a", "k1", 5, false, 5, false, nil},
			{"a", "k2", 2, true, 3, false, nil},
			{"a", "k1", 5, false, 3, true, nil},
		}},
		{"another amount conflicts", []step{
			{"a", "k1", 5, false, 5, false, nil},
			{"a", "k1", 6, false, 0, false, ErrKeyConflict},
		}},
		{"another operation conflicts", []step{
			{"a", "k1", 5, false, 5, false, nil},
			{"a", "k1", 5, true, 0, false, ErrKeyConflict},
		}},
		{"another counter conflicts", []step{
			{"a", "k1", 5, false, 5, false, nil},
			{"b", "k1", 5, false, 0, false, ErrKeyConflict},
		}},
		{"ttl-free keys are independent", []step{
			{"a", "k1", 5, false, 5, false, nil},
			{"a", "k2", 5, false, 10, false, nil},
			{"b", "k3", 5, false, 5, false, nil},
		}},
		{"invalid", []step{
			{"a b", "k1", 5, false, 0, false, ErrInvalid},
			{"a", "k1", 0, false, 0, false, ErrInvalid},
			{"a", "", 1, false, 0, false, ErrInvalid},
		}},
		{"overflow refused", []step{
			{"a", "k1", math.MaxInt64, false, math.MaxInt64, false, nil},
			{"a", "k2", 1, false, 0, false, ErrOverflow},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := New(repA)
			for i, st := range c.steps {
				before := viewOf(s)
				v, replayed, err := s.ChangeKeyed(st.counter, st.key, st.by, st.neg, keyAt)
				if !errors.Is(err, st.err) || v != st.want || replayed != st.replayed {
					t.Fatalf("step %d: = %d, %v, %v; want %d, %v, %v", i, v, replayed, err, st.want, st.replayed, st.err)
				}
				if err != nil || replayed {
					assertUnchanged(t, before, s)
				}
			}
		})
	}
	t.Run("the conflict names the first use", func(t *testing.T) {
		s := New(repA)
		mustKeyed(t, s, "a", "k", 5, true)
		_, _, err := s.ChangeKeyed("b", "k", 5, true, keyAt)
		var kc *KeyConflict
		if !errors.As(err, &kc) || kc.First != (KeyUse{Counter: "a", By: 5, Neg: true}) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("a key entry is not a replica entry", func(t *testing.T) {
		s := New(repA)
		mustKeyed(t, s, "a", "k", 5, false)
		e, ok := s.Get("a", KeyID("k"))
		want := Entry{Counter: "a", Replica: KeyID("k"), P: 5, O: repA, A: keyAt}
		if !ok || e != want {
			t.Fatalf("key entry %+v, want %+v", e, want)
		}
		if _, ok := s.Get("a", repA); ok {
			t.Fatal("a keyed change wrote the replica's own entry")
		}
		if s.Keys() != 1 {
			t.Fatalf("Keys() = %d", s.Keys())
		}
	})
}

// TestKeyLimits: key entries have a limit of their own (MaxKeys) and do not
// count in MaxEntries; a merge is never refused for them.
func TestKeyLimits(t *testing.T) {
	s := New(nodeA)
	s.SetLimits(Limits{MaxKeys: 2, MaxEntries: 1})
	mustKeyed(t, s, "a", "k1", 1, false)
	mustKeyed(t, s, "a", "k2", 1, false)
	mustInc(t, s, "a", 1) // the counter's first replica entry fits MaxEntries 1
	if _, _, err := s.ChangeKeyed("a", "k3", 1, false, keyAt); !errors.Is(err, ErrLimit) {
		t.Fatalf("third key: %v, want ErrLimit", err)
	}
	if _, replayed, err := s.ChangeKeyed("a", "k1", 1, false, keyAt); err != nil || !replayed {
		t.Fatalf("a replay at the limit: %v, %v", replayed, err)
	}
	o := New(nodeB)
	mustKeyed(t, o, "a", "k4", 1, false)
	mustKeyed(t, o, "a", "k5", 1, false)
	sync(t, s, o) // a merge past MaxKeys is taken
	if s.Keys() != 4 || s.Value("a") != 5 {
		t.Fatalf("after the merge: %d keys, value %d", s.Keys(), s.Value("a"))
	}
}

// TestKeyedPartition: nodes that accept the same keyed change on both sides
// of a partition count it once, whatever order their states meet in.
func TestKeyedPartition(t *testing.T) {
	for _, perm := range [][3]int{{0, 1, 2}, {0, 2, 1}, {1, 0, 2}, {1, 2, 0}, {2, 0, 1}, {2, 1, 0}} {
		t.Run(fmt.Sprint(perm), func(t *testing.T) {
			nodes := []*State{New(nodeA), New(nodeB), New(nodeC)}
			for i, s := range nodes {
				mustKeyed(t, s, "c", "pay-1", 7, false)
				mustInc(t, s, "c", uint64(i+1)) // unkeyed: each counts
			}
			for _, i := range perm {
				sync(t, nodes[perm[0]], nodes[i])
			}
			syncAll(t, nodes...)
			wantValue(t, "c", 7+1+2+3, nodes...)
			e, _ := nodes[2].Get("c", KeyID("pay-1"))
			if e.O != nodeA {
				t.Fatalf("owner %q, want the least acceptor %q", e.O, nodeA)
			}
		})
	}
}

// TestRetireByLeastOwnerOnly: only the node of the least acceptor's
// lineage retires a key entry, once the window passed and every member has
// sent what it held since; the value stays exact everywhere.
func TestRetireByLeastOwnerOnly(t *testing.T) {
	a, b := New(nodeA), New(nodeB)
	mustKeyed(t, b, "c", "k", 5, false)
	mustKeyed(t, a, "c", "k", 5, false)
	mustDec(t, b, "c", 1)
	syncAll(t, a, b)
	for _, c := range []struct {
		name        string
		synced, now uint64
	}{
		{"window not passed", math.MaxUint64, afterWin - 1},
		{"not synced past the window and margin", syncedOK - 1, afterWin + 1e9},
		{"never synced", 0, afterWin + 1e9},
	} {
		if got := a.Retire(keyWindow, c.synced, c.now); len(got) != 0 {
			t.Fatalf("%s: retired %v", c.name, got)
		}
	}
	if got := b.Retire(keyWindow, syncedOK, afterWin); len(got) != 0 {
		t.Fatalf("b, not the least acceptor, retired %v", got)
	}
	got := a.Retire(keyWindow, syncedOK, afterWin)
	if len(got) != 1 || !got[0].Retired() || got[0].RP != 5 {
		t.Fatalf("a retired %v", got)
	}
	if own, _ := a.Get("c", nodeA); own.P != 5 {
		t.Fatalf("a's own entry %+v: the retired change did not move in", own)
	}
	wantValue(t, "c", 4, a)
	// A delta cut anywhere brings b the retired key entry no later than a's
	// entry that took its change (Merge takes key entries first), so b
	// never counts it twice on the way.
	for cut := a.Version() - 2; cut <= a.Version(); cut++ {
		x := restartAs(t, b)
		es, _ := a.DeltaLimit(0, a.Version(), 0)
		mustMerge(t, x, es[:len(es)-int(a.Version()-cut)])
		if v := x.Value("c"); v > 4 {
			t.Fatalf("cut %d: value %d, the change counted twice", cut, v)
		}
	}
	// So does a node that merged a's retirement with the owner's entry
	// first, and passes it on.
	relay := New(nodeC)
	sync(t, relay, b)
	es := a.DeltaSince(0, a.Version())
	slices.Reverse(es)
	mustMerge(t, relay, es)
	for n := range len(relay.DeltaSince(0, relay.Version())) {
		x := restartAs(t, b)
		es, _ := relay.DeltaLimit(0, relay.Version(), n)
		mustMerge(t, x, es)
		if v := x.Value("c"); v > 4 {
			t.Fatalf("%d entries from the relay: value %d, the change counted twice", n, v)
		}
	}
	syncAll(t, a, b)
	wantValue(t, "c", 4, a, b)
	if got := a.Retire(keyWindow, math.MaxUint64, math.MaxUint64); len(got) != 0 {
		t.Fatalf("retired twice: %v", got)
	}
}

// TestConcurrentDeleteAndRetirement: a delete that saw the key entry before
// its retirement resets the change where it now lives; one that saw it
// after resets it in the owner's entry. Either way the value is exact.
func TestConcurrentDeleteAndRetirement(t *testing.T) {
	setup := func(t *testing.T) (a, b *State) {
		a, b = New(nodeA), New(nodeB)
		mustKeyed(t, a, "c", "k", 5, false)
		mustInc(t, b, "c", 2)
		syncAll(t, a, b)
		return a, b
	}
	t.Run("delete before it saw the retirement", func(t *testing.T) {
		a, b := setup(t)
		b.Delete("c", 1)
		if len(a.Retire(keyWindow, syncedOK, afterWin)) != 1 {
			t.Fatal("not retired")
		}
		mustInc(t, a, "c", 3) // after the retirement, not seen by the delete
		syncAll(t, a, b)
		wantValue(t, "c", 3, a, b)
	})
	t.Run("delete after it saw the retirement", func(t *testing.T) {
		a, b := setup(t)
		a.Retire(keyWindow, syncedOK, afterWin)
		syncAll(t, a, b)
		b.Delete("c", 1)
		mustInc(t, a, "c", 3)
		syncAll(t, a, b)
		wantValue(t, "c", 3, a, b)
	})
	t.Run("delete on the retiring node", func(t *testing.T) {
		a, b := setup(t)
		a.Retire(keyWindow, syncedOK, afterWin)
		a.Delete("c", 1)
		mustInc(t, b, "c", 4)
		syncAll(t, a, b)
		wantValue(t, "c", 4, a, b)
	})
}

// TestLateUnretiredCopy: an unretired copy of a key entry that reaches a
// node after the retirement (a node cut off longer than the window) counts
// once: the retired entry dominates it.
func TestLateUnretiredCopy(t *testing.T) {
	a, b, late := New(nodeA), New(nodeB), New(nodeC)
	mustKeyed(t, late, "c", "k", 5, false)
	mustKeyed(t, a, "c", "k", 5, false)
	old := late.DeltaSince(0, late.Version())
	syncAll(t, a, b, late)
	a.Retire(keyWindow, syncedOK, afterWin)
	syncAll(t, a, b)
	mustMerge(t, b, old)
	mustMerge(t, a, old)
	wantValue(t, "c", 5, a, b)
	syncAll(t, a, b, late)
	wantValue(t, "c", 5, a, b, late)
}

// TestForgetRetiredKeys: a retired key entry that counts zero is forgotten
// once every member holds it (ForgettableKeys, ForgetKey), with its index:
// the key is free again after that.
func TestForgetRetiredKeys(t *testing.T) {
	a, b := New(nodeA), New(nodeB)
	mustKeyed(t, a, "c", "k", 5, false)
	mustKeyed(t, a, "c", "live", 1, false)
	syncAll(t, a, b)
	if got := a.ForgettableKeys(a.Version()); len(got) != 0 {
		t.Fatalf("unretired keys forgettable: %v", got)
	}
	a.Retire(keyWindow, syncedOK, afterWin) // both
	retiredAt := a.Version()
	syncAll(t, a, b)
	if got := a.ForgettableKeys(retiredAt - 4); len(got) != 0 {
		t.Fatalf("forgettable before every member holds them: %v", got)
	}
	got := a.ForgettableKeys(retiredAt)
	if len(got) != 2 {
		t.Fatalf("forgettable: %v", got)
	}
	for _, e := range got {
		if !a.ForgetKey(e.Counter, e.Replica) {
			t.Fatalf("ForgetKey(%v) did nothing", e)
		}
	}
	if a.Keys() != 0 || a.Entries() != 1 {
		t.Fatalf("after forgetting: %d keys, %d entries", a.Keys(), a.Entries())
	}
	if removed := a.TakeRemoved(); len(removed) != 2 {
		t.Fatalf("TakeRemoved = %v", removed)
	}
	wantValue(t, "c", 6, a)
	if _, replayed, err := a.ChangeKeyed("d", "k", 9, false, afterWin); err != nil || replayed {
		t.Fatalf("the forgotten key on another counter: %v, %v", replayed, err)
	}
	// b still holds the retired entries: merging them into a counts nothing.
	sync(t, a, b)
	wantValue(t, "c", 6, a)
}

// TestCollectKeepsUnretiredKeys: a dead counter that holds an unretired key
// entry is not collected (its key must stay known for the window); once
// the key is retired, it is.
func TestCollectKeepsUnretiredKeys(t *testing.T) {
	a := New(nodeA)
	mustKeyed(t, a, "c", "k", 5, false)
	a.Delete("c", 1)
	if got := a.Collectable(a.Version()); len(got) != 0 {
		t.Fatalf("collectable with an unretired key: %v", got)
	}
	if _, replayed, _ := a.ChangeKeyed("c", "k", 5, false, keyAt); !replayed {
		t.Fatal("a retry after the delete was counted again")
	}
	a.Retire(keyWindow, syncedOK, afterWin)
	if got := a.Collectable(a.Version()); !slices.Equal(got, []string{"c"}) {
		t.Fatalf("collectable after the retirement: %v", got)
	}
}

// TestKeyedMergeLaws: with keyed changes (some accepted on several
// nodes), deletes and retirements, merging full states is commutative,
// associative and idempotent in all a reader sees; without deletes, every
// node ends with the reference value: each unkeyed change once, each
// keyed change once however many nodes accepted it.
func TestKeyedMergeLaws(t *testing.T) {
	for seed := range uint64(100) {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			r := newRand(seed)
			deletes := seed%2 == 0
			nodes, want := keyedSteps(t, r, deletes)
			x, y, z := nodes[0], nodes[1], nodes[2]
			checkMergeLaws(t, x, y, z)
			syncAll(t, nodes...)
			if deletes {
				return
			}
			for name, v := range want {
				wantValue(t, name, v, nodes...)
			}
		})
	}
}

// keyedSteps runs random keyed and unkeyed changes, partial merges,
// retirements and (with deletes) deletes on three nodes, and returns them
// with the reference values (meaningful without deletes).
func keyedSteps(t *testing.T, r *rand.Rand, deletes bool) ([]*State, map[string]int64) {
	t.Helper()
	nodes := []*State{New(nodeA), New(nodeB), New(nodeC)}
	for _, s := range nodes {
		s.SkipDeadNew(true)
	}
	want := map[string]int64{}
	type use struct {
		by  uint64
		neg bool
	}
	uses := map[string]use{} // key -> its change, on counter "k"+key's digit
	now := uint64(keyAt)
	for step := range 150 {
		s := nodes[r.IntN(len(nodes))]
		now += uint64(r.IntN(2000))
		switch op := r.IntN(10); {
		case op < 2:
			name, by, neg := names[r.IntN(2)], uint64(r.IntN(5)+1), r.IntN(2) == 0
			if _, err := s.change(name, by, neg); err != nil {
				t.Fatal(err)
			}
			want[name] += sign(by, neg)
		case op < 5:
			key := fmt.Sprintf("key-%d", r.IntN(12))
			u, known := uses[key]
			if !known {
				u = use{uint64(r.IntN(5) + 1), r.IntN(2) == 0}
				uses[key] = u
			}
			name := names[len(key)%2]
			_, replayed, err := s.ChangeKeyed(name, key, u.by, u.neg, now)
			if err != nil {
				t.Fatalf("step %d: %v", step, err)
			}
			if !known && replayed {
				t.Fatalf("step %d: a new key replayed", step)
			}
			if !known {
				want[name] += sign(u.by, u.neg)
			}
		case op < 8:
			src := nodes[r.IntN(len(nodes))]
			mustMerge(t, s, src.DeltaSince(r.Uint64N(src.Version()+1), src.Version()))
		case op < 9:
			// Every member has sent all it held as of now (Synced).
			syncAll(t, nodes...)
			s.Retire(keyWindow, now, now+RetireMargin(keyWindow))
		default:
			if deletes {
				s.Delete(names[r.IntN(2)], now)
			}
		}
	}
	return nodes, want
}

func sign(by uint64, neg bool) int64 {
	if neg {
		return -int64(by)
	}
	return int64(by)
}

// TestForgottenKeysGiveMemoryBack: once the keys of a counter that held
// thousands are forgotten, the counter's slots, its index, the key index,
// the owned heap and the log are back to the size of what is left (a Go
// slice keeps its array, a map never shrinks).
func TestForgottenKeysGiveMemoryBack(t *testing.T) {
	const n = 5000
	s := New(nodeA)
	mustKeyed(t, s, "c", "first", 1, false)
	for i := range n {
		mustKeyed(t, s, "c", fmt.Sprintf("key-%d", i), 1, false)
	}
	s.Retire(keyWindow, syncedOK, afterWin)
	for _, e := range s.ForgettableKeys(s.Version()) {
		if !s.ForgetKey(e.Counter, e.Replica) {
			t.Fatalf("ForgetKey(%v) did nothing", e)
		}
	}
	wantValue(t, "c", n+1, s)
	c := s.counters["c"]
	if len(c.slots) != 1 || cap(c.slots) > 4 || c.index != nil {
		t.Errorf("counter: %d slots, capacity %d, index %v; want 1 slot, its array and no index back to size", len(c.slots), cap(c.slots), c.index != nil)
	}
	if s.keys != 0 || s.peakKeys > 4096 || cap(s.owned) > 4096 || cap(s.log) > 4096 {
		t.Errorf("state: %d keys, key index rebuilt at %d, owned capacity %d, log capacity %d; want the key index, owned heap and log back to size",
			s.keys, s.peakKeys, cap(s.owned), cap(s.log))
	}
}
