package e2e

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"countd/internal/apiclient"
	pollpkg "countd/internal/poll"
)

// Cluster test timings. The node's timers are set fast by clusterFlags; the
// deadlines are generous for a loaded CI machine running -race.
const (
	opTimeout       = time.Second      // one client request; past it the outcome is unknown
	pollTimeout     = time.Second      // one GET while polling for agreement
	stopFor         = 2 * time.Second  // how long node1 stays SIGSTOPped: the fault
	agreeTimeout    = 60 * time.Second // from the end of the load to agreement
	progressTimeout = 30 * time.Second // for the load to reach a number of acks
)

// clusterCounters are the named counters the load changes.
var clusterCounters = []string{"apples", "pears", "plums"}

// clusterFlags are the timing flags every cluster node gets, so that failure
// detection and recovery take well under a second each.
var clusterFlags = []string{
	"-heartbeat-interval=100ms",
	"-heartbeat-timeout=300ms",
	"-failures-before-down=3",
	"-flush-delay=5ms",
	"-retry-min=20ms",
	"-retry-max=300ms",
	"-down-probe-max=1s",
}

// clusterNode is one node of a test cluster: its fixed port and data dir,
// which survive restarts, and the process currently running it.
type clusterNode struct {
	name string // node0, node1, ...
	port int    // 0: one the kernel picks at start (startAll learns addr then)
	addr string // 127.0.0.1:port, the node's name in /peers
	args []string
	wrap []string // a command that execs the binary in place (see spawnVia), or nil
	proc *node
}

func newClusterNode(t *testing.T, i, port int, extra ...string) *clusterNode {
	t.Helper()
	n := &clusterNode{name: "node" + strconv.Itoa(i), port: port, addr: "127.0.0.1:" + strconv.Itoa(port)}
	n.args = append([]string{"-port=" + strconv.Itoa(port), "-data-dir=" + t.TempDir()}, clusterFlags...)
	n.args = append(n.args, extra...)
	return n
}

// meshNodes returns a cluster node per port, each with every other port in
// -peers.
func meshNodes(t *testing.T, ports []int) []*clusterNode {
	var nodes []*clusterNode
	for i, port := range ports {
		var peers []string
		for j, q := range ports {
			if j != i {
				peers = append(peers, strconv.Itoa(q))
			}
		}
		nodes = append(nodes, newClusterNode(t, i, port, "-peers="+strings.Join(peers, ",")))
	}
	return nodes
}

func (n *clusterNode) url() string { return "http://" + n.addr }

// startAll starts the nodes' processes at once and waits until each serves
// on its own port.
func startAll(t *testing.T, nodes ...*clusterNode) {
	t.Helper()
	for _, n := range nodes {
		n.proc = spawnVia(t, n.wrap, n.args...)
	}
	for _, n := range nodes {
		n.proc.waitStarted()
		n.proc.waitHealthy()
		if n.port == 0 { // the kernel picked it: nobody names this node before it starts
			n.addr = strings.TrimPrefix(n.proc.URL(), "http://")
		} else if n.proc.URL() != n.url() {
			t.Fatalf("%s listens on %s, want %s", n.name, n.proc.URL(), n.url())
		}
	}
}

// signal sends sig to the node's process, failing the test if it has died.
func (n *clusterNode) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := n.proc.Signal(sig); err != nil {
		t.Fatalf("%s: %v", n.name, err)
	}
}

// TestSeedClusterUnderSigstop runs the seed's three-node command lines with
// -newnode naming a fourth node that starts later with no peers at all, puts
// increments and decrements of a few counters on every node, and hangs node1
// with SIGSTOP for two seconds in the middle of it. Once the load stops,
// every node must agree on every counter (invariant 1), list the other three
// as alive, and each value must lie within what the clients can know was
// applied (invariant 2).
func TestSeedClusterUnderSigstop(t *testing.T) {
	const clientsPerNode = 3
	ports := freePorts(t, 4)
	p := func(i int) string { return strconv.Itoa(ports[i]) }
	nodes := []*clusterNode{
		newClusterNode(t, 0, ports[0], "-peers="+p(1)+","+p(2), "-newnode="+p(3)),
		newClusterNode(t, 1, ports[1], "-peers="+p(0)+","+p(2)),
		newClusterNode(t, 2, ports[2], "-peers="+p(0)+","+p(1)),
		newClusterNode(t, 3, ports[3]),
	}
	n1, n3 := nodes[1], nodes[3]
	startAll(t, nodes[:3]...)

	l := newClusterLoad(t, clusterCounters)
	for _, n := range nodes[:3] {
		l.addClients(n, clientsPerNode)
	}
	l.waitAcked(t, 300)

	// The fourth node starts with no peers: only node0's -newnode (and
	// whatever gossip spread from it) can find it.
	startAll(t, n3)
	n3Started := time.Now()
	l.addClients(n3, clientsPerNode)
	found := watchPeers(t, n3, nodes)
	l.waitAcked(t, l.ledger.Counts().OK+300)

	// The fault: node1 hangs, neither crashed nor answering, while clients
	// keep sending to it and its peers keep pushing to it.
	before := l.nodeStats(n1)
	n1.signal(t, syscall.SIGSTOP)
	stopped := time.Now()
	seen, detected := watchState(t, nodes[0], n1, stopFor)
	n1.signal(t, syscall.SIGCONT)
	during := l.nodeStats(n1).Minus(before)
	t.Logf("%s SIGSTOPped for %v; meanwhile its clients got %s; node0 saw it %s",
		n1.name, time.Since(stopped).Round(time.Millisecond), during, seen)
	if !detected {
		t.Errorf("node0 never saw %s as anything but alive while it hung for %v: the fault went unnoticed", n1.name, stopFor)
	}

	// The load goes on until node1 is serving again.
	resumed := l.nodeStats(n1).OK
	if !poll(progressTimeout, func() bool { return l.nodeStats(n1).OK >= resumed+50 }) {
		t.Fatalf("%s acknowledged no 50 more changes within %v of SIGCONT: %s", n1.name, progressTimeout, l)
	}
	l.stop()
	loadStopped := time.Now()
	t.Logf("load: %s", l)
	for _, n := range nodes {
		t.Logf("  %s: %s", n.name, l.nodeStats(n))
	}

	values := awaitAgreement(t, nodes, l)
	t.Logf("agreement %v after the load stopped; %s listed all three peers alive %v after it started",
		time.Since(loadStopped).Round(time.Millisecond), n3.name, found.after(n3Started))
	l.checkBounds(t, values)
	for _, n := range nodes {
		n.proc.Stop()
	}
}

// TestAllNodesKilledAndRestarted SIGKILLs all three durable nodes at once
// under load, so that no node is left to restore the others from, restarts
// them on their data dirs and ports, and checks that they agree and that no
// acknowledged change was lost or counted twice (invariants 1 to 3).
func TestAllNodesKilledAndRestarted(t *testing.T) {
	const clientsPerNode = 3
	ports := freePorts(t, 3)
	nodes := meshNodes(t, ports)
	startAll(t, nodes...)

	l := newClusterLoad(t, clusterCounters)
	for _, n := range nodes {
		l.addClients(n, clientsPerNode)
	}
	l.waitAcked(t, 1500)

	inFlight, ackedAtKill := l.inFlight.Load(), l.ledger.Counts().OK
	for _, n := range nodes {
		n.signal(t, syscall.SIGKILL)
	}
	for _, n := range nodes {
		n.proc.await("SIGKILL")
	}
	l.stop()
	t.Logf("at SIGKILL: %d acked, %d requests in flight; load: %s", ackedAtKill, inFlight, l)
	for _, n := range nodes {
		t.Logf("  %s: %s", n.name, l.nodeStats(n))
	}
	if inFlight == 0 {
		t.Fatal("no request was in flight at the kill; the test did not kill under load")
	}

	restarted := time.Now()
	startAll(t, nodes...)
	values := awaitAgreement(t, nodes, l)
	t.Logf("agreement %v after the restart began", time.Since(restarted).Round(time.Millisecond))
	l.checkBounds(t, values)
	for _, n := range nodes {
		n.proc.Stop()
	}
}

// awaitAgreement polls every node until all report the same value for every
// counter and list every other node as alive, and returns the values. It
// fails the test at agreeTimeout with what each node last reported.
func awaitAgreement(t *testing.T, nodes []*clusterNode, l *clusterLoad) map[string]int64 {
	t.Helper()
	c := newClient(t, len(nodes))
	c.Timeout = pollTimeout
	views := make([]nodeView, len(nodes))
	agreed := func() bool {
		for i, n := range nodes {
			if n.proc.exited() {
				return true // reported below
			}
			views[i] = viewOf(c, n)
		}
		for i, n := range nodes {
			if views[i].err != nil || !maps.Equal(views[i].values, views[0].values) {
				return false
			}
			for _, o := range nodes {
				if o != n && views[i].peers[o.addr] != "alive" {
					return false
				}
			}
		}
		return true
	}
	ok := poll(agreeTimeout, agreed)
	var report strings.Builder
	for i, n := range nodes {
		if n.proc.exited() {
			t.Fatalf("%s (pid %d) exited: %v", n.name, n.proc.PID(), n.proc.Err())
		}
		fmt.Fprintf(&report, "\n  %s: %s", n.name, views[i])
	}
	if !ok {
		t.Fatalf("no agreement within %v; load %s; last views:%s", agreeTimeout, l, report.String())
	}
	// Nothing may move once the nodes agree with no client writing.
	again := viewOf(c, nodes[0])
	if again.err != nil || !maps.Equal(again.values, views[0].values) {
		t.Fatalf("values changed after agreement: %s, then %s", views[0], again)
	}
	t.Logf("agreed:%s", report.String())
	return views[0].values
}

// nodeView is what one node reports: its counters (missing ones are 0 and
// left out) and the state of each peer it lists.
type nodeView struct {
	values map[string]int64
	peers  map[string]string // addr -> state
	err    error
}

func (v nodeView) String() string {
	if v.err != nil {
		return "error: " + v.err.Error()
	}
	return fmt.Sprintf("counters %v, peers %v", v.values, v.peers)
}

func viewOf(c *http.Client, n *clusterNode) nodeView {
	var v nodeView
	counters, err := apiclient.Client{HTTP: c}.Counters(context.Background(), n.url())
	if v.err = err; err != nil {
		return v
	}
	v.values = make(map[string]int64)
	for name, val := range counters {
		if val != 0 {
			v.values[name] = val
		}
	}
	v.peers, v.err = peerStates(c, n)
	return v
}

// peerRows is n's GET /peers, which must name n itself.
func peerRows(c *http.Client, n *clusterNode) ([]apiclient.PeerRow, error) {
	var peers struct {
		Peers []apiclient.PeerRow `json:"peers"`
		Node  string              `json:"node"`
	}
	if err := (apiclient.Client{HTTP: c}).GetJSON(context.Background(), n.url(), "/peers", &peers); err != nil {
		return nil, err
	}
	if peers.Node != n.addr {
		return nil, fmt.Errorf("GET /peers names the node %q, want %q", peers.Node, n.addr)
	}
	return peers.Peers, nil
}

// peerStates is n's GET /peers as each peer's address -> state.
func peerStates(c *http.Client, n *clusterNode) (map[string]string, error) {
	rows, err := peerRows(c, n)
	if err != nil {
		return nil, err
	}
	return apiclient.PeerStates(rows, nil), nil
}

// peerWatch records when a node first listed every other node alive.
type peerWatch struct {
	mu sync.Mutex
	at time.Time
}

func (w *peerWatch) after(start time.Time) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.at.IsZero() {
		return "never while watched"
	}
	return w.at.Sub(start).Round(time.Millisecond).String()
}

// watchPeers polls n's GET /peers in the background until it lists every
// other node alive; it stops when the test ends.
func watchPeers(t *testing.T, n *clusterNode, nodes []*clusterNode) *peerWatch {
	w := &peerWatch{}
	c := newClient(t, 1)
	c.Timeout = pollTimeout
	done := make(chan struct{})
	var wg sync.WaitGroup
	t.Cleanup(func() { close(done); wg.Wait() })
	wg.Go(func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			if states, err := peerStates(c, n); err == nil && allAlive(states, n, nodes) {
				w.mu.Lock()
				w.at = time.Now()
				w.mu.Unlock()
				return
			}
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	})
	return w
}

func allAlive(states map[string]string, self *clusterNode, nodes []*clusterNode) bool {
	for _, o := range nodes {
		if o != self && states[o.addr] != "alive" {
			return false
		}
	}
	return true
}

// watchState polls observer's view of target for d and returns how the
// target's state changed over that time, with when each change was seen, and
// whether it was ever seen as other than alive.
func watchState(t *testing.T, observer, target *clusterNode, d time.Duration) (changes string, notAlive bool) {
	c := newClient(t, 1)
	c.Timeout = pollTimeout
	defer c.CloseIdleConnections()
	start := time.Now()
	var seen []string
	last := ""
	pollpkg.While(context.Background(), d, 20*time.Millisecond, "watching", func() (bool, string) {
		if states, err := peerStates(c, observer); err == nil && states[target.addr] != last {
			last = states[target.addr]
			notAlive = notAlive || last != "alive"
			seen = append(seen, fmt.Sprintf("%s@%v", last, time.Since(start).Round(10*time.Millisecond)))
		}
		return true, ""
	})
	return strings.Join(seen, " → "), notAlive
}

// clusterLoad sends increments and decrements of named counters, with a
// random step, from keep-alive clients on any number of nodes until stopped,
// and keeps what each client can know about each change in an
// apiclient.Ledger (by node name and counter).
type clusterLoad struct {
	t        *testing.T
	counters []string
	ctx      context.Context // cancelled only if the test ends without stop
	halt     atomic.Bool     // clients finish their request and return
	wg       sync.WaitGroup
	inFlight atomic.Int64
	ledger   apiclient.Ledger
	bad      atomic.Int64 // 2xx replies with a bad body (counted acked)
}

func newClusterLoad(t *testing.T, counters []string) *clusterLoad {
	ctx, cancel := context.WithCancel(context.Background())
	l := &clusterLoad{t: t, counters: counters, ctx: ctx}
	// Registered after the nodes, so it runs before they are killed.
	t.Cleanup(func() {
		cancel()
		l.stop()
	})
	return l
}

// addClients starts n clients sending to node, sharing one keep-alive pool.
func (l *clusterLoad) addClients(node *clusterNode, n int) {
	c := newClient(l.t, n)
	c.Timeout = opTimeout
	api := apiclient.Client{HTTP: c}
	for range n {
		l.wg.Go(func() {
			for !l.halt.Load() && l.ctx.Err() == nil {
				l.one(api, node)
			}
		})
	}
}

func (l *clusterLoad) one(api apiclient.Client, node *clusterNode) {
	counter := l.counters[rand.N(len(l.counters))]
	delta := 1 + rand.Int64N(5)
	if rand.N(3) == 0 { // a third are decrements
		delta = -delta
	}
	l.inFlight.Add(1)
	r := api.ChangeContext(l.ctx, node.url(), counter, delta)
	l.inFlight.Add(-1)
	if r.Outcome == apiclient.OK && (r.Err != nil || r.Counter != counter || r.Node != node.addr) {
		l.bad.Add(1)
	}
	l.ledger.Record(node.name, counter, delta, r)
}

// waitAcked waits until n requests in all have been acknowledged.
func (l *clusterLoad) waitAcked(t *testing.T, n int64) {
	t.Helper()
	if !poll(progressTimeout, func() bool { return l.ledger.Counts().OK >= n }) {
		t.Fatalf("fewer than %d acks within %v: %s", n, progressTimeout, l)
	}
}

// stop makes every client return after its current request and waits.
func (l *clusterLoad) stop() {
	l.halt.Store(true)
	l.wg.Wait()
}

// nodeStats counts the requests sent to n by outcome.
func (l *clusterLoad) nodeStats(n *clusterNode) apiclient.Counts { return l.ledger.Node(n.name) }

func (l *clusterLoad) String() string {
	return fmt.Sprintf("requests: %s; bad 200 bodies %d", &l.ledger, l.bad.Load())
}

// checkBounds checks invariant 2 per counter: the agreed value is at least
// what was surely added minus what may have been subtracted, and at most
// what may have been added minus what was surely subtracted.
func (l *clusterLoad) checkBounds(t *testing.T, values map[string]int64) {
	t.Helper()
	for _, name := range slices.Sorted(maps.Keys(values)) {
		if l.ledger.Counter(name).Changes.Total() == 0 {
			t.Errorf("counter %q = %d, but no client changed it", name, values[name])
		}
	}
	if n := l.bad.Load(); n > 0 {
		t.Errorf("%d replies were 200 with a bad body", n)
	}
	for _, name := range l.counters {
		s, v := l.ledger.Counter(name), values[name]
		b := s.Bounds()
		t.Logf("%s = %d in [%d, %d]: +%d acked, +%d unknown, +%d failed; -%d acked, -%d unknown, -%d failed",
			name, v, b.Lo, b.Hi, s.Up.OK, s.Up.Unknown, s.Up.Failed, s.Down.OK, s.Down.Unknown, s.Down.Failed)
		if s.Up.OK == 0 || s.Down.OK == 0 {
			t.Errorf("%s: no acknowledged increment or no acknowledged decrement; the load did not test it", name)
		}
		if v < b.Lo {
			t.Errorf("%s = %d < %d (acked increments %d - acked decrements %d - unknown decrements %d): acknowledged increments lost or decrements counted twice",
				name, v, b.Lo, s.Up.OK, s.Down.OK, s.Down.Unknown)
		}
		if v > b.Hi {
			t.Errorf("%s = %d > %d (acked increments %d + unknown increments %d - acked decrements %d): increments counted twice or acknowledged decrements lost",
				name, v, b.Hi, s.Up.OK, s.Up.Unknown, s.Down.OK)
		}
	}
}
