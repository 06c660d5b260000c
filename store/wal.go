package store

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"countd/crdt"
)

// The write-ahead log, countd.wal beside countd.db, makes a Save cost one
// fdatasync where a bbolt commit costs two (its pages, then its meta page).
//
// The log is a header (the magic, the 16-byte id of the bbolt file it
// belongs to, a CRC-32C) and records from logHeaderLen on. A record is its
// payload's length (uint32), a CRC-32C of the length, the epoch and the
// payload (uint32), the epoch (uint64) and the payload: a Save's deletes
// (key, P, N) and puts (key, value), in the entry encoding of store.go.
// Every number is big-endian but the payload's counts and lengths, which
// are uvarints.
//
// The bbolt file's meta bucket records the log's id and the epoch its
// records must carry. A checkpoint applies every record to bbolt and raises
// the epoch in the same synced transaction, which empties the log at once:
// the records stay in the file, to be written over, but no longer count. A
// crash before that commit leaves the records to replay; after it, none.
// Replaying a record bbolt already holds is harmless anyway: every entry is
// stored whole, and records are applied in order.
//
// Recovery (Open) reads records from the start while each is whole, has a
// good CRC and the current epoch; the first that is not ends the log (a
// torn write, or what an earlier epoch left), and everything before it is
// checkpointed. A log whose header is unreadable or names another file is
// never replayed: it is renamed aside and reported (Recovery).
//
// The file grows in logChunk steps of written zeros, so that the fdatasync
// after a record that fits flushes data only (no size or extent change),
// and is reused after each checkpoint.
const (
	logMagic        = "countdWL"
	logIDLen        = 16
	logHeaderLen    = 32 // magic, id, CRC-32C, 4 zero bytes
	recordHeaderLen = 16 // length, CRC-32C, epoch
	logChunk        = 1 << 20
	// DefaultLogLimit is the log size past which a Save checkpoints.
	DefaultLogLimit = 64 << 20
)

var (
	keyLogID    = []byte("log")      // logIDLen random bytes
	keyLogEpoch = []byte("logepoch") // uint64, big-endian
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errLogEnd ends a scan of the log: no more records of the epoch.
var errLogEnd = errors.New("store: end of log")

// Recovery describes what Open found in the log.
type Recovery struct {
	// Replayed is how many records Open applied to the bbolt file, and
	// Bytes their size: Saves a crash left in the log.
	Replayed int
	Bytes    int64
	// SetAside is where a log that was not replayed was moved (empty if
	// none was), and Reason why: its header was unreadable or named
	// another file (a data file restored or copied without its log).
	SetAside string
	Reason   string
}

// wal is the open log. DB.mu guards it.
type wal struct {
	f     *os.File
	id    []byte
	epoch uint64
	off   int64 // where the next record goes
	size  int64 // the file's size: zeros or records up to it
	limit int64
	buf   []byte
}

// LogPath returns the path of the log of the store file at path: its name
// with the extension replaced by .wal.
func LogPath(path string) string {
	return strings.TrimSuffix(path, filepath.Ext(path)) + ".wal"
}

// openLog opens the log of d's file, creating it (and its id in meta) if
// needed, and checkpoints what it holds.
func (d *DB) openLog(limit int64) error {
	id, epoch, err := d.logMeta()
	if err != nil {
		return err
	}
	path := LogPath(d.db.Path())
	f, err := os.OpenFile(path, os.O_RDWR, 0o600)
	if errors.Is(err, os.ErrNotExist) {
		f, err = createLog(path, id)
	}
	if err != nil {
		return err
	}
	d.log = &wal{f: f, id: id, epoch: epoch, off: logHeaderLen, limit: limit}
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	d.log.size = fi.Size()
	if reason := checkHeader(f, id); reason != "" {
		f.Close()
		d.log = nil
		aside := fmt.Sprintf("%s.orphan-%d", path, time.Now().UnixMilli())
		if err := os.Rename(path, aside); err != nil {
			return err
		}
		d.recovery.SetAside, d.recovery.Reason = aside, reason
		if f, err = createLog(path, id); err != nil {
			return err
		}
		d.log = &wal{f: f, id: id, epoch: epoch, off: logHeaderLen, size: logHeaderLen + logChunk, limit: limit}
		return nil
	}
	end, n, err := d.log.scan(d.log.size)
	if err != nil {
		return err
	}
	d.log.off = end
	d.recovery.Replayed, d.recovery.Bytes = n, end-logHeaderLen
	// Raise the epoch even if nothing was replayed: whatever an earlier
	// process left in the file (a torn record) is then of an older epoch.
	return d.checkpoint(true)
}

// logMeta returns the log's id and epoch from meta, recording new ones
// (durably) if there are none.
func (d *DB) logMeta() (id []byte, epoch uint64, err error) {
	err = d.db.View(func(tx *bolt.Tx) error {
		id, epoch = readLogMeta(tx)
		return nil
	})
	if err != nil || id != nil {
		return id, epoch, err
	}
	id = make([]byte, logIDLen)
	rand.Read(id)
	epoch = 1
	err = d.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketMeta)
		if err := b.Put(keyLogID, id); err != nil {
			return err
		}
		return b.Put(keyLogEpoch, binary.BigEndian.AppendUint64(nil, epoch))
	})
	return id, epoch, err
}

// readLogMeta returns the log id and epoch meta records, or a nil id.
func readLogMeta(tx *bolt.Tx) (id []byte, epoch uint64) {
	b := tx.Bucket(bucketMeta)
	id, e := b.Get(keyLogID), b.Get(keyLogEpoch)
	if len(id) != logIDLen || len(e) != 8 {
		return nil, 0
	}
	return bytes.Clone(id), binary.BigEndian.Uint64(e)
}

// createLog creates the log at path for the file with the given id: a
// header and one chunk of zeros, written to a temporary file that is
// synced and renamed into place, so a crash leaves no torn header.
func createLog(path string, id []byte) (*os.File, error) {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, logHeaderLen+logChunk)
	copy(buf, logMagic)
	copy(buf[len(logMagic):], id)
	n := len(logMagic) + logIDLen
	binary.BigEndian.PutUint32(buf[n:], crc32.Checksum(buf[:n], castagnoli))
	_, err = f.Write(buf)
	if err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		err = syncDir(filepath.Dir(path))
	}
	if err != nil {
		f.Close()
		os.Remove(tmp)
		return nil, err
	}
	return f, nil
}

// checkHeader says why the log in f is not id's ("" if it is).
func checkHeader(f *os.File, id []byte) string {
	h := make([]byte, logHeaderLen)
	if _, err := f.ReadAt(h, 0); err != nil {
		return fmt.Sprintf("the log's header is unreadable: %v", err)
	}
	n := len(logMagic) + logIDLen
	if string(h[:len(logMagic)]) != logMagic || binary.BigEndian.Uint32(h[n:]) != crc32.Checksum(h[:n], castagnoli) {
		return "the log's header is damaged"
	}
	if got := h[len(logMagic):n]; !bytes.Equal(got, id) {
		return fmt.Sprintf("the log belongs to another data file (log id %s, the file's %s)", hex.EncodeToString(got), hex.EncodeToString(id))
	}
	return ""
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// scan reads the records of the log's epoch before limit and returns
// where they end and how many there are.
func (l *wal) scan(limit int64) (end int64, n int, err error) {
	end = logHeaderLen
	if limit <= end {
		return end, 0, nil
	}
	data := make([]byte, limit-end)
	if _, err := l.f.ReadAt(data, end); err != nil && !errors.Is(err, io.EOF) {
		return 0, 0, err
	}
	for rest := data; ; n++ {
		_, size, err := decodeRecord(rest, l.epoch)
		if errors.Is(err, errLogEnd) {
			return end, n, nil
		}
		if err != nil {
			// A whole record of the epoch that does not decode: not a
			// torn write but a bug or a newer format. Stop, loudly.
			return 0, 0, fmt.Errorf("log record at %d: %w", end, err)
		}
		rest, end = rest[size:], end+int64(size)
	}
}

// records returns the operations of the records before l.off.
func (l *wal) records() ([]record, error) {
	data := make([]byte, l.off-logHeaderLen)
	if _, err := l.f.ReadAt(data, logHeaderLen); err != nil {
		return nil, err
	}
	var out []record
	for len(data) > 0 {
		r, size, err := decodeRecord(data, l.epoch)
		if err != nil {
			return nil, fmt.Errorf("%w: log record at %d: %v", ErrCorrupt, l.off-int64(len(data)), err)
		}
		out = append(out, r)
		data = data[size:]
	}
	return out, nil
}

// appendRecord writes a record of put and del and syncs it.
func (l *wal) appendRecord(put, del []crdt.Entry) error {
	l.buf = encodeRecord(l.buf[:0], l.epoch, put, del)
	end := l.off + int64(len(l.buf))
	if end > l.size {
		zeros := make([]byte, logChunk)
		for l.size < end {
			if _, err := l.f.WriteAt(zeros, l.size); err != nil {
				return err
			}
			l.size += logChunk
		}
	}
	if _, err := l.f.WriteAt(l.buf, l.off); err != nil {
		return err
	}
	if err := fdatasync(l.f); err != nil {
		return err
	}
	l.off = end
	if cap(l.buf) > 1<<20 {
		l.buf = nil // a batch of a full push; do not keep its buffer
	}
	return nil
}

// checkpoint applies the log's records to bbolt and empties the log, in
// one synced transaction (see the top of this file); with an empty log it
// does nothing unless always is set. d.mu is held.
func (d *DB) checkpoint(always bool) error {
	l := d.log
	if l == nil || l.off == logHeaderLen && !always {
		return nil
	}
	recs, err := l.records()
	if err != nil {
		return err
	}
	if err := checkpointHook("read"); err != nil {
		return err
	}
	// The last operation on a key wins; in a record deletes come first.
	type op struct {
		val []byte // nil: delete
	}
	last := map[string]op{}
	var del []crdt.Entry
	for _, r := range recs {
		for _, e := range r.del {
			last[string(entryKey(e.Counter, e.Replica))] = op{}
			del = append(del, e)
		}
		for _, e := range r.put {
			last[string(entryKey(e.Counter, e.Replica))] = op{val: appendValue(nil, e)}
		}
	}
	err = d.db.Update(func(tx *bolt.Tx) error {
		if id, epoch := readLogMeta(tx); !bytes.Equal(id, l.id) || epoch != l.epoch {
			return fmt.Errorf("the file's log is %x epoch %d, not %x epoch %d", id, epoch, l.id, l.epoch)
		}
		// Raise the lineage's high-water mark for every fold entry
		// deleted, even one put again later; then apply the last
		// operations.
		if err := deleteEntries(tx, del); err != nil {
			return err
		}
		// In key order: bbolt inserts a sorted run at a node's end.
		b := tx.Bucket(bucketEntries)
		for _, k := range slices.Sorted(maps.Keys(last)) {
			if v := last[k].val; v != nil {
				if err := b.Put([]byte(k), v); err != nil {
					return err
				}
			}
		}
		return tx.Bucket(bucketMeta).Put(keyLogEpoch, binary.BigEndian.AppendUint64(nil, l.epoch+1))
	})
	if err != nil {
		return fmt.Errorf("store: checkpoint: %w", err)
	}
	l.epoch++
	l.off = logHeaderLen
	if err := checkpointHook("committed"); err != nil {
		return err
	}
	if l.size > l.limit+2*logChunk {
		// A huge batch grew the file: give the space back (the next
		// growth writes zeros again).
		if err := l.f.Truncate(logHeaderLen + logChunk); err == nil {
			l.size = logHeaderLen + logChunk
		}
	}
	return nil
}

// checkpointHook lets tests stop a checkpoint after a step, as a crash
// would; it returns nil outside tests.
var checkpointHook = func(step string) error { return nil }

// Checkpoint applies what the log holds to the bbolt file and empties the
// log. Save does it when the log passes its limit, Start, Snapshot and
// Close before they begin.
func (d *DB) Checkpoint() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.checkpoint(false)
}

// Recovery returns what Open found in the log.
func (d *DB) Recovery() Recovery { return d.recovery }

// record is one Save: its puts and its deletes (whose P and N only are
// kept, for the lineage's high-water mark, see deleteEntries).
type record struct {
	put, del []crdt.Entry
}

// encodeRecord appends a record of put and del in epoch to buf.
func encodeRecord(buf []byte, epoch uint64, put, del []crdt.Entry) []byte {
	start := len(buf)
	buf = append(buf, make([]byte, recordHeaderLen)...)
	buf = binary.AppendUvarint(buf, uint64(len(del)))
	for _, e := range del {
		buf = appendKey(buf, e)
		buf = binary.BigEndian.AppendUint64(buf, e.P)
		buf = binary.BigEndian.AppendUint64(buf, e.N)
	}
	buf = binary.AppendUvarint(buf, uint64(len(put)))
	for _, e := range put {
		buf = appendKey(buf, e)
		buf = binary.AppendUvarint(buf, uint64(valueLen(e)))
		buf = appendValue(buf, e)
	}
	h := buf[start:]
	binary.BigEndian.PutUint32(h, uint32(len(h)-recordHeaderLen))
	binary.BigEndian.PutUint64(h[8:], epoch)
	binary.BigEndian.PutUint32(h[4:], recordCRC(h))
	return buf
}

func appendKey(buf []byte, e crdt.Entry) []byte {
	buf = binary.AppendUvarint(buf, uint64(len(e.Counter)+1+len(e.Replica)))
	return appendEntryKey(buf, e.Counter, e.Replica)
}

// recordCRC is the CRC-32C of a record's length, epoch and payload.
func recordCRC(rec []byte) uint32 {
	c := crc32.Update(0, castagnoli, rec[:4])
	return crc32.Update(c, castagnoli, rec[8:])
}

// decodeRecord decodes the record at the start of b, of epoch, and returns
// its size. Any error means the log ends before it.
func decodeRecord(b []byte, epoch uint64) (record, int, error) {
	if len(b) < recordHeaderLen {
		return record{}, 0, errLogEnd
	}
	n := uint64(binary.BigEndian.Uint32(b))
	if n == 0 || n > uint64(len(b)-recordHeaderLen) {
		return record{}, 0, errLogEnd
	}
	rec := b[:recordHeaderLen+n]
	if binary.BigEndian.Uint32(rec[4:]) != recordCRC(rec) || binary.BigEndian.Uint64(rec[8:]) != epoch {
		return record{}, 0, errLogEnd
	}
	r, err := decodePayload(rec[recordHeaderLen:])
	if err != nil {
		return record{}, 0, err
	}
	return r, len(rec), nil
}

// decodePayload decodes a record's payload, accepting only what
// encodeRecord writes (every entry as decodeEntry accepts it).
func decodePayload(p []byte) (record, error) {
	var r record
	uv := func() (uint64, bool) {
		x, n := binary.Uvarint(p)
		if n <= 0 {
			return 0, false
		}
		p = p[n:]
		return x, true
	}
	bytesOf := func() ([]byte, bool) {
		n, ok := uv()
		if !ok || n > uint64(len(p)) {
			return nil, false
		}
		b := p[:n]
		p = p[n:]
		return b, true
	}
	bad := fmt.Errorf("%w: log record", ErrCorrupt)
	nDel, ok := uv()
	if !ok || nDel > uint64(len(p)) {
		return record{}, bad
	}
	for range nDel {
		k, ok := bytesOf()
		i := bytes.IndexByte(k, 0)
		if !ok || i < 0 || len(p) < 16 {
			return record{}, bad
		}
		r.del = append(r.del, crdt.Entry{Counter: string(k[:i]), Replica: string(k[i+1:]),
			P: binary.BigEndian.Uint64(p), N: binary.BigEndian.Uint64(p[8:])})
		p = p[16:]
	}
	nPut, ok := uv()
	if !ok || nPut > uint64(len(p)) {
		return record{}, bad
	}
	for range nPut {
		k, ok := bytesOf()
		if !ok {
			return record{}, bad
		}
		v, ok := bytesOf()
		if !ok {
			return record{}, bad
		}
		e, err := decodeEntry(k, v)
		if err != nil {
			return record{}, err
		}
		r.put = append(r.put, e)
	}
	if len(p) != 0 {
		return record{}, bad
	}
	return r, nil
}
