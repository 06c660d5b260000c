package crdt

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unsafe"
)

// TestLoadEqualsMerge: Load leaves a state exactly as Merge does, only
// without reporting what changed, and refuses what Merge refuses.
func TestLoadEqualsMerge(t *testing.T) {
	for _, seed := range seeds {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			r := newRand(seed)
			src := randomState(t, r, repA, 300)
			src = restart(t, src, 2) // folds and shadows too
			mustInc(t, src, "after-restart", 3)
			full := src.DeltaSince(0, src.Version())

			merged, loaded := New(repD), New(repD)
			mustMerge(t, merged, full)
			if err := loaded.Load(full); err != nil {
				t.Fatalf("Load: %v", err)
			}
			if got, want := snapshot(t, loaded), snapshot(t, merged); !slices.Equal(got, want) {
				t.Fatalf("Load gave\n %v\nMerge gave\n %v", got, want)
			}
			if got, want := valuesOf(loaded), valuesOf(merged); !reflect.DeepEqual(got, want) {
				t.Fatalf("Values: Load %v, Merge %v", got, want)
			}
			if loaded.Version() != merged.Version() || loaded.Entries() != merged.Entries() {
				t.Fatalf("Load: version %d, %d entries; Merge: version %d, %d entries",
					loaded.Version(), loaded.Entries(), merged.Version(), merged.Entries())
			}
		})
	}
	s := New(repA)
	before := viewOf(s)
	if err := s.Load([]Entry{{Counter: "a", Replica: "nope", P: 1}}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Load of an invalid entry: %v, want ErrInvalid", err)
	}
	assertUnchanged(t, before, s)
}

// TestSlotsShareReplicaIDs: entries decoded one by one bring a copy each of
// their replica id; the state keeps one, for its slots and its log.
func TestSlotsShareReplicaIDs(t *testing.T) {
	s := New(repA)
	var es []Entry
	for i := range 100 {
		es = append(es, Entry{Counter: fmt.Sprint("c", i), Replica: strings.Clone(repB), P: 1},
			Entry{Counter: fmt.Sprint("c", i), Replica: strings.Clone(repA), P: 1})
	}
	if err := s.Load(es); err != nil {
		t.Fatal(err)
	}
	mustMerge(t, s, []Entry{{Counter: "c0", Replica: strings.Clone(repB), P: 2}}) // a slot that exists
	held := map[string]map[*byte]bool{}
	note := func(id string) {
		if held[id] == nil {
			held[id] = map[*byte]bool{}
		}
		held[id][unsafe.StringData(id)] = true
	}
	for _, c := range s.counters {
		for i := range c.slots {
			note(c.slots[i].replica)
		}
	}
	for _, it := range s.log {
		note(it.replica)
	}
	for id, copies := range held {
		if len(copies) != 1 {
			t.Errorf("replica id %s held in %d copies", id, len(copies))
		}
	}
	if !held[repA][unsafe.StringData(s.Replica())] {
		t.Errorf("this replica's entries do not share its own id")
	}
}

// TestFoldLeavesNoSlack: folding every counter of a restarted state leaves
// each with exactly the slots it holds and the log with one item per
// entry, as a state that loaded the folded entries would have.
func TestFoldLeavesNoSlack(t *testing.T) {
	first := New(ReplicaID("00000000000a", 1))
	for i := range 1000 {
		mustInc(t, first, fmt.Sprint("c", i), 1)
	}
	next := New(ReplicaID("00000000000a", 2))
	if err := next.Load(first.DeltaSince(0, first.Version())); err != nil {
		t.Fatal(err)
	}
	if folded := next.Fold(); len(folded) != 1000 {
		t.Fatalf("Fold folded %d counters, want 1000", len(folded))
	}
	next.TakeRemoved()
	for name, c := range next.counters {
		if len(c.slots) != 1 || cap(c.slots) != 1 {
			t.Fatalf("counter %s: %d slots in room for %d, want 1 in 1", name, len(c.slots), cap(c.slots))
		}
	}
	if len(next.log) != next.Entries() || cap(next.log) != len(next.log) {
		t.Fatalf("log: %d items in room for %d, for %d entries", len(next.log), cap(next.log), next.Entries())
	}
}

// TestFoldEntriesShareTheirExtra: fold entries that carry only G share
// one extra per G, and a later change to one gets an extra of its own
// without touching the shared one.
func TestFoldEntriesShareTheirExtra(t *testing.T) {
	s := New(repA)
	fold := FoldID(repB)
	if err := s.Load([]Entry{{Counter: "a", Replica: fold, P: 1, G: 2}, {Counter: "b", Replica: fold, P: 2, G: 2}}); err != nil {
		t.Fatal(err)
	}
	xa, xb := s.counters["a"].slot(fold).x, s.counters["b"].slot(fold).x
	if xa != xb || xa != &foldExtras[2] {
		t.Fatalf("the fold entries' extras are %p and %p, want both %p", xa, xb, &foldExtras[2])
	}
	mustMerge(t, s, []Entry{{Counter: "a", Replica: fold, P: 1, G: 2, FP: 1, T: 5, E: 9}})
	if got := s.counters["a"].slot(fold).x; got == xa || foldExtras[2] != (extra{g: 2, shared: true}) {
		t.Fatalf("a change wrote the shared extra: %+v", foldExtras[2])
	}
	if e, _ := s.Get("b", fold); e != (Entry{Counter: "b", Replica: fold, P: 2, G: 2}) {
		t.Fatalf("b's fold entry became %+v", e)
	}
	if e, _ := s.Get("a", fold); e != (Entry{Counter: "a", Replica: fold, P: 1, G: 2, FP: 1, T: 5, E: 9}) {
		t.Fatalf("a's fold entry became %+v", e)
	}
}
