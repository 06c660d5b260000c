// Package store keeps countd's counter entries in one bbolt file.
//
// Every entry is stored whole (counter, replica, P, N), never as an
// increment, so writing an entry again is harmless and the last successful
// write of an entry carries every change before it.
package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

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
}

// Open opens (creating if needed) the store file at path, creating its
// directory. It fails fast if another process holds the file.
func Open(path string) (*DB, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
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
	return &DB{db: db}, nil
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

// Save writes entries in one transaction and returns once it is on disk.
func (d *DB) Save(entries []crdt.Entry) error {
	if len(entries) == 0 {
		return nil
	}
	err := d.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketEntries)
		// bbolt keeps the key and value slices until the commit: each
		// entry needs buffers of its own.
		vals := make([]byte, 16*len(entries))
		for i, e := range entries {
			val := vals[16*i : 16*i+16]
			binary.BigEndian.PutUint64(val[:8], e.P)
			binary.BigEndian.PutUint64(val[8:], e.N)
			if err := b.Put(entryKey(e.Counter, e.Replica), val); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: save: %w", err)
	}
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

// Close closes the file. It is safe to call more than once.
func (d *DB) Close() error {
	if err := d.db.Close(); err != nil {
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
