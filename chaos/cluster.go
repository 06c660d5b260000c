package chaos

import (
	"context"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"countd/internal/apiclient"
	"countd/internal/faultnet"
	"countd/internal/logsink"
	"countd/node"
)

// Timeouts of the harness.
const (
	// clientTimeout bounds one client request: above the node's own request
	// timeout, so a stuck node answers 503 before the client gives up.
	clientTimeout = 8 * time.Second
	// ctlTimeout bounds one request of the harness itself (reads, DELETE).
	ctlTimeout = 5 * time.Second
	// pollEvery is the pace of every poll.
	pollEvery = 10 * time.Millisecond
)

// Options change how a Cluster runs its nodes.
type Options struct {
	// Config, if set, changes the Config of the named node before each
	// Open. Tests use it to break a node on purpose (node.Config.WrapStore,
	// a corrupting RoundTripper) and check that Check notices.
	Config func(name string, cfg *node.Config)
	// AntiEntropy keeps the nodes' periodic full-state pushes (every 2 s
	// with node.TestConfig). Off by default: they repair whatever a lost or
	// mishandled delta leaves behind, so they would hide the bugs this
	// package looks for. Deltas, retries and the full pushes to restarted
	// and revived peers must converge on their own.
	AntiEntropy bool
}

// Cluster is a set of countd nodes in this process, each on its own
// 127.0.0.1 port and data dir, whose node-to-node traffic goes through Net
// and whose clients go through ClientNet.
type Cluster struct {
	t         testing.TB
	base      string
	opts      Options
	Net       *faultnet.Network // node-to-node traffic
	ClientNet *faultnet.Network // client traffic
	client    apiclient.Client  // client changes, through ClientNet
	ctl       apiclient.Client  // the harness's own requests, direct
	logs      *logsink.Sink

	mu      sync.Mutex
	nodes   map[string]*member
	order   []string        // names in the order they were made
	removed map[string]bool // names of removed nodes
}

// member is one node of a cluster, running or not. Its address stays the
// same across restarts.
type member struct {
	name  string
	addr  string
	dir   string
	ln    net.Listener // reserved, not yet handed to Open
	n     *node.Node   // nil while stopped
	muted *atomic.Bool // while set, every request the node sends is lost
	opens int
}

// NewCluster returns an empty cluster whose networks draw their random
// choices from seed. Cleanup closes every node and listener and removes
// every data dir, whatever happened.
func NewCluster(t testing.TB, seed uint64, opts Options) *Cluster {
	t.Helper()
	c := &Cluster{
		t:         t,
		base:      t.TempDir(), // made before Cleanup is registered, so removed after it
		opts:      opts,
		Net:       faultnet.New(seed),
		ClientNet: faultnet.New(seed ^ 0xc11e47),
		ctl:       apiclient.Client{HTTP: &http.Client{Timeout: ctlTimeout}},
		logs:      &logsink.Sink{Max: 3000},
		nodes:     map[string]*member{},
		removed:   map[string]bool{},
	}
	c.client = apiclient.Client{HTTP: &http.Client{Timeout: clientTimeout, Transport: c.ClientNet.Transport("client",
		&http.Transport{MaxIdleConnsPerHost: 16, IdleConnTimeout: 30 * time.Second})}}
	t.Cleanup(func() {
		c.Net.Heal()
		c.ClientNet.Heal()
		c.closeAll()
		c.client.HTTP.CloseIdleConnections()
		c.ctl.HTTP.CloseIdleConnections()
	})
	return c
}

// Start reserves and opens n nodes named A, B, ..., each knowing all the
// others, and waits until each lists every other as alive.
func (c *Cluster) Start(n int) error {
	names := nodeNames(n)
	for _, name := range names {
		if err := c.reserve(name); err != nil {
			return err
		}
	}
	for _, name := range names {
		if err := c.open(name, c.peersOf(name)); err != nil {
			return err
		}
	}
	return c.waitFor(20*time.Second, "every node lists every other alive", func() (bool, string) {
		return c.meshed(nil)
	})
}

func (c *Cluster) reserve(name string) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("reserve %s: %w", name, err)
	}
	dir, err := os.MkdirTemp(c.base, name+"-")
	if err != nil {
		ln.Close()
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.nodes[name] = &member{name: name, addr: ln.Addr().String(), dir: dir, ln: ln, muted: new(atomic.Bool)}
	c.order = append(c.order, name)
	return nil
}

// peersOf returns the addresses of every node but name and the removed ones.
func (c *Cluster) peersOf(name string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, other := range c.order {
		if other != name && !c.removed[other] {
			out = append(out, c.nodes[other].addr)
		}
	}
	return out
}

// open starts the named node on its reserved listener and data dir.
func (c *Cluster) open(name string, peers []string) error {
	m := c.member(name)
	cfg := node.TestConfig()
	if !c.opts.AntiEntropy {
		cfg.AntiEntropyInterval = time.Hour
	}
	cfg.Memory = false
	cfg.DataDir = m.dir
	cfg.Listener, m.ln = m.ln, nil
	cfg.Peers = peers
	m.muted.Store(false)
	cfg.RoundTripper = faultnet.Muted(m.muted, c.Net.Transport(m.addr, nil))
	cfg.Logger = c.logs.Logger(fmt.Sprintf("%s#%d", name, m.opens))
	if c.opts.Config != nil {
		c.opts.Config(name, &cfg)
	}
	n, err := node.Open(cfg)
	if err != nil {
		cfg.Listener.Close()
		return fmt.Errorf("open %s: %w", name, err)
	}
	if n.Addr() != m.addr {
		n.Close()
		return fmt.Errorf("node %s advertises %s, want %s", name, n.Addr(), m.addr)
	}
	c.mu.Lock()
	m.n = n
	m.opens++
	c.mu.Unlock()
	return nil
}

// Crash stops the named node with every request it sends lost, so its peers
// hear nothing more from it: whatever it acknowledged and had not pushed is
// only on its disk. (Close is graceful towards clients and the store; an
// in-process node cannot be SIGKILLed, and the acknowledged changes are
// already durable before the 200, which is what a SIGKILL tests.)
func (c *Cluster) Crash(name string) {
	m := c.member(name)
	m.muted.Store(true)
	c.stop(m)
}

// Mute loses (on) or restores (off) every request the named node sends.
func (c *Cluster) Mute(name string, on bool) { c.member(name).muted.Store(on) }

func (c *Cluster) stop(m *member) {
	c.mu.Lock()
	n := m.n
	m.n = nil
	c.mu.Unlock()
	if n == nil {
		return
	}
	if err := n.Close(); err != nil {
		c.t.Logf("close %s: %v", m.name, err)
	}
}

// Restart starts a stopped node again on its address, on its data dir or,
// if wipe, on a new empty one.
func (c *Cluster) Restart(name string, wipe bool) error {
	m := c.member(name)
	if wipe {
		dir, err := os.MkdirTemp(c.base, name+"-")
		if err != nil {
			return err
		}
		m.dir = dir
	}
	ln, err := faultnet.Relisten(m.addr)
	if err != nil {
		return err
	}
	m.ln = ln
	return c.open(name, c.peersOf(name))
}

// Join starts a new node that knows only via; gossip must do the rest.
func (c *Cluster) Join(name, via string) error {
	if err := c.reserve(name); err != nil {
		return err
	}
	return c.open(name, []string{c.Addr(via)})
}

// Remove sends DELETE /peers/{name} to every other live node, then stops
// the node. It stays removed: it is never started again.
func (c *Cluster) Remove(name string) error {
	addr := c.Addr(name)
	c.mu.Lock()
	c.removed[name] = true
	c.mu.Unlock()
	for _, on := range c.Live() {
		if on == name {
			continue
		}
		if err := c.ctl.RemovePeer(context.Background(), c.URL(on), addr); err != nil {
			return fmt.Errorf("removing %s on %s: %w", name, on, err)
		}
	}
	c.stop(c.member(name))
	return nil
}

// closeAll closes every running node and reserved listener, concurrently.
func (c *Cluster) closeAll() {
	c.mu.Lock()
	var run []*node.Node
	for _, m := range c.nodes {
		if m.n != nil {
			run = append(run, m.n)
			m.n = nil
		}
		if m.ln != nil {
			m.ln.Close()
			m.ln = nil
		}
	}
	c.mu.Unlock()
	var wg sync.WaitGroup
	for _, n := range run {
		wg.Go(func() { n.Close() })
	}
	wg.Wait()
}

func (c *Cluster) member(name string) *member {
	c.mu.Lock()
	defer c.mu.Unlock()
	m, ok := c.nodes[name]
	if !ok {
		panic("chaos: no node " + name)
	}
	return m
}

// Addr returns the named node's address, host:port.
func (c *Cluster) Addr(name string) string { return c.member(name).addr }

// URL returns the named node's base URL.
func (c *Cluster) URL(name string) string { return "http://" + c.Addr(name) }

// Live returns the names of the running nodes, in the order they were made.
func (c *Cluster) Live() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, name := range c.order {
		if c.nodes[name].n != nil {
			out = append(out, name)
		}
	}
	return out
}

// Removed returns the names of the removed nodes.
func (c *Cluster) Removed() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, name := range c.order {
		if c.removed[name] {
			out = append(out, name)
		}
	}
	return out
}

// nameOf returns the name of the node at addr, or addr itself.
func (c *Cluster) nameOf(addr string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	for name, m := range c.nodes {
		if m.addr == addr {
			return name
		}
	}
	return addr
}

// Logs returns the last n lines the nodes logged.
func (c *Cluster) Logs(n int) string {
	lines, _ := c.logs.Last(n)
	return strings.Join(lines, "\n")
}

// --- client side ---

// Change adds delta (non-zero) to counter on the named node and classifies
// the outcome (see apiclient.Client.Change). It goes through ClientNet and
// never fails the test.
func (c *Cluster) Change(client int, name, counter string, delta int64) Op {
	r := c.client.Change(c.URL(name), counter, delta)
	op := Op{Client: client, Node: name, Counter: counter, Delta: delta, Outcome: r.Outcome}
	if r.Outcome != OK && r.Err != nil {
		op.Err = r.Err.Error()
	}
	return op
}

// Counters returns GET /counters of the named node.
func (c *Cluster) Counters(name string) (map[string]int64, error) {
	return c.ctl.Counters(context.Background(), c.URL(name))
}

// PeerRow is one row of GET /peers.
type PeerRow = apiclient.PeerRow

// Peers returns GET /peers of the named node.
func (c *Cluster) Peers(name string) ([]PeerRow, error) {
	return c.ctl.Peers(context.Background(), c.URL(name))
}

// describePeers renders a peer list with node names.
func (c *Cluster) describePeers(rows []PeerRow) string {
	return apiclient.DescribePeers(rows, c.nameOf)
}

// waitFor polls cond until it holds or timeout passes; then it returns an
// error with what and cond's last description of what it saw.
func (c *Cluster) waitFor(timeout time.Duration, what string, cond func() (bool, string)) error {
	start := time.Now()
	for {
		done, last := cond()
		if done {
			return nil
		}
		if time.Since(start) > timeout {
			return fmt.Errorf("after %v: %s: still %s", timeout, what, last)
		}
		time.Sleep(pollEvery)
	}
}

// meshed reports whether every live node lists exactly the other live
// nodes, all alive, and describes the tables that do not. It hands each
// table it reads to seen, if set.
func (c *Cluster) meshed(seen func(name string, rows []PeerRow)) (bool, string) {
	live := c.Live()
	var bad []string
	for _, name := range live {
		rows, err := c.Peers(name)
		if err != nil {
			bad = append(bad, fmt.Sprintf("%s: %v", name, err))
			continue
		}
		if seen != nil {
			seen(name, rows)
		}
		want := map[string]string{}
		for _, other := range live {
			if other != name {
				want[other] = "alive"
			}
		}
		if !maps.Equal(apiclient.PeerStates(rows, c.nameOf), want) {
			bad = append(bad, fmt.Sprintf("%s lists %s", name, c.describePeers(rows)))
		}
	}
	return len(bad) == 0, strings.Join(bad, "; ")
}
