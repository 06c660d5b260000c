package store

import (
	"fmt"
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
	if err := db.Save(want[:2]); err != nil {
		t.Fatal(err)
	}
	if err := db.Save(want[2:]); err != nil {
		t.Fatal(err)
	}
	// A later write of the same entry replaces it.
	want[0].P = 7
	if err := db.Save(want[:1]); err != nil {
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
	if err := db.Save(want); err != nil {
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
				if err := db.Save(e); err != nil {
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
