package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	bolt "go.etcd.io/bbolt"

	"countd/crdt"
)

// crash drops db as a kill -9 would: no checkpoint, the files closed as
// they are (every Save that returned is on disk already).
func crash(t *testing.T, db *DB) {
	t.Helper()
	if err := db.Abandon(); err != nil {
		t.Fatal(err)
	}
}

func entry(counter string, p uint64) crdt.Entry {
	return crdt.Entry{Counter: counter, Replica: "00000000000a0001", P: p}
}

func save(t *testing.T, db *DB, put, del []crdt.Entry) {
	t.Helper()
	if err := db.Save(put, del); err != nil {
		t.Fatal(err)
	}
}

func sameEntries(t *testing.T, got, want []crdt.Entry) {
	t.Helper()
	got, want = slices.Clone(got), slices.Clone(want)
	sortEntries(got)
	sortEntries(want)
	if !slices.Equal(got, want) {
		t.Fatalf("entries = %v, want %v", got, want)
	}
}

// recordEnds returns the offsets at which the log's records end.
func recordEnds(t *testing.T, path string, epoch uint64) []int64 {
	t.Helper()
	data, err := os.ReadFile(LogPath(path))
	if err != nil {
		t.Fatal(err)
	}
	var ends []int64
	for off := int64(logHeaderLen); ; {
		_, n, err := decodeRecord(data[off:], epoch)
		if err != nil {
			return ends
		}
		off += int64(n)
		ends = append(ends, off)
	}
}

// Every Save that returned is in the file after a crash: Open replays the
// log, and reports it.
func TestLogReplayedAfterCrash(t *testing.T) {
	path := filepath.Join(t.TempDir(), "countd.db")
	db := open(t, path)
	want := []crdt.Entry{entry("a", 1), entry("b", 2)}
	save(t, db, want[:1], nil)
	save(t, db, want[1:], nil)
	want[0].P = 3
	save(t, db, want[:1], nil)
	save(t, db, nil, []crdt.Entry{entry("c", 0)}) // absent: no error
	crash(t, db)

	db = open(t, path)
	if r := db.Recovery(); r.Replayed != 4 || r.Bytes == 0 || r.SetAside != "" {
		t.Fatalf("Recovery = %+v, want 4 records replayed", r)
	}
	sameEntries(t, load(t, db), want)
	crash(t, db)
	db = open(t, path) // the replay was checkpointed: nothing to replay
	if r := db.Recovery(); r.Replayed != 0 {
		t.Fatalf("second Recovery = %+v, want nothing replayed", r)
	}
	sameEntries(t, load(t, db), want)
}

// A record torn by the crash, or damaged, ends the log: the records before
// it are replayed, it and those after it are not, and the log goes on.
func TestLogEndsAtTornOrBadRecord(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(data []byte, ends []int64)
		keep   int // records replayed
	}{
		{"torn tail", func(data []byte, ends []int64) { clear(data[ends[1]+5 : ends[2]]) }, 2},
		{"torn length", func(data []byte, ends []int64) { clear(data[ends[1]+2 : ends[1]+4]) }, 2},
		{"bad CRC in the middle", func(data []byte, ends []int64) { data[ends[0]+recordHeaderLen+3] ^= 1 }, 1},
		{"bad epoch", func(data []byte, ends []int64) { data[ends[0]+8+7]++ }, 1},
		{"length past the file", func(data []byte, ends []int64) {
			binary.BigEndian.PutUint32(data[ends[1]:], uint32(len(data)))
		}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "countd.db")
			db := open(t, path)
			es := []crdt.Entry{entry("a", 1), entry("b", 2), entry("c", 3)}
			for _, e := range es {
				save(t, db, []crdt.Entry{e}, nil)
			}
			epoch := db.log.epoch
			crash(t, db)
			ends := recordEnds(t, path, epoch)
			if len(ends) != 3 {
				t.Fatalf("%d records in the log, want 3", len(ends))
			}
			data, err := os.ReadFile(LogPath(path))
			if err != nil {
				t.Fatal(err)
			}
			tc.damage(data, ends)
			if err := os.WriteFile(LogPath(path), data, 0o600); err != nil {
				t.Fatal(err)
			}

			db = open(t, path)
			if r := db.Recovery(); r.Replayed != tc.keep {
				t.Fatalf("Recovery = %+v, want %d records replayed", r, tc.keep)
			}
			sameEntries(t, load(t, db), es[:tc.keep])
			save(t, db, es[2:], nil) // the log goes on over the damage
			crash(t, db)
			db = open(t, path)
			sameEntries(t, load(t, db), append(es[:tc.keep:tc.keep], es[2]))
		})
	}
}

// A checkpoint stopped at any step (a crash) loses nothing and replays
// nothing twice that matters: records before the commit are replayed,
// after it they are not.
func TestCheckpointCrashAtEachStep(t *testing.T) {
	for _, step := range []string{"read", "committed"} {
		t.Run(step, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "countd.db")
			db := open(t, path)
			want := []crdt.Entry{entry("a", 1), entry("b", 2)}
			save(t, db, want, nil)
			save(t, db, nil, want[1:])
			want = want[:1]
			stop := errors.New("crash")
			checkpointHook = func(s string) error {
				if s == step {
					return stop
				}
				return nil
			}
			t.Cleanup(func() { checkpointHook = func(string) error { return nil } })
			if err := db.Checkpoint(); !errors.Is(err, stop) {
				t.Fatalf("Checkpoint = %v, want the crash", err)
			}
			checkpointHook = func(string) error { return nil }
			crash(t, db)

			db = open(t, path)
			replayed := map[string]int{"read": 2, "committed": 0}[step]
			if r := db.Recovery(); r.Replayed != replayed {
				t.Fatalf("Recovery = %+v, want %d records replayed", r, replayed)
			}
			sameEntries(t, load(t, db), want)
		})
	}
}

// Replaying records the bbolt file already holds changes nothing: here the
// log is put back, and its epoch in meta, after a checkpoint applied it.
func TestReplayIsIdempotent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "countd.db")
	db := open(t, path)
	lineage := crdt.Lineage(start(t, db).Replica)
	fold := crdt.FoldID(crdt.ReplicaID(lineage, 1))
	f := crdt.Entry{Counter: "f", Replica: fold, P: 10, N: 4, G: 1}
	save(t, db, []crdt.Entry{entry("a", 1), f}, nil)
	save(t, db, []crdt.Entry{entry("a", 2)}, []crdt.Entry{f})
	save(t, db, []crdt.Entry{entry("b", 1)}, []crdt.Entry{entry("a", 0)})
	epoch := db.log.epoch
	crash(t, db)
	logBefore, err := os.ReadFile(LogPath(path))
	if err != nil {
		t.Fatal(err)
	}
	db = open(t, path)
	want := load(t, db)
	sameEntries(t, want, []crdt.Entry{entry("b", 1)})
	db.Close()

	if err := os.WriteFile(LogPath(path), logBefore, 0o600); err != nil {
		t.Fatal(err)
	}
	bdb, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = bdb.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keyLogEpoch, binary.BigEndian.AppendUint64(nil, epoch))
	})
	bdb.Close()
	if err != nil {
		t.Fatal(err)
	}
	db = open(t, path)
	if r := db.Recovery(); r.Replayed != 3 {
		t.Fatalf("Recovery = %+v, want the 3 records replayed again", r)
	}
	sameEntries(t, load(t, db), want)
	if st := start(t, db); st.High != 10 {
		t.Fatalf("High = %d after the fold entry's delete was replayed, want 10", st.High)
	}
}

// A log is never replayed into a file other than its own: one found beside
// another file (or with a damaged header) is set aside and reported.
func TestLogOfAnotherFileIsSetAside(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a", "countd.db"), filepath.Join(dir, "b", "countd.db")
	dbA, dbB := open(t, a), open(t, b)
	save(t, dbA, []crdt.Entry{entry("from-a", 1)}, nil)
	save(t, dbB, []crdt.Entry{entry("from-b", 1)}, nil)
	crash(t, dbA)
	dbB.Close()
	copyFile(t, LogPath(a), LogPath(b))

	dbB = open(t, b)
	r := dbB.Recovery()
	if r.Replayed != 0 || r.SetAside == "" || !strings.Contains(r.Reason, "another data file") {
		t.Fatalf("Recovery = %+v, want the log set aside as another file's", r)
	}
	if _, err := os.Stat(r.SetAside); err != nil {
		t.Fatalf("the set-aside log: %v", err)
	}
	sameEntries(t, load(t, dbB), []crdt.Entry{entry("from-b", 1)})
	save(t, dbB, []crdt.Entry{entry("from-b", 2)}, nil) // a new log of its own
	crash(t, dbB)
	dbB = open(t, b)
	sameEntries(t, load(t, dbB), []crdt.Entry{entry("from-b", 2)})

	// A damaged header: set aside too.
	data, err := os.ReadFile(LogPath(b))
	if err != nil {
		t.Fatal(err)
	}
	crash(t, dbB)
	data[len(logMagic)] ^= 1
	if err := os.WriteFile(LogPath(b), data, 0o600); err != nil {
		t.Fatal(err)
	}
	dbB = open(t, b)
	if r := dbB.Recovery(); r.SetAside == "" || !strings.Contains(r.Reason, "damaged") {
		t.Fatalf("Recovery = %+v, want a damaged log set aside", r)
	}
}

// A backup taken while the log holds changes has them, and the original's
// log found beside a restored backup is not replayed into it.
func TestSnapshotHasTheLogAndRestoreIgnoresIt(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "countd.db")
	db := open(t, path)
	start(t, db)
	save(t, db, []crdt.Entry{entry("a", 1)}, nil)
	backup := filepath.Join(dir, "backup")
	writeSnapshot(t, db, backup)
	save(t, db, []crdt.Entry{entry("a", 2)}, nil) // after the backup, in the log
	crash(t, db)

	copyFile(t, backup, path) // restored in place, the old log beside it
	db = open(t, path)
	if r := db.Recovery(); r.SetAside == "" || r.Replayed != 0 {
		t.Fatalf("Recovery = %+v, want the original's log set aside", r)
	}
	sameEntries(t, load(t, db), []crdt.Entry{entry("a", 1)})
}

// Past its limit the log is checkpointed by Save; the file stays near the
// limit, and nothing is lost across checkpoints and crashes.
func TestLogCheckpointsAtItsLimit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "countd.db")
	db, err := openLimit(path, 4<<10)
	if err != nil {
		t.Fatal(err)
	}
	epoch := db.log.epoch
	var want []crdt.Entry
	for i := range 500 {
		e := entry(fmt.Sprintf("c%d", i%40), uint64(i))
		save(t, db, []crdt.Entry{e}, nil)
		want = append(want, e)
	}
	if db.log.epoch < epoch+5 || db.log.off-logHeaderLen >= 4<<10 {
		t.Fatalf("after 500 saves the log is at epoch %d (from %d), %d bytes: want checkpoints", db.log.epoch, epoch, db.log.off)
	}
	// A batch bigger than the limit and a chunk: the file grows for it, and
	// shrinks back once it is checkpointed.
	var big []crdt.Entry
	for i := range 20_000 {
		big = append(big, entry(fmt.Sprintf("%0128d", i), 1))
	}
	save(t, db, big, nil)
	if fi, err := db.log.f.Stat(); err != nil || fi.Size() > logHeaderLen+logChunk {
		t.Fatalf("log file after a big batch: %v, %v; want it back to one chunk", fi.Size(), err)
	}
	crash(t, db)
	db = open(t, path)
	latest := map[string]crdt.Entry{}
	for _, e := range append(want, big...) {
		latest[e.Counter] = e
	}
	var wantAll []crdt.Entry
	for _, e := range latest {
		wantAll = append(wantAll, e)
	}
	sameEntries(t, load(t, db), wantAll)
}

// Any sequence of Saves, checkpoints, snapshots and crashes leaves the same
// entries as the same Saves written straight to bbolt, one transaction
// each; checkpoints and snapshots run while Saves do.
func TestLogEqualsDirectWrites(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "countd.db")
	db, err := openLimit(path, 2<<10)
	if err != nil {
		t.Fatal(err)
	}
	ref := open(t, filepath.Join(dir, "ref", "countd.db"))
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 6 {
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() { // checkpoints and snapshots meanwhile
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if i%4 == 0 {
					f, _, err := db.Snapshot()
					if err != nil {
						t.Error(err)
						return
					}
					f.Close()
				} else if err := db.Checkpoint(); err != nil {
					t.Error(err)
					return
				}
			}
		})
		for range 200 {
			var put, del []crdt.Entry
			for range rng.IntN(4) {
				put = append(put, entry(fmt.Sprintf("c%d", rng.IntN(30)), rng.Uint64N(1000)))
			}
			for range rng.IntN(3) {
				del = append(del, entry(fmt.Sprintf("c%d", rng.IntN(30)), 0))
			}
			save(t, db, put, del)
			if err := ref.saveBolt(put, del); err != nil {
				t.Fatal(err)
			}
		}
		close(stop)
		wg.Wait()
		if round%2 == 0 {
			crash(t, db)
		} else if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		if db, err = openLimit(path, 2<<10); err != nil {
			t.Fatal(err)
		}
		sameEntries(t, load(t, db), load(t, ref))
	}
	db.Close()
}

// FuzzDecodeRecord checks that the log's record decoder never panics and
// accepts only what encodeRecord writes: an accepted payload re-encodes to
// a record that decodes to the same entries.
func FuzzDecodeRecord(f *testing.F) {
	put := []crdt.Entry{
		{Counter: "a", Replica: "00000000000a0001", P: 5, N: 2},
		{Counter: "b.c-d_e", Replica: "00000000000a0000", P: 9, N: 9, FP: 9, FN: 1, T: 3, E: 4, G: 2},
		{Counter: "k", Replica: crdt.KeyID("retry-1"), P: 3, FP: 1, O: "00000000000a0001", A: 7},
		{Counter: "rate:user:42", Replica: "00000000000a0001", P: 4},
	}
	del := []crdt.Entry{{Counter: "x", Replica: "00000000000a0002", P: 3, N: 1}}
	f.Add(encodeRecord(nil, 7, put, del)[recordHeaderLen:])
	f.Add(encodeRecord(nil, 7, nil, del)[recordHeaderLen:])
	f.Add(encodeRecord(nil, 7, put, nil)[recordHeaderLen:])
	f.Add([]byte{0, 0})
	f.Add([]byte{1, 3, 'a', 0, 'b'})
	f.Fuzz(func(t *testing.T, payload []byte) {
		// The payload framed as a record of epoch 7, whatever it holds.
		rec := make([]byte, recordHeaderLen, recordHeaderLen+len(payload))
		rec = append(rec, payload...)
		binary.BigEndian.PutUint32(rec, uint32(len(payload)))
		binary.BigEndian.PutUint64(rec[8:], 7)
		binary.BigEndian.PutUint32(rec[4:], recordCRC(rec))
		r, n, err := decodeRecord(rec, 7)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, errLogEnd) {
				t.Fatalf("decodeRecord(%x): error %v is neither ErrCorrupt nor the end", payload, err)
			}
			return
		}
		if n != len(rec) {
			t.Fatalf("decodeRecord used %d of %d bytes", n, len(rec))
		}
		if _, _, err := decodeRecord(rec, 8); err == nil {
			t.Fatal("a record of epoch 7 decoded as one of epoch 8")
		}
		again := encodeRecord(nil, 7, r.put, r.del)
		r2, _, err := decodeRecord(again, 7)
		if err != nil || !slices.Equal(r2.put, r.put) || !slices.Equal(r2.del, r.del) {
			t.Fatalf("%x decoded to %+v, which re-encodes to %+v, %v", payload, r, r2, err)
		}
		if len(again) == len(rec) && !bytes.Equal(again, rec) {
			t.Fatalf("%x decoded to %+v, which re-encodes differently", payload, r)
		}
	})
}

// Every Open starts a new epoch, even with nothing to replay, so that what
// an earlier process left in the file (a record torn at the very start)
// can never be read as a record of this one.
func TestOpenStartsNewEpoch(t *testing.T) {
	path := filepath.Join(t.TempDir(), "countd.db")
	db := open(t, path)
	epoch := db.log.epoch
	crash(t, db)
	db = open(t, path)
	if db.log.epoch <= epoch {
		t.Fatalf("epoch %d after a reopen with an empty log, want above %d", db.log.epoch, epoch)
	}
}
