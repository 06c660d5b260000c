package node_test

import (
	"testing"

	"countd/internal/testcluster"
)

// TestColonNameReplicatesAndReloads: a counter named the Redis way
// (rate:user:42) is changed over HTTP on A, reaches B by A's pushes (B
// hears of it no other way), and comes back from A's data file when A
// restarts alone.
func TestColonNameReplicatesAndReloads(t *testing.T) {
	const name = "rate:user:42"
	c := startCluster(t, 2, withSeed(16))
	if r := c.Change("A", name, 5); r.Err != nil || r.Counter != name || r.Value != 5 {
		t.Fatalf("POST /counters/%s/increment?by=5 on A: %+v", name, r)
	}
	c.waitConverged(map[string]int64{name: 5})

	c.stop("B")
	c.stop("A")
	c.restart("A", testcluster.SameDir)
	if v, err := c.Get("A", name); err != nil || v != 5 {
		t.Fatalf("A after a restart on its data dir, B down: %s = %d (%v), want 5", name, v, err)
	}
}
