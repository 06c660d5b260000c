package node

import (
	"fmt"
	"testing"
)

// DELETE /peers/{C} is for good: a node restarted on its data dir (its
// -peers naming only B) must not re-learn the removed C from B's gossip.
func TestRemovalSurvivesRestart(t *testing.T) {
	c := startCluster(t, 3, withSeed(90))
	if err := c.removePeer("A", "C"); err != nil {
		t.Fatal(err)
	}
	c.stop("A")
	c.tnode("A").peers = c.addrs("B") // A's flags no longer name C
	c.restart("A", sameDir)
	holdFor(t, 20*c.heartbeat(), "A does not list the removed C after its restart", func() (bool, string) {
		rows, err := c.peers("A")
		if err != nil {
			return false, err.Error()
		}
		for _, r := range rows {
			if r.Addr == c.addr("C") {
				return false, fmt.Sprintf("A lists C again: %s", c.describePeers(rows))
			}
		}
		return true, ""
	})
}
