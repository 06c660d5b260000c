package store

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"

	"countd/crdt"
)

// writeSnapshot takes a snapshot of db and writes it to path.
func writeSnapshot(t *testing.T, db *DB, path string) {
	t.Helper()
	r, size, err := db.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(b)) != size {
		t.Fatalf("snapshot read %d bytes, said %d", len(b), size)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

// A node started on a snapshot, wherever it is put, starts a new lineage
// and holds every entry; so does one put back over the original in place
// (same inode, same path), which the identity check alone misses (the
// control case: a plain copy put back in place takes an id again). The
// mark is gone after that first start: the next takes incarnation 2.
func TestSnapshotStartsNewLineage(t *testing.T) {
	dir := t.TempDir()
	orig := filepath.Join(dir, "countd.db")
	db := open(t, orig)
	st := start(t, db)
	lineage := crdt.Lineage(st.Replica)
	want := []crdt.Entry{
		{Counter: "a", Replica: st.Replica, P: 5, N: 2},
		{Counter: "b", Replica: "00000000000a0001", P: 7, FP: 3, T: 1, E: 2},
	}
	if err := db.Save(want, nil); err != nil {
		t.Fatal(err)
	}
	snap := filepath.Join(dir, "backup.db")
	writeSnapshot(t, db, snap)
	start(t, db) // the original goes on: incarnation 2 of its lineage
	db.Close()

	fresh := func(t *testing.T, path string) {
		t.Helper()
		db := open(t, path)
		st := start(t, db)
		if !st.NewLineage || crdt.Lineage(st.Replica) == lineage || crdt.Incarnation(st.Replica) != 1 || st.High != 0 {
			t.Fatalf("Start on a restored snapshot = %+v, want incarnation 1 of a lineage other than %s, High 0", st, lineage)
		}
		if !strings.Contains(st.Reason, "backup") || !strings.Contains(st.Reason, lineage) {
			t.Fatalf("Start on a restored snapshot gave reason %q, want one naming a backup of %s", st.Reason, lineage)
		}
		got := load(t, db)
		sortEntries(got)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("restored snapshot holds %+v, want %+v", got, want)
		}
		again := start(t, db)
		if again.NewLineage || again.Replica != crdt.ReplicaID(crdt.Lineage(st.Replica), 2) {
			t.Fatalf("second Start on a restored snapshot = %+v, want incarnation 2 of %s", again, crdt.Lineage(st.Replica))
		}
		db.Close()
	}
	t.Run("elsewhere", func(t *testing.T) {
		other := filepath.Join(dir, "other", "countd.db")
		if err := os.MkdirAll(filepath.Dir(other), 0o755); err != nil {
			t.Fatal(err)
		}
		copyFile(t, snap, other)
		fresh(t, other)
	})
	t.Run("plain copy in place reuses an id", func(t *testing.T) {
		target := filepath.Join(dir, "target.db")
		db := open(t, target)
		start(t, db) // records target's identity
		db.Close()
		plain := filepath.Join(dir, "plain.db")
		copyFile(t, target, plain) // a backup by cp
		db = open(t, target)
		used := start(t, db).Replica // the original runs again
		db.Close()
		ino := inode(t, target)
		copyFile(t, plain, target) // put back in place: same inode, same path
		if inode(t, target) != ino {
			t.Fatal("copyFile over a file changed its inode; the test no longer restores in place")
		}
		db = open(t, target)
		defer db.Close()
		if st := start(t, db); st.Replica != used {
			t.Fatalf("Start on a plain copy put back in place = %+v, want %s again (the hole the snapshot mark closes)", st, used)
		}
	})
	t.Run("in place over the original", func(t *testing.T) {
		ino := inode(t, orig)
		copyFile(t, snap, orig)
		if inode(t, orig) != ino {
			t.Fatal("copyFile over a file changed its inode; the test no longer restores in place")
		}
		fresh(t, orig)
	})
}

// A snapshot taken while writes go on holds whole transactions: each Save
// below writes two counters with the same totals, and the copy must hold
// them equal. Nothing is left in the directory but the store.
func TestSnapshotIsConsistentUnderWrites(t *testing.T) {
	dir := t.TempDir()
	db := open(t, filepath.Join(dir, "countd.db"))
	rep := start(t, db).Replica
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var saveErr error
	wg.Go(func() {
		for i := uint64(1); ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			batch := make([]crdt.Entry, 0, 40)
			for c := range 40 {
				batch = append(batch, crdt.Entry{Counter: fmt.Sprintf("c%02d", c), Replica: rep, P: i})
			}
			if err := db.Save(batch, nil); err != nil {
				saveErr = err
				return
			}
		}
	})
	var seen []uint64
	for i := range 5 {
		path := filepath.Join(t.TempDir(), fmt.Sprintf("snap%d.db", i))
		writeSnapshot(t, db, path)
		snap := open(t, path)
		es := load(t, snap)
		snap.Close()
		p := uint64(0)
		if len(es) > 0 {
			p = es[0].P
		}
		if len(es) != 0 && len(es) != 40 {
			t.Fatalf("snapshot %d holds %d entries, want 0 or 40", i, len(es))
		}
		for _, e := range es {
			if e.P != p {
				t.Fatalf("snapshot %d holds %s at %d and %s at %d: part of a transaction", i, es[0].Counter, p, e.Counter, e.P)
			}
		}
		seen = append(seen, p)
	}
	close(stop)
	wg.Wait()
	if saveErr != nil {
		t.Fatal(saveErr)
	}
	t.Logf("snapshots taken at transactions %v", seen)
	names, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != 2 || names[0].Name() != "countd.db" || names[1].Name() != "countd.wal" {
		var got []string
		for _, n := range names {
			got = append(got, n.Name())
		}
		t.Fatalf("the data dir holds %v after snapshots, want only countd.db and countd.wal", got)
	}
}

// A snapshot of a file that records no lineage (no Start yet) needs no
// mark: Start begins a new lineage on it anyway.
func TestSnapshotBeforeStart(t *testing.T) {
	dir := t.TempDir()
	db := open(t, filepath.Join(dir, "countd.db"))
	path := filepath.Join(dir, "snap.db")
	writeSnapshot(t, db, path)
	snap := open(t, path)
	if st := start(t, snap); !st.NewLineage || crdt.Incarnation(st.Replica) != 1 {
		t.Fatalf("Start on a snapshot of a fresh file = %+v, want incarnation 1 of a new lineage", st)
	}
}
