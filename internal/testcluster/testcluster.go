// Package testcluster runs countd clusters inside one test process: several
// node.Nodes talking real HTTP on 127.0.0.1 ports picked by the kernel, each
// with its own data dir (or in memory), every node-to-node request going
// through one faultnet.Network (Net), so that a test can cut, drop, delay or
// duplicate traffic between nodes, and crash, restart, wipe, add and remove
// nodes. Client changes go through a second network (ClientNet), so a fault
// between nodes never touches them and a client-side fault never touches
// replication; the harness's own reads go straight to the nodes.
//
// It is shared by node's cluster tests and the chaos driver. Its methods
// return errors rather than failing a test, so each caller decides how to
// fail (node's tests wrap it with t.Fatal; chaos records a harness error);
// it takes a testing.TB only for temporary dirs, logging and clean-up.
// Client outcomes are classified and added up by internal/apiclient.
package testcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
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

	"countd/auth"
	"countd/internal/apiclient"
	"countd/internal/faultnet"
	"countd/internal/logsink"
	"countd/internal/poll"
	"countd/node"
)

// Timeouts and pace of the harness.
const (
	// ClientTimeout bounds one client change: above the node's own request
	// timeout, so a stuck node answers 503 before the client gives up.
	ClientTimeout = 10 * time.Second
	// ctlTimeout bounds one request of the harness itself (reads, DELETE).
	ctlTimeout = 5 * time.Second
	// StartTimeout bounds the wait, in Start, for every node to list every
	// other alive.
	StartTimeout = 20 * time.Second
	// PollEvery is the pace of every wait.
	PollEvery = 10 * time.Millisecond
)

// ErrNotRunning is returned for a node that must be running and is not.
var ErrNotRunning = errors.New("testcluster: node not running")

// Options change how a Cluster runs its nodes.
type Options struct {
	// Seed seeds the random choices of Net (and, altered, of ClientNet).
	Seed uint64
	// Config, if set, changes the Config of the named node before each
	// Open. Tests use it to tune timers or to break a node on purpose
	// (node.Config.WrapStore, a corrupting RoundTripper).
	Config func(name string, cfg *node.Config)
	// AntiEntropy keeps the nodes' periodic full-state pushes (every 2 s
	// with node.TestConfig). Off by default: they repair whatever a lost or
	// mishandled delta leaves behind, so they would hide the bugs these
	// tests look for. Deltas, retries, the full pushes to restarted and
	// revived peers, and forwarding must converge on their own.
	AntiEntropy bool
	// LogLines bounds how many of the nodes' log lines are kept (the
	// newest); 0 keeps all.
	LogLines int
	// ClusterKeys, if set, is every node's cluster keyring
	// (node.Config.ClusterKeys; Config may still change it per node): every
	// node-to-node request is signed and checked. The harness signs its
	// own requests with it too, so its membership changes (DELETE /peers,
	// POST /peers) get through.
	ClusterKeys *auth.Keyring
}

// Cluster is a set of named countd nodes in this process. Its methods are
// safe to call from any goroutine, but starting, stopping and restarting a
// given node is up to one goroutine at a time.
type Cluster struct {
	t         testing.TB
	base      string // parent of the nodes' data dirs
	opts      Options
	Net       *faultnet.Network // node-to-node traffic
	ClientNet *faultnet.Network // client changes
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
	name     string
	addr     string // 127.0.0.1:PORT, the node's advertised name
	dir      string // data dir, kept across restarts ("" until needed)
	memory   bool
	peers    []string
	ln       net.Listener // reserved, not yet handed to Open
	n        *node.Node   // nil while stopped
	muted    *atomic.Bool // while set, every request the node sends is lost
	replicas []string     // replica ids, one per start
}

// New returns an empty cluster. When t's test ends it heals both networks,
// closes every node and listener, and removes every data dir, whatever
// happened.
func New(t testing.TB, opts Options) *Cluster {
	t.Helper()
	c := &Cluster{
		t:         t,
		base:      t.TempDir(), // made before Cleanup is registered, so removed after it
		opts:      opts,
		Net:       faultnet.New(opts.Seed),
		ClientNet: faultnet.New(opts.Seed ^ 0xc11e47),
		ctl:       apiclient.Client{HTTP: &http.Client{Timeout: ctlTimeout, Transport: ctlTransport(opts.ClusterKeys)}},
		logs:      &logsink.Sink{Max: opts.LogLines},
		nodes:     map[string]*member{},
		removed:   map[string]bool{},
	}
	c.client = apiclient.Client{HTTP: &http.Client{Timeout: ClientTimeout, Transport: c.ClientNet.Transport("client",
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

// Names returns the names of n nodes: A, B, C, ...
func Names(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = string(rune('A' + i))
	}
	return out
}

// Start reserves and opens n nodes named A, B, ..., each with every other
// as a peer, durable unless named in memory, and waits until each lists
// every other alive.
func (c *Cluster) Start(n int, memory ...string) error {
	names := Names(n)
	if err := c.Reserve(names...); err != nil {
		return err
	}
	for _, name := range names {
		if err := c.Open(name, c.Others(name), slices.Contains(memory, name)); err != nil {
			return err
		}
	}
	return c.WaitMesh(StartTimeout, names...)
}

// Reserve opens a listener on 127.0.0.1 port 0 for each name, so that every
// node's address is known before any node starts.
func (c *Cluster) Reserve(names ...string) error {
	for _, name := range names {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return fmt.Errorf("reserve %s: %w", name, err)
		}
		c.mu.Lock()
		if _, dup := c.nodes[name]; dup {
			c.mu.Unlock()
			ln.Close()
			return fmt.Errorf("node %s reserved twice", name)
		}
		c.nodes[name] = &member{name: name, addr: ln.Addr().String(), ln: ln, muted: new(atomic.Bool)}
		c.order = append(c.order, name)
		c.mu.Unlock()
	}
	return nil
}

// Others returns the addresses of every node but name and the removed ones.
func (c *Cluster) Others(name string) []string {
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

// Open starts the reserved node name with peers (addresses), durable in a
// data dir of its own unless memory is set.
func (c *Cluster) Open(name string, peers []string, memory bool) error {
	m, err := c.member(name)
	if err != nil {
		return err
	}
	if m.ln == nil {
		return fmt.Errorf("open %s: no reserved listener (use Restart)", name)
	}
	m.peers, m.memory = slices.Clone(peers), memory
	return c.open(m)
}

// SetPeers sets the peers the named node gets when it is next restarted.
func (c *Cluster) SetPeers(name string, peers []string) error {
	m, err := c.member(name)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	m.peers = slices.Clone(peers)
	return nil
}

// Config returns the Config the named node opens with, less its listener,
// data dir, peers and transport: node.TestConfig with anti-entropy off
// unless Options.AntiEntropy, then Options.Config.
func (c *Cluster) Config(name string) node.Config {
	cfg := c.baseConfig()
	if c.opts.Config != nil {
		c.opts.Config(name, &cfg)
	}
	return cfg
}

func (c *Cluster) baseConfig() node.Config {
	cfg := node.TestConfig()
	if !c.opts.AntiEntropy {
		cfg.AntiEntropyInterval = time.Hour
	}
	return cfg
}

func (c *Cluster) open(m *member) error {
	cfg := c.baseConfig()
	cfg.Listener, m.ln = m.ln, nil
	cfg.Peers = slices.Clone(m.peers)
	cfg.Memory = m.memory
	if !m.memory {
		if m.dir == "" {
			dir, err := c.newDir(m.name)
			if err != nil {
				cfg.Listener.Close()
				return err
			}
			m.dir = dir
		}
		cfg.DataDir = m.dir
	}
	m.muted.Store(false)
	cfg.RoundTripper = faultnet.Muted(m.muted, c.Net.Transport(m.addr, nil))
	c.mu.Lock()
	starts := len(m.replicas)
	c.mu.Unlock()
	cfg.Logger = c.logs.Logger(fmt.Sprintf("%s#%d", m.name, starts))
	cfg.ClusterKeys = c.opts.ClusterKeys
	if c.opts.Config != nil {
		c.opts.Config(m.name, &cfg)
	}
	n, err := node.Open(cfg)
	if err != nil {
		cfg.Listener.Close()
		return fmt.Errorf("open %s: %w", m.name, err)
	}
	if n.Addr() != m.addr {
		n.Close()
		return fmt.Errorf("node %s advertises %s, want %s", m.name, n.Addr(), m.addr)
	}
	c.mu.Lock()
	m.n = n
	m.replicas = append(m.replicas, n.Replica())
	c.mu.Unlock()
	return nil
}

// newDir makes an empty data dir for the named node.
func (c *Cluster) newDir(name string) (string, error) {
	dir, err := os.MkdirTemp(c.base, name+"-")
	if err != nil {
		return "", fmt.Errorf("data dir for %s: %w", name, err)
	}
	return dir, nil
}

// Stop closes the named node gracefully (it flushes what its peers lack
// first) and returns how long Close took and its error, which is also
// logged; or ErrNotRunning.
func (c *Cluster) Stop(name string) (time.Duration, error) {
	n, err := c.take(name)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	err = n.Close()
	took := time.Since(start)
	if err != nil {
		c.t.Logf("close %s after %v: %v", name, took.Round(time.Millisecond), err)
		err = fmt.Errorf("close %s: %w", name, err)
	}
	return took, err
}

// Mute loses (on) or restores (off) every request the named node sends, to
// every node, without touching the network's rules.
func (c *Cluster) Mute(name string, on bool) {
	if m, err := c.member(name); err == nil {
		m.muted.Store(on)
	}
}

// Crash stops the named node with every request it sends lost, so its peers
// hear nothing more from it: no final flush reaches them, and they learn it
// is gone only from failed health checks. Whatever it acknowledged and had
// not pushed is then only on its disk. (Clients are treated gracefully, as
// by Close; an in-process node cannot be SIGKILLed, and acknowledged
// changes are durable before the 200, which is what a SIGKILL tests. The
// store is left as a SIGKILL leaves it: its write-ahead log unapplied, for
// the restart to replay.) A close error is only logged; the error is
// ErrNotRunning.
func (c *Cluster) Crash(name string) error {
	c.Mute(name, true)
	n, err := c.take(name)
	if err != nil {
		return err
	}
	// The store's log is left unapplied, as a SIGKILL leaves it: the
	// restart replays it (node.Node.Crash).
	if err := n.Crash(); err != nil {
		c.t.Logf("crash %s: %v", name, err)
	}
	return nil
}

func (c *Cluster) take(name string) (*node.Node, error) {
	m, err := c.member(name)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	n := m.n
	if n == nil {
		return nil, fmt.Errorf("%w: %s", ErrNotRunning, name)
	}
	m.n = nil
	return n, nil
}

// RestartMode says what state a restarted node starts from.
type RestartMode int

// The restart modes.
const (
	SameDir  RestartMode = iota // the data dir it had
	WipedDir                    // a new, empty data dir
	InMemory                    // memory mode: nothing
)

func (m RestartMode) String() string {
	return [...]string{"same data dir", "wiped data dir", "memory"}[m]
}

// Restart starts a stopped node again on its address, with its peers (see
// SetPeers), from the state mode says.
func (c *Cluster) Restart(name string, mode RestartMode) error {
	m, err := c.member(name)
	if err != nil {
		return err
	}
	c.mu.Lock()
	running := m.n != nil
	c.mu.Unlock()
	if running {
		return fmt.Errorf("restart %s: still running", name)
	}
	switch mode {
	case SameDir:
		if m.memory || m.dir == "" {
			return fmt.Errorf("restart %s on its data dir: it ran in memory", name)
		}
	case WipedDir:
		dir, err := c.newDir(name)
		if err != nil {
			return err
		}
		m.memory, m.dir = false, dir
	case InMemory:
		m.memory = true
	}
	ln, err := faultnet.Relisten(m.addr)
	if err != nil {
		return err
	}
	m.ln = ln
	return c.open(m)
}

// Remove removes the named node for good: DELETE /peers/{addr} on every
// other live node, then a stop. It is never started again, and Others no
// longer lists it.
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
	if _, err := c.Stop(name); errors.Is(err, ErrNotRunning) {
		return err
	}
	return nil
}

// closeAll closes every running node and reserved listener, concurrently.
func (c *Cluster) closeAll() {
	c.mu.Lock()
	var run []*member
	for _, m := range c.nodes {
		if m.n != nil {
			run = append(run, m)
		}
		if m.ln != nil {
			m.ln.Close()
			m.ln = nil
		}
	}
	c.mu.Unlock()
	var wg sync.WaitGroup
	for _, m := range run {
		wg.Go(func() { c.Stop(m.name) })
	}
	wg.Wait()
}

func (c *Cluster) member(name string) (*member, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m, ok := c.nodes[name]
	if !ok {
		return nil, fmt.Errorf("testcluster: no node %s", name)
	}
	return m, nil
}

// Addr returns the named node's address, host:port; "" for no such node.
func (c *Cluster) Addr(name string) string {
	m, err := c.member(name)
	if err != nil {
		return ""
	}
	return m.addr
}

// Addrs returns the addresses of the named nodes.
func (c *Cluster) Addrs(names ...string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = c.Addr(n)
	}
	return out
}

// URL returns the named node's base URL.
func (c *Cluster) URL(name string) string { return "http://" + c.Addr(name) }

// Replicas returns the replica ids the named node has had, one per start.
func (c *Cluster) Replicas(name string) []string {
	m, err := c.member(name)
	if err != nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(m.replicas)
}

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

// NameOf returns the name of the node at addr, or addr itself.
func (c *Cluster) NameOf(addr string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	for name, m := range c.nodes {
		if m.addr == addr {
			return name
		}
	}
	return addr
}

// Logs returns the newest n lines the nodes logged (all kept if n <= 0) and
// how many are kept in all.
func (c *Cluster) Logs(n int) ([]string, int) { return c.logs.Last(n) }

// --- client side ---

// Change adds delta (non-zero) to counter on the named node through
// ClientNet and classifies the outcome (apiclient.Classify). It never fails.
func (c *Cluster) Change(name, counter string, delta int64) apiclient.Result {
	return c.client.Change(c.URL(name), counter, delta)
}

// HTTP returns the client of the harness's own requests, straight to the
// nodes.
func (c *Cluster) HTTP() *http.Client { return c.ctl.HTTP }

// Get returns the named node's value of counter: GET /counter for
// "default", GET /counters/{name} otherwise.
func (c *Cluster) Get(name, counter string) (int64, error) {
	path := "/counters/" + url.PathEscape(counter)
	if counter == "default" {
		path = "/counter"
	}
	var r struct {
		Counter string `json:"counter"`
		Value   int64  `json:"value"`
	}
	if err := c.ctl.GetJSON(context.Background(), c.URL(name), path, &r); err != nil {
		return 0, err
	}
	if r.Counter != counter {
		return 0, fmt.Errorf("GET %s on %s names counter %q", path, name, r.Counter)
	}
	return r.Value, nil
}

// PostJSON POSTs body to path on the named node and returns the status.
func (c *Cluster) PostJSON(name, path, body string) (int, error) {
	resp, err := c.ctl.HTTP.Post(c.URL(name)+path, "application/json", strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// Counters returns GET /counters of the named node.
func (c *Cluster) Counters(name string) (map[string]int64, error) {
	return c.ctl.Counters(context.Background(), c.URL(name))
}

// Peers returns GET /peers of the named node.
func (c *Cluster) Peers(name string) ([]apiclient.PeerRow, error) {
	return c.ctl.Peers(context.Background(), c.URL(name))
}

// Replica returns the replica id the named node reports in GET /health.
func (c *Cluster) Replica(name string) (string, error) {
	return c.ctl.Replica(context.Background(), c.URL(name))
}

// RemovePeer removes peer on the named node with DELETE /peers/{addr},
// which must answer 204.
func (c *Cluster) RemovePeer(on, peer string) error {
	return c.ctl.RemovePeer(context.Background(), c.URL(on), c.Addr(peer))
}

// DescribePeers renders a peer list with node names, for messages.
func (c *Cluster) DescribePeers(rows []apiclient.PeerRow) string {
	return apiclient.DescribePeers(rows, c.NameOf)
}

// --- waiting ---

// WaitConverged waits up to timeout until each named node (every running
// node if none are named) reports exactly want in GET /counters, and
// returns how long that took.
func (c *Cluster) WaitConverged(timeout time.Duration, want map[string]int64, names ...string) (time.Duration, error) {
	if len(names) == 0 {
		names = c.Live()
	}
	return poll.Until(context.Background(), timeout, PollEvery, fmt.Sprintf("nodes %v agree on %v", names, want), func() (bool, string) {
		var desc []string
		for _, name := range names {
			got, err := c.Counters(name)
			switch {
			case err != nil:
				desc = append(desc, fmt.Sprintf("%s: %v", name, err))
			case !maps.Equal(got, want):
				desc = append(desc, fmt.Sprintf("%s=%v", name, got))
			}
		}
		return len(desc) == 0, strings.Join(desc, "; ")
	})
}

// WaitPeers waits up to timeout until the named node's GET /peers, as a map
// from node name to state, satisfies cond, and returns how long that took.
func (c *Cluster) WaitPeers(timeout time.Duration, name, what string, cond func(states map[string]string) bool) (time.Duration, error) {
	return poll.Until(context.Background(), timeout, PollEvery, fmt.Sprintf("%s: %s", name, what), func() (bool, string) {
		rows, err := c.Peers(name)
		if err != nil {
			return false, err.Error()
		}
		return cond(apiclient.PeerStates(rows, c.NameOf)), c.DescribePeers(rows)
	})
}

// WaitMesh waits up to timeout until each named node lists every other one
// as alive.
func (c *Cluster) WaitMesh(timeout time.Duration, names ...string) error {
	end := time.Now().Add(timeout)
	for _, name := range names {
		_, err := c.WaitPeers(time.Until(end), name, "lists every other node alive", func(states map[string]string) bool {
			for _, other := range names {
				if other != name && states[other] != "alive" {
					return false
				}
			}
			return true
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// ctlTransport is the transport of the harness's own requests: it signs
// them with keys, if any, as a node signs its requests to its peers.
func ctlTransport(keys *auth.Keyring) http.RoundTripper {
	if keys == nil {
		return nil // http.DefaultTransport
	}
	return signing{keys: keys, next: &http.Transport{IdleConnTimeout: 30 * time.Second}}
}

// signing signs every request with keys before next sends it.
type signing struct {
	keys *auth.Keyring
	next *http.Transport
}

func (s signing) RoundTrip(r *http.Request) (*http.Response, error) {
	var body []byte
	if r.Body != nil {
		var err error
		body, err = io.ReadAll(r.Body)
		r.Body.Close()
		if err != nil {
			return nil, err
		}
	}
	r = r.Clone(r.Context()) // a RoundTripper must not change its caller's request
	r.Body, r.ContentLength = http.NoBody, 0
	if len(body) > 0 {
		r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
	}
	s.keys.Sign(r, body, time.Now())
	return s.next.RoundTrip(r)
}

// CloseIdleConnections lets http.Client.CloseIdleConnections reach next.
func (s signing) CloseIdleConnections() { s.next.CloseIdleConnections() }
