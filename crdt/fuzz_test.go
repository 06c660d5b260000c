package crdt

import (
	"maps"
	"math"
	"reflect"
	"slices"
	"testing"
)

// fuzzAmount maps one byte to an amount: small values as they are, the top
// of the byte range to amounts at the int64/uint64 boundaries.
func fuzzAmount(b byte) uint64 {
	big := []uint64{
		0, 1 << 32, 1 << 62, math.MaxInt64 - 1, math.MaxInt64, 1 << 63, 1<<63 + 1,
		math.MaxUint64 - 1, math.MaxUint64,
	}
	if i := int(b) - (256 - len(big)); i >= 0 {
		return big[i]
	}
	return uint64(b)
}

// fuzzState builds a state writing as replica from ops, four bytes per op:
// kind, selector (counter and replica), and two amounts. It checks every
// local change against the reference model. Only the first maxFuzzOps ops
// count: with four counters, longer inputs add time, not coverage.
func fuzzState(t *testing.T, replica string, ops []byte) *State {
	t.Helper()
	const maxFuzzOps = 64
	if len(ops) > 4*maxFuzzOps {
		ops = ops[:4*maxFuzzOps]
	}
	s, m := New(replica), newModel(replica)
	for ; len(ops) >= 4; ops = ops[4:] {
		kind, sel := ops[0], ops[1]
		name := names[int(sel)%len(names)]
		switch kind % 3 {
		case 0, 1:
			by, neg := fuzzAmount(ops[2]), kind%3 == 1
			before := viewOf(s)
			got, err := s.change(name, by, neg)
			want, werr := m.change(name, by, neg)
			if errKind(err) != werr || got != want {
				t.Fatalf("change(%q, %d, neg=%v) = %d, %v; want %d, %v", name, by, neg, got, err, want, werr)
			}
			if err != nil {
				assertUnchanged(t, before, s)
			}
		case 2:
			e := Entry{Counter: name, Replica: replicas[int(sel>>4)%len(replicas)], P: fuzzAmount(ops[2]), N: fuzzAmount(ops[3])}
			got := mustMerge(t, s, []Entry{e})
			if want := m.merge([]Entry{e}); !slices.Equal(got, want) {
				t.Fatalf("Merge(%v) changed %v, want %v", e, got, want)
			}
		}
	}
	checkModel(t, s, m)
	return s
}

func FuzzMerge(f *testing.F) {
	f.Add([]byte{}, []byte{})
	f.Add([]byte{0, 0, 5, 0}, []byte{1, 0, 3, 0})
	f.Add([]byte{0, 0, 5, 0, 1, 1, 7, 0, 2, 0x10, 9, 2}, []byte{2, 0x00, 4, 4, 0, 2, 1, 0})
	// Local values at the edges of int64.
	f.Add([]byte{0, 0, 0xfb, 0, 0, 0, 1, 0}, []byte{1, 0, 0xfc, 0, 1, 0, 1, 0})
	// Merged sums beyond int64 and beyond 2^64.
	f.Add([]byte{2, 0x00, 0xff, 0xff, 2, 0x10, 0xff, 0, 2, 0x20, 0xff, 0xfe},
		[]byte{2, 0x30, 0xff, 0xff, 2, 0x10, 0xfe, 0xff, 0, 0, 0xfa, 0})
	// Both sides write the same key with different totals.
	f.Add([]byte{2, 0x21, 10, 0, 2, 0x21, 3, 9}, []byte{2, 0x21, 4, 20, 0, 1, 9, 0})
	f.Fuzz(func(t *testing.T, opsA, opsB []byte) {
		a := fuzzState(t, repA, opsA)
		b := fuzzState(t, repB, opsB)
		full := func(s *State) []Entry { return s.DeltaSince(0, s.Version()) }

		ab := clone(t, a, repC)
		mustMerge(t, ab, full(b))
		ba := clone(t, b, repC)
		mustMerge(t, ba, full(a))
		if x, y := snapshot(t, ab), snapshot(t, ba); !slices.Equal(x, y) {
			t.Fatalf("A⊔B and B⊔A differ:\n%v\n%v", x, y)
		}
		if x, y := valuesOf(ab), valuesOf(ba); !reflect.DeepEqual(x, y) {
			t.Fatalf("A⊔B and B⊔A values differ:\n%v\n%v", x, y)
		}

		// The merged state against the reference built from both sides.
		m := newModel(repC)
		m.merge(full(a))
		m.merge(full(b))
		checkModel(t, ab, m)

		// Idempotent: merging either side again changes nothing.
		before := viewOf(ab)
		for _, s := range []*State{a, b, ab} {
			if changed := mustMerge(t, ab, full(s)); len(changed) != 0 {
				t.Fatalf("merging %s again changed %v", s.Replica(), changed)
			}
		}
		assertUnchanged(t, before, ab)

		// Shipping B's state to A as a delta gives A⊔B.
		mustMerge(t, a, b.DeltaSince(0, b.Version()))
		if x, y := snapshot(t, a), snapshot(t, ab); !slices.Equal(x, y) {
			t.Fatalf("A after delta from B differs from A⊔B:\n%v\n%v", x, y)
		}
	})
}

// fuzzEntries decodes entries from data, eight bytes each, over a small
// space where folds, shadows, floors and key entries collide: any field a
// peer could send, valid or not.
func fuzzEntries(data []byte) []Entry {
	const lineage = "00000000f00d"
	ids := []string{lineage + "0000", lineage + "0001", lineage + "0002", lineage + "0003", repB,
		KeyID("k1"), KeyID("k2")}
	owners := []string{"", lineage + "0001", repB, lineage + "0000"}
	var out []Entry
	for ; len(data) >= 8; data = data[8:] {
		e := Entry{
			Counter: names[int(data[0])%2],
			Replica: ids[int(data[1])%len(ids)],
			P:       uint64(data[2] % 16), N: uint64(data[3] % 16),
			FP: uint64(data[4] % 16), FN: uint64(data[4] >> 4),
			T: uint64(data[5] % 4), E: uint64(data[5] >> 2 % 4),
			G: uint32(data[6] % 4), FG: uint32(data[6] >> 2 % 4),
		}
		// The key entry fields: owner, acceptance time, what retirement
		// moved out, the retired flag (on a replica entry: invalid).
		k := data[7]
		e.O, e.A = owners[k%4], uint64(k>>2%4)
		e.RP, e.RN, e.X = uint64(k>>4%4), uint64(k>>6%2), k>>7 == 1
		if isKeyID(e.Replica) {
			e.T, e.E, e.G, e.FG = 0, 0, 0, 0 // mostly valid: the join is what is fuzzed
		}
		out = append(out, e)
	}
	return out
}

// FuzzMergeLifecycle merges arbitrary entries, floors, expiry registers and
// fold counts included, in two orders: a merge never panics, refuses
// invalid input whole, is idempotent, and what a reader sees does not
// depend on the order.
func FuzzMergeLifecycle(f *testing.F) {
	f.Add([]byte{0, 1, 5, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 1})                      // a raw, then a fold covering it
	f.Add([]byte{0, 0, 5, 0, 0, 0, 1, 0, 1, 3, 0, 3, 0, 0, 0, 2, 4, 0, 2, 0, 1}) // a fold, a floored raw, another
	f.Add([]byte{1, 4, 9, 2, 0x21, 7, 0, 1, 0, 9, 2, 0x21, 3, 0})
	// A key entry accepted on two nodes, retired by one, and its owner's entry.
	f.Add([]byte{0, 5, 5, 0, 0, 0, 0, 0x05, 0, 5, 5, 0, 0, 0, 0, 0x06, 0, 5, 5, 0, 0, 0, 0, 0xd5, 0, 1, 5, 0, 0, 0, 0, 0})
	// A retired key entry whose floor a delete raised before it saw the retirement.
	f.Add([]byte{0, 6, 5, 0, 5, 0, 0, 0xd5, 0, 1, 5, 0, 0, 0, 0, 0, 0, 6, 5, 0, 0, 0, 0, 0x05})
	f.Fuzz(func(t *testing.T, data []byte) {
		es := fuzzEntries(data)
		a, b := New(repA), New(repC)
		_, errA := a.Merge(es)
		rev := slices.Clone(es)
		slices.Reverse(rev)
		_, errB := b.Merge(rev)
		if (errA == nil) != (errB == nil) {
			t.Fatalf("merge refused in one order only: %v / %v", errA, errB)
		}
		if errA != nil {
			if a.Version() != 0 || b.Version() != 0 {
				t.Fatal("a refused merge changed the state")
			}
			return
		}
		if x, y := a.Values(0), b.Values(0); !maps.Equal(x, y) {
			t.Fatalf("order matters:\n %v\n %v", x, y)
		}
		if changed := mustMerge(t, a, es); len(changed) != 0 {
			t.Fatalf("merging the same entries again changed %v", changed)
		}
		for _, name := range names[:2] {
			a.Delete(name, 10)
		}
		if got := a.Values(0); len(got) != 0 {
			t.Fatalf("after deleting everything: %v", got)
		}
	})
}
