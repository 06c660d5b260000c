// Package store keeps countd's counter entries in a bbolt file and its
// write-ahead log beside it (wal.go).
//
// Every entry is stored whole (counter, replica and every field of
// crdt.Entry), never as an increment, so writing an entry again is
// harmless and the last successful write of an entry carries every change
// before it.
//
// The file also records its lineage (meta.go): Start gives each process
// on the file the next replica id of that lineage, and a new lineage to a
// file that was copied or restored.
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
	berrors "go.etcd.io/bbolt/errors"

	"countd/crdt"
)

// ErrCorrupt means the file holds a record countd did not write.
var ErrCorrupt = errors.New("store: corrupt record")

var (
	bucketEntries    = []byte("entries")
	bucketTombstones = []byte("tombstones") // removed peers' addresses
	bucketMembers    = []byte("members")    // the peers' addresses, as last known
	bucketMeta       = []byte("meta")       // the lineage, see meta.go
)

// DB is an open store. Its methods are safe for concurrent use.
type DB struct {
	db       *bolt.DB
	recovery Recovery

	mu     sync.Mutex // guards log and closed
	log    *wal
	closed bool
}

// Open opens (creating if needed) the store file at path and its log
// (LogPath), creating their directory, and applies to the file what the
// log holds (see Recovery). It fails fast if another process holds the
// file.
func Open(path string) (*DB, error) {
	return openLimit(path, DefaultLogLimit)
}

func openLimit(path string, logLimit int64) (*DB, error) {
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
		for _, b := range [][]byte{bucketEntries, bucketTombstones, bucketMeta, bucketMembers} {
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
	if err := d.openLog(logLimit); err != nil {
		if d.log != nil {
			d.log.f.Close()
		}
		db.Close()
		return nil, fmt.Errorf("store: log of %s: %w", path, err)
	}
	return d, nil
}

// Path returns the file's path.
func (d *DB) Path() string { return d.db.Path() }

// Load returns every stored entry. It checkpoints the log first.
func (d *DB) Load() ([]crdt.Entry, error) {
	if err := d.Checkpoint(); err != nil {
		return nil, fmt.Errorf("store: load: %w", err)
	}
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

// Save deletes del and writes put, all or nothing, and returns once that is
// on disk: one record appended to the log and one fdatasync. Deletes go
// first, so a key in both keeps its put; deleting an absent key is no
// error. Deleting a fold entry of the lineage the file records (the one
// Start returned) raises its high-water mark to the entry's totals when
// the record reaches the bbolt file (see Start). Once the log passes its
// limit, Save checkpoints it before it returns.
func (d *DB) Save(put, del []crdt.Entry) error {
	if len(put) == 0 && len(del) == 0 {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return errors.New("store: save: closed")
	}
	if err := d.log.appendRecord(put, del); err != nil {
		return fmt.Errorf("store: save: %w", err)
	}
	if d.log.off-logHeaderLen >= d.log.limit {
		// The record is durable whatever happens here; a checkpoint that
		// fails is tried again by the next Save.
		_ = d.checkpoint(false)
	}
	return nil
}

// saveBolt is Save straight to the bbolt file, as a checkpoint applies a
// record: the test of recovery's equivalence.
func (d *DB) saveBolt(put, del []crdt.Entry) error {
	err := d.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketEntries)
		if err := deleteEntries(tx, del); err != nil {
			return err
		}
		// bbolt keeps the key and value slices until the commit: each
		// entry needs buffers of its own.
		size := 0
		for _, e := range put {
			size += valueLen(e)
		}
		vals := make([]byte, 0, size)
		for _, e := range put {
			vals = appendValue(vals, e)
			val := vals[len(vals)-valueLen(e):]
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

// deleteEntries deletes del, raising the recorded lineage's high-water
// mark past its fold entries among them.
func deleteEntries(tx *bolt.Tx, del []crdt.Entry) error {
	if len(del) == 0 {
		return nil
	}
	b := tx.Bucket(bucketEntries)
	for _, e := range del {
		if err := b.Delete(entryKey(e.Counter, e.Replica)); err != nil {
			return err
		}
	}
	m, ok, err := readMeta(tx)
	if err != nil || !ok {
		return err
	}
	fold := crdt.FoldID(crdt.ReplicaID(m.lineage, 1))
	high := m.high
	for _, e := range del {
		if e.Replica == fold {
			high = max(high, e.P, e.N)
		}
	}
	if high == m.high {
		return nil
	}
	return tx.Bucket(bucketMeta).Put(keyHigh, binary.BigEndian.AppendUint64(nil, high))
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

// SetMembers records addrs as the peers of the node, replacing what was
// recorded, so that a restarted node knows every member a deleted
// counter's tombstone must reach before it is forgotten.
func (d *DB) SetMembers(addrs []string) error {
	err := d.db.Update(func(tx *bolt.Tx) error {
		if err := tx.DeleteBucket(bucketMembers); err != nil {
			return err
		}
		b, err := tx.CreateBucket(bucketMembers)
		if err != nil {
			return err
		}
		for _, a := range addrs {
			if err := b.Put([]byte(a), nil); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: members: %w", err)
	}
	return nil
}

// Members returns the addresses SetMembers recorded last.
func (d *DB) Members() ([]string, error) {
	return d.keys(bucketMembers)
}

// Tombstones returns the addresses of the removed peers.
func (d *DB) Tombstones() ([]string, error) {
	return d.keys(bucketTombstones)
}

// keys returns the keys of bucket b.
func (d *DB) keys(b []byte) ([]string, error) {
	var out []string
	err := d.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(b).ForEach(func(k, _ []byte) error {
			out = append(out, string(k))
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("store: %s: %w", b, err)
	}
	return out, nil
}

// Abandon closes the files as a crash (kill -9) would: the log is not
// applied, so the next Open replays it. Every Save that returned is on
// disk already. For tests of recovery; Close is the way to close.
func (d *DB) Abandon() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	err := d.log.f.Close()
	if cerr := d.db.Close(); err == nil {
		err = cerr
	}
	return err
}

// Close checkpoints the log and closes the files; it waits for a Save in
// progress. It is safe to call more than once.
func (d *DB) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	err := d.checkpoint(false)
	if cerr := d.log.f.Close(); err == nil {
		err = cerr
	}
	if cerr := d.db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("store: close: %w", err)
	}
	return nil
}

// A key is the counter name, a NUL (never part of a name), and the replica id.
func entryKey(counter, replica string) []byte {
	return appendEntryKey(make([]byte, 0, len(counter)+1+len(replica)), counter, replica)
}

// appendEntryKey appends an entry's key to buf: its counter, a 0 byte and
// its replica id.
func appendEntryKey(buf []byte, counter, replica string) []byte {
	buf = append(buf, counter...)
	buf = append(buf, 0)
	return append(buf, replica...)
}

// An entry's value is P, N (8 bytes each, big-endian) when its other
// fields are zero, as most entries' are (and as every entry was before
// they existed); otherwise P, N, FP, FN, T, E (8 bytes each), G and FG (4
// each). A key entry's (crdt.KeyID) is always P, N, FP, FN, A, RP, RN (8
// bytes each), the retired flag X (1 byte: 0 or 1) and the owner O (its
// 16 characters).
const (
	shortValue = 16
	longValue  = 6*8 + 2*4
	keyValue   = 7*8 + 1 + crdt.ReplicaLen
)

func valueLen(e crdt.Entry) int {
	switch {
	case len(e.Replica) == crdt.KeyIDLen:
		return keyValue
	case e.FP|e.FN|e.T|e.E|uint64(e.G)|uint64(e.FG) == 0:
		return shortValue
	}
	return longValue
}

// appendValue appends e's value to buf.
func appendValue(buf []byte, e crdt.Entry) []byte {
	buf = binary.BigEndian.AppendUint64(buf, e.P)
	buf = binary.BigEndian.AppendUint64(buf, e.N)
	switch valueLen(e) {
	case shortValue:
		return buf
	case keyValue:
		for _, x := range []uint64{e.FP, e.FN, e.A, e.RP, e.RN} {
			buf = binary.BigEndian.AppendUint64(buf, x)
		}
		x := byte(0)
		if e.X {
			x = 1
		}
		buf = append(buf, x)
		return append(buf, e.O...)
	}
	for _, x := range []uint64{e.FP, e.FN, e.T, e.E} {
		buf = binary.BigEndian.AppendUint64(buf, x)
	}
	buf = binary.BigEndian.AppendUint32(buf, e.G)
	return binary.BigEndian.AppendUint32(buf, e.FG)
}

// decodeEntry decodes one record. It accepts only what Save writes: a
// long value whose extra fields are all zero is corrupt, since Save would
// have written it short.
func decodeEntry(k, v []byte) (crdt.Entry, error) {
	i := bytes.IndexByte(k, 0)
	if i < 0 || len(v) != shortValue && len(v) != longValue && len(v) != keyValue {
		return crdt.Entry{}, fmt.Errorf("%w: key %q, %d-byte value", ErrCorrupt, k, len(v))
	}
	u := func(j int) uint64 { return binary.BigEndian.Uint64(v[8*j:]) }
	e := crdt.Entry{
		Counter: string(k[:i]),
		Replica: string(k[i+1:]),
		P:       u(0),
		N:       u(1),
	}
	switch len(v) {
	case longValue:
		e.FP, e.FN, e.T, e.E = u(2), u(3), u(4), u(5)
		e.G, e.FG = binary.BigEndian.Uint32(v[48:]), binary.BigEndian.Uint32(v[52:])
	case keyValue:
		if v[56] > 1 {
			return crdt.Entry{}, fmt.Errorf("%w: key %q: retired flag %d", ErrCorrupt, k, v[56])
		}
		e.FP, e.FN, e.A, e.RP, e.RN = u(2), u(3), u(4), u(5), u(6)
		e.X, e.O = v[56] == 1, string(v[57:])
	}
	if valueLen(e) != len(v) {
		return crdt.Entry{}, fmt.Errorf("%w: key %q: a %d-byte value where Save writes %d bytes", ErrCorrupt, k, len(v), valueLen(e))
	}
	if err := crdt.Validate([]crdt.Entry{e}); err != nil {
		return crdt.Entry{}, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	return e, nil
}
