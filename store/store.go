// Package store keeps countd's counter entries in one bbolt file, with a
// write-ahead log in front of it (wal.go) so that a durable write costs one
// fdatasync.
//
// Every entry is stored whole (counter, replica, P, N), never as an
// increment, and an entry's totals only grow, so writing an entry again is
// harmless and the last successful write of an entry carries every change
// before it.
package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"countd/crdt"
)

// ErrCorrupt means the file holds a record countd did not write.
var ErrCorrupt = errors.New("store: corrupt record")

var (
	bucketEntries    = []byte("entries")
	bucketTombstones = []byte("tombstones") // removed peers' addresses
)

// DB is an open store. Its methods are safe for concurrent use.
type DB struct {
	db *bolt.DB

	mu     sync.Mutex // guards the fields below
	wal    *wal
	dirty  map[string]crdt.Entry // entries in the log since the last checkpoint
	broken bool                  // a log write failed: checkpoint before using it again
	closed bool
}

// Open opens (creating if needed) the store file at path, creating its
// directory. It fails fast if another process holds the file.
func Open(path string) (*DB, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("store: %s is in use by another process", path)
		}
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketEntries, bucketTombstones} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("store: init %s: %w", path, err)
	}
	d := &DB{db: db}
	if err := d.openWAL(); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: log %s: %w", path+"-wal", err)
	}
	return d, nil
}

// openWAL opens the log, and moves every entry it holds that bbolt does not
// have yet into bbolt, so the log can start again at offset 0.
func (d *DB) openWAL() error {
	w, data, err := openWAL(d.db.Path() + "-wal")
	if err != nil {
		return err
	}
	d.wal, d.dirty = w, replay(data)
	err = d.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketEntries)
		for k, e := range d.dirty {
			v := b.Get([]byte(k))
			if len(v) == 16 && binary.BigEndian.Uint64(v[:8]) >= e.P && binary.BigEndian.Uint64(v[8:]) >= e.N {
				delete(d.dirty, k) // bbolt has it already
			}
		}
		return nil
	})
	if err == nil {
		err = d.checkpoint(nil)
	}
	if err != nil {
		w.f.Close()
	}
	return err
}

// Path returns the file's path.
func (d *DB) Path() string { return d.db.Path() }

// Load returns every stored entry.
func (d *DB) Load() ([]crdt.Entry, error) {
	var out []crdt.Entry
	err := d.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketEntries).ForEach(func(k, v []byte) error {
			e, err := decodeEntry(k, v)
			if err != nil {
				return err
			}
			out = append(out, e)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("store: load: %w", err)
	}
	return out, nil
}

// ErrClosed is returned by Save after Close.
var ErrClosed = errors.New("store: closed")

// Save writes entries, all or none, and returns once they are on disk.
// Entries must never go down: a later Save of an entry carries totals at
// least as large as an earlier one's.
func (d *DB) Save(entries []crdt.Entry) error {
	if len(entries) == 0 {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return ErrClosed
	}
	rec := encodeRecord(d.wal.buf[:0], entries)
	d.wal.buf = rec[:0]
	if d.broken || len(rec) > walSize/4 || !d.wal.fits(len(rec)) {
		if err := d.checkpoint(entries); err != nil {
			return fmt.Errorf("store: save: %w", err)
		}
		return nil
	}
	if err := d.wal.append(rec); err != nil {
		// After a failed fdatasync the kernel may have dropped the log's
		// dirty pages: trust bbolt alone until a checkpoint succeeds.
		d.broken = true
		return fmt.Errorf("store: save: %w", err)
	}
	for _, e := range entries {
		mergeInto(d.dirty, e)
	}
	return nil
}

// checkpoint writes the log's entries and extra to bbolt in one
// transaction; then the log starts again at offset 0. d.mu is held.
func (d *DB) checkpoint(extra []crdt.Entry) error {
	for _, e := range extra {
		mergeInto(d.dirty, e)
	}
	if len(d.dirty) > 0 {
		err := d.db.Update(func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketEntries)
			// bbolt keeps the key and value slices until the commit: each
			// entry needs buffers of its own.
			vals := make([]byte, 16*len(d.dirty))
			i := 0
			for k, e := range d.dirty {
				val := vals[16*i : 16*i+16]
				i++
				binary.BigEndian.PutUint64(val[:8], e.P)
				binary.BigEndian.PutUint64(val[8:], e.N)
				if err := b.Put([]byte(k), val); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	d.dirty = make(map[string]crdt.Entry)
	d.wal.off, d.broken = 0, false
	return nil
}

// SetTombstone records (on) or forgets (off) that the peer at addr was
// removed, so that a removal survives a restart.
func (d *DB) SetTombstone(addr string, on bool) error {
	err := d.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketTombstones)
		if on {
			return b.Put([]byte(addr), nil)
		}
		return b.Delete([]byte(addr))
	})
	if err != nil {
		return fmt.Errorf("store: tombstone: %w", err)
	}
	return nil
}

// Tombstones returns the addresses of the removed peers.
func (d *DB) Tombstones() ([]string, error) {
	var out []string
	err := d.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketTombstones).ForEach(func(k, _ []byte) error {
			out = append(out, string(k))
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("store: tombstones: %w", err)
	}
	return out, nil
}

// Close moves the log's entries into bbolt and closes both files. It is
// safe to call more than once.
func (d *DB) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	err := d.checkpoint(nil) // on failure the log still has them
	err = errors.Join(err, d.wal.f.Close(), d.db.Close())
	if err != nil {
		return fmt.Errorf("store: close: %w", err)
	}
	return nil
}

// A key is the counter name, a NUL (never part of a name), and the replica id.
func entryKey(counter, replica string) []byte {
	k := make([]byte, 0, len(counter)+1+len(replica))
	k = append(k, counter...)
	k = append(k, 0)
	return append(k, replica...)
}

func decodeEntry(k, v []byte) (crdt.Entry, error) {
	i := bytes.IndexByte(k, 0)
	if i < 0 || len(v) != 16 {
		return crdt.Entry{}, fmt.Errorf("%w: key %q", ErrCorrupt, k)
	}
	e := crdt.Entry{
		Counter: string(k[:i]),
		Replica: string(k[i+1:]),
		P:       binary.BigEndian.Uint64(v[:8]),
		N:       binary.BigEndian.Uint64(v[8:]),
	}
	if err := crdt.Validate([]crdt.Entry{e}); err != nil {
		return crdt.Entry{}, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	return e, nil
}
