package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"countd/crdt"
)

// The write-ahead log.
//
// A bbolt commit is two fdatasyncs (data pages, then the meta page); a
// durable increment waits for one commit, so it sets the latency of the
// whole write path. The log makes a Save one fdatasync: the batch is
// written as one record into a file of fixed size that was filled with
// zeros when it was made, so the write changes no file metadata and the
// sync is as cheap as the disk allows. When the log is full, every entry
// it holds is written to bbolt in one transaction (a checkpoint) and the
// log starts again at offset 0.
//
// Records are never cleared. They hold whole entries, and an entry's
// totals only grow, so reading a record from before the last checkpoint
// merges totals that bbolt already has or exceeds: replay is a per-entry
// maximum, and a stale record is harmless. Replay reads records from
// offset 0 until one fails its length or checksum check (the zeros at the
// end of a new file, a record torn by a crash, or the middle of an older
// record); every acknowledged record lies before that point, because a
// record is written only after the one before it was synced.
//
// The log is the bbolt file's path with "-wal" appended.
//
// Record: length (4 bytes, of the payload), CRC-32C of the payload (4),
// payload = uvarint entry count, then per entry uvarint name length,
// name, replica id (crdt.ReplicaLen bytes), uvarint P, uvarint N.

// walSize is the log's fixed size. A record larger than a quarter of it
// goes straight to bbolt.
const walSize = 4 << 20

const recordHeader = 8

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errBadRecord ends replay; it is not an error of the store.
var errBadRecord = errors.New("store: bad log record")

type wal struct {
	f   *os.File
	off int64
	buf []byte
}

// openWAL opens the log at path, creating and zero-filling it if it is
// missing or short, and returns its current contents for replay.
func openWAL(path string) (*wal, []byte, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, nil, err
	}
	data := make([]byte, walSize)
	n, err := f.ReadAt(data, 0)
	if n < walSize {
		// New (or cut short): fill it to its full size and make the size
		// durable, so later syncs change no metadata.
		if _, err = f.WriteAt(make([]byte, walSize-n), int64(n)); err == nil {
			err = f.Sync()
		}
		if err == nil {
			err = syncDir(path)
		}
	} else {
		err = nil
	}
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return &wal{f: f}, data[:n], nil
}

// fits reports whether a record of size bytes fits after the current one.
func (w *wal) fits(size int) bool { return w.off+int64(size) <= walSize }

// append writes rec (header included) at the current offset and returns
// once it is on disk.
func (w *wal) append(rec []byte) error {
	if _, err := w.f.WriteAt(rec, w.off); err != nil {
		return err
	}
	if err := unix.Fdatasync(int(w.f.Fd())); err != nil {
		return err
	}
	w.off += int64(len(rec))
	return nil
}

// encodeRecord appends the record for entries to buf.
func encodeRecord(buf []byte, entries []crdt.Entry) []byte {
	start := len(buf)
	buf = append(buf, make([]byte, recordHeader)...)
	buf = binary.AppendUvarint(buf, uint64(len(entries)))
	for _, e := range entries {
		buf = binary.AppendUvarint(buf, uint64(len(e.Counter)))
		buf = append(buf, e.Counter...)
		buf = append(buf, e.Replica...)
		buf = binary.AppendUvarint(buf, e.P)
		buf = binary.AppendUvarint(buf, e.N)
	}
	payload := buf[start+recordHeader:]
	binary.LittleEndian.PutUint32(buf[start:], uint32(len(payload)))
	binary.LittleEndian.PutUint32(buf[start+4:], crc32.Checksum(payload, castagnoli))
	return buf
}

// decodeRecord reads the record at the start of data. It returns the
// record's entries and its size, or errBadRecord when data does not start
// with a whole, valid record.
func decodeRecord(data []byte) ([]crdt.Entry, int, error) {
	if len(data) < recordHeader {
		return nil, 0, errBadRecord
	}
	n := binary.LittleEndian.Uint32(data)
	if n == 0 || uint64(n) > uint64(len(data)-recordHeader) {
		return nil, 0, errBadRecord
	}
	payload := data[recordHeader : recordHeader+int(n)]
	if crc32.Checksum(payload, castagnoli) != binary.LittleEndian.Uint32(data[4:]) {
		return nil, 0, errBadRecord
	}
	entries, err := decodePayload(payload)
	if err != nil {
		return nil, 0, err
	}
	return entries, recordHeader + int(n), nil
}

func decodePayload(p []byte) ([]crdt.Entry, error) {
	uvarint := func() (uint64, bool) {
		v, k := binary.Uvarint(p)
		if k <= 0 {
			return 0, false
		}
		p = p[k:]
		return v, true
	}
	bytesOf := func(n uint64) (string, bool) {
		if n > uint64(len(p)) {
			return "", false
		}
		s := string(p[:n])
		p = p[n:]
		return s, true
	}
	count, ok := uvarint()
	// Every entry takes at least 1+1+ReplicaLen+1+1 bytes.
	if !ok || count == 0 || count > uint64(len(p))/(crdt.ReplicaLen+4) {
		return nil, errBadRecord
	}
	entries := make([]crdt.Entry, 0, count)
	for range count {
		var e crdt.Entry
		nameLen, ok := uvarint()
		if ok {
			e.Counter, ok = bytesOf(nameLen)
		}
		if ok {
			e.Replica, ok = bytesOf(crdt.ReplicaLen)
		}
		if ok {
			e.P, ok = uvarint()
		}
		if ok {
			e.N, ok = uvarint()
		}
		if !ok {
			return nil, errBadRecord
		}
		entries = append(entries, e)
	}
	if len(p) != 0 {
		return nil, errBadRecord
	}
	if err := crdt.Validate(entries); err != nil {
		return nil, fmt.Errorf("%w: %v", errBadRecord, err)
	}
	return entries, nil
}

// replay returns the entries of every valid record at the start of data,
// one per key, each with its largest totals.
func replay(data []byte) map[string]crdt.Entry {
	out := make(map[string]crdt.Entry)
	for {
		entries, size, err := decodeRecord(data)
		if err != nil {
			return out
		}
		data = data[size:]
		for _, e := range entries {
			mergeInto(out, e)
		}
	}
}

// mergeInto keeps the per-entry maximum of e and m's entry for e's key.
func mergeInto(m map[string]crdt.Entry, e crdt.Entry) {
	k := string(entryKey(e.Counter, e.Replica))
	if old, ok := m[k]; ok {
		e.P, e.N = max(e.P, old.P), max(e.N, old.N)
	}
	m[k] = e
}

func syncDir(path string) error {
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
