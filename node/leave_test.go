package node_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"countd/internal/apiclient"
	"countd/internal/testcluster"
)

// TestGracefulStopLeaves stops C of three gracefully: once its Close
// returns, A and B list it left within a heartbeat, and it stays left (not
// suspect, not down) for longer than their health checks would take to
// find it down; when it starts again they list it alive. Its last change
// reached them before it left.
func TestGracefulStopLeaves(t *testing.T) {
	c := startCluster(t, 3, withSeed(13))
	hb := c.heartbeat()
	if r := c.Change("C", "last", 5); r.Outcome != apiclient.OK {
		t.Fatalf("change on C: %+v", r)
	}

	c.stop("C")
	stopped := time.Now()
	for _, on := range []string{"A", "B"} {
		d := c.waitPeers(on, "lists C left", func(s map[string]string) bool { return s["C"] == "left" })
		t.Logf("%s lists C left %v after its Close returned (heartbeat %v)", on, time.Since(stopped).Round(time.Millisecond), hb)
		if d > hb {
			t.Errorf("%s listed C left %v after its Close returned, more than a heartbeat (%v)", on, d, hb)
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
