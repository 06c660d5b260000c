package testcluster

import (
	"errors"
	"maps"
	"net/http"
	"strings"
	"testing"
	"time"

	"countd/auth"
)

// TestHarness drives the harness's life cycle on two nodes and checks that
// misuse comes back as errors rather than failing the test.
func TestHarness(t *testing.T) {
	c := New(t, Options{Seed: 1})
	if err := c.Start(2, "B"); err != nil {
		t.Fatal(err)
	}
	if err := c.Reserve("A"); err == nil {
		t.Error("reserving A twice: no error")
	}
	if err := c.Open("A", nil, false); err == nil {
		t.Error("opening the running A: no error")
	}
	if err := c.Restart("A", SameDir); err == nil {
		t.Error("restarting the running A: no error")
	}
	if _, err := c.Stop("Z"); err == nil {
		t.Error("stopping a node that does not exist: no error")
	}
	if got := c.Others("A"); len(got) != 1 || got[0] != c.Addr("B") || c.NameOf(got[0]) != "B" {
		t.Errorf("Others(A) = %v", got)
	}

	if r := c.Change("A", "x", 5); r.Err != nil {
		t.Fatal(r.Err)
	}
	if r := c.Change("B", "x", -2); r.Err != nil {
		t.Fatal(r.Err)
	}
	want := map[string]int64{"x": 3}
	if _, err := c.WaitConverged(10*time.Second, want); err != nil {
		t.Fatal(err)
	}
	if v, err := c.Get("B", "x"); err != nil || v != 3 {
		t.Errorf("Get(B, x) = %d, %v", v, err)
	}

	// A crash loses nothing A acknowledged; a restart takes a new replica.
	if err := c.Crash("A"); err != nil {
		t.Fatal(err)
	}
	if err := c.Crash("A"); !errors.Is(err, ErrNotRunning) {
		t.Errorf("crashing a stopped node: %v, want ErrNotRunning", err)
	}
	if live := c.Live(); len(live) != 1 || live[0] != "B" {
		t.Errorf("Live = %v, want [B]", live)
	}
	if err := c.Restart("A", SameDir); err != nil {
		t.Fatal(err)
	}
	if got, err := c.Counters("A"); err != nil || !maps.Equal(got, want) {
		t.Errorf("A after a restart on its data dir: %v, %v; want %v", got, err, want)
	}
	if r := c.Replicas("A"); len(r) != 2 || r[0] == r[1] {
		t.Errorf("A's replicas %v, want two different", r)
	}

	// B ran in memory: it cannot come back on a data dir.
	if _, err := c.Stop("B"); err != nil {
		t.Fatal(err)
	}
	if err := c.Restart("B", SameDir); err == nil {
		t.Error("restarting the in-memory B on its data dir: no error")
	}
	if err := c.Restart("B", WipedDir); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitMesh(10*time.Second, "A", "B"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WaitConverged(10*time.Second, want); err != nil {
		t.Fatal(err)
	}

	if err := c.Remove("B"); err != nil {
		t.Fatal(err)
	}
	if r := c.Removed(); len(r) != 1 || r[0] != "B" || len(c.Others("A")) != 0 {
		t.Errorf("after removing B: removed %v, others of A %v", r, c.Others("A"))
	}
	if rows, err := c.Peers("A"); err != nil || len(rows) != 0 {
		t.Errorf("A lists %v (%v) after B's removal", rows, err)
	}
}

// TestClusterKeys runs a keyed cluster: the nodes replicate with every
// request signed, an unsigned membership request is refused, and the
// harness's own (signed) removal gets through.
func TestClusterKeys(t *testing.T) {
	keys, err := auth.New([]byte("testcluster-key-testcluster-key-testcluster"))
	if err != nil {
		t.Fatal(err)
	}
	c := New(t, Options{Seed: 2, ClusterKeys: keys})
	if err := c.Start(3); err != nil {
		t.Fatal(err)
	}
	if r := c.Change("A", "x", 5); r.Err != nil {
		t.Fatal(r.Err)
	}
	if _, err := c.WaitConverged(10*time.Second, map[string]int64{"x": 5}); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(c.URL("A")+"/peers", "application/json", strings.NewReader(`{"addr":"127.0.0.1:1"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("unsigned POST /peers: %d, want 401", resp.StatusCode)
	}
	if err := c.RemovePeer("A", "C"); err != nil {
		t.Fatalf("the harness's signed removal: %v", err)
	}
	if rows, err := c.Peers("A"); err != nil || len(rows) != 1 {
		t.Fatalf("A's peers after removing C: %s (%v)", c.DescribePeers(rows), err)
	}
}
