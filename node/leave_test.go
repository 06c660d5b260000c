package node_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"countd/internal/apiclient"
	"countd/internal/testcluster"
)

// TestGracefulStopLeaves stops C of three gracefully: A and B list it left
// without ever listing it suspect or down (they learn it from the leave,
// not from failed health checks), and it stays left for longer than their
// health checks would take to find it down; when it starts again they
// list it alive. Its last change reached them before it left.
func TestGracefulStopLeaves(t *testing.T) {
	c := startCluster(t, 3, withSeed(13))
	hb := c.heartbeat()
	if r := c.Change("C", "last", 5); r.Outcome != apiclient.OK {
		t.Fatalf("change on C: %+v", r)
	}

	c.stop("C")
	stopped := time.Now()
	for _, on := range []string{"A", "B"} {
		var before []string // C's states listed before left, other than alive
		c.waitPeers(on, "lists C left", func(s map[string]string) bool {
			if st := s["C"]; st != "left" && st != "alive" {
				before = append(before, st)
			}
			return s["C"] == "left"
		})
		t.Logf("%s lists C left %v after its Close returned (heartbeat %v)", on, time.Since(stopped).Round(time.Millisecond), hb)
		if len(before) > 0 {
			t.Errorf("%s listed C %v before left: its health checks found C gone before the leave reached it", on, before)
		}
	}
	// Down would take -failures-before-down (3) failed checks; wait twice that.
	holdFor(t, 6*hb, "A and B list C left, and each other alive", func() (bool, string) {
		var desc []string
		ok := true
		for on, other := range map[string]string{"A": "B", "B": "A"} {
			rows, err := c.Peers(on)
			if err != nil {
				return false, err.Error()
			}
			states := apiclient.PeerStates(rows, c.NameOf)
			ok = ok && states["C"] == "left" && states[other] == "alive"
			desc = append(desc, fmt.Sprintf("%s: %v", on, states))
		}
		return ok, strings.Join(desc, "; ")
	})
	c.waitConverged(map[string]int64{"last": 5}, "A", "B")

	c.restart("C", testcluster.SameDir)
	c.waitMesh("A", "B", "C")
	c.waitConverged(map[string]int64{"last": 5})
}
