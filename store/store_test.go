package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	bolt "go.etcd.io/bbolt"

	"countd/crdt"
)

func sortEntries(es []crdt.Entry) {
	slices.SortFunc(es, func(a, b crdt.Entry) int {
		if c := strings.Compare(a.Counter, b.Counter); c != 0 {
			return c
		}
		return strings.Compare(a.Replica, b.Replica)
	})
}

func TestReopenFindsEverything(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "countd.db")
	db, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	want := []crdt.Entry{
		{Counter: "a", Replica: "0000000000000001", P: 5, N: 2},
		{Counter: "a", Replica: "0000000000000002", P: 1 << 63, N: 0},
		{Counter: "b.c-d_e", Replica: "0000000000000001", P: 0, N: ^uint64(0)},
	}
	if err := db.Save(want[:2], nil); err != nil {
		t.Fatal(err)
	}
	if err := db.Save(want[2:], nil); err != nil {
		t.Fatal(err)
	}
	// A later write of the same entry replaces it.
	want[0].P = 7
	if err := db.Save(want[:1], nil); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	got, err := db.Load()
	if err != nil {
		t.Fatal(err)
	}
	sortEntries(got)
	sortEntries(want)
	if !slices.Equal(got, want) {
		t.Fatalf("after reopen got %v, want %v", got, want)
	}
}

func TestSaveManyEntriesInOneTransaction(t *testing.T) {
	path := filepath.Join(t.TempDir(), "countd.db")
	db, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	var want []crdt.Entry
	for i := 0; i < 100; i++ {
		want = append(want, crdt.Entry{Counter: fmt.Sprintf("c%03d", i), Replica: "0000000000000001", P: uint64(i), N: uint64(1000 + i)})
	}
	if err := db.Save(want, nil); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if db, err = Open(path); err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	got, err := db.Load()
	if err != nil {
		t.Fatal(err)
	}
	sortEntries(got)
	if !slices.Equal(got, want) {
		t.Fatalf("one Save of 100 entries read back as %v", got[:3])
	}
}

func TestCloseTwice(t *testing.T) {
	db, err := Open(filepath.Join(t.TempDir(), "countd.db"))
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestOpenLockedFileFailsFast(t *testing.T) {
	path := filepath.Join(t.TempDir(), "countd.db")
	db, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	_, err = Open(path)
	if err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second Open of a held file: got %v, want an 'in use' error", err)
	}
}

func TestLoadRejectsCorruptRecord(t *testing.T) {
	path := filepath.Join(t.TempDir(), "countd.db")
	db, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketEntries).Put([]byte("no-separator"), make([]byte, 16))
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Load(); err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Fatalf("Load of a corrupt record: got %v, want a corrupt-record error", err)
	}
}

// BenchmarkSave times one durable Save of one entry, on an idle machine and
// with every core kept busy by goroutines that yield all the time (as
// HTTP handlers do): the second shows how
// much of a durable write's latency under load is waiting for a CPU after
// the disk answered, not the disk.
func BenchmarkSave(b *testing.B) {
	for _, busy := range []bool{false, true} {
		name := "idle"
		if busy {
			name = "busy-cores"
		}
		b.Run(name, func(b *testing.B) {
			db, err := Open(filepath.Join(b.TempDir(), "countd.db"))
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			if busy {
				stop := make(chan struct{})
				var wg sync.WaitGroup
				for range runtime.GOMAXPROCS(0) {
					wg.Go(func() {
						for {
							select {
							case <-stop:
								return
							default:
								runtime.Gosched()
							}
						}
					})
				}
				defer wg.Wait()
				defer close(stop)
			}
			e := []crdt.Entry{{Counter: "default", Replica: "0000000000000001"}}
			for i := 0; b.Loop(); i++ {
				e[0].P = uint64(i)
				if err := db.Save(e, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func TestTombstonesSurviveReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "countd.db")
	db, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"} {
		if err := db.SetTombstone(a, true); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.SetTombstone("127.0.0.1:2", false); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if db, err = Open(path); err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	got, err := db.Tombstones()
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	if want := []string{"127.0.0.1:1", "127.0.0.1:3"}; !slices.Equal(got, want) {
		t.Fatalf("tombstones after reopen = %v, want %v", got, want)
	}
}

// open opens the store at path and closes it when the test ends.
func open(t *testing.T, path string) *DB {
	t.Helper()
	db, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func start(t *testing.T, db *DB) Start {
	t.Helper()
	st, err := db.Start()
	if err != nil {
		t.Fatal(err)
	}
	if !crdt.ValidReplica(st.Replica) {
		t.Fatalf("Start returned replica id %q", st.Replica)
	}
	return st
}

func load(t *testing.T, db *DB) []crdt.Entry {
	t.Helper()
	got, err := db.Load()
	if err != nil {
		t.Fatal(err)
	}
	sortEntries(got)
	return got
}

// rawValue returns the stored value of e's key.
func rawValue(t *testing.T, db *DB, e crdt.Entry) []byte {
	t.Helper()
	if err := db.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	var v []byte
	err := db.db.View(func(tx *bolt.Tx) error {
		v = slices.Clone(tx.Bucket(bucketEntries).Get(entryKey(e.Counter, e.Replica)))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// An entry with nothing past P and N keeps the 16-byte value files written
// before the other fields existed hold; any other field makes it 56 bytes.
// Both read back whole after a reopen.
func TestEntryEncodingsRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "countd.db")
	db := open(t, path)
	const r, fold = "00000000000a0003", "00000000000a0000"
	want := []crdt.Entry{
		{Counter: "plain", Replica: r, P: 5, N: 2},
		{Counter: "zero", Replica: r},
		{Counter: "floor", Replica: r, P: 9, N: 4, FP: 9, FN: 3},
		{Counter: "expiry", Replica: r, P: 1, T: 1_700_000_000_000, E: 1_700_000_060_000},
		{Counter: "expiry-cleared", Replica: r, T: 1}, // E 0: never expires
		{Counter: "fold", Replica: fold, P: ^uint64(0), N: 1 << 40, FP: 1 << 63, FN: 7, T: 3, E: 4, G: 0xfffe, FG: 0xfffd},
		{Counter: "fold-floor-only", Replica: fold, G: 2, FG: 1},
	}
	if err := db.Save(want, nil); err != nil {
		t.Fatal(err)
	}
	for _, e := range want {
		wantLen := 56
		if e.FP|e.FN|e.T|e.E|uint64(e.G) == 0 {
			wantLen = 16
		}
		if got := len(rawValue(t, db, e)); got != wantLen {
			t.Errorf("%s: stored a %d-byte value, want %d", e.Counter, got, wantLen)
		}
	}
	db.Close()
	db = open(t, path)
	sortEntries(want)
	if got := load(t, db); !slices.Equal(got, want) {
		t.Fatalf("after reopen got\n%v\nwant\n%v", got, want)
	}
}

// A file written before lineages and the extra fields (entries and
// tombstones buckets only, 16-byte values) loads unchanged, and its first
// Start begins a lineage.
func TestLoadsFileWrittenBeforeLineages(t *testing.T) {
	path := filepath.Join(t.TempDir(), "countd.db")
	old, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []crdt.Entry{
		{Counter: "a", Replica: "1234567890abcdef", P: 5, N: 2},
		{Counter: "b", Replica: "fedcba0987654321", P: 1 << 63, N: 3},
	}
	err = old.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket(bucketEntries)
		if err != nil {
			return err
		}
		if _, err := tx.CreateBucket(bucketTombstones); err != nil {
			return err
		}
		for _, e := range want {
			v := binary.BigEndian.AppendUint64(nil, e.P)
			v = binary.BigEndian.AppendUint64(v, e.N)
			if err := b.Put([]byte(e.Counter+"\x00"+e.Replica), v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	old.Close()

	db := open(t, path)
	if got := load(t, db); !slices.Equal(got, want) {
		t.Fatalf("old file loaded as %v, want %v", got, want)
	}
	if st := start(t, db); !st.NewLineage || st.Reason == "" || crdt.Incarnation(st.Replica) != 1 {
		t.Fatalf("first Start on an old file = %+v, want incarnation 1 of a new lineage, with a reason", st)
	}
}

// Each Start on one file takes the next incarnation of its lineage, and
// records it before it returns (a second Start on the same open file, as a
// process that crashed after Start, takes the one after).
func TestStartTakesNextIncarnation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "countd.db")
	db := open(t, path)
	first := start(t, db)
	if !first.NewLineage || first.Reason == "" || first.High != 0 || crdt.Incarnation(first.Replica) != 1 {
		t.Fatalf("Start on a new file = %+v, want incarnation 1 of a new lineage, with a reason", first)
	}
	lineage := crdt.Lineage(first.Replica)
	db.Close()
	for k := 2; k <= 4; k++ {
		db = open(t, path)
		st := start(t, db)
		if want := crdt.ReplicaID(lineage, k); st.NewLineage || st.Replica != want {
			t.Fatalf("Start on reopen %d = %+v, want %s of the same lineage", k-1, st, want)
		}
		db.Close()
	}
	db = open(t, path)
	start(t, db)
	if st := start(t, db); st.Replica != crdt.ReplicaID(lineage, 6) {
		t.Fatalf("second Start on one open file = %+v, want incarnation 6", st)
	}
}

// A file that is not the one its lineage was recorded in (copied, moved,
// or restored over the original) starts a new lineage; the original goes
// on with its own.
func TestStartOnAnotherFileStartsNewLineage(t *testing.T) {
	dir := t.TempDir()
	orig := filepath.Join(dir, "countd.db")
	db := open(t, orig)
	lineage := crdt.Lineage(start(t, db).Replica)
	fold := crdt.FoldID(crdt.ReplicaID(lineage, 1))
	e := crdt.Entry{Counter: "c", Replica: fold, P: 10, N: 10, G: 1}
	if err := db.Save([]crdt.Entry{e}, nil); err != nil {
		t.Fatal(err)
	}
	if err := db.Save(nil, []crdt.Entry{e}); err != nil { // High 10
		t.Fatal(err)
	}
	db.Close()

	check := func(t *testing.T, path, was string) {
		t.Helper()
		db := open(t, path)
		st := start(t, db)
		if !st.NewLineage || crdt.Lineage(st.Replica) == was || crdt.Incarnation(st.Replica) != 1 || st.High != 0 {
			t.Fatalf("Start on a copy = %+v, want incarnation 1 of a lineage other than %s, High 0", st, was)
		}
		if !strings.Contains(st.Reason, "copy") {
			t.Fatalf("Start on a copy gave reason %q, want one naming a copy", st.Reason)
		}
		db.Close()
	}
	t.Run("copied", func(t *testing.T) {
		cp := filepath.Join(dir, "copy", "countd.db")
		if err := os.MkdirAll(filepath.Dir(cp), 0o755); err != nil {
			t.Fatal(err)
		}
		copyFile(t, orig, cp)
		check(t, cp, lineage)
	})
	t.Run("moved", func(t *testing.T) {
		src := filepath.Join(dir, "to-move.db")
		copyFile(t, orig, src)
		db := open(t, src)
		was := crdt.Lineage(start(t, db).Replica) // recorded at src
		db.Close()
		dst := filepath.Join(dir, "moved.db")
		if err := os.Rename(src, dst); err != nil {
			t.Fatal(err)
		}
		check(t, dst, was)
	})
	t.Run("original", func(t *testing.T) {
		db := open(t, orig)
		if st := start(t, db); st.NewLineage || st.Replica != crdt.ReplicaID(lineage, 2) || st.High != 10 {
			t.Fatalf("Start on the original after copies = %+v, want incarnation 2 of %s, High 10", st, lineage)
		}
		db.Close()
	})
	// Last: it replaces the original. The backup exists while the original
	// does, so it has another inode.
	t.Run("restored over the original", func(t *testing.T) {
		backup := filepath.Join(dir, "backup.db")
		copyFile(t, orig, backup)
		if err := os.Rename(backup, orig); err != nil {
			t.Fatal(err)
		}
		check(t, orig, lineage)
	})
}

// After its last incarnation a lineage is done: the next Start begins a
// new one.
func TestStartAfterLastIncarnationStartsNewLineage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "countd.db")
	db := open(t, path)
	lineage := crdt.Lineage(start(t, db).Replica)
	setIncarnation := func(k uint16) {
		t.Helper()
		err := db.db.Update(func(tx *bolt.Tx) error {
			return tx.Bucket(bucketMeta).Put(keyIncarnation, binary.BigEndian.AppendUint16(nil, k))
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	setIncarnation(crdt.MaxIncarnation - 1)
	if st := start(t, db); st.NewLineage || st.Replica != crdt.ReplicaID(lineage, crdt.MaxIncarnation) {
		t.Fatalf("Start after incarnation %d = %+v, want the last incarnation of %s", crdt.MaxIncarnation-1, st, lineage)
	}
	st := start(t, db)
	if !st.NewLineage || st.Reason == "" || crdt.Lineage(st.Replica) == lineage || crdt.Incarnation(st.Replica) != 1 {
		t.Fatalf("Start after the last incarnation = %+v, want incarnation 1 of a new lineage, with a reason", st)
	}
}

// Deleting a fold entry of the running lineage raises the high-water mark,
// durably; deleting any other entry (this incarnation's own, another
// lineage's fold) does not. Start returns it on the next start.
func TestHighWaterMarkOfDeletedFoldEntries(t *testing.T) {
	path := filepath.Join(t.TempDir(), "countd.db")
	db := open(t, path)
	r := start(t, db).Replica
	fold := crdt.FoldID(r)
	other := crdt.FoldID(crdt.NewReplicaID())
	entries := []crdt.Entry{
		{Counter: "a", Replica: fold, P: 7, N: 12, FP: 7, FN: 12, G: 1},
		{Counter: "b", Replica: fold, P: 30, N: 5, FP: 30, FN: 5, G: 1},
		{Counter: "a", Replica: r, P: 1000, N: 1000},
		{Counter: "a", Replica: other, P: 2000, N: 2000, G: 3},
	}
	if err := db.Save(entries, nil); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		del  []crdt.Entry
		high uint64
	}{
		{entries[:1], 12},
		{entries[2:], 12}, // not fold entries of the running lineage
		{entries[1:2], 30},
		{entries[:1], 30}, // absent now: nothing to delete, and 12 < 30
	}
	for i, s := range steps {
		if err := db.Save(nil, s.del); err != nil {
			t.Fatal(err)
		}
		db.Close()
		db = open(t, path)
		st := start(t, db)
		if st.NewLineage || st.High != s.high {
			t.Fatalf("step %d: Start after deleting %v = %+v, want High %d of the same lineage", i, s.del, st, s.high)
		}
	}
	if got := load(t, db); len(got) != 0 {
		t.Fatalf("after deleting every entry Load = %v", got)
	}
}

// One Save deletes first and puts after: a key in both keeps the put.
func TestSavePutWinsOverDeleteOfSameKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "countd.db")
	db := open(t, path)
	old := crdt.Entry{Counter: "a", Replica: "00000000000a0001", P: 3}
	keep := crdt.Entry{Counter: "b", Replica: "00000000000a0001", N: 4}
	if err := db.Save([]crdt.Entry{old, keep}, nil); err != nil {
		t.Fatal(err)
	}
	put := crdt.Entry{Counter: "a", Replica: "00000000000a0001", P: 3, FP: 3, T: 9}
	if err := db.Save([]crdt.Entry{put}, []crdt.Entry{old}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	db = open(t, path)
	if got, want := load(t, db), []crdt.Entry{put, keep}; !slices.Equal(got, want) {
		t.Fatalf("after Save(put, del) of one key got %v, want %v", got, want)
	}
}

// An empty Save touches nothing: not even a closed file.
func TestEmptySaveDoesNothing(t *testing.T) {
	db := open(t, filepath.Join(t.TempDir(), "countd.db"))
	db.Close()
	if err := db.Save(nil, nil); err != nil {
		t.Fatalf("empty Save on a closed store: %v", err)
	}
	if err := db.Save(nil, []crdt.Entry{{Counter: "a", Replica: "00000000000a0001"}}); err == nil {
		t.Fatal("a Save that deletes, on a closed store, reported no error")
	}
}

func TestDecodeEntryRejects(t *testing.T) {
	long := func(fp, fn, tt, e uint64, g uint32, p, n uint64) []byte {
		return appendValue(nil, crdt.Entry{P: p, N: n, FP: fp, FN: fn, T: tt, E: e, G: g})
	}
	zeroLong := make([]byte, 56)
	for _, c := range []struct {
		name string
		k, v []byte
	}{
		{"no separator", []byte("a00000000000a0001"), make([]byte, 16)},
		{"empty name", []byte("\x0000000000000a0001"), make([]byte, 16)},
		{"bad name", []byte("a b\x0000000000000a0001"), make([]byte, 16)},
		{"short replica", []byte("a\x00000000000a001"), make([]byte, 16)},
		{"upper-case replica", []byte("a\x0000000000000A0001"), make([]byte, 16)},
		{"15-byte value", []byte("a\x0000000000000a0001"), make([]byte, 15)},
		{"17-byte value", []byte("a\x0000000000000a0001"), make([]byte, 17)},
		{"51-byte value", []byte("a\x0000000000000a0001"), make([]byte, 51)},
		{"53-byte value", []byte("a\x0000000000000a0001"), make([]byte, 53)},
		{"long value, nothing past P and N", []byte("a\x0000000000000a0001"), zeroLong},
		{"floor above P", []byte("a\x0000000000000a0001"), long(2, 0, 0, 0, 0, 1, 0)},
		{"floor above N", []byte("a\x0000000000000a0001"), long(0, 2, 0, 0, 0, 0, 1)},
		{"fold count off a fold id", []byte("a\x0000000000000a0001"), long(0, 0, 0, 0, 1, 0, 0)},
		{"fold count past the last incarnation", []byte("a\x0000000000000a0000"), long(0, 0, 0, 0, 0x10000, 0, 0)},
	} {
		t.Run(c.name, func(t *testing.T) {
			if e, err := decodeEntry(c.k, c.v); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("decodeEntry = %+v, %v; want ErrCorrupt", e, err)
			}
		})
	}
	// The control: the same key with a valid long value decodes.
	if _, err := decodeEntry([]byte("a\x0000000000000a0000"), long(1, 0, 0, 0, 1, 1, 0)); err != nil {
		t.Fatalf("valid fold entry: %v", err)
	}
}

func TestMembersReplacedAndKeptAcrossReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "countd.db")
	db := open(t, path)
	if got, err := db.Members(); err != nil || len(got) != 0 {
		t.Fatalf("Members of a new file = %v, %v", got, err)
	}
	if err := db.SetMembers([]string{"a:1", "b:2", "c:3"}); err != nil {
		t.Fatal(err)
	}
	if err := db.SetMembers([]string{"c:3", "d:4"}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	db = open(t, path)
	if got, err := db.Members(); err != nil || !slices.Equal(got, []string{"c:3", "d:4"}) {
		t.Fatalf("Members after reopen = %v, %v; want the last set only", got, err)
	}
}
