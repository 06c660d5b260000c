package crdt

import (
	"errors"
	"fmt"
	"slices"
	"testing"
)

// replicaN returns the i-th of many distinct valid replica ids.
func replicaN(i int) string { return fmt.Sprintf("%016x", 0x1000+i) }

// TestManyReplicasMatchModel runs random local changes, merges and deltas
// on counters with dozens of replicas each, past the point where a counter
// indexes its entries, and checks everything against the reference model.
func TestManyReplicasMatchModel(t *testing.T) {
	many := make([]string, 40)
	for i := range many {
		many[i] = replicaN(i)
	}
	for _, seed := range seeds {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			r := newRand(seed)
			s, m := New(many[0]), newModel(many[0])
			peer, acked := New(repB), uint64(0)
			for step := range 2000 {
				name := names[r.IntN(len(names))]
				switch op := r.IntN(10); {
				case op < 3: // a local change, whose entry may be added late
					by, neg := randAmount(r), r.IntN(2) == 0
					got, err := s.change(name, by, neg)
					want, werr := m.change(name, by, neg)
					if errKind(err) != werr || got != want {
						t.Fatalf("step %d: change(%q, %d, neg=%v) = %d, %v; want %d, %v", step, name, by, neg, got, err, want, werr)
					}
				case op < 8: // entries of many replicas, with repeats
					es := make([]Entry, 1+r.IntN(8))
					for i := range es {
						es[i] = Entry{Counter: names[r.IntN(len(names))], Replica: many[r.IntN(len(many))], P: r.Uint64N(50), N: r.Uint64N(50)}
					}
					if got, want := mustMerge(t, s, es), m.merge(es); !slices.Equal(got, want) {
						t.Fatalf("step %d: Merge(%v) changed\n got %v\nwant %v", step, es, got, want)
					}
				default: // a delta to a peer, which must end with the same entries
					mustMerge(t, peer, s.DeltaSince(acked, s.Version()))
					acked = s.Version()
				}
			}
			checkModel(t, s, m)
			mustMerge(t, peer, s.DeltaSince(acked, s.Version()))
			if got, want := snapshot(t, peer), snapshot(t, s); !slices.Equal(got, want) {
				t.Fatalf("peer after full deltas:\n got %v\nwant %v", got, want)
			}
			for _, name := range names {
				if c := s.counters[name]; c != nil && len(c.slots) > indexFrom && c.index == nil {
					t.Fatalf("counter %q has %d entries and no index", name, len(c.slots))
				}
			}
		})
	}
}

// TestOwnEntryFoundAfterIndex adds this replica's entry to a counter that
// is already indexed: it moves first, and every entry is still found.
func TestOwnEntryFoundAfterIndex(t *testing.T) {
	s := New(repA)
	var es []Entry
	for i := range 3 * indexFrom {
		es = append(es, Entry{Counter: "c", Replica: replicaN(i), P: uint64(i + 1), N: 0})
	}
	mustMerge(t, s, es)
	if got := mustInc(t, s, "c", 1000); got != int64(1000+len(es)*(len(es)+1)/2) {
		t.Fatalf("value after increment = %d", got)
	}
	for _, e := range es {
		if got, ok := s.Get("c", e.Replica); !ok || got != e {
			t.Fatalf("Get(c, %s) = %+v, %v; want %+v", e.Replica, got, ok, e)
		}
	}
	if got, ok := s.Get("c", repA); !ok || got.P != 1000 {
		t.Fatalf("own entry = %+v, %v", got, ok)
	}
	if s.counters["c"].slots[0].replica != repA {
		t.Fatalf("own entry is not first")
	}
}

func TestLimits(t *testing.T) {
	full := func() *State { // counter "c" holds 3 entries (the limit), "d" 1
		s := New(repA)
		s.SetLimits(Limits{MaxEntries: 3, MaxCounters: 2})
		mustMerge(t, s, []Entry{{Counter: "c", Replica: repB, P: 1, N: 0}, {Counter: "c", Replica: repC, P: 1, N: 0}, {Counter: "c", Replica: repD, P: 1, N: 0}, {Counter: "d", Replica: repB, P: 5, N: 0}})
		return s
	}
	extra := replicaN(1)
	for _, tc := range []struct {
		name string
		do   func(s *State) error
		want error // nil: allowed
	}{
		{"merge updating held entries", func(s *State) error {
			_, err := s.Merge([]Entry{{Counter: "c", Replica: repB, P: 9, N: 9}, {Counter: "c", Replica: repC, P: 2, N: 0}})
			return err
		}, nil},
		{"merge adding an entry to a full counter", func(s *State) error {
			_, err := s.Merge([]Entry{{Counter: "d", Replica: repC, P: 1, N: 0}, {Counter: "c", Replica: repB, P: 9, N: 0}, {Counter: "c", Replica: extra, P: 1, N: 0}})
			return err
		}, ErrLimit},
		{"merge adding two entries where one fits", func(s *State) error {
			_, err := s.Merge([]Entry{{Counter: "d", Replica: repC, P: 1, N: 0}, {Counter: "d", Replica: repD, P: 1, N: 0}, {Counter: "d", Replica: extra, P: 1, N: 0}})
			return err
		}, ErrLimit},
		{"merge repeating one new entry", func(s *State) error {
			_, err := s.Merge([]Entry{{Counter: "d", Replica: repC, P: 1, N: 0}, {Counter: "d", Replica: repC, P: 2, N: 0}, {Counter: "d", Replica: repC, P: 3, N: 1}})
			return err
		}, nil},
		{"merge of empty entries adds nothing", func(s *State) error {
			_, err := s.Merge([]Entry{{Counter: "c", Replica: extra, P: 0, N: 0}})
			return err
		}, nil},
		{"merge creating counters past MaxCounters", func(s *State) error {
			_, err := s.Merge([]Entry{{Counter: "e", Replica: repB, P: 1, N: 0}, {Counter: "f", Replica: repB, P: 1, N: 0}})
			return err
		}, nil},
		{"change creating a counter past MaxCounters", func(s *State) error {
			_, err := s.Increment("e", 1)
			return err
		}, ErrLimit},
		{"change adding the own entry to a full counter", func(s *State) error {
			_, err := s.Decrement("c", 1)
			return err
		}, ErrLimit},
		{"change adding the own entry to a counter with room", func(s *State) error {
			_, err := s.Increment("d", 1)
			return err
		}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := full()
			before := viewOf(s)
			err := tc.do(s)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if err != nil {
				assertUnchanged(t, before, s)
			}
		})
	}

	t.Run("held state is kept when limits fall", func(t *testing.T) {
		s := full()
		mustInc(t, s, "d", 1) // d: repB and this replica
		s.SetLimits(Limits{MaxEntries: 1, MaxCounters: 1})
		if got := mustInc(t, s, "d", 1); got != 7 {
			t.Fatalf("d = %d after an increment, want 7", got)
		}
		mustMerge(t, s, []Entry{{Counter: "c", Replica: repB, P: 4, N: 0}})
		if got := s.Value("c"); got != 6 {
			t.Fatalf("c = %d after a merge, want 6", got)
		}
	})
}

// TestManyEntriesOnOneCounterIsLinear loads, merges again, cuts deltas of
// and changes one counter with 100,000 entries, and checks that every entry
// is found through the index, not by a search in order (which made this
// about 5·10⁹ comparisons, minutes under -race). It checks the structure,
// not the time, so a loaded machine cannot fail it; how fast it is, is
// measured by BenchmarkLoadOneCounter.
func TestManyEntriesOnOneCounterIsLinear(t *testing.T) {
	const n = 100_000
	es := make([]Entry, n)
	for i := range es {
		es[i] = Entry{Counter: "c", Replica: replicaN(i), P: 1, N: 0}
	}
	s := New(repA)
	mustMerge(t, s, es) // a load
	for i := range es {
		es[i].P = 2
	}
	for i := 0; i < n; i += 2000 { // pushes of changes to every entry
		mustMerge(t, s, es[i:i+2000])
	}
	if got := len(s.DeltaSince(0, s.Version())); got != n {
		t.Fatalf("full delta has %d entries, want %d", got, n)
	}
	if got := mustInc(t, s, "c", 1); got != 2*n+1 {
		t.Fatalf("value = %d, want %d", got, 2*n+1)
	}
	c := s.counters["c"]
	if len(c.index) != len(c.slots) || len(c.slots) != n+1 {
		t.Fatalf("the counter indexes %d of its %d entries (want all %d)", len(c.index), len(c.slots), n+1)
	}
	for replica, i := range c.index {
		if c.slots[i].replica != replica {
			t.Fatalf("the index sends %s to slot %d, which holds %s", replica, i, c.slots[i].replica)
		}
	}
}
