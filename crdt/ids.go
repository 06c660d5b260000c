package crdt

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
)

// A replica id is 16 lowercase hex digits: a lineage (the first 12) and an
// incarnation (the last 4).
//
// A lineage is one data file's history: it is drawn at random when the file
// is created (or found to be a copy, see store.DB.Start), and every start
// of a process on that file takes the next incarnation, 0001 to ffff. No
// process ever writes under an id another process wrote under, so an entry
// always has one writer.
//
// Incarnation 0000 of a lineage is its fold: the one entry per counter into
// which a start folds the final totals of the lineage's earlier
// incarnations (State.Fold). A fold entry says how many incarnations it
// covers (Entry.G); an entry of a covered incarnation adds nothing to a
// counter, and a merge drops it.
const (
	lineageLen    = 12
	maxIncarnate  = 0xffff
	foldSuffix    = "0000"
	incarnateBits = 16
)

// NewLineage returns a fresh random lineage id (12 hex digits).
func NewLineage() string {
	var b [lineageLen / 2]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("crdt: reading random bytes: %v", err)) // crypto/rand does not fail on Linux
	}
	return hex.EncodeToString(b[:])
}

// ReplicaID returns the id of incarnation k (1 to 0xffff) of lineage.
// It panics on a malformed lineage or k out of range: a programming error.
func ReplicaID(lineage string, k int) string {
	if k < 1 || k > maxIncarnate || !ValidReplica(lineage+foldSuffix) {
		panic(fmt.Sprintf("crdt: no replica id for lineage %q incarnation %d", lineage, k))
	}
	return fmt.Sprintf("%s%04x", lineage, k)
}

// MaxIncarnation is the last incarnation of a lineage; the start after it
// begins a new lineage.
const MaxIncarnation = maxIncarnate

// Lineage returns the lineage of a replica id.
func Lineage(replica string) string { return replica[:lineageLen] }

// Incarnation returns the incarnation of a replica id (0 for a fold id).
func Incarnation(replica string) int {
	k, _ := strconv.ParseUint(replica[lineageLen:], 16, incarnateBits)
	return int(k)
}

// FoldID returns the id of the fold entries of replica's lineage.
func FoldID(replica string) string { return replica[:lineageLen] + foldSuffix }

// NewReplicaID returns the id of the first incarnation of a fresh lineage:
// for a process that keeps nothing (memory mode), and for tests.
func NewReplicaID() string { return ReplicaID(NewLineage(), 1) }
