package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// TestBoltInUse checks the page walk against bbolt's own count: the pages
// below the high-water mark that are not on the free list. It fills two
// buckets (one nested, one with values large enough to overflow a page),
// then deletes most of it, so that the file keeps its size while the part
// in use shrinks.
func TestBoltInUse(t *testing.T) {
	path := filepath.Join(t.TempDir(), "t.db")
	opts := &bolt.Options{NoFreelistSync: true, FreelistType: bolt.FreelistMapType}
	db, err := bolt.Open(path, 0o600, opts)
	if err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 10_000)
	err = db.Update(func(tx *bolt.Tx) error {
		a, err := tx.CreateBucket([]byte("a"))
		if err != nil {
			return err
		}
		nested, err := a.CreateBucket([]byte("nested"))
		if err != nil {
			return err
		}
		if _, err := tx.CreateBucket([]byte("empty")); err != nil { // an inline bucket
			return err
		}
		for i := range 20_000 {
			k := []byte(fmt.Sprintf("counter-%06d", i))
			if err := a.Put(k, k); err != nil {
				return err
			}
			if i%100 == 0 {
				if err := nested.Put(k, big); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	full := checkInUse(t, db, path)
	err = db.Update(func(tx *bolt.Tx) error {
		a := tx.Bucket([]byte("a"))
		for i := range 19_000 {
			if err := a.Delete([]byte(fmt.Sprintf("counter-%06d", i))); err != nil {
				return err
			}
		}
		return a.DeleteBucket([]byte("nested"))
	})
	if err != nil {
		t.Fatal(err)
	}
	// A second commit, so the pages the delete freed are no longer pending.
	if err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket([]byte("a")).Put([]byte("x"), []byte("y")) }); err != nil {
		t.Fatal(err)
	}
	after := checkInUse(t, db, path)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if after >= full/4 || fi.Size() < full {
		t.Errorf("in use %d bytes full, %d after deleting most; file %d bytes", full, after, fi.Size())
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	if _, err := boltInUse(filepath.Join(t.TempDir(), "absent.db")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("absent file: %v", err)
	}
	junk := filepath.Join(t.TempDir(), "junk.db")
	if err := os.WriteFile(junk, make([]byte, 8192), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := boltInUse(junk); err == nil {
		t.Error("a file of zeros has a bbolt tree")
	}
}

// checkInUse compares boltInUse with bbolt's figure: the high-water mark
// less the free and pending pages. It returns the bytes in use.
func checkInUse(t *testing.T, db *bolt.DB, path string) int64 {
	t.Helper()
	got, err := boltInUse(path)
	if err != nil {
		t.Fatal(err)
	}
	var want int64
	err = db.View(func(tx *bolt.Tx) error {
		st := db.Stats()
		want = tx.Size() - int64(st.FreePageN+st.PendingPageN)*int64(db.Info().PageSize)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("in use: walked %d bytes, bbolt says %d", got, want)
	}
	return got
}
