package store

import (
	"bytes"
	"errors"
	"testing"

	"countd/crdt"
)

// FuzzDecodeEntry checks that decodeEntry never panics, refuses what it
// does not accept with ErrCorrupt, and accepts only what Save writes: an
// accepted record re-encodes to the same key and value.
func FuzzDecodeEntry(f *testing.F) {
	for _, e := range []crdt.Entry{
		{Counter: "a", Replica: "00000000000a0001", P: 5, N: 2},
		{Counter: "b.c-d_e", Replica: "00000000000a0000", P: 9, N: 9, FP: 9, FN: 1, T: 3, E: 4, G: 2},
		{Counter: "x", Replica: "00000000000a0002", T: 1},
		{Counter: "rate:user:42", Replica: "00000000000a0001", P: 7},
		{Counter: "k", Replica: crdt.KeyID("retry-1"), P: 3, FP: 1, O: "00000000000a0001", A: 7},
		{Counter: "k", Replica: crdt.KeyID("retry-2"), N: 4, O: "00000000000a0002", A: 9, RN: 4, X: true},
	} {
		f.Add(entryKey(e.Counter, e.Replica), appendValue(nil, e))
	}
	f.Add([]byte("a\x0000000000000a0001"), make([]byte, 56))
	f.Add([]byte("no-separator"), make([]byte, 16))
	f.Add([]byte("a;b\x0000000000000a0001"), make([]byte, 16))
	f.Fuzz(func(t *testing.T, k, v []byte) {
		e, err := decodeEntry(k, v)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("decodeEntry(%q, %x): error %v is not ErrCorrupt", k, v, err)
			}
			return
		}
		if got := entryKey(e.Counter, e.Replica); !bytes.Equal(got, k) {
			t.Fatalf("key %q decoded to %+v, which encodes to key %q", k, e, got)
		}
		if got := appendValue(nil, e); !bytes.Equal(got, v) {
			t.Fatalf("value %x decoded to %+v, which encodes to %x", v, e, got)
		}
	})
}
