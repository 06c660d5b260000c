package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
)

// The on-disk layout of a bbolt file, as far as boltInUse reads it
// (go.etcd.io/bbolt internal/common: page.go, meta.go, bucket.go). Every
// number is little-endian on the machines countd runs on.
const (
	boltPageHeader  = 16 // id u64, flags u16, count u16, overflow u32
	boltElementSize = 16 // branch: pos, ksize u32, pgid u64; leaf: flags, pos, ksize, vsize u32
	boltMetaSize    = 64 // magic, version, page size, flags u32; root, sequence, freelist, pgid, txid, checksum u64
	boltMagic       = 0xED0CDAED
	boltBranchPage  = 0x01
	boltLeafPage    = 0x02
	boltBucketLeaf  = 0x01
	// boltWalkTries is how many times boltInUse walks the tree before it
	// gives up because a commit landed during every walk.
	boltWalkTries = 5
)

// errBoltBusy means every walk of the file raced a commit.
var errBoltBusy = errors.New("bbolt file changed during every walk")

// boltInUse returns the bytes of the bbolt file at path that its current
// tree uses: the two meta pages and every page reachable from the root
// bucket (overflow pages included). The rest of the file is free pages
// bbolt will reuse. It reads the file without bbolt, so without the lock
// the running node holds: a walk is kept only if the meta page's
// transaction id is the same after it as before, since a commit only
// overwrites pages that the tree of the transaction before it no longer
// uses. It returns errBoltBusy if commits land during every try.
func boltInUse(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	for range boltWalkTries {
		m, err := boltMeta(f)
		if err != nil {
			return 0, err
		}
		w := boltWalker{f: f, ps: int64(m.pageSize), hwm: m.hwm, seen: make(map[uint64]bool)}
		werr := w.visit(m.root)
		again, err := boltMeta(f)
		if err != nil {
			return 0, err
		}
		if again.txid != m.txid {
			continue // a commit may have reused pages mid-walk
		}
		if werr != nil {
			return 0, werr
		}
		return (w.pages + 2) * w.ps, nil
	}
	return 0, errBoltBusy
}

// boltMetaPage is what boltInUse needs of a meta page.
type boltMetaPage struct {
	pageSize  uint32
	root, hwm uint64
	txid      uint64
}

// boltMeta returns the valid meta page with the greater transaction id,
// as bbolt itself chooses on open.
func boltMeta(f *os.File) (boltMetaPage, error) {
	var best boltMetaPage
	found := false
	ps := int64(0)
	for i := int64(0); i < 2; i++ {
		buf := make([]byte, boltPageHeader+boltMetaSize)
		off := i * ps
		if i == 1 && ps == 0 {
			break
		}
		if _, err := f.ReadAt(buf, off); err != nil {
			continue
		}
		m := buf[boltPageHeader:]
		le := binary.LittleEndian
		h := fnv.New64a()
		h.Write(m[:56])
		if le.Uint32(m[0:]) != boltMagic || le.Uint64(m[56:]) != h.Sum64() {
			continue
		}
		mp := boltMetaPage{pageSize: le.Uint32(m[8:]), root: le.Uint64(m[16:]), hwm: le.Uint64(m[40:]), txid: le.Uint64(m[48:])}
		if i == 0 {
			ps = int64(mp.pageSize)
		}
		if !found || mp.txid > best.txid {
			best, found = mp, true
		}
	}
	if !found {
		return best, errors.New("no valid bbolt meta page")
	}
	return best, nil
}

// boltWalker counts the pages reachable from a root.
type boltWalker struct {
	f     *os.File
	ps    int64
	hwm   uint64 // pages below this id exist
	seen  map[uint64]bool
	pages int64
}

// visit counts page id and what it leads to: child pages of a branch,
// sub-bucket roots of a leaf (inline buckets live in their parent's page).
func (w *boltWalker) visit(id uint64) error {
	if id < 2 || id >= w.hwm || w.seen[id] {
		return fmt.Errorf("bbolt page %d out of range or seen twice", id)
	}
	w.seen[id] = true
	head := make([]byte, boltPageHeader)
	if _, err := w.f.ReadAt(head, int64(id)*w.ps); err != nil {
		return err
	}
	le := binary.LittleEndian
	flags, count, overflow := le.Uint16(head[8:]), int(le.Uint16(head[10:])), int64(le.Uint32(head[12:]))
	if le.Uint64(head) != id || (flags != boltBranchPage && flags != boltLeafPage) {
		return fmt.Errorf("bbolt page %d is not a tree page", id)
	}
	p := make([]byte, (1+overflow)*w.ps)
	if _, err := w.f.ReadAt(p, int64(id)*w.ps); err != nil {
		return err
	}
	w.pages += 1 + overflow
	for i := range count {
		el := boltPageHeader + i*boltElementSize
		if el+boltElementSize > len(p) {
			return fmt.Errorf("bbolt page %d: element %d past its end", id, i)
		}
		if flags == boltBranchPage {
			if err := w.visit(le.Uint64(p[el+8:])); err != nil {
				return err
			}
			continue
		}
		if le.Uint32(p[el:])&boltBucketLeaf == 0 {
			continue
		}
		v := el + int(le.Uint32(p[el+4:])) + int(le.Uint32(p[el+8:]))
		if v+8 > len(p) {
			return fmt.Errorf("bbolt page %d: bucket %d past its end", id, i)
		}
		if root := le.Uint64(p[v:]); root != 0 { // 0: an inline bucket
			if err := w.visit(root); err != nil {
				return err
			}
		}
	}
	return nil
}
