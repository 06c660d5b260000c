package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"countd/auth"
	"countd/internal/apiclient"
	pollpkg "countd/internal/poll"
	"countd/internal/proc"
)

// Key test timings.
const (
	keyJoinTimeout = 30 * time.Second // for a node to be listed alive and get the state
	quietFor       = 2 * time.Second  // how long a refused request or a stranger must change nothing
	keyPollTimeout = 5 * time.Second  // one GET of the tests' own (a failure fails the test)
)

// The texts that mark a 401 between nodes in a node's debug log: the
// sender's (a push or health check refused, actors.ErrUnauthorized) and the
// receiver's (httpapi refusing a request).
const (
	sentRefused = "refused by the peer: no valid cluster signature"
	gotRefused  = "refused a request without a valid cluster signature"
)

// newKey returns a fresh cluster key as a key file line holds it: 32
// random bytes in base64.
func newKey(t *testing.T) string {
	t.Helper()
	b := make([]byte, 32)
	rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}

// writeKeys writes keys, one per line, to path: the first signs.
func writeKeys(t *testing.T, path string, keys ...string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(strings.Join(keys, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

// keyedNode is a cluster node with a key file of its own holding keys,
// logging at debug level so that every 401 between nodes is in its log.
func keyedNode(t *testing.T, i, port int, keys []string, extra ...string) (*clusterNode, string) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "cluster.key")
	writeKeys(t, file, keys...)
	return newClusterNode(t, i, port, append([]string{"-cluster-key-file=" + file, "-log-level=debug"}, extra...)...), file
}

// refusals counts the lines of n's log that record a 401 between nodes,
// sent or received.
func refusals(n *clusterNode) int {
	c := 0
	for _, l := range n.proc.Output.Lines() {
		if strings.Contains(l, sentRefused) || strings.Contains(l, gotRefused) {
			c++
		}
	}
	return c
}

// TestClusterKeyProcesses runs three countd processes with one cluster key:
// they replicate; a fourth with the key, started with -peers naming one of
// them, joins and gets the state; unsigned and wrongly signed node-to-node
// and membership requests get 401 and change no node's values or
// membership; and a process with another key joins nothing.
func TestClusterKeyProcesses(t *testing.T) {
	key := newKey(t)
	ports := freePorts(t, 3) // the later nodes take port 0: a port reserved now could be taken meanwhile
	var nodes []*clusterNode
	for i := range 3 {
		var peers []string
		for j := range 3 {
			if j != i {
				peers = append(peers, strconv.Itoa(ports[j]))
			}
		}
		n, _ := keyedNode(t, i, ports[i], []string{key}, "-peers="+strings.Join(peers, ","))
		nodes = append(nodes, n)
	}
	startAll(t, nodes...)
	c := newClient(t, 4)
	c.Timeout = keyPollTimeout
	api := apiclient.Client{HTTP: c}

	if r := api.Change(nodes[0].url(), "visits", 5); r.Outcome != apiclient.OK {
		t.Fatalf("increment on node0: %+v", r)
	}
	awaitValues(t, c, nodes, map[string]int64{"visits": 5})

	// A fourth node with the key, knowing only node0, joins and gets the state.
	n3, _ := keyedNode(t, 3, 0, []string{key}, "-peers="+strconv.Itoa(ports[0]))
	startAll(t, n3)
	nodes = append(nodes, n3)
	awaitValues(t, c, nodes, map[string]int64{"visits": 5})
	t.Logf("node3 joined through node0 and reads visits=5; all four list each other alive")

	// Forged requests: none signed, then signed with a key that is not the
	// cluster's. Each would change something if it were taken: the push
	// adds 99 to visits, the POST adds a peer, the DELETE drops node1.
	wrong, err := auth.New([]byte(newKey(t)))
	if err != nil {
		t.Fatal(err)
	}
	push := `{"from":"127.0.0.1:1","replica":"00000000000000ab","entries":[{"counter":"visits","replica":"00000000000000ab","p":99,"n":0}]}`
	join := `{"addr":"127.0.0.1:1"}`
	before := views(t, c, nodes)
	for _, signer := range []*auth.Keyring{nil, wrong} {
		for _, n := range nodes {
			for _, r := range []struct{ method, path, body string }{
				{"POST", "/replicate", push},
				{"POST", "/peers", join},
				{"DELETE", "/peers/" + nodes[1].addr, ""},
			} {
				if n == nodes[1] && r.method == "DELETE" {
					r.path = "/peers/" + nodes[2].addr
				}
				code, body := send(t, c, signer, r.method, n.url()+r.path, r.body)
				if code != http.StatusUnauthorized {
					t.Errorf("%s %s %s (signed: %v): %d %s, want 401", n.name, r.method, r.path, signer != nil, code, body)
				}
			}
		}
	}
	err = pollpkg.While(context.Background(), quietFor, 50*time.Millisecond, "values and membership after forged requests",
		func() (bool, string) {
			now := views(t, c, nodes)
			for i := range nodes {
				if !sameView(now[i], before[i]) {
					return false, fmt.Sprintf("%s: %s, was %s", nodes[i].name, now[i], before[i])
				}
			}
			return true, ""
		})
	if err != nil {
		t.Error(err)
	}
	// The same push signed with the cluster's key is taken: the forged
	// requests were refused for their signature alone.
	right, err := auth.New([]byte(key))
	if err != nil {
		t.Fatal(err)
	}
	if code, body := send(t, c, right, "POST", nodes[2].url()+"/replicate",
		strings.ReplaceAll(push, `"visits"`, `"signed"`)); code != http.StatusOK {
		t.Fatalf("the push signed with the cluster key: %d %s, want 200", code, body)
	}
	awaitValues(t, c, nodes, map[string]int64{"visits": 5, "signed": 99})

	// A node with another key, naming two of the cluster's nodes as peers:
	// its health checks and pushes get 401, no node ever lists it, and its
	// counter never arrives.
	stranger, _ := keyedNode(t, 4, 0, []string{newKey(t)}, "-peers="+strconv.Itoa(ports[0])+","+strconv.Itoa(ports[1]))
	// The forged requests above were refused too: the stranger's must add
	// to what each node had refused by now.
	refusedBefore := []int{refusals(nodes[0]), refusals(nodes[1])}
	startAll(t, stranger)
	if r := api.Change(stranger.url(), "intruder", 7); r.Outcome != apiclient.OK {
		t.Fatalf("increment on the stranger: %+v", r)
	}
	if _, err := pollpkg.Until(context.Background(), keyJoinTimeout, pollInterval, "the stranger's requests refused",
		func() (bool, string) {
			for i, n := range nodes[:2] {
				if refusals(n) <= refusedBefore[i] {
					return false, n.name + " has refused nothing of the stranger's"
				}
			}
			return strings.Contains(stranger.proc.Output.String(), sentRefused), "the stranger's log shows no 401"
		}); err != nil {
		t.Fatal(err)
	}
	err = pollpkg.While(context.Background(), quietFor, 50*time.Millisecond, "the stranger kept out",
		func() (bool, string) {
			for _, v := range views(t, c, nodes) {
				if _, ok := v.peers[stranger.addr]; ok {
					return false, fmt.Sprintf("a node lists %s: %s", stranger.addr, v)
				}
				if _, ok := v.values["intruder"]; ok {
					return false, fmt.Sprintf("a node has the stranger's counter: %s", v)
				}
			}
			return true, ""
		})
	if err != nil {
		t.Error(err)
	}
	t.Logf("the stranger sees: %s", viewOf(c, stranger))
	stranger.proc.Stop()

	// A partition heals with the key: node1 hangs (SIGSTOP) until node0
	// sees it as not alive, the others take changes meanwhile, and once it
	// resumes (SIGCONT) every node agrees again, which needs signed pushes
	// both ways after the stall.
	n1 := nodes[1]
	n1.signal(t, syscall.SIGSTOP)
	if _, err := pollpkg.Until(context.Background(), keyJoinTimeout, pollInterval, "node0 sees node1 not alive",
		func() (bool, string) {
			states, err := peerStates(c, nodes[0])
			return err == nil && states[n1.addr] != "alive", fmt.Sprintf("%v %v", states, err)
		}); err != nil {
		n1.signal(t, syscall.SIGCONT)
		t.Fatal(err)
	}
	for i, n := range nodes {
		if n != n1 {
			if r := api.Change(n.url(), "healed", int64(i+1)); r.Outcome != apiclient.OK {
				n1.signal(t, syscall.SIGCONT)
				t.Fatalf("increment on %s while node1 hangs: %+v", n.name, r)
			}
		}
	}
	n1.signal(t, syscall.SIGCONT)
	resumed := time.Now()
	awaitValues(t, c, nodes, map[string]int64{"visits": 5, "signed": 99, "healed": 1 + 3 + 4})
	t.Logf("node1 resumed and every node agreed %v later", time.Since(resumed).Round(time.Millisecond))
	for _, n := range nodes {
		n.proc.Stop()
	}
}

// TestClusterKeyRotationUnderLoad rotates the key of a running 3-node
// cluster while clients change counters on every node, in the README's
// three rounds (add the new key second; swap; drop the old), editing each
// node's key file and sending each PID SIGHUP in turn. No node may log a
// 401 between nodes meanwhile. Then it rotates again the wrong way
// (skipping round 1), which must show 401s: the check can see a bad
// rotation. No acknowledged change may be lost either way.
func TestClusterKeyRotationUnderLoad(t *testing.T) {
	const clientsPerNode = 2
	k1, k2, k3 := newKey(t), newKey(t), newKey(t)
	ports := freePorts(t, 3)
	var nodes []*clusterNode
	var files []string
	for i := range 3 {
		var peers []string
		for j := range 3 {
			if j != i {
				peers = append(peers, strconv.Itoa(ports[j]))
			}
		}
		n, f := keyedNode(t, i, ports[i], []string{k1}, "-peers="+strings.Join(peers, ","))
		nodes, files = append(nodes, n), append(files, f)
	}
	startAll(t, nodes...)
	c := newClient(t, 3)
	c.Timeout = keyPollTimeout

	l := newClusterLoad(t, clusterCounters)
	for _, n := range nodes {
		l.addClients(n, clientsPerNode)
	}
	l.waitAcked(t, 300)
	awaitAlive(t, c, nodes)

	// rotate edits every file to hold keys, then SIGHUPs each node in turn;
	// after each, it waits for the node to log the reload and for every
	// node to push a few times more (or to be refused: a node stops
	// pushing to a peer that refuses its key, which it lists
	// unauthorized), so that a key one node does not have yet is used, and
	// refused, before the next node reloads.
	rotate := func(keys ...string) {
		t.Helper()
		for _, f := range files {
			writeKeys(t, f, keys...)
		}
		for _, n := range nodes {
			reloads := strings.Count(n.proc.Output.String(), "cluster key reloaded")
			pushes := make([]float64, len(nodes))
			refused := make([]int, len(nodes))
			for i, o := range nodes {
				pushes[i] = metric(t, c, o, "countd_replication_pushes_total")
				refused[i] = refusals(o)
			}
			n.signal(t, syscall.SIGHUP)
			if _, err := pollpkg.Until(context.Background(), keyJoinTimeout, pollInterval, n.name+" reloads and every node pushes again",
				func() (bool, string) {
					if strings.Count(n.proc.Output.String(), "cluster key reloaded") == reloads {
						return false, "no reload logged"
					}
					for i, o := range nodes {
						if d := metric(t, c, o, "countd_replication_pushes_total") - pushes[i]; d < 5 && refusals(o) == refused[i] {
							return false, fmt.Sprintf("%s pushed %v times since", o.name, d)
						}
					}
					return true, ""
				}); err != nil {
				t.Fatal(err)
			}
		}
	}
	count := func() (n int, failures float64) {
		for _, o := range nodes {
			n += refusals(o)
			failures += metric(t, c, o, "countd_replication_push_failures_total")
		}
		return n, failures
	}

	refused0, failed0 := count()
	acked0 := l.ledger.Counts().OK
	rotate(k1, k2) // round 1: every node verifies k2
	rotate(k2, k1) // round 2: every node signs with k2
	rotate(k2)     // round 3: k1 is gone
	refused1, failed1 := count()
	t.Logf("right rotation: %d changes acked meanwhile; 401s between nodes logged %d; push failures %v",
		l.ledger.Counts().OK-acked0, refused1-refused0, failed1-failed0)
	if refused1 != refused0 {
		t.Errorf("the three-round rotation gave %d 401s between nodes, want none", refused1-refused0)
	}
	if l.ledger.Counts().OK-acked0 < 100 {
		t.Errorf("only %d changes acked during the rotation: it did not run under load", l.ledger.Counts().OK-acked0)
	}

	// The wrong way: the new key first at once. Until the last node reloads,
	// the nodes already reloaded sign with a key the others lack.
	acked1 := l.ledger.Counts().OK
	rotate(k3, k2)
	rotate(k3)
	refused2, failed2 := count()
	t.Logf("rotation without round 1: %d changes acked meanwhile; 401s between nodes logged %d; push failures %v",
		l.ledger.Counts().OK-acked1, refused2-refused1, failed2-failed1)
	if refused2 == refused1 {
		t.Errorf("skipping round 1 gave no 401 between nodes: the check cannot see a bad rotation")
	}

	l.stop()
	t.Logf("load: %s", l)
	values := awaitAgreement(t, nodes, l)
	l.checkBounds(t, values)
	for _, n := range nodes {
		n.proc.Stop()
	}
}

// TestNonLoopbackBindNeedsKey checks that -bind=0.0.0.0 without a cluster
// key, a CA or -insecure stops the node before it listens: exit status 2
// and one line naming -cluster-key-file.
func TestNonLoopbackBindNeedsKey(t *testing.T) {
	args := []string{"-bind=0.0.0.0", "-port=0", "-data-dir=" + t.TempDir()}
	p, err := proc.Start(proc.Spec{Name: "countd", Path: binary(t), Args: args})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(exitTimeout)
	if err := p.Wait(startTimeout); err != nil {
		t.Fatalf("countd %q: %v, want exit status 2; stderr:\n%s", args, err, p.Output)
	}
	if code := p.State().ExitCode(); code != 2 {
		t.Fatalf("countd %q: %v, want exit status 2; stderr:\n%s", args, p.Err(), p.Output)
	}
	out := p.Output.String()
	if lines := strings.Count(out, "\n"); lines != 1 || !strings.HasSuffix(out, "\n") {
		t.Fatalf("stderr has %d lines, want exactly one:\n%s", lines, out)
	}
	if !strings.Contains(out, "-cluster-key-file") {
		t.Fatalf("stderr %q does not name -cluster-key-file", out)
	}
}

// send makes one request with body, signed by signer unless it is nil, and
// returns the status and body.
func send(t *testing.T, c *http.Client, signer *auth.Keyring, method, url, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if signer != nil {
		signer.Sign(req, []byte(body), time.Now())
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(bytes.TrimSpace(b))
}

// views is every node's view, failing the test on an error.
func views(t *testing.T, c *http.Client, nodes []*clusterNode) []nodeView {
	t.Helper()
	var vs []nodeView
	for _, n := range nodes {
		v := viewOf(c, n)
		if v.err != nil {
			t.Fatalf("%s: %v", n.name, v.err)
		}
		vs = append(vs, v)
	}
	return vs
}

func sameView(a, b nodeView) bool {
	return maps.Equal(a.values, b.values) && maps.Equal(a.peers, b.peers)
}

// awaitValues waits until every node reads want and lists every other node
// alive.
func awaitValues(t *testing.T, c *http.Client, nodes []*clusterNode, want map[string]int64) {
	t.Helper()
	if _, err := pollpkg.Until(context.Background(), keyJoinTimeout, pollInterval, fmt.Sprintf("every node at %v, all alive", want),
		func() (bool, string) {
			for _, n := range nodes {
				v := viewOf(c, n)
				if v.err != nil || !maps.Equal(v.values, want) || !allAlive(v.peers, n, nodes) {
					return false, fmt.Sprintf("%s: %s", n.name, v)
				}
			}
			return true, ""
		}); err != nil {
		t.Fatal(err)
	}
}

// awaitAlive waits until every node lists every other node alive.
func awaitAlive(t *testing.T, c *http.Client, nodes []*clusterNode) {
	t.Helper()
	if _, err := pollpkg.Until(context.Background(), keyJoinTimeout, pollInterval, "every node lists the others alive",
		func() (bool, string) {
			for _, n := range nodes {
				states, err := peerStates(c, n)
				if err != nil || !allAlive(states, n, nodes) {
					return false, fmt.Sprintf("%s: %v %v", n.name, states, err)
				}
			}
			return true, ""
		}); err != nil {
		t.Fatal(err)
	}
}

// metric reads one unlabelled metric from n's GET /metrics.
func metric(t *testing.T, c *http.Client, n *clusterNode, name string) float64 {
	t.Helper()
	resp, err := c.Get(n.url() + "/metrics")
	if err != nil {
		t.Fatalf("%s: GET /metrics: %v", n.name, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: GET /metrics: %d %v", n.name, resp.StatusCode, err)
	}
	for l := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("%s: %s: %v", n.name, name, err)
			}
			return f
		}
	}
	t.Fatalf("%s: no %s in /metrics", n.name, name)
	return 0
}
