package crdt

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// Replica ids used across the tests.
const (
	repA = "00000000000000a1"
	repB = "00000000000000b2"
	repC = "00000000000000c3"
	repD = "00000000000000d4"
)

var replicas = []string{repA, repB, repC, repD}

// seeds drive every randomised test. A failure names its seed in the subtest
// name (seed=N); rerun one with -run 'TestName/seed=N$'.
var seeds = []uint64{1, 2, 3, 7, 42, 1234, 99991, 0xdeadbeef, 1 << 40, math.MaxUint64}

// names is deliberately small so that random operations collide on the same
// counters and entries, and log compaction runs.
var names = []string{"a", "b", "hits", "x.y-z_0"}

// specials are amounts at and around the int64/uint64 boundaries.
var specials = []uint64{
	1, 2, 1 << 32, 1 << 62,
	math.MaxInt64 - 1, math.MaxInt64, 1 << 63, 1<<63 + 1,
	math.MaxUint64 - 1, math.MaxUint64,
}

func newRand(seed uint64) *rand.Rand {
	return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
}

// randAmount is mostly small, sometimes huge, occasionally 0 (invalid).
func randAmount(r *rand.Rand) uint64 {
	switch r.IntN(20) {
	case 0:
		return 0
	case 1, 2:
		return specials[r.IntN(len(specials))]
	case 3:
		return r.Uint64()
	case 4:
		return r.Uint64N(1<<62) + 1
	default:
		return r.Uint64N(100) + 1
	}
}

// ---- reference model ------------------------------------------------------

// model is the dumb reference: plain maps of totals and big.Int sums.
type model struct {
	replica string
	tot     map[string]map[string][2]uint64 // counter -> replica -> {P, N}
}

func newModel(replica string) *model {
	return &model{replica: replica, tot: make(map[string]map[string][2]uint64)}
}

func (m *model) get(name, replica string) [2]uint64 { return m.tot[name][replica] }

func (m *model) put(name, replica string, pn [2]uint64) {
	if m.tot[name] == nil {
		m.tot[name] = make(map[string][2]uint64)
	}
	m.tot[name][replica] = pn
}

// sum is ΣP − ΣN of counter name, exactly.
func (m *model) sum(name string) *big.Int {
	return sumOf(m.tot[name])
}

func sumOf(slots map[string][2]uint64) *big.Int {
	v := new(big.Int)
	for _, pn := range slots {
		v.Add(v, new(big.Int).SetUint64(pn[0]))
		v.Sub(v, new(big.Int).SetUint64(pn[1]))
	}
	return v
}

var (
	bigMaxInt64 = big.NewInt(math.MaxInt64)
	bigMinInt64 = big.NewInt(math.MinInt64)
)

func clamp(v *big.Int) int64 {
	switch {
	case v.Cmp(bigMaxInt64) > 0:
		return math.MaxInt64
	case v.Cmp(bigMinInt64) < 0:
		return math.MinInt64
	}
	return v.Int64()
}

func (m *model) value(name string) int64 { return clamp(m.sum(name)) }

func (m *model) values() map[string]int64 {
	out := make(map[string]int64, len(m.tot))
	for name := range m.tot {
		out[name] = m.value(name)
	}
	return out
}

// change is the specification of Increment/Decrement: refuse 0 and bad
// names, refuse a carry out of the replica's own uint64 total, refuse a new
// value outside int64; otherwise apply and return the new value.
func (m *model) change(name string, by uint64, neg bool) (int64, error) {
	if !ValidName(name) || by == 0 {
		return 0, ErrInvalid
	}
	pn := m.get(name, m.replica)
	i := 0
	if neg {
		i = 1
	}
	if pn[i] > math.MaxUint64-by {
		return 0, ErrOverflow
	}
	pn[i] += by
	old := m.get(name, m.replica)
	m.put(name, m.replica, pn)
	v := m.sum(name)
	if !v.IsInt64() {
		m.put(name, m.replica, old)
		if old == ([2]uint64{}) {
			delete(m.tot[name], m.replica)
			if len(m.tot[name]) == 0 {
				delete(m.tot, name)
			}
		}
		return 0, ErrOverflow
	}
	return v.Int64(), nil
}

// merge takes the per-entry maximum, in order, and returns what changed.
// merge reports each key that changed once, where it first changed, with
// its last totals.
func (m *model) merge(es []Entry) []Entry {
	var changed []Entry
	at := make(map[[2]string]int)
	for _, e := range es {
		cur := m.get(e.Counter, e.Replica)
		next := [2]uint64{max(cur[0], e.P), max(cur[1], e.N)}
		if next == cur {
			continue
		}
		m.put(e.Counter, e.Replica, next)
		ne := Entry{Counter: e.Counter, Replica: e.Replica, P: next[0], N: next[1]}
		k := [2]string{e.Counter, e.Replica}
		if i, ok := at[k]; ok {
			changed[i] = ne
			continue
		}
		at[k] = len(changed)
		changed = append(changed, ne)
	}
	return changed
}

func (m *model) entries() []Entry {
	var out []Entry
	for name, slots := range m.tot {
		for rep, pn := range slots {
			out = append(out, Entry{Counter: name, Replica: rep, P: pn[0], N: pn[1]})
		}
	}
	return sortEntries(out)
}

// ---- helpers ---------------------------------------------------------------

func compareEntries(a, b Entry) int {
	return cmp.Or(cmp.Compare(a.Counter, b.Counter), cmp.Compare(a.Replica, b.Replica))
}

func sortEntries(es []Entry) []Entry {
	es = slices.Clone(es)
	slices.SortFunc(es, compareEntries)
	return es
}

// snapshot is the full state of s as sorted entries. It fails the test if
// the full delta holds an entry twice or an entry with nothing in it.
func snapshot(t *testing.T, s *State) []Entry {
	t.Helper()
	full := s.DeltaSince(0, s.Version())
	seen := make(map[[2]string]bool, len(full))
	for _, e := range full {
		k := [2]string{e.Counter, e.Replica}
		if seen[k] {
			t.Fatalf("DeltaSince(0, %d) holds %s/%s twice: %v", s.Version(), e.Counter, e.Replica, full)
		}
		seen[k] = true
		if e.P == 0 && e.N == 0 {
			t.Fatalf("DeltaSince(0, %d) holds an empty entry %+v", s.Version(), e)
		}
		if got, ok := s.Get(e.Counter, e.Replica); !ok || got != e {
			t.Fatalf("Get(%q, %q) = %+v, %v; full state has %+v", e.Counter, e.Replica, got, ok, e)
		}
	}
	return sortEntries(full)
}

// clone copies s's entries into a fresh state writing as replica.
func clone(t *testing.T, s *State, replica string) *State {
	t.Helper()
	c := New(replica)
	mustMerge(t, c, s.DeltaSince(0, s.Version()))
	return c
}

func mustMerge(t *testing.T, s *State, es []Entry) []Entry {
	t.Helper()
	changed, err := s.Merge(es)
	if err != nil {
		t.Fatalf("Merge(%v): %v", es, err)
	}
	return changed
}

func mustInc(t *testing.T, s *State, name string, by uint64) int64 {
	t.Helper()
	v, err := s.Increment(name, by)
	if err != nil {
		t.Fatalf("Increment(%q, %d): %v", name, by, err)
	}
	return v
}

func mustDec(t *testing.T, s *State, name string, by uint64) int64 {
	t.Helper()
	v, err := s.Decrement(name, by)
	if err != nil {
		t.Fatalf("Decrement(%q, %d): %v", name, by, err)
	}
	return v
}

// view is everything observable about a state, to check that a refused
// operation changed nothing.
type view struct {
	Version uint64
	Len     int
	Values  map[string]int64
	Delta   []Entry // DeltaSince(0, Version), in version order
}

func viewOf(s *State) view {
	return view{s.Version(), s.Len(), valuesOf(s), s.DeltaSince(0, s.Version())}
}

func assertUnchanged(t *testing.T, before view, s *State) {
	t.Helper()
	if after := viewOf(s); !reflect.DeepEqual(before, after) {
		t.Fatalf("state changed:\nbefore %+v\nafter  %+v", before, after)
	}
}

// checkModel fails unless s and m hold the same entries and values.
func checkModel(t *testing.T, s *State, m *model) {
	t.Helper()
	if got, want := snapshot(t, s), m.entries(); !slices.Equal(got, want) {
		t.Fatalf("entries:\n got %v\nwant %v", got, want)
	}
	if got, want := valuesOf(s), m.values(); !reflect.DeepEqual(got, want) {
		t.Fatalf("Values:\n got %v\nwant %v", got, want)
	}
	for _, name := range names {
		if got, want := s.Value(name), m.value(name); got != want {
			t.Fatalf("Value(%q) = %d, want %d", name, got, want)
		}
	}
	if got, want := s.Len(), len(m.tot); got != want {
		t.Fatalf("Len() = %d, want %d", got, want)
	}
}

func errKind(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrOverflow):
		return ErrOverflow
	case errors.Is(err, ErrInvalid):
		return ErrInvalid
	}
	return err
}

// randomState builds a state writing as replica from random local changes
// and random merged entries of any replica (including replica itself).
func randomState(t *testing.T, r *rand.Rand, replica string, steps int) *State {
	t.Helper()
	s := New(replica)
	for range steps {
		name := names[r.IntN(len(names))]
		switch r.IntN(3) {
		case 0:
			s.Increment(name, randAmount(r)) // refusals are fine here
		case 1:
			s.Decrement(name, randAmount(r))
		case 2:
			e := Entry{Counter: name, Replica: replicas[r.IntN(len(replicas))], P: randAmount(r), N: randAmount(r)}
			mustMerge(t, s, []Entry{e})
		}
	}
	return s
}

// ---- property tests --------------------------------------------------------

// TestStatesMatchModel runs random changes and random delta/full merges on
// three replicas and checks every result against the reference model.
func TestStatesMatchModel(t *testing.T) {
	for _, seed := range seeds {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			r := newRand(seed)
			ids := []string{repA, repB, repC}
			states := make([]*State, len(ids))
			models := make([]*model, len(ids))
			for i, id := range ids {
				states[i], models[i] = New(id), newModel(id)
			}
			acked := make(map[[2]int]uint64) // (src, dst) -> src version dst has

			for step := range 3000 {
				i := r.IntN(len(states))
				s, m := states[i], models[i]
				switch op := r.IntN(20); {
				case op < 12: // local change
					name := names[r.IntN(len(names))]
					if r.IntN(50) == 0 {
						name = "bad name"
					}
					by, neg := randAmount(r), r.IntN(2) == 0
					before := viewOf(s)
					got, err := s.change(name, by, neg)
					want, werr := m.change(name, by, neg)
					if errKind(err) != werr || got != want {
						t.Fatalf("seed %d step %d: replica %s change(%q, %d, neg=%v) = %d, %v; want %d, %v",
							seed, step, s.Replica(), name, by, neg, got, err, want, werr)
					}
					if err != nil {
						assertUnchanged(t, before, s)
					} else if s.Version() != before.Version+1 {
						t.Fatalf("seed %d step %d: Version %d -> %d after one change", seed, step, before.Version, s.Version())
					}
				case op < 19: // ship a delta (or the full state) from j to i
					j := (i + 1 + r.IntN(len(states)-1)) % len(states)
					src := states[j]
					since := acked[[2]int{j, i}]
					if r.IntN(5) == 0 {
						since = 0 // resend everything
					}
					delta := src.DeltaSince(since, src.Version())
					if r.IntN(4) == 0 {
						r.Shuffle(len(delta), func(a, b int) { delta[a], delta[b] = delta[b], delta[a] })
					}
					v0 := s.Version()
					got := mustMerge(t, s, delta)
					want := m.merge(delta)
					if !slices.Equal(got, want) {
						t.Fatalf("seed %d step %d: Merge(%v) changed\n got %v\nwant %v", seed, step, delta, got, want)
					}
					if s.Version() != v0+uint64(len(got)) {
						t.Fatalf("seed %d step %d: Version %d -> %d after %d changed entries", seed, step, v0, s.Version(), len(got))
					}
					if r.IntN(4) != 0 { // sometimes the ack is lost and the delta resent
						acked[[2]int{j, i}] = src.Version()
					}
				default:
					checkModel(t, s, m)
				}
			}
			for i := range states {
				checkModel(t, states[i], models[i])
			}

			// Anti-entropy rounds: everyone ends with the same entries.
			for range 2 {
				for i := range states {
					for j := range states {
						if i != j {
							full := states[j].DeltaSince(0, states[j].Version())
							mustMerge(t, states[i], full)
							models[i].merge(full)
						}
					}
				}
			}
			want := snapshot(t, states[0])
			for i, s := range states {
				checkModel(t, s, models[i])
				if got := snapshot(t, s); !slices.Equal(got, want) {
					t.Fatalf("seed %d: replica %s did not converge:\n got %v\nwant %v", seed, s.Replica(), got, want)
				}
			}
		})
	}
}

// TestMergeLaws checks that merging full states is commutative, associative
// and idempotent, and that the result matches the per-entry maximum.
func TestMergeLaws(t *testing.T) {
	for _, seed := range seeds {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			r := newRand(seed)
			a := randomState(t, r, repA, 200)
			b := randomState(t, r, repB, 200)
			c := randomState(t, r, repC, 200)
			full := func(s *State) []Entry { return s.DeltaSince(0, s.Version()) }
			merged := func(into *State, from ...*State) *State {
				t.Helper()
				x := clone(t, into, repD)
				for _, f := range from {
					mustMerge(t, x, full(f))
				}
				return x
			}
			same := func(what string, x, y *State) {
				t.Helper()
				if gx, gy := snapshot(t, x), snapshot(t, y); !slices.Equal(gx, gy) {
					t.Fatalf("seed %d: %s: entries differ:\n%v\n%v", seed, what, gx, gy)
				}
				if vx, vy := valuesOf(x), valuesOf(y); !reflect.DeepEqual(vx, vy) {
					t.Fatalf("seed %d: %s: Values differ:\n%v\n%v", seed, what, vx, vy)
				}
			}

			ab, ba := merged(a, b), merged(b, a)
			same("A⊔B vs B⊔A", ab, ba)

			// Against the reference: per-entry max of both sides.
			m := newModel(repD)
			m.merge(full(a))
			m.merge(full(b))
			checkModel(t, ab, m)

			left := merged(merged(a, b), c)
			right := merged(a, merged(b, c))
			same("(A⊔B)⊔C vs A⊔(B⊔C)", left, right)

			// Idempotent: the second merge of the same delta does nothing.
			x := clone(t, a, repD)
			delta := full(b)
			mustMerge(t, x, delta)
			before := viewOf(x)
			if changed := mustMerge(t, x, delta); len(changed) != 0 {
				t.Fatalf("seed %d: second merge of the same delta changed %v", seed, changed)
			}
			assertUnchanged(t, before, x)
			// Merging a state into itself does nothing either.
			if changed := mustMerge(t, x, full(x)); len(changed) != 0 {
				t.Fatalf("seed %d: merging a state into itself changed %v", seed, changed)
			}
			assertUnchanged(t, before, x)

			// Entry order inside a delta does not matter.
			shuffled := full(b)
			r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
			y := clone(t, a, repD)
			mustMerge(t, y, shuffled)
			same("A⊔B vs A⊔shuffled(B)", ab, y)
		})
	}
}

// TestDeltaChunksEqualFullState ships a changing state as successive
// DeltaSince chunks (with random upTo, duplicates and reordering) and checks
// the receiver ends where merging the full state would put it.
func TestDeltaChunksEqualFullState(t *testing.T) {
	for _, seed := range seeds {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			r := newRand(seed)
			src := New(repA)
			other := New(repB)
			inOrder := New(repC)
			var chunks [][]Entry
			var since uint64
			ship := func(upTo uint64) {
				chunk := src.DeltaSince(since, upTo)
				mustMerge(t, inOrder, chunk)
				chunks = append(chunks, chunk)
				if r.IntN(5) == 0 { // a duplicated delivery
					mustMerge(t, inOrder, chunk)
				}
				since = upTo
			}
			for range 2000 {
				name := names[r.IntN(len(names))]
				switch r.IntN(10) {
				case 0, 1, 2:
					src.Increment(name, randAmount(r))
				case 3, 4:
					src.Decrement(name, randAmount(r))
				case 5:
					other.Increment(name, randAmount(r))
				case 6:
					other.Decrement(name, randAmount(r))
				case 7:
					mustMerge(t, src, other.DeltaSince(0, other.Version()))
				default:
					ship(since + r.Uint64N(src.Version()-since+1))
				}
			}
			ship(src.Version())

			want := snapshot(t, src)
			if got := snapshot(t, inOrder); !slices.Equal(got, want) {
				t.Fatalf("seed %d: chunks in order:\n got %v\nwant %v", seed, got, want)
			}
			whole := New(repD)
			mustMerge(t, whole, src.DeltaSince(0, src.Version()))
			if got := snapshot(t, whole); !slices.Equal(got, want) {
				t.Fatalf("seed %d: full state:\n got %v\nwant %v", seed, got, want)
			}
			if got, wantV := valuesOf(inOrder), valuesOf(whole); !reflect.DeepEqual(got, wantV) {
				t.Fatalf("seed %d: Values: chunks %v, full %v", seed, got, wantV)
			}
			// Chunks delivered out of order still converge: totals only grow.
			reordered := New(repD)
			r.Shuffle(len(chunks), func(i, j int) { chunks[i], chunks[j] = chunks[j], chunks[i] })
			for _, c := range chunks {
				mustMerge(t, reordered, c)
			}
			if got := snapshot(t, reordered); !slices.Equal(got, want) {
				t.Fatalf("seed %d: chunks reordered:\n got %v\nwant %v", seed, got, want)
			}
		})
	}
}

// ---- DeltaSince ------------------------------------------------------------

func TestDeltaSince(t *testing.T) {
	s := New(repA)
	mustInc(t, s, "a", 1)                                               // v1
	mustInc(t, s, "b", 2)                                               // v2
	mustDec(t, s, "a", 5)                                               // v3: a's latest change
	mustMerge(t, s, []Entry{{Counter: "c", Replica: repB, P: 7, N: 1}}) // v4
	mustMerge(t, s, []Entry{{Counter: "b", Replica: repB, P: 0, N: 3}}) // v5
	mustMerge(t, s, []Entry{{Counter: "c", Replica: repB, P: 6, N: 0}}) // no change, no version
	a := Entry{Counter: "a", Replica: repA, P: 1, N: 5}
	b := Entry{Counter: "b", Replica: repA, P: 2, N: 0}
	cB := Entry{Counter: "c", Replica: repB, P: 7, N: 1}
	bB := Entry{Counter: "b", Replica: repB, P: 0, N: 3}
	if s.Version() != 5 {
		t.Fatalf("Version() = %d, want 5", s.Version())
	}

	tests := []struct {
		name        string
		since, upTo uint64
		want        []Entry
	}{
		{"full state in version order", 0, 5, []Entry{b, a, cB, bB}},
		{"upTo beyond version", 0, 100, []Entry{b, a, cB, bB}},
		{"since excludes its own version", 2, 5, []Entry{a, cB, bB}},
		{"stale log item skipped", 1, 5, []Entry{b, a, cB, bB}},
		{"entry changed after upTo left out", 0, 2, []Entry{b}},
		{"single version", 3, 3, nil},
		{"window of one", 2, 3, []Entry{a}},
		{"window of merged entries", 3, 5, []Entry{cB, bB}},
		{"nothing new", 5, 5, nil},
		{"since beyond version", 9, 20, nil},
		{"since after upTo", 4, 2, nil},
		{"empty window at 0", 0, 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := s.DeltaSince(tt.since, tt.upTo); !slices.Equal(got, tt.want) {
				t.Fatalf("DeltaSince(%d, %d) = %v, want %v", tt.since, tt.upTo, got, tt.want)
			}
		})
	}
}

// TestDeltaSinceMatchesModel checks DeltaSince for random windows against
// the version of each entry's latest change, with enough updates to few
// entries that the log is compacted many times.
func TestDeltaSinceMatchesModel(t *testing.T) {
	for _, seed := range seeds {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			r := newRand(seed)
			s := New(repA)
			type stamped struct {
				e   Entry
				ver uint64
			}
			latest := make(map[[2]string]stamped)
			var changes int
			check := func() {
				t.Helper()
				v := s.Version()
				for range 20 {
					since, upTo := r.Uint64N(v+2), r.Uint64N(v+2)
					if r.IntN(3) == 0 {
						upTo = v
					}
					var want []stamped
					for _, st := range latest {
						if since < st.ver && st.ver <= upTo {
							want = append(want, st)
						}
					}
					slices.SortFunc(want, func(a, b stamped) int { return cmp.Compare(a.ver, b.ver) })
					var wantE []Entry
					for _, st := range want {
						wantE = append(wantE, st.e)
					}
					if got := s.DeltaSince(since, upTo); !slices.Equal(got, wantE) {
						t.Fatalf("seed %d: DeltaSince(%d, %d) at version %d:\n got %v\nwant %v", seed, since, upTo, v, got, wantE)
					}
				}
			}
			for range 5000 {
				name := names[r.IntN(len(names))]
				if r.IntN(4) == 0 {
					e := Entry{Counter: name, Replica: replicas[r.IntN(len(replicas))], P: r.Uint64N(1 << 20), N: r.Uint64N(1 << 20)}
					v0 := s.Version()
					for i, c := range mustMerge(t, s, []Entry{e}) {
						latest[[2]string{c.Counter, c.Replica}] = stamped{c, v0 + uint64(i) + 1}
						changes++
					}
				} else {
					var err error
					if r.IntN(2) == 0 {
						_, err = s.Increment(name, r.Uint64N(1000)+1)
					} else {
						_, err = s.Decrement(name, r.Uint64N(1000)+1)
					}
					if err == nil {
						e, _ := s.Get(name, repA)
						latest[[2]string{name, repA}] = stamped{e, s.Version()}
						changes++
					}
				}
				if r.IntN(100) == 0 {
					check()
				}
			}
			check()
			if uint64(changes) != s.Version() {
				t.Fatalf("seed %d: %d changes but Version() = %d", seed, changes, s.Version())
			}
			// The log is bounded by the live entries, not by the history.
			if limit := 2*len(latest) + 64; len(s.log) > limit {
				t.Fatalf("seed %d: log holds %d items for %d entries (limit %d): not compacted", seed, len(s.log), len(latest), limit)
			}
		})
	}
}

// TestDeltaSinceSurvivesCompaction hammers three entries so that the log is
// compacted many times, then checks full and partial deltas.
func TestDeltaSinceSurvivesCompaction(t *testing.T) {
	s := New(repA)
	const rounds = 1000
	for i := range rounds {
		mustInc(t, s, "a", 1)
		mustInc(t, s, "b", 2)
		mustMerge(t, s, []Entry{{Counter: "c", Replica: repB, P: uint64(i + 1), N: 0}})
	}
	v := s.Version()
	if v != 3*rounds {
		t.Fatalf("Version() = %d, want %d", v, 3*rounds)
	}
	if len(s.log) > 2*3+64 {
		t.Fatalf("log holds %d items for 3 entries: compaction did not run", len(s.log))
	}
	a := Entry{Counter: "a", Replica: repA, P: rounds, N: 0}
	b := Entry{Counter: "b", Replica: repA, P: 2 * rounds, N: 0}
	c := Entry{Counter: "c", Replica: repB, P: rounds, N: 0}
	tests := []struct {
		name        string
		since, upTo uint64
		want        []Entry
	}{
		{"full", 0, v, []Entry{a, b, c}},
		{"last three", v - 3, v, []Entry{a, b, c}},
		{"last two", v - 2, v, []Entry{b, c}},
		{"last one", v - 1, v, []Entry{c}},
		{"nothing new", v, v, nil},
		{"all changed after upTo", 0, v - 3, nil},
		{"upTo cuts the newest", v - 3, v - 1, []Entry{a, b}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := s.DeltaSince(tt.since, tt.upTo); !slices.Equal(got, tt.want) {
				t.Fatalf("DeltaSince(%d, %d) = %v, want %v", tt.since, tt.upTo, got, tt.want)
			}
		})
	}
	if got, want := valuesOf(s), map[string]int64{"a": rounds, "b": 2 * rounds, "c": rounds}; !reflect.DeepEqual(got, want) {
		t.Fatalf("Values() = %v, want %v", got, want)
	}
}

// ---- overflow --------------------------------------------------------------

func TestOverflowRefused(t *testing.T) {
	type step struct {
		neg bool
		by  uint64
	}
	inc := func(by uint64) step { return step{false, by} }
	dec := func(by uint64) step { return step{true, by} }
	tests := []struct {
		name  string
		merge []Entry // merged first
		setup []step  // must succeed
		last  step    // must fail with ErrOverflow
	}{
		{"increment past MaxInt64", nil, []step{inc(math.MaxInt64)}, inc(1)},
		{"first increment above MaxInt64", nil, nil, inc(1 << 63)},
		{"first increment of MaxUint64", nil, nil, inc(math.MaxUint64)},
		{"increment from negative past MaxInt64", nil, []step{dec(5)}, inc(math.MaxInt64 + 6)},
		{"decrement past MinInt64", nil, []step{dec(1 << 63)}, dec(1)},
		{"first decrement below MinInt64", nil, nil, dec(1<<63 + 1)},
		{"first decrement of MaxUint64", nil, nil, dec(math.MaxUint64)},
		{"decrement from positive past MinInt64", nil, []step{inc(5)}, dec(1<<63 + 6)},
		{"own P total would wrap uint64", nil,
			[]step{inc(math.MaxInt64), dec(math.MaxInt64), inc(math.MaxInt64), dec(math.MaxInt64)}, inc(2)},
		{"own N total would wrap uint64", nil,
			[]step{dec(math.MaxInt64), inc(math.MaxInt64), dec(math.MaxInt64), inc(math.MaxInt64)}, dec(2)},
		{"other replica holds the headroom", []Entry{{Counter: "c", Replica: repB, P: math.MaxInt64, N: 0}}, nil, inc(1)},
		{"other replica holds the negative headroom", []Entry{{Counter: "c", Replica: repB, P: 0, N: 1 << 63}}, nil, dec(1)},
		{"merged sum already above range", []Entry{{Counter: "c", Replica: repB, P: math.MaxUint64, N: 0}}, nil, inc(1)},
		{"merged sum already below range", []Entry{{Counter: "c", Replica: repB, P: 0, N: math.MaxUint64}}, nil, dec(1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New(repA)
			mustMerge(t, s, tt.merge)
			for _, st := range tt.setup {
				if _, err := s.change("c", st.by, st.neg); err != nil {
					t.Fatalf("setup change(by=%d, neg=%v): %v", st.by, st.neg, err)
				}
			}
			before := viewOf(s)
			entryBefore, _ := s.Get("c", repA)
			v, err := s.change("c", tt.last.by, tt.last.neg)
			if !errors.Is(err, ErrOverflow) {
				t.Fatalf("change(by=%d, neg=%v) = %d, %v; want ErrOverflow", tt.last.by, tt.last.neg, v, err)
			}
			if v != 0 {
				t.Errorf("refused change returned value %d, want 0", v)
			}
			assertUnchanged(t, before, s)
			if e, _ := s.Get("c", repA); e != entryBefore {
				t.Fatalf("own entry changed from %+v to %+v", entryBefore, e)
			}
		})
	}
}

func TestOverflowBoundariesSucceed(t *testing.T) {
	tests := []struct {
		name  string
		merge []Entry
		neg   []bool
		by    []uint64
		want  int64
	}{
		{"increment to MaxInt64", nil, []bool{false}, []uint64{math.MaxInt64}, math.MaxInt64},
		{"increments to MaxInt64", nil, []bool{false, false}, []uint64{1 << 62, 1<<62 - 1}, math.MaxInt64},
		{"decrement to MinInt64", nil, []bool{true}, []uint64{1 << 63}, math.MinInt64},
		{"negative to MaxInt64", nil, []bool{true, false}, []uint64{5, math.MaxInt64 + 5}, math.MaxInt64},
		{"positive to MinInt64", nil, []bool{false, true}, []uint64{5, 1<<63 + 5}, math.MinInt64},
		{"MinInt64 to MaxInt64", nil, []bool{true, false}, []uint64{1 << 63, math.MaxUint64}, math.MaxInt64},
		{"own P and N near MaxUint64", nil, []bool{false, true, false, true, false},
			[]uint64{math.MaxInt64, math.MaxInt64, math.MaxInt64, math.MaxInt64, 1}, 1},
		{"with other replica to MaxInt64", []Entry{{Counter: "c", Replica: repB, P: 1 << 62, N: 0}}, []bool{false}, []uint64{1<<62 - 1}, math.MaxInt64},
		{"with other replica to MinInt64", []Entry{{Counter: "c", Replica: repB, P: 0, N: 1 << 62}}, []bool{true}, []uint64{1 << 62}, math.MinInt64},
		// The merged sum is out of range; a change that brings it back in is allowed.
		{"back into range from above", []Entry{{Counter: "c", Replica: repB, P: math.MaxUint64, N: 0}}, []bool{true}, []uint64{1 << 63}, math.MaxInt64},
		{"back into range from below", []Entry{{Counter: "c", Replica: repB, P: 0, N: math.MaxUint64}}, []bool{false}, []uint64{math.MaxUint64}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New(repA)
			mustMerge(t, s, tt.merge)
			var v int64
			for i := range tt.by {
				var err error
				v, err = s.change("c", tt.by[i], tt.neg[i])
				if err != nil {
					t.Fatalf("change(by=%d, neg=%v): %v", tt.by[i], tt.neg[i], err)
				}
			}
			if v != tt.want {
				t.Fatalf("last change returned %d, want %d", v, tt.want)
			}
			if got := s.Value("c"); got != tt.want {
				t.Fatalf("Value = %d, want %d", got, tt.want)
			}
		})
	}
}

// TestValueClampsAndWideSums merges entries whose sums leave int64 (and
// uint64) and checks Value and Values.
func TestValueClampsAndWideSums(t *testing.T) {
	const max = math.MaxUint64
	tests := []struct {
		name    string
		entries []Entry
		want    int64
	}{
		{"two replicas at MaxInt64", []Entry{{Counter: "c", Replica: repA, P: math.MaxInt64, N: 0}, {Counter: "c", Replica: repB, P: math.MaxInt64, N: 0}}, math.MaxInt64},
		{"sum just above MaxInt64", []Entry{{Counter: "c", Replica: repA, P: math.MaxInt64, N: 0}, {Counter: "c", Replica: repB, P: 1, N: 0}}, math.MaxInt64},
		{"sum exactly MaxInt64", []Entry{{Counter: "c", Replica: repA, P: math.MaxInt64 - 1, N: 0}, {Counter: "c", Replica: repB, P: 1, N: 0}}, math.MaxInt64},
		{"sum exactly MinInt64", []Entry{{Counter: "c", Replica: repA, P: 0, N: 1 << 62}, {Counter: "c", Replica: repB, P: 0, N: 1 << 62}}, math.MinInt64},
		{"sum just below MinInt64", []Entry{{Counter: "c", Replica: repA, P: 0, N: 1 << 63}, {Counter: "c", Replica: repB, P: 0, N: 1}}, math.MinInt64},
		{"one replica at MaxUint64", []Entry{{Counter: "c", Replica: repA, P: max, N: 0}}, math.MaxInt64},
		{"one replica at -MaxUint64", []Entry{{Counter: "c", Replica: repA, P: 0, N: max}}, math.MinInt64},
		{"ΣP over 2^64", []Entry{{Counter: "c", Replica: repA, P: max, N: 0}, {Counter: "c", Replica: repB, P: max, N: 0}, {Counter: "c", Replica: repC, P: max, N: 0}}, math.MaxInt64},
		{"ΣN over 2^64", []Entry{{Counter: "c", Replica: repA, P: 0, N: max}, {Counter: "c", Replica: repB, P: 0, N: max}, {Counter: "c", Replica: repC, P: 0, N: max}}, math.MinInt64},
		{"ΣP and ΣN over 2^64, equal", []Entry{{Counter: "c", Replica: repA, P: max, N: max}, {Counter: "c", Replica: repB, P: max, N: max}, {Counter: "c", Replica: repC, P: max, N: max}}, 0},
		{"ΣP over 2^64 minus ΣN over 2^64", []Entry{
			{Counter: "c", Replica: repA, P: max, N: max}, {Counter: "c", Replica: repB, P: max, N: max}, {Counter: "c", Replica: repC, P: max, N: max - 5}}, 5},
		{"ΣN over 2^64 minus ΣP over 2^64", []Entry{
			{Counter: "c", Replica: repA, P: max, N: max}, {Counter: "c", Replica: repB, P: max, N: max}, {Counter: "c", Replica: repC, P: max - 5, N: max}}, -5},
		{"wide sums differing by MaxInt64", []Entry{
			{Counter: "c", Replica: repA, P: max, N: max}, {Counter: "c", Replica: repB, P: max, N: 0}, {Counter: "c", Replica: repC, P: 0, N: max - math.MaxInt64}}, math.MaxInt64},
		{"wide sums differing by MaxInt64+1", []Entry{
			{Counter: "c", Replica: repA, P: max, N: max}, {Counter: "c", Replica: repB, P: max, N: 0}, {Counter: "c", Replica: repC, P: 0, N: max - math.MaxInt64 - 1}}, math.MaxInt64},
		{"wide sums differing by -2^63", []Entry{
			{Counter: "c", Replica: repA, P: max, N: max}, {Counter: "c", Replica: repB, P: 0, N: max}, {Counter: "c", Replica: repC, P: max - 1<<63, N: 0}}, math.MinInt64},
		{"wide sums differing by -2^63-1", []Entry{
			{Counter: "c", Replica: repA, P: max, N: max}, {Counter: "c", Replica: repB, P: 0, N: max}, {Counter: "c", Replica: repC, P: max - 1<<63 - 1, N: 0}}, math.MinInt64},
		{"ΣP over 2^64, ΣN under, still 2^64 apart", []Entry{
			{Counter: "c", Replica: repA, P: max, N: 0}, {Counter: "c", Replica: repB, P: 1, N: 0}, {Counter: "c", Replica: repC, P: 0, N: max}}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New(repD)
			mustMerge(t, s, tt.entries)
			m := newModel(repD)
			m.merge(tt.entries)
			if got := m.value("c"); got != tt.want { // the table itself is right
				t.Fatalf("model value %d, table says %d (exact sum %v)", got, tt.want, m.sum("c"))
			}
			if got := s.Value("c"); got != tt.want {
				t.Fatalf("Value = %d, want %d (exact sum %v)", got, tt.want, m.sum("c"))
			}
			if got := valuesOf(s)["c"]; got != tt.want {
				t.Fatalf("Values()[c] = %d, want %d", got, tt.want)
			}
			// Merging in a different order caches the same sums.
			rev := New(repD)
			for _, e := range slices.Backward(tt.entries) {
				mustMerge(t, rev, []Entry{e})
			}
			if got := rev.Value("c"); got != tt.want {
				t.Fatalf("reverse-order Value = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestU128(t *testing.T) {
	const max = math.MaxUint64
	t.Run("add", func(t *testing.T) {
		tests := []struct {
			a    u128
			b    uint64
			want u128
		}{
			{u128{0, 0}, 5, u128{0, 5}},
			{u128{0, max}, 1, u128{1, 0}},
			{u128{0, max}, max, u128{1, max - 1}},
			{u128{7, 3}, max, u128{8, 2}},
		}
		for _, tt := range tests {
			if got := tt.a.add(tt.b); got != tt.want {
				t.Errorf("%v.add(%d) = %v, want %v", tt.a, tt.b, got, tt.want)
			}
		}
	})
	t.Run("less", func(t *testing.T) {
		tests := []struct {
			a, b u128
			want bool
		}{
			{u128{0, 1}, u128{0, 2}, true},
			{u128{0, 2}, u128{0, 2}, false},
			{u128{0, max}, u128{1, 0}, true},
			{u128{1, 0}, u128{0, max}, false},
			{u128{1, 5}, u128{1, 4}, false},
		}
		for _, tt := range tests {
			if got := tt.a.less(tt.b); got != tt.want {
				t.Errorf("%v.less(%v) = %v, want %v", tt.a, tt.b, got, tt.want)
			}
		}
	})
	t.Run("sub", func(t *testing.T) {
		tests := []struct {
			a, b u128
			want int64
			ok   bool
		}{
			{u128{0, 5}, u128{0, 3}, 2, true},
			{u128{0, 3}, u128{0, 5}, -2, true},
			{u128{0, math.MaxInt64}, u128{}, math.MaxInt64, true},
			{u128{0, 1 << 63}, u128{}, 0, false},
			{u128{}, u128{0, 1 << 63}, math.MinInt64, true},
			{u128{}, u128{0, 1<<63 + 1}, 0, false},
			{u128{1, 4}, u128{0, max}, 5, true},  // borrow across the halves
			{u128{0, max}, u128{1, 4}, -5, true}, // and the other way
			{u128{1, 0}, u128{0, 0}, 0, false},   // 2^64
			{u128{2, 0}, u128{1, 0}, 0, false},   // hi differs by one, lo equal
			{u128{5, 9}, u128{5, 9}, 0, true},
			{u128{1, math.MaxInt64}, u128{1, 0}, math.MaxInt64, true},
			{u128{1, 0}, u128{1, 1 << 63}, math.MinInt64, true},
		}
		for _, tt := range tests {
			got, ok := tt.a.sub(tt.b)
			if got != tt.want || ok != tt.ok {
				t.Errorf("%v.sub(%v) = %d, %v; want %d, %v", tt.a, tt.b, got, ok, tt.want, tt.ok)
			}
		}
	})
}

// ---- validation ------------------------------------------------------------

func TestValidName(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want bool
	}{
		{"empty", "", false},
		{"one char", "a", true},
		{"128 chars", strings.Repeat("a", MaxNameLen), true},
		{"129 chars", strings.Repeat("a", MaxNameLen+1), false},
		{"allowed punctuation", "A-Z.a_z-0.9", true},
		{"only punctuation", "._-", true},
		{"digits", "0123456789", true},
		{"space", "a b", false},
		{"leading space", " a", false},
		{"slash", "a/b", false},
		{"backslash", `a\b`, false},
		{"colon", "a:b", true},
		{"Redis key convention", "rate:user:42", true},
		{"only colons", ":::", true},
		{"semicolon", "a;b", false},
		{"at", "a@b", false},
		{"equals", "a=b", false},
		{"asterisk", "a*", false},
		{"comma", "a,b", false},
		{"braces", "{a}", false},
		{"plus", "a+b", false},
		{"percent", "a%2F", false},
		{"tilde", "a~", false},
		{"newline", "a\n", false},
		{"tab", "a\tb", false},
		{"NUL", "a\x00", false},
		{"unicode letter", "é", false},
		{"unicode 64 x 2 bytes", strings.Repeat("é", 64), false},
		{"invalid UTF-8", "a\xff", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ValidName(tt.in); got != tt.want {
				t.Fatalf("ValidName(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
	if !strings.Contains(NameRule, strconv.Itoa(MaxNameLen)+" characters") {
		t.Fatalf("NameRule %q does not give MaxNameLen %d", NameRule, MaxNameLen)
	}
}

func TestValidReplica(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want bool
	}{
		{"16 lowercase hex", "0123456789abcdef", true},
		{"all zero", "0000000000000000", true},
		{"empty", "", false},
		{"15 digits", "0123456789abcde", false},
		{"17 digits", "0123456789abcdef0", false},
		{"uppercase", "0123456789ABCDEF", false},
		{"one uppercase", "0123456789abcdeF", false},
		{"non-hex letter", "0123456789abcdeg", false},
		{"0x prefix", "0x23456789abcdef", false},
		{"space", "0123456789abcde ", false},
		{"NUL", "0123456789abcde\x00", false},
		{"8 two-byte runes", strings.Repeat("é", 8), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ValidReplica(tt.in); got != tt.want {
				t.Fatalf("ValidReplica(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestNewPanicsOnInvalidReplica(t *testing.T) {
	for _, id := range []string{"", "ABCDEF0123456789", "0123456789abcdef0"} {
		t.Run(fmt.Sprintf("%q", id), func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Fatalf("New(%q) did not panic", id)
				}
			}()
			New(id)
		})
	}
	if s := New(repA); s.Replica() != repA || s.Version() != 0 || s.Len() != 0 {
		t.Fatalf("New(%q) = replica %q, version %d, len %d", repA, s.Replica(), s.Version(), s.Len())
	}
}

func TestMergeInvalidChangesNothing(t *testing.T) {
	tests := []struct {
		name string
		bad  Entry
	}{
		{"empty name", Entry{Counter: "", Replica: repB, P: 1, N: 0}},
		{"long name", Entry{Counter: strings.Repeat("a", MaxNameLen+1), Replica: repB, P: 1, N: 0}},
		{"slash in name", Entry{Counter: "a/b", Replica: repB, P: 1, N: 0}},
		{"NUL in name", Entry{Counter: "a\x00", Replica: repB, P: 1, N: 0}},
		{"empty replica", Entry{Counter: "a", Replica: "", P: 1, N: 0}},
		{"short replica", Entry{Counter: "a", Replica: repB[1:], P: 1, N: 0}},
		{"uppercase replica", Entry{Counter: "a", Replica: strings.ToUpper(repB), P: 1, N: 0}},
		{"non-hex replica", Entry{Counter: "a", Replica: "zzzzzzzzzzzzzzzz", P: 1, N: 0}},
	}
	for _, tt := range tests {
		for _, pos := range []string{"first", "last"} {
			t.Run(tt.name+"/"+pos, func(t *testing.T) {
				s := New(repA)
				mustInc(t, s, "a", 3)
				mustMerge(t, s, []Entry{{Counter: "b", Replica: repB, P: 1, N: 1}})
				good := []Entry{{Counter: "a", Replica: repB, P: 10, N: 0}, {Counter: "b", Replica: repB, P: 5, N: 5}, {Counter: "new", Replica: repC, P: 1, N: 0}}
				batch := append(slices.Clone(good), tt.bad)
				if pos == "first" {
					batch = append([]Entry{tt.bad}, good...)
				}
				before := viewOf(s)
				changed, err := s.Merge(batch)
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("Merge(%v) error = %v, want ErrInvalid", batch, err)
				}
				if changed != nil {
					t.Fatalf("Merge returned changed entries %v with an error", changed)
				}
				assertUnchanged(t, before, s)
				// The same batch without the bad entry is accepted.
				if got := mustMerge(t, s, good); len(got) != 3 {
					t.Fatalf("good batch changed %v, want 3 entries", got)
				}
			})
		}
	}
}

func TestChangeInvalid(t *testing.T) {
	tests := []struct {
		name string
		by   uint64
		neg  bool
	}{
		{"", 1, false},
		{"a b", 1, true},
		{strings.Repeat("x", MaxNameLen+1), 1, false},
		{"a", 0, false},
		{"a", 0, true},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%.10q/by=%d/neg=%v", tt.name, tt.by, tt.neg), func(t *testing.T) {
			s := New(repA)
			mustInc(t, s, "a", 2)
			before := viewOf(s)
			v, err := s.change(tt.name, tt.by, tt.neg)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("change(%q, %d, neg=%v) = %d, %v; want ErrInvalid", tt.name, tt.by, tt.neg, v, err)
			}
			assertUnchanged(t, before, s)
		})
	}
}

// ---- merge results ---------------------------------------------------------

func TestMergeReturnsChanged(t *testing.T) {
	s := New(repA)
	mustInc(t, s, "a", 5)
	mustMerge(t, s, []Entry{{Counter: "a", Replica: repB, P: 10, N: 4}})
	tests := []struct {
		name    string
		in      []Entry
		changed []Entry
		value   int64
		sets    int // versions taken, if not len(changed)
	}{
		{"older totals ignored", []Entry{{Counter: "a", Replica: repB, P: 9, N: 3}}, nil, 11, 0},
		{"equal totals ignored", []Entry{{Counter: "a", Replica: repB, P: 10, N: 4}}, nil, 11, 0},
		{"empty entry for unknown key ignored", []Entry{{Counter: "a", Replica: repC, P: 0, N: 0}}, nil, 11, 0},
		{"P grows, N kept", []Entry{{Counter: "a", Replica: repB, P: 12, N: 0}}, []Entry{{Counter: "a", Replica: repB, P: 12, N: 4}}, 13, 0},
		{"N grows, P kept", []Entry{{Counter: "a", Replica: repB, P: 0, N: 6}}, []Entry{{Counter: "a", Replica: repB, P: 12, N: 6}}, 11, 0},
		{"own entry raised by a peer", []Entry{{Counter: "a", Replica: repA, P: 7, N: 1}}, []Entry{{Counter: "a", Replica: repA, P: 7, N: 1}}, 12, 0},
		{"same key twice in one batch", []Entry{{Counter: "a", Replica: repC, P: 1, N: 0}, {Counter: "a", Replica: repC, P: 3, N: 0}, {Counter: "a", Replica: repC, P: 2, N: 0}},
			[]Entry{{Counter: "a", Replica: repC, P: 3, N: 0}}, 15, 2}, // reported once, with its last totals
		{"empty batch", nil, nil, 15, 0},
	}
	// The cases run in order on one state: each builds on the previous.
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v0 := s.Version()
			got := mustMerge(t, s, tt.in)
			if !slices.Equal(got, tt.changed) {
				t.Fatalf("Merge(%v) changed %v, want %v", tt.in, got, tt.changed)
			}
			sets := tt.sets
			if sets == 0 {
				sets = len(tt.changed)
			}
			if s.Version() != v0+uint64(sets) {
				t.Fatalf("Version %d -> %d, want +%d", v0, s.Version(), sets)
			}
			if got := s.Value("a"); got != tt.value {
				t.Fatalf("Value = %d, want %d", got, tt.value)
			}
		})
	}
	if s.Len() != 1 {
		t.Fatalf("Len() = %d, want 1", s.Len())
	}
	if _, ok := s.Get("a", repD); ok {
		t.Fatalf("Get of a replica never seen reports an entry")
	}
	if _, ok := s.Get("zzz", repA); ok {
		t.Fatalf("Get of an unknown counter reports an entry")
	}
	if s.Value("zzz") != 0 {
		t.Fatalf("Value of an unknown counter = %d", s.Value("zzz"))
	}
}

// valuesOf returns the value of every live counter, ignoring expiry.
func valuesOf(s *State) map[string]int64 {
	out := make(map[string]int64)
	for name, c := range s.Values(0) {
		out[name] = c.Value
	}
	return out
}
