package actors

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"countd/crdt"
)

// TestDurableCopyHoldsTheWholeState: the durable copy a CounterActor makes
// of a loaded state, a chunk at a time, holds every entry (own, fold,
// shadow-free foreign and dead ones) with the same fields and values.
func TestDurableCopyHoldsTheWholeState(t *testing.T) {
	lineage := crdt.Lineage(self)
	first := crdt.New(crdt.ReplicaID(lineage, 1))
	var foreign []crdt.Entry
	for i := range 3*copyChunk + 17 { // several chunks and a partial one
		name := fmt.Sprint("c", i)
		if _, err := first.Increment(name, uint64(i+1)); err != nil {
			t.Fatal(err)
		}
		if i%3 == 0 {
			foreign = append(foreign, crdt.Entry{Counter: name, Replica: other, P: 2, N: 1})
		}
	}
	if _, err := first.Merge(foreign); err != nil {
		t.Fatal(err)
	}
	if !first.Delete("c1", 0) {
		t.Fatal("Delete(c1) found nothing")
	}
	// A restart: the next incarnation loads it and folds the first.
	state := crdt.New(crdt.ReplicaID(lineage, 2))
	if err := state.Load(first.DeltaSince(0, first.Version())); err != nil {
		t.Fatal(err)
	}
	state.Fold()
	state.TakeRemoved()
	if _, err := state.Increment("c2", 5); err != nil {
		t.Fatal(err)
	}

	disk := durableCopy(state)
	entries := func(s *crdt.State) []crdt.Entry {
		es := s.DeltaSince(0, s.Version())
		slices.SortFunc(es, func(a, b crdt.Entry) int {
			return strings.Compare(a.Counter+"/"+a.Replica, b.Counter+"/"+b.Replica)
		})
		return es
	}
	if got, want := entries(disk), entries(state); !slices.Equal(got, want) {
		t.Fatalf("durable copy holds %d entries, state %d; they differ", len(got), len(want))
	}
	if got, want := disk.Values(0), state.Values(0); !maps.Equal(got, want) {
		t.Fatalf("durable copy's values differ from the state's (%d and %d counters)", len(got), len(want))
	}
	if disk.Held() != state.Held() || disk.Len() != state.Len() {
		t.Fatalf("durable copy holds %d counters, %d live; state %d, %d", disk.Held(), disk.Len(), state.Held(), state.Len())
	}
}
