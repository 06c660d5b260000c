package store

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Snapshot takes a consistent copy of the store while it keeps serving,
// for a backup (GET /backup): the file's contents, to read once and
// close, and their size in bytes. A node started on the copy (put into a
// data dir as countd.db) has every entry the store held when the copy was
// taken.
//
// The copy is marked as a snapshot (meta key "snapshot"), and the identity
// it records (inode and path) is one no file has, so the first Start on it
// begins a new lineage whatever file it becomes: a copy elsewhere, a
// rename over the original, or bytes copied back over the original in
// place, which keep the original's inode and path and so would pass the
// identity check alone. Without the mark, a node restored in place from a
// backup would take the incarnation after the one the backup recorded,
// which the original may already have written under after the backup was
// taken: two processes' changes under one replica id, which max() merges
// into one, losing changes (docs/design.md, "Storage"). Start clears the
// mark once it has recorded the new lineage.
//
// bbolt copies the file in one read transaction (Tx.WriteTo), which does
// not block writers, into a temporary file beside the store (so it needs
// free space for one more copy of the store while it is taken); the mark
// is written into that file, which is then opened for reading and
// removed, so nothing is left behind once the reader is closed.
func (d *DB) Snapshot() (io.ReadCloser, int64, error) {
	f, size, err := d.snapshot(time.Now())
	if err != nil {
		return nil, 0, fmt.Errorf("store: snapshot: %w", err)
	}
	return f, size, nil
}

func (d *DB) snapshot(now time.Time) (*os.File, int64, error) {
	if err := d.Checkpoint(); err != nil {
		return nil, 0, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(d.db.Path()), filepath.Base(d.db.Path())+".snapshot-*")
	if err != nil {
		return nil, 0, err
	}
	name := tmp.Name()
	defer os.Remove(name) // once open for reading, the data stays until it is closed
	err = d.db.View(func(tx *bolt.Tx) error {
		_, err := tx.WriteTo(tmp)
		return err
	})
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = markSnapshot(name, now)
	}
	if err != nil {
		return nil, 0, err
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, 0, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, fi.Size(), nil
}

// snapshotPath is the path a snapshot records in place of the file's:
// never an absolute path, so no file's identity matches it.
const snapshotPath = "(snapshot)"

// markSnapshot marks the bbolt file at path as a snapshot taken at now:
// see Snapshot. A file that records no lineage needs no mark, since
// Start begins a new one on it anyway.
func markSnapshot(path string, now time.Time) error {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, NoSync: true, NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return err
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketMeta)
		if b == nil {
			return errors.New("the copy has no meta bucket")
		}
		// The copy has no log: forget the original's, so that the
		// original's log, found beside a restored copy, is never replayed
		// into it (wal.go).
		if err := b.Delete(keyLogID); err != nil {
			return err
		}
		if err := b.Delete(keyLogEpoch); err != nil {
			return err
		}
		m, ok, err := readMeta(tx)
		if err != nil || !ok {
			return err
		}
		m.inode, m.path, m.snapshot = 0, snapshotPath, max(now.UnixMilli(), 1)
		return writeMeta(tx, m)
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	return err
}
