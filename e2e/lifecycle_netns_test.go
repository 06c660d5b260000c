//go:build linux

package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"testing"

	"countd/internal/apiclient"
)

// TestNetnsDeleteDuringPartition splits the five-node namespace cluster of
// netns_test.go into {node0 node1} | {node2 node3 node4}, deletes a counter
// on node0 while node2, node3 and node4 increment it, and heals. The delete
// saw only what the counter held before the split, so once healed every
// node must hold exactly the increments made on the other side, plus those
// made on node0's side after the delete (issue 12's "add wins"). It needs
// root, like the other netns tests, and skips without it.
func TestNetnsDeleteDuringPartition(t *testing.T) {
	const (
		name     = "contested"
		perNode  = 25 // increments on each node of the other side
		afterDel = 4  // an increment on node0's side after the delete
	)
	c := newNetnsCluster(t)
	client := newClient(t, netnsNodes)
	api := apiclient.Client{HTTP: client}
	change := func(i int, delta int64) apiclient.Result {
		t.Helper()
		r := api.Change(c.nodes[i].url(), name, delta)
		if r.Outcome != apiclient.OK {
			t.Fatalf("%s: change %s by %d: %v", c.nodes[i].name, name, delta, r.Err)
		}
		return r
	}
	change(0, 10)
	change(3, 20)
	awaitNodes(t, "the counter everywhere before the split", c.nodes, valuesAre(map[string]int64{name: 30}))

	left, right := []int{0, 1}, []int{2, 3, 4}
	for _, i := range left {
		c.ip("-n", c.hub, "link", "set", c.port(i), "master", "br1")
	}
	c.awaitViews("split", view{observer: 0, alive: []int{1}, notAlive: right}, view{observer: 2, alive: []int{3, 4}, notAlive: left})

	// The other side increments while node0 deletes.
	var ledger apiclient.Ledger
	var wg sync.WaitGroup
	for _, i := range right {
		wg.Go(func() {
			for range perNode {
				d := 1 + rand.Int64N(5)
				ledger.Record(c.nodes[i].name, name, d, api.Change(c.nodes[i].url(), name, d))
			}
		})
	}
	r := api.Delete(context.Background(), c.nodes[0].url(), name)
	wg.Wait()
	if r.Outcome != apiclient.OK || r.Status != http.StatusNoContent {
		t.Fatalf("DELETE /counters/%s on node0: status %d, %v; want 204", name, r.Status, r.Err)
	}
	unobserved, err := ledger.Exact()
	if err != nil {
		t.Fatal(err)
	}
	awaitNodes(t, "gone on node0's side", []*clusterNode{c.nodes[0], c.nodes[1]}, valuesAre(map[string]int64{}))
	awaitNodes(t, "the other side has its increments, and no delete", []*clusterNode{c.nodes[2], c.nodes[3], c.nodes[4]},
		valuesAre(map[string]int64{name: 30 + unobserved[name]}))
	// On node0's side the counter starts again from nothing.
	if got := change(1, afterDel); got.Value != afterDel {
		t.Fatalf("node1: increment of %s by %d after the delete = value %d, want %d", name, afterDel, got.Value, afterDel)
	}

	for _, i := range left {
		c.ip("-n", c.hub, "link", "set", c.port(i), "master", "br0")
	}
	c.awaitViews("heal", allAliveViews(netnsNodes)...)
	want := unobserved[name] + afterDel
	awaitNodes(t, fmt.Sprintf("exactly the unobserved increments (%d + %d) everywhere", unobserved[name], afterDel), c.nodes,
		valuesAre(map[string]int64{name: want}))
	for _, n := range c.nodes {
		n.proc.Stop()
	}
}
