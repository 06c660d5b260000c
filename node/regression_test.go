package node_test

import (
	"countd/internal/testcluster"
	"fmt"
	"testing"
)

// DELETE /peers/{C} is for good: a node restarted on its data dir (its
// -peers naming only B) must not re-learn the removed C from B's gossip.
func TestRemovalSurvivesRestart(t *testing.T) {
	c := startCluster(t, 3, withSeed(90))
	if err := c.RemovePeer("A", "C"); err != nil {
		t.Fatal(err)
	}
	c.stop("A")
	if err := c.SetPeers("A", c.Addrs("B")); err != nil { // A's flags no longer name C
		t.Fatal(err)
	}
	c.restart("A", testcluster.SameDir)
	holdFor(t, 20*c.heartbeat(), "A does not list the removed C after its restart", func() (bool, string) {
		rows, err := c.Peers("A")
		if err != nil {
			return false, err.Error()
		}
		for _, r := range rows {
			if r.Addr == c.Addr("C") {
				return false, fmt.Sprintf("A lists C again: %s", c.DescribePeers(rows))
			}
		}
		return true, ""
	})
}
