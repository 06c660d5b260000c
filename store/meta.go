package store

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"

	"countd/crdt"
)

// The meta bucket records the file's lineage (crdt/ids.go): its id, the
// last incarnation a process took, the high-water mark of its dropped fold
// entries, and the identity of the file it was recorded in (inode number
// and absolute path), by which Start tells a copy from the original. A
// snapshot (snapshot.go) also records when it was taken, which makes the
// first Start on it begin a new lineage wherever the file ends up.
var (
	keyLineage     = []byte("lineage")     // 12 hex digits
	keyIncarnation = []byte("incarnation") // uint16, big-endian
	keyHigh        = []byte("high")        // uint64, big-endian
	keyInode       = []byte("inode")       // uint64, big-endian
	keyPath        = []byte("path")        // absolute, symlinks resolved
	keySnapshot    = []byte("snapshot")    // unix ms, int64 big-endian; only in a snapshot
)

type meta struct {
	lineage     string
	incarnation int
	high        uint64
	inode       uint64
	path        string
	snapshot    int64 // when the file was taken as a snapshot (unix ms), 0 if it was not
}

// Start describes the process that starts on the file.
type Start struct {
	// Replica is the id the process writes under: the next incarnation of
	// the file's lineage, or the first of a new one.
	Replica string
	// High is the high-water mark of the lineage's fold entries deleted so
	// far (0 for a new lineage): crdt.State.SetHigh takes it, so that a
	// fold entry made anew starts above any a peer may still hold.
	High uint64
	// NewLineage says the file starts a new lineage, and Reason why.
	NewLineage bool
	Reason     string
}

// Start takes the next incarnation of the file's lineage and records it
// durably before it returns, so no two processes (not even one that
// crashes right after) write under one replica id. Call it once per
// process, before the first Save.
//
// It starts a new lineage when the file records none (a new file, or one
// written before lineages existed), when the file is a snapshot (Snapshot:
// a backup, wherever it was put back, even over the original in place),
// when the file is not the one the lineage was recorded in (a copy, or a
// restore from a backup: its inode or its path differ; the copy must never
// fold or write under the original's lineage, see crdt.State.Fold), and
// after the lineage's last incarnation (crdt.MaxIncarnation).
func (d *DB) Start() (Start, error) {
	inode, path, err := d.identity()
	if err != nil {
		return Start{}, err
	}
	// The log's records were written under the lineage meta records now:
	// they reach the file (and raise its high-water mark) before it changes.
	if err := d.Checkpoint(); err != nil {
		return Start{}, fmt.Errorf("store: start: %w", err)
	}
	var st Start
	err = d.db.Update(func(tx *bolt.Tx) error {
		m, ok, err := readMeta(tx)
		if err != nil {
			return err
		}
		switch {
		case !ok:
			st.Reason = "the file records no lineage (a new file, or one written before lineages)"
		case m.snapshot != 0:
			st.Reason = fmt.Sprintf("the file is a backup of lineage %s (incarnation %d) taken at %s: a restore",
				m.lineage, m.incarnation, time.UnixMilli(m.snapshot).UTC().Format(time.RFC3339))
		case m.inode != inode || m.path != path:
			st.Reason = fmt.Sprintf("the file is not the one lineage %s was recorded in (inode %d at %s, now inode %d at %s): a copy or a restore",
				m.lineage, m.inode, m.path, inode, path)
		case m.incarnation >= crdt.MaxIncarnation:
			st.Reason = fmt.Sprintf("lineage %s has used its last incarnation", m.lineage)
		}
		if st.Reason != "" {
			st.NewLineage = true
			m = meta{lineage: crdt.NewLineage()}
		}
		m.incarnation++
		m.inode, m.path = inode, path
		st.Replica, st.High = crdt.ReplicaID(m.lineage, m.incarnation), m.high
		return writeMeta(tx, m)
	})
	if err != nil {
		return Start{}, fmt.Errorf("store: start: %w", err)
	}
	return st, nil
}

// identity returns the open file's inode number and absolute path.
func (d *DB) identity() (inode uint64, path string, err error) {
	path, err = filepath.Abs(d.db.Path())
	if err == nil {
		path, err = filepath.EvalSymlinks(path)
	}
	if err != nil {
		return 0, "", fmt.Errorf("store: %w", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return 0, "", fmt.Errorf("store: %w", err)
	}
	sys, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, "", fmt.Errorf("store: no inode number for %s", path)
	}
	return sys.Ino, path, nil
}

// readMeta returns the recorded meta; ok is false if there is none.
func readMeta(tx *bolt.Tx) (m meta, ok bool, err error) {
	b := tx.Bucket(bucketMeta)
	lineage := b.Get(keyLineage)
	if lineage == nil {
		return meta{}, false, nil
	}
	inc, high, inode, path, snap := b.Get(keyIncarnation), b.Get(keyHigh), b.Get(keyInode), b.Get(keyPath), b.Get(keySnapshot)
	if !crdt.ValidReplica(string(lineage)+"0000") || len(inc) != 2 || len(high) != 8 || len(inode) != 8 || len(path) == 0 ||
		snap != nil && (len(snap) != 8 || binary.BigEndian.Uint64(snap) == 0) {
		return meta{}, false, fmt.Errorf("%w: meta of lineage %q", ErrCorrupt, lineage)
	}
	m = meta{
		lineage:     string(lineage),
		incarnation: int(binary.BigEndian.Uint16(inc)),
		high:        binary.BigEndian.Uint64(high),
		inode:       binary.BigEndian.Uint64(inode),
		path:        string(path),
	}
	if snap != nil {
		m.snapshot = int64(binary.BigEndian.Uint64(snap))
	}
	if m.incarnation == 0 {
		return meta{}, false, fmt.Errorf("%w: meta of lineage %q: incarnation 0", ErrCorrupt, lineage)
	}
	return m, true, nil
}

func writeMeta(tx *bolt.Tx, m meta) error {
	b := tx.Bucket(bucketMeta)
	for _, kv := range []struct{ k, v []byte }{
		{keyLineage, []byte(m.lineage)},
		{keyIncarnation, binary.BigEndian.AppendUint16(nil, uint16(m.incarnation))},
		{keyHigh, binary.BigEndian.AppendUint64(nil, m.high)},
		{keyInode, binary.BigEndian.AppendUint64(nil, m.inode)},
		{keyPath, []byte(m.path)},
	} {
		if err := b.Put(kv.k, kv.v); err != nil {
			return err
		}
	}
	if m.snapshot == 0 {
		return b.Delete(keySnapshot)
	}
	return b.Put(keySnapshot, binary.BigEndian.AppendUint64(nil, uint64(m.snapshot)))
}
