package node_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"countd/auth"
	"countd/internal/poll"
	"countd/internal/testcluster"
	"countd/node"
)

// Keys for the cluster tests; each is at least auth.MinKeyLen bytes.
const (
	key1     = "first-cluster-key-first-cluster-key-0001"
	key2     = "second-cluster-key-second-cluster-key-02"
	keyOther = "someone-elses-key-someone-elses-key-0003"
)

// count401 counts the 401s a node's peers answer it.
type count401 struct {
	next http.RoundTripper
	n    *atomic.Int64
}

func (c count401) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := c.next.RoundTrip(r)
	if err == nil && resp.StatusCode == http.StatusUnauthorized {
		c.n.Add(1)
	}
	return resp, err
}

// keyedCluster is a cluster whose nodes each load their cluster key from a
// file of their own (key files[name]); unauthorized[name] counts the 401s
// node name got from its peers.
type keyedCluster struct {
	*cluster
	files        map[string]string
	rings        map[string]*auth.Keyring
	unauthorized map[string]*atomic.Int64
}

// startKeyed reserves names, writes each node its key file (keys[name],
// lines joined) and returns the cluster; no node is open yet.
func startKeyed(t *testing.T, keys map[string][]string) *keyedCluster {
	t.Helper()
	kc := &keyedCluster{files: map[string]string{}, rings: map[string]*auth.Keyring{}, unauthorized: map[string]*atomic.Int64{}}
	dir := t.TempDir()
	var names []string
	for name, lines := range keys {
		names = append(names, name)
		kc.files[name] = filepath.Join(dir, name+".key")
		kc.writeKeys(t, name, lines...)
		ring, err := auth.Load(kc.files[name])
		if err != nil {
			t.Fatal(err)
		}
		kc.rings[name] = ring
		kc.unauthorized[name] = new(atomic.Int64)
	}
	slices.Sort(names)
	c := &cluster{t: t}
	t.Cleanup(func() {
		if t.Failed() && c.Cluster != nil {
			dumpLogs(t, c.Cluster, 400)
		}
	})
	c.Cluster = testcluster.New(t, testcluster.Options{Config: func(name string, cfg *node.Config) {
		cfg.ClusterKeys = kc.rings[name]
		cfg.RoundTripper = count401{cfg.RoundTripper, kc.unauthorized[name]}
	}})
	c.reserve(names...)
	kc.cluster = c
	return kc
}

func (kc *keyedCluster) writeKeys(t *testing.T, name string, keys ...string) {
	t.Helper()
	if err := os.WriteFile(kc.files[name], []byte(strings.Join(keys, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

// reload is what SIGHUP does on node name: read its key file again.
func (kc *keyedCluster) reload(t *testing.T, name string) {
	t.Helper()
	if err := kc.rings[name].Reload(); err != nil {
		t.Fatal(err)
	}
}

// TestClusterKey runs nodes that share a key: replication and a join work
// with every request signed, and a node with another key can neither join
// nor push anything, while its own checks of the cluster fail.
func TestClusterKey(t *testing.T) {
	kc := startKeyed(t, map[string][]string{"A": {key1}, "B": {key1}, "C": {key1}, "X": {keyOther}})
	kc.start("A", kc.Addrs("B"), true)
	kc.start("B", kc.Addrs("A"), true)
	kc.waitMesh("A", "B")

	l := newLedger()
	kc.load(l, 1, 2, 10, []string{"A", "B"}, counterNames)
	kc.waitConverged(l.exact(t), "A", "B")

	// C joins through A alone; gossip brings B.
	kc.start("C", kc.Addrs("A"), true)
	kc.waitMesh("A", "B", "C")
	kc.load(l, 2, 2, 10, []string{"A", "B", "C"}, counterNames)
	kc.waitConverged(l.exact(t), "A", "B", "C")

	// X, with another key, asks A to take it in and has a change of its own.
	kc.start("X", kc.Addrs("A"), true)
	if r := kc.Change("X", "stranger", 5); r.Err != nil {
		t.Fatal(r.Err)
	}
	// X's checks of A are refused, so X sees A unauthorized.
	kc.waitPeers("X", "sees A unauthorized", func(states map[string]string) bool { return states["A"] == "unauthorized" })
	if kc.unauthorized["X"].Load() == 0 {
		t.Fatal("X got no 401 from A")
	}
	want := l.exact(t)
	holdFor(t, 5*kc.heartbeat(), "no node lists X or has its counter", func() (bool, string) {
		for _, name := range []string{"A", "B", "C"} {
			got, err := kc.Counters(name)
			if err != nil {
				return false, err.Error()
			}
			if _, ok := got["stranger"]; ok {
				return false, fmt.Sprintf("%s has X's counter: %v", name, got)
			}
			rows, err := kc.Peers(name)
			if err != nil {
				return false, err.Error()
			}
			for _, r := range rows {
				if r.Addr == kc.Addr("X") {
					return false, fmt.Sprintf("%s lists X: %s", name, kc.DescribePeers(rows))
				}
			}
		}
		return true, ""
	})
	kc.waitConverged(want, "A", "B", "C")
	for _, name := range []string{"A", "B", "C"} {
		if n := kc.unauthorized[name].Load(); n != 0 {
			t.Errorf("%s got %d 401s from nodes that share its key", name, n)
		}
	}
}

// TestWrongKeyPeerIsUnauthorized runs two nodes with different keys: each
// lists the other as unauthorized and logs it once at warn, however many of
// its probes are refused; once one node's key file is fixed and reloaded,
// both list each other alive (one info line each) and replicate.
func TestWrongKeyPeerIsUnauthorized(t *testing.T) {
	kc := startKeyed(t, map[string][]string{"A": {key1}, "B": {keyOther}})
	kc.start("A", kc.Addrs("B"), true)
	kc.start("B", kc.Addrs("A"), true)
	for _, pair := range [][2]string{{"A", "B"}, {"B", "A"}} {
		on, peer := pair[0], pair[1]
		kc.waitPeers(on, "sees "+peer+" unauthorized", func(s map[string]string) bool { return s[peer] == "unauthorized" })
	}
	if r := kc.Change("A", "mine", 3); r.Err != nil {
		t.Fatal(r.Err)
	}
	// Several more refused probes each way.
	seen := kc.unauthorized["A"].Load() + kc.unauthorized["B"].Load()
	if _, err := poll.Until(context.Background(), convergeTimeout, 10*time.Millisecond, "more refused probes", func() (bool, string) {
		n := kc.unauthorized["A"].Load() + kc.unauthorized["B"].Load()
		return n >= seen+6, fmt.Sprintf("%d 401s since", n-seen)
	}); err != nil {
		t.Fatal(err)
	}
	logLines := func(node, msg string) int {
		lines, _ := kc.Logs(0)
		n := 0
		for _, l := range lines {
			if strings.Contains(l, "n="+node+"#0") && strings.Contains(l, `msg="`+msg) {
				n++
			}
		}
		return n
	}
	for _, name := range []string{"A", "B"} {
		if n := logLines(name, "peer unauthorized"); n != 1 {
			t.Errorf("%s logged %d unauthorized lines, want 1", name, n)
		}
		if got, err := kc.Counters(name); err != nil || (name == "B" && len(got) != 0) {
			t.Errorf("%s's counters %v (%v): nothing crosses between different keys", name, got, err)
		}
	}

	// B's key is fixed and reloaded (SIGHUP): both sides recover.
	kc.writeKeys(t, "B", key1)
	kc.reload(t, "B")
	kc.waitMesh("A", "B")
	kc.waitConverged(map[string]int64{"mine": 3}, "A", "B")
	for _, name := range []string{"A", "B"} {
		if n := logLines(name, "peer no longer unauthorized: alive"); n != 1 {
			t.Errorf("%s logged %d recovery lines, want 1", name, n)
		}
	}
}

// TestClusterKeyRotation rotates the key in three steps, each a key file
// change and a reload on every node in turn: add the new key second (every
// node verifies it), put it first (nodes sign with it), drop the old one.
// Clients change counters on every node between reloads, so every mix of
// old and new nodes carries changes. No change is lost and no node refuses
// another.
func TestClusterKeyRotation(t *testing.T) {
	names := []string{"A", "B", "C"}
	kc := startKeyed(t, map[string][]string{"A": {key1}, "B": {key1}, "C": {key1}})
	for _, name := range names {
		kc.start(name, kc.Others(name), true)
	}
	kc.waitMesh(names...)

	l := newLedger()
	seed := uint64(0)
	burst := func() {
		seed++
		kc.load(l, seed, 2, 5, names, counterNames)
		kc.waitConverged(l.exact(t), names...)
	}
	burst()
	for _, keys := range [][]string{{key1, key2}, {key2, key1}, {key2}} {
		for _, name := range names {
			kc.writeKeys(t, name, keys...)
			kc.reload(t, name)
			burst()
		}
	}
	kc.waitMesh(names...)
	// Every node took the reloads: it holds key2 alone (a reload that did
	// nothing would leave key1, and no 401 either).
	want, err := auth.New([]byte(key2))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		if n := kc.unauthorized[name].Load(); n != 0 {
			t.Errorf("%s got %d 401s during the rotation", name, n)
		}
		if ids := kc.rings[name].IDs(); !slices.Equal(ids, want.IDs()) {
			t.Errorf("%s holds keys %v after the rotation, want only key2's %v", name, ids, want.IDs())
		}
	}
}
