package node

import (
	"context"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"countd/internal/apiclient"
	"countd/internal/faultnet"
	"countd/internal/logsink"
)

// This file is a harness for in-process cluster tests: several Nodes in one
// process, talking real HTTP over loopback, each sending through its own
// faultnet transport of one shared faultnet.Network, so a test can cut,
// drop, delay or duplicate node-to-node traffic. Client traffic from the
// test goes straight to the nodes, never through faultnet.

const (
	// clientTimeout bounds one client request; above the node's own request
	// timeout, so a stuck node answers 503 before the client gives up.
	clientTimeout = 10 * time.Second
	// convergeTimeout bounds every wait for agreement.
	convergeTimeout = 10 * time.Second
	// pollEvery is the pace of every poll.
	pollEvery = 5 * time.Millisecond
)

// cluster is a set of named test nodes sharing one faultnet.Network.
type cluster struct {
	t    testing.TB
	base string // parent of the nodes' data dirs
	net  *faultnet.Network
	http *http.Client // the test's own requests, straight to the nodes
	logs *logsink.Sink
	cfg  func(*Config) // applied to every node's Config before Open, if set

	mu    sync.Mutex
	nodes map[string]*tnode
	order []string
}

// tnode is one node of a cluster, running or stopped. Its address stays the
// same across restarts.
type tnode struct {
	name    string
	addr    string // 127.0.0.1:PORT, the node's advertised name
	dir     string // data dir, kept across restarts ("" until needed)
	memory  bool
	peers   []string
	ln      net.Listener // reserved, not yet handed to Open
	node    *Node        // nil while stopped
	muted   *atomic.Bool // while set, the node's outgoing traffic is lost
	starts  int
	replica []string // replica ids, one per start
}

// newCluster returns an empty cluster whose network draws its random choices
// from seed. Cleanup heals the network and closes every node.
func newCluster(t testing.TB, seed uint64) *cluster {
	t.Helper()
	c := &cluster{
		t:    t,
		base: t.TempDir(), // made before Cleanup is registered, so removed after it
		net:  faultnet.New(seed),
		http: &http.Client{Timeout: clientTimeout, Transport: &http.Transport{
			MaxIdleConnsPerHost: 16, IdleConnTimeout: 30 * time.Second,
		}},
		logs:  &logsink.Sink{},
		nodes: make(map[string]*tnode),
	}
	t.Cleanup(func() {
		c.net.Heal()
		c.closeAll()
		c.http.CloseIdleConnections()
		if t.Failed() {
			dumpLogs(t, c.logs, 400)
		}
	})
	return c
}

// startCluster starts n durable nodes named A, B, C, ..., each registering
// all the others as peers, and returns once each lists every other as alive.
func startCluster(t testing.TB, n int, opts ...clusterOption) *cluster {
	t.Helper()
	var o clusterOptions
	for _, opt := range opts {
		opt(&o)
	}
	c := newCluster(t, o.seed)
	c.cfg = o.cfg
	names := make([]string, n)
	for i := range names {
		names[i] = string(rune('A' + i))
	}
	c.reserve(names...)
	for _, name := range names {
		var peers []string
		for _, other := range names {
			if other != name {
				peers = append(peers, c.addr(other))
			}
		}
		c.start(name, peers, o.memory[name])
	}
	c.waitMesh(names...)
	return c
}

type clusterOptions struct {
	seed   uint64
	memory map[string]bool
	cfg    func(*Config)
}

type clusterOption func(*clusterOptions)

// withMemory runs the named nodes in memory mode.
func withMemory(names ...string) clusterOption {
	return func(o *clusterOptions) {
		if o.memory == nil {
			o.memory = make(map[string]bool)
		}
		for _, n := range names {
			o.memory[n] = true
		}
	}
}

// withConfig changes every node's Config before it opens.
func withConfig(f func(*Config)) clusterOption {
	return func(o *clusterOptions) { o.cfg = f }
}

// withSeed seeds the network's random choices.
func withSeed(seed uint64) clusterOption {
	return func(o *clusterOptions) { o.seed = seed }
}

// reserve opens a listener on 127.0.0.1 port 0 for each name, so every
// node's address is known before any node starts.
func (c *cluster) reserve(names ...string) {
	c.t.Helper()
	for _, name := range names {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			c.t.Fatalf("reserve %s: %v", name, err)
		}
		c.mu.Lock()
		if _, dup := c.nodes[name]; dup {
			c.mu.Unlock()
			ln.Close()
			c.t.Fatalf("node %s reserved twice", name)
		}
		c.nodes[name] = &tnode{name: name, addr: ln.Addr().String(), ln: ln, muted: new(atomic.Bool)}
		c.order = append(c.order, name)
		c.mu.Unlock()
	}
}

// start opens the reserved node name with the given peers (addresses),
// durable in a temp dir unless memory is set.
func (c *cluster) start(name string, peers []string, memory bool) *Node {
	c.t.Helper()
	tn := c.tnode(name)
	if tn.ln == nil {
		c.t.Fatalf("start %s: no reserved listener (use restart)", name)
	}
	tn.peers, tn.memory = slices.Clone(peers), memory
	return c.open(tn)
}

func (c *cluster) open(tn *tnode) *Node {
	c.t.Helper()
	cfg := TestConfig()
	// Anti-entropy repairs whatever a lost or mishandled delta leaves
	// behind, so it would hide exactly the bugs these tests look for: keep
	// it out of their time frame. Deltas, retries, full pushes to restarted
	// and revived peers, and forwarding must converge on their own.
	cfg.AntiEntropyInterval = time.Hour
	cfg.Listener, tn.ln = tn.ln, nil
	cfg.Peers = slices.Clone(tn.peers)
	cfg.Memory = tn.memory
	if !tn.memory {
		if tn.dir == "" {
			tn.dir = c.newDir(tn.name)
		}
		cfg.DataDir = tn.dir
	}
	tn.muted.Store(false)
	cfg.RoundTripper = faultnet.Muted(tn.muted, c.net.Transport(tn.addr, nil))
	cfg.Logger = c.logs.Logger(fmt.Sprintf("%s#%d", tn.name, tn.starts))
	if c.cfg != nil {
		c.cfg(&cfg)
	}
	n, err := Open(cfg)
	if err != nil {
		c.t.Fatalf("open %s: %v", tn.name, err)
	}
	if n.Addr() != tn.addr {
		n.Close()
		c.t.Fatalf("node %s advertises %s, want %s", tn.name, n.Addr(), tn.addr)
	}
	c.mu.Lock()
	tn.node = n
	tn.starts++
	tn.replica = append(tn.replica, n.Replica())
	c.mu.Unlock()
	return n
}

// newDir makes an empty data dir for the named node.
func (c *cluster) newDir(name string) string {
	c.t.Helper()
	dir, err := os.MkdirTemp(c.base, name+"-")
	if err != nil {
		c.t.Fatal(err)
	}
	return dir
}

// stop closes the node gracefully (it flushes what its peers lack first)
// and returns what Close returned and how long it took. A Close error is
// logged, not failed on: TestGracefulCloseNotHeldByIdleConnection covers it,
// and it must not make the tests of other things flaky.
func (c *cluster) stop(name string) (time.Duration, error) {
	c.t.Helper()
	n := c.take(c.tnode(name))
	start := time.Now()
	err := n.Close()
	took := time.Since(start)
	if err != nil {
		c.t.Logf("close %s after %v: %v", name, took.Round(time.Millisecond), err)
	}
	return took, err
}

// mute loses (on) or restores (off) all of the named node's outgoing
// traffic, to every node, without touching the network's rules.
func (c *cluster) mute(name string, on bool) { c.tnode(name).muted.Store(on) }

// stopSilently closes the node with all its outgoing traffic lost, so its
// peers hear nothing from it at the end: no final flush reaches them, and
// they learn it is gone only from failed health checks. Whatever it
// acknowledged and had not pushed is then only on its disk.
func (c *cluster) stopSilently(name string) {
	c.t.Helper()
	tn := c.tnode(name)
	tn.muted.Store(true)
	c.stop(name)
}

func (c *cluster) take(tn *tnode) *Node {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	n := tn.node
	if n == nil {
		c.t.Fatalf("node %s is not running", tn.name)
	}
	tn.node = nil
	return n
}

// restartMode says what state a restarted node starts from.
type restartMode int

const (
	sameDir  restartMode = iota // the data dir it had
	wipedDir                    // a new, empty data dir
	inMemory                    // memory mode: nothing
)

func (m restartMode) String() string {
	return [...]string{"same data dir", "wiped data dir", "memory"}[m]
}

// restart starts a stopped node again on the same address, with the same
// peers, from the state mode says.
func (c *cluster) restart(name string, mode restartMode) *Node {
	c.t.Helper()
	tn := c.tnode(name)
	c.mu.Lock()
	running := tn.node != nil
	c.mu.Unlock()
	if running {
		c.t.Fatalf("restart %s: still running", name)
	}
	switch mode {
	case sameDir:
		if tn.memory || tn.dir == "" {
			c.t.Fatalf("restart %s on its data dir: it ran in memory", name)
		}
	case wipedDir:
		tn.memory, tn.dir = false, c.newDir(name)
	case inMemory:
		tn.memory = true
	}
	ln, err := faultnet.Relisten(tn.addr)
	if err != nil {
		c.t.Fatal(err)
	}
	tn.ln = ln
	return c.open(tn)
}

// closeAll closes every running node, concurrently.
func (c *cluster) closeAll() {
	c.mu.Lock()
	var run []*Node
	for _, tn := range c.nodes {
		if tn.node != nil {
			run = append(run, tn.node)
			tn.node = nil
		}
		if tn.ln != nil {
			tn.ln.Close()
			tn.ln = nil
		}
	}
	c.mu.Unlock()
	var wg sync.WaitGroup
	for _, n := range run {
		wg.Go(func() {
			start := time.Now()
			if err := n.Close(); err != nil {
				c.t.Logf("cleanup: close %s after %v: %v", c.nameOf(n.Addr()), time.Since(start).Round(time.Millisecond), err)
			}
		})
	}
	wg.Wait()
}

func (c *cluster) tnode(name string) *tnode {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	tn, ok := c.nodes[name]
	if !ok {
		c.t.Fatalf("no node %s", name)
	}
	return tn
}

// addr returns the address of the named node.
func (c *cluster) addr(name string) string { return c.tnode(name).addr }

// addrs returns the addresses of the named nodes.
func (c *cluster) addrs(names ...string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = c.addr(n)
	}
	return out
}

// url returns the base URL of the named node.
func (c *cluster) url(name string) string { return "http://" + c.addr(name) }

// live returns the names of the running nodes, in the order they were made.
func (c *cluster) live() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, name := range c.order {
		if c.nodes[name].node != nil {
			out = append(out, name)
		}
	}
	return out
}

// nameOf returns the name of the node at addr, or addr if none.
func (c *cluster) nameOf(addr string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	for name, tn := range c.nodes {
		if tn.addr == addr {
			return name
		}
	}
	return addr
}

// heartbeat is the heartbeat interval every node runs with.
func (c *cluster) heartbeat() time.Duration {
	cfg := TestConfig()
	if c.cfg != nil {
		c.cfg(&cfg)
	}
	return cfg.HeartbeatInterval
}

// --- client side ---

// api returns a client of the nodes' HTTP API that sends through c.http.
func (c *cluster) api() apiclient.Client { return apiclient.Client{HTTP: c.http} }

// change adds delta (non-zero) to counter on the named node and classifies
// the outcome (see apiclient.Client.Change). It is safe to call from any
// goroutine and never fails the test.
func (c *cluster) change(name, counter string, delta int64) apiclient.Result {
	return c.api().Change(c.url(name), counter, delta)
}

// postJSON POSTs body to path on the named node and returns the status.
func (c *cluster) postJSON(name, path, body string) (int, error) {
	resp, err := c.http.Post(c.url(name)+path, "application/json", strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// get returns the named node's value of counter: GET /counter for
// "default", GET /counters/{name} otherwise.
func (c *cluster) get(name, counter string) (int64, error) {
	path := "/counters/" + url.PathEscape(counter)
	if counter == "default" {
		path = "/counter"
	}
	var r struct {
		Counter string `json:"counter"`
		Value   int64  `json:"value"`
	}
	if err := c.api().GetJSON(context.Background(), c.url(name), path, &r); err != nil {
		return 0, err
	}
	if r.Counter != counter {
		return 0, fmt.Errorf("GET %s on %s names counter %q", path, name, r.Counter)
	}
	return r.Value, nil
}

// counters returns GET /counters of the named node.
func (c *cluster) counters(name string) (map[string]int64, error) {
	return c.api().Counters(context.Background(), c.url(name))
}

// peers returns GET /peers of the named node.
func (c *cluster) peers(name string) ([]apiclient.PeerRow, error) {
	return c.api().Peers(context.Background(), c.url(name))
}

// replicaOf returns the replica id the named node reports in GET /health.
func (c *cluster) replicaOf(name string) (string, error) {
	return c.api().Replica(context.Background(), c.url(name))
}

// removePeer removes peer on the named node with DELETE /peers/{addr},
// which must answer 204.
func (c *cluster) removePeer(on, peer string) error {
	return c.api().RemovePeer(context.Background(), c.url(on), c.addr(peer))
}

// describePeers renders a peer list with node names, for messages.
func (c *cluster) describePeers(rows []apiclient.PeerRow) string {
	return apiclient.DescribePeers(rows, c.nameOf)
}

// --- what clients were told ---

// ledger adds up, per counter, the changes clients saw acknowledged, and
// counts outcomes. Invariant 2 bounds a converged value by the acknowledged
// sum and that sum plus the changes of unknown outcome; the clients here
// never go through faultnet, so every change must be acknowledged and the
// bounds meet: the expected value is exact. It is safe for concurrent use.
type ledger struct {
	mu    sync.Mutex
	acked map[string]int64
	ops   [3]int   // by outcome
	errs  []string // first few non-ok results
}

func newLedger() *ledger { return &ledger{acked: map[string]int64{}} }

func (l *ledger) record(node, counter string, delta int64, r apiclient.Result) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ops[r.Outcome]++
	if r.Outcome == apiclient.OK {
		l.acked[counter] += delta
	}
	if r.Outcome != apiclient.OK && len(l.errs) < 5 {
		l.errs = append(l.errs, fmt.Sprintf("%s %s %+d: %s: %v", node, counter, delta, r.Outcome, r.Err))
	}
}

// exact returns the acknowledged sums, failing the test unless every change
// was acknowledged (see ledger).
func (l *ledger) exact(t testing.TB) map[string]int64 {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ops[apiclient.Failed] != 0 || l.ops[apiclient.Unknown] != 0 {
		t.Fatalf("not every change was acknowledged: %d ok, %d failed, %d unknown; first errors: %q",
			l.ops[apiclient.OK], l.ops[apiclient.Failed], l.ops[apiclient.Unknown], l.errs)
	}
	return maps.Clone(l.acked)
}

// load runs clients goroutines, each making ops random changes (seeded from
// seed and its index) of 1 to 100 up or down to random counters on random
// nodes among names, and records every outcome in l. It returns when all are
// done.
func (c *cluster) load(l *ledger, seed uint64, clients, ops int, names, counters []string) {
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(seed, uint64(i)))
			for range ops {
				name := names[rng.IntN(len(names))]
				counter := counters[rng.IntN(len(counters))]
				delta := rng.Int64N(100) + 1
				if rng.IntN(3) == 0 {
					delta = -delta
				}
				l.record(name, counter, delta, c.change(name, counter, delta))
			}
		})
	}
	wg.Wait()
}

// --- waiting ---

// waitFor polls cond until it holds or timeout passes; then it fails the
// test with what and cond's last description of the state it saw.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) time.Duration {
	t.Helper()
	start := time.Now()
	var last string
	for {
		var done bool
		done, last = cond()
		if done {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			t.Fatalf("after %v: %s: still %s", timeout, what, last)
		}
		time.Sleep(pollEvery)
	}
}

// holdFor polls cond for the whole of d and fails the test the first time
// it does not hold. It asserts a negative ("never again"), which no single
// observation can.
func holdFor(t testing.TB, d time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(pollEvery) {
		if held, desc := cond(); !held {
			t.Fatalf("%s: broken: %s", what, desc)
		}
	}
}

// waitConverged polls GET /counters on each named node (every running node
// if none are named) until they all report exactly want, and returns how
// long that took.
func (c *cluster) waitConverged(want map[string]int64, names ...string) time.Duration {
	c.t.Helper()
	if len(names) == 0 {
		names = c.live()
	}
	return waitFor(c.t, convergeTimeout, fmt.Sprintf("nodes %v agree on %v", names, want), func() (bool, string) {
		var desc []string
		done := true
		for _, name := range names {
			got, err := c.counters(name)
			switch {
			case err != nil:
				done = false
				desc = append(desc, fmt.Sprintf("%s: %v", name, err))
			case !maps.Equal(got, want):
				done = false
				desc = append(desc, fmt.Sprintf("%s=%v", name, got))
			}
		}
		return done, strings.Join(desc, "; ")
	})
}

// waitPeers polls GET /peers on the named node until its table, as a map
// from node name to state, satisfies cond.
func (c *cluster) waitPeers(name, what string, cond func(map[string]string) bool) time.Duration {
	c.t.Helper()
	return waitFor(c.t, convergeTimeout, fmt.Sprintf("%s: %s", name, what), func() (bool, string) {
		rows, err := c.peers(name)
		if err != nil {
			return false, err.Error()
		}
		return cond(apiclient.PeerStates(rows, c.nameOf)), c.describePeers(rows)
	})
}

// waitMesh waits until each named node lists every other one as alive.
func (c *cluster) waitMesh(names ...string) {
	c.t.Helper()
	for _, name := range names {
		c.waitPeers(name, "lists every other node alive", func(states map[string]string) bool {
			for _, other := range names {
				if other != name && states[other] != "alive" {
					return false
				}
			}
			return true
		})
	}
}

// --- logs ---

// dumpLogs logs the nodes' last n lines (all of them if COUNTD_TEST_LOGS=all).
func dumpLogs(t testing.TB, s *logsink.Sink, n int) {
	if os.Getenv("COUNTD_TEST_LOGS") == "all" {
		n = 0
	}
	lines, kept := s.Last(n)
	if len(lines) < kept {
		t.Logf("node logs: last %d of %d lines (COUNTD_TEST_LOGS=all for every line):", len(lines), kept)
	}
	t.Log("\n" + strings.Join(lines, "\n"))
}

// sumOf returns the per-counter sum of maps.
func sumOf(ms ...map[string]int64) map[string]int64 {
	out := map[string]int64{}
	for _, m := range ms {
		for k, v := range m {
			out[k] += v
		}
	}
	return out
}
