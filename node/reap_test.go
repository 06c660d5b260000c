package node_test

import (
	"testing"
	"time"

	"countd/internal/testcluster"
	"countd/node"
)

// TestDownPeerIsReapedAndRejoins stops C for longer than -reap-after: A and
// B see it down (it crashed) or left (it stopped gracefully), then drop it
// from /peers on their own. Reaping leaves no tombstone, so when C starts
// again (and pushes to them) it is a member again.
func TestDownPeerIsReapedAndRejoins(t *testing.T) {
	for _, tc := range []struct {
		state string
		stop  func(c *cluster)
	}{
		{"down", func(c *cluster) { c.stopSilently("C") }},
		{"left", func(c *cluster) { c.stop("C") }},
	} {
		t.Run(tc.state, func(t *testing.T) {
			const reapAfter = time.Second
			c := &cluster{t: t}
			t.Cleanup(func() {
				if t.Failed() && c.Cluster != nil {
					dumpLogs(t, c.Cluster, 400)
				}
			})
			c.Cluster = testcluster.New(t, testcluster.Options{Seed: 91, Config: func(_ string, cfg *node.Config) {
				cfg.ReapAfter = reapAfter
			}})
			if err := c.Start(3); err != nil {
				t.Fatal(err)
			}

			stopped := time.Now() // the leave is sent before Close returns
			tc.stop(c)
			for _, on := range []string{"A", "B"} {
				c.waitPeers(on, "lists C "+tc.state, func(s map[string]string) bool { return s["C"] == tc.state })
			}
			for on, other := range map[string]string{"A": "B", "B": "A"} {
				c.waitPeers(on, "no longer lists C, still lists "+other+" alive", func(s map[string]string) bool {
					_, listed := s["C"]
					return !listed && s[other] == "alive"
				})
			}
			if d := time.Since(stopped); d < reapAfter {
				t.Fatalf("C was reaped %v after it stopped, before -reap-after (%v)", d, reapAfter)
			}

			c.restart("C", testcluster.SameDir)
			c.waitMesh("A", "B", "C")
		})
	}
}
