//go:build linux

package e2e

// Network faults between real processes. Each node of a five-node cluster
// runs in a network namespace of its own, with one interface, eth0, the end
// of a veth pair whose other end, p<i>, is a port of bridge br0 in a hub
// namespace. Everything is created by the test under a name unique to the
// run (countd-<pid>-<seq>-hub, countd-<pid>-<seq>-n<i>) and lives inside
// those namespaces: the host namespace gets no interface, address or route,
// and the addresses (10.213.<seq>.<i+1>) exist only on the test's links, so
// no packet can reach a real network. Deleting the namespaces deletes every
// veth and bridge with them.
//
// The test's own HTTP clients reach node i from inside node i's namespace:
// a dial locks its goroutine to a thread, moves that thread into the
// namespace with setns(2), opens the socket there and moves the thread back
// (netnsDialer, registered in nodeDialers for dialNode). The client's
// traffic goes over that namespace's loopback, so a fault on the links
// between nodes never cuts a client off from its node: the load goes on on
// both sides.
//
// The faults, all made and healed in the hub namespace:
//   - cut one node off: its bridge port down;
//   - split 2|3: two nodes' ports moved to a second bridge, br1;
//   - one-way loss: everything the bridge sends toward one node dropped,
//     with `tc qdisc ... netem loss 100%` on its port when tc and the
//     kernel's netem are there, else by turning off learning and flooding
//     on the port (the same frames are lost); the test logs which.
//
// Without root, or where `ip netns add` fails, the cases skip and say why.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"countd/internal/apiclient"
)

const (
	netnsNodes = 5
	// netnsPort is every node's port. Each node has a namespace of its own,
	// so a fixed port cannot collide with anything.
	netnsPort = 7000
	// faultTimeout bounds the wait from a fault or a heal until the nodes
	// see it. With clusterFlags a peer is down after about 0.4s and a down
	// peer is probed at least every second.
	faultTimeout = 20 * time.Second
	// phaseAcks is how many requests each node must acknowledge while a
	// fault is in place, and again after it heals.
	phaseAcks = 100
)

// netnsSeq numbers the clusters of one test process, for unique names.
var netnsSeq atomic.Int32

// netnsCluster is five countd processes in network namespaces of their own,
// joined by a bridge in a hub namespace.
type netnsCluster struct {
	t       *testing.T
	prefix  string   // countd-<pid>-<seq>
	hub     string   // the namespace holding the bridges
	spaces  []string // every namespace created, in order; all deleted at the end
	nodes   []*clusterNode
	subnet  string   // 10.213.<seq>.
	addrs   []string // the first netnsNodes nodes' addresses
	keyFile string   // the cluster key every node takes
}

// newNetnsCluster creates the namespaces and links and starts the nodes, or
// skips the test where that is not possible.
func newNetnsCluster(t *testing.T) *netnsCluster {
	t.Helper()
	c := newNetns(t)
	for i := range netnsNodes {
		others := slices.Concat(c.addrs[:i], c.addrs[i+1:])
		c.addNode(i, "-peers="+strings.Join(others, ","))
	}
	startAll(t, c.nodes...)
	c.awaitViews("the start", allAliveViews(netnsNodes)...)
	return c
}

// newNetns creates the hub namespace, its bridges and the cluster key, or
// skips the test where that is not possible; addNode adds nodes.
func newNetns(t *testing.T) *netnsCluster {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("netns: skipped: creating network namespaces needs root; run the tests as root to include the network-fault cases")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skipf("netns: skipped: the ip command (iproute2) is not installed: %v", err)
	}
	seq := netnsSeq.Add(1)
	c := &netnsCluster{t: t, prefix: fmt.Sprintf("countd-%d-%d", os.Getpid(), seq)}
	c.hub = c.prefix + "-hub"
	if err := run("ip", "netns", "add", c.hub); err != nil {
		t.Skipf("netns: skipped: cannot create a network namespace here: %v", err)
	}
	c.spaces = append(c.spaces, c.hub)
	// Registered before any node starts, so it runs after their cleanups
	// have killed them.
	t.Cleanup(c.cleanup)

	for _, br := range []string{"br0", "br1"} {
		if err := run("ip", "-n", c.hub, "link", "add", br, "type", "bridge"); err != nil {
			t.Skipf("netns: skipped: cannot create a bridge (no bridge support in this kernel?): %v", err)
		}
		c.ip("-n", c.hub, "link", "set", br, "up")
	}
	c.subnet = fmt.Sprintf("10.213.%d.", seq%250)
	// The nodes bind non-loopback addresses, so they need a cluster key;
	// it is made here, and every node-to-node request is signed with it.
	c.keyFile = filepath.Join(t.TempDir(), "cluster.key")
	secret := make([]byte, 32)
	rand.Read(secret)
	if err := os.WriteFile(c.keyFile, []byte(base64.StdEncoding.EncodeToString(secret)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for i := range netnsNodes {
		c.addrs = append(c.addrs, c.addrOf(i))
	}
	return c
}

// addrOf is node i's address: 10.213.<seq>.<i+1>, at netnsPort.
func (c *netnsCluster) addrOf(i int) string {
	return c.subnet + strconv.Itoa(i+1) + ":" + strconv.Itoa(netnsPort)
}

// addNode creates node i's namespace, its link to br0 and its address, and
// adds (does not start) the node, with extra flags.
func (c *netnsCluster) addNode(i int, extra ...string) *clusterNode {
	t := c.t
	t.Helper()
	ns := fmt.Sprintf("%s-n%d", c.prefix, i)
	c.ip("netns", "add", ns)
	c.spaces = append(c.spaces, ns)
	// Both ends are created inside the test's namespaces: no name is
	// ever taken in the host namespace, even for a moment.
	if err := run("ip", "-n", c.hub, "link", "add", c.port(i), "type", "veth", "peer", "name", "eth0", "netns", ns); err != nil {
		t.Skipf("netns: skipped: cannot create a veth pair (no veth support in this kernel?): %v", err)
	}
	c.ip("-n", c.hub, "link", "set", c.port(i), "master", "br0", "up")
	addr := c.addrOf(i)
	host, _, _ := strings.Cut(addr, ":")
	c.ip("-n", ns, "addr", "add", host+"/24", "dev", "eth0")
	c.ip("-n", ns, "link", "set", "eth0", "up")
	c.ip("-n", ns, "link", "set", "lo", "up")

	nodeDialers.Store(addr, netnsDialer("/var/run/netns/"+ns))
	t.Cleanup(func() { nodeDialers.Delete(addr) })
	n := &clusterNode{name: "node" + strconv.Itoa(i), port: netnsPort, addr: addr, wrap: []string{"ip", "netns", "exec", ns}}
	n.args = append([]string{
		"-bind=" + host, "-advertise=" + addr, "-port=" + strconv.Itoa(netnsPort),
		"-data-dir=" + t.TempDir(), "-cluster-key-file=" + c.keyFile,
	}, clusterFlags...)
	n.args = append(n.args, extra...)
	c.nodes = append(c.nodes, n)
	return n
}

// port is node i's bridge port in the hub namespace.
func (c *netnsCluster) port(i int) string { return "p" + strconv.Itoa(i) }

// cleanup deletes every namespace the test created, with the veths and
// bridges in them, and checks that none is left. The nodes' own cleanups
// have already killed and reaped them by PID.
func (c *netnsCluster) cleanup() {
	for _, ns := range slices.Backward(c.spaces) {
		if out, err := exec.Command("ip", "netns", "pids", ns).Output(); err == nil && len(bytes.TrimSpace(out)) > 0 {
			c.t.Errorf("netns cleanup: processes still in %s: %s", ns, bytes.Fields(out))
		}
		if err := run("ip", "netns", "del", ns); err != nil {
			c.t.Errorf("netns cleanup: %v", err)
		}
	}
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		c.t.Errorf("netns cleanup: ip netns list: %v", err)
		return
	}
	for line := range strings.Lines(string(out)) {
		if strings.HasPrefix(line, c.prefix+"-") {
			c.t.Errorf("netns cleanup: namespace left behind: %s", strings.TrimSpace(line))
		}
	}
}

// run runs a command and returns its output in the error if it fails.
func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// ip runs the ip command, failing the test if it fails.
func (c *netnsCluster) ip(args ...string) {
	c.t.Helper()
	if err := run("ip", args...); err != nil {
		c.t.Fatal(err)
	}
}

// netnsDialer returns a dial function that opens its sockets inside the
// network namespace at path (see inNetns).
func netnsDialer(path string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (conn net.Conn, err error) {
		err = inNetns(path, func() error {
			var d net.Dialer
			conn, err = d.DialContext(ctx, network, addr)
			return err
		})
		return conn, err
	}
}

// inNetns runs fn inside the network namespace at path: a socket fn opens
// belongs to that namespace for good. The namespace belongs to the thread,
// so fn runs on a goroutine locked to its thread, which enters the
// namespace, runs fn, and goes back before it is unlocked. If it cannot go
// back, the goroutine ends still locked and the runtime retires the
// thread, so no other goroutine ever runs in the namespace. (Threads the
// runtime starts meanwhile come from its template thread, not from the
// locked one, so they stay in the test's own namespace.)
func inNetns(path string, fn func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		back, err := enterAndRun(path, fn)
		if back {
			runtime.UnlockOSThread()
		}
		done <- err
	}()
	return <-done
}

// enterAndRun enters the namespace at path on the calling thread, which
// must be locked, runs fn, and reports whether the thread is back in the
// namespace it started in.
func enterAndRun(path string, fn func() error) (back bool, err error) {
	self, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		return true, err
	}
	defer self.Close()
	target, err := os.Open(path)
	if err != nil {
		return true, err
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		return true, fmt.Errorf("setns %s: %w", path, err)
	}
	err = fn()
	return unix.Setns(int(self.Fd()), unix.CLONE_NEWNET) == nil, err
}

// view is what one node must see in GET /peers: the nodes it lists alive
// and those it lists as anything else (or not at all).
type view struct {
	observer        int
	alive, notAlive []int
}

// allAliveViews is every node listing every other node alive.
func allAliveViews(n int) []view {
	var vs []view
	for i := range n {
		v := view{observer: i}
		for j := range n {
			if j != i {
				v.alive = append(v.alive, j)
			}
		}
		vs = append(vs, v)
	}
	return vs
}

// awaitViews polls GET /peers until every view holds, and fails the test at
// faultTimeout with what the nodes last listed. It returns how long it took.
func (c *netnsCluster) awaitViews(what string, views ...view) time.Duration {
	c.t.Helper()
	client := newClient(c.t, len(c.nodes))
	client.Timeout = pollTimeout
	start := time.Now()
	last := make(map[int]string)
	holds := func() bool {
		ok := true
		for _, v := range views {
			obs := c.nodes[v.observer]
			if obs.proc.exited() {
				c.t.Fatalf("%s (pid %d) exited: %v", obs.name, obs.proc.PID(), obs.proc.Err())
			}
			rows, err := peerRows(client, obs)
			if err != nil {
				last[v.observer] = err.Error()
				ok = false
				continue
			}
			last[v.observer] = apiclient.DescribePeers(rows, c.nameOf)
			states := apiclient.PeerStates(rows, nil)
			for _, j := range v.alive {
				ok = ok && states[c.nodes[j].addr] == "alive"
			}
			for _, j := range v.notAlive {
				ok = ok && states[c.nodes[j].addr] != "alive"
			}
		}
		return ok
	}
	if !poll(faultTimeout, holds) {
		var b strings.Builder
		for _, i := range slices.Sorted(maps.Keys(last)) {
			fmt.Fprintf(&b, "\n  %s sees %s", c.nodes[i].name, last[i])
		}
		c.t.Fatalf("%s: the nodes did not see it within %v; they last listed:%s", what, faultTimeout, b.String())
	}
	took := time.Since(start)
	c.t.Logf("%s: seen by the nodes after %v", what, took.Round(time.Millisecond))
	return took
}

// nameOf is the name of the node at addr, or addr if it is none of them.
func (c *netnsCluster) nameOf(addr string) string {
	for _, n := range c.nodes {
		if n.addr == addr {
			return n.name
		}
	}
	return addr
}

// awaitNodeAcks waits until every node has acknowledged n more requests than
// in before, which shows that the load reaches each side of a fault.
func (c *netnsCluster) awaitNodeAcks(l *clusterLoad, before map[string]apiclient.Counts, n int64, what string) {
	c.t.Helper()
	ok := poll(progressTimeout, func() bool {
		for _, node := range c.nodes {
			if l.nodeStats(node).OK < before[node.name].OK+n {
				return false
			}
		}
		return true
	})
	if !ok {
		var b strings.Builder
		for _, node := range c.nodes {
			fmt.Fprintf(&b, "\n  %s: %s", node.name, l.nodeStats(node).Minus(before[node.name]))
		}
		c.t.Fatalf("%s: not every node acknowledged %d more requests within %v:%s", what, n, progressTimeout, b.String())
	}
}

func (c *netnsCluster) stats(l *clusterLoad) map[string]apiclient.Counts {
	m := make(map[string]apiclient.Counts)
	for _, n := range c.nodes {
		m[n.name] = l.nodeStats(n)
	}
	return m
}

// counters is node i's GET /counters, failing the test on error.
func (c *netnsCluster) counters(i int) map[string]int64 {
	c.t.Helper()
	client := newClient(c.t, 1)
	client.Timeout = pollTimeout
	v := viewOf(client, c.nodes[i])
	if v.err != nil {
		c.t.Fatalf("%s: %v", c.nodes[i].name, v.err)
	}
	return v.values
}

// netnsFault is one fault: how to make and heal it, and what the nodes must
// see while it is in place. split names two nodes on opposite sides, whose
// counters must differ once both sides have taken load: proof that the fault
// stopped replication between them.
type netnsFault struct {
	name  string
	apply func(c *netnsCluster)
	heal  func(c *netnsCluster)
	views []view
	split [2]int
}

// exercise runs the fault on a fresh cluster under load on every node: load,
// fault, more load on both sides, heal, more load, stop; then every node
// must agree on every counter and list all four others alive (invariant 1),
// and each value must lie within what the clients can know (invariant 2).
func exercise(t *testing.T, f netnsFault) {
	const clientsPerNode = 2
	began := time.Now()
	c := newNetnsCluster(t)
	t.Logf("cluster up in namespaces %s-* after %v", c.prefix, time.Since(began).Round(time.Millisecond))

	l := newClusterLoad(t, clusterCounters)
	for _, n := range c.nodes {
		l.addClients(n, clientsPerNode)
	}
	c.awaitNodeAcks(l, nil, 20, "before the fault")

	f.apply(c)
	faulted := time.Now()
	c.awaitViews(f.name, f.views...)
	before := c.stats(l)
	c.awaitNodeAcks(l, before, phaseAcks, f.name)
	a, b := f.split[0], f.split[1]
	va, vb := c.counters(a), c.counters(b)
	if maps.Equal(va, vb) {
		t.Fatalf("%s: %s and %s agree (%v) after both took load: the fault did not stop replication", f.name, c.nodes[a].name, c.nodes[b].name, va)
	}
	t.Logf("%s for %v; %s has %v, %s has %v", f.name, time.Since(faulted).Round(time.Millisecond), c.nodes[a].name, va, c.nodes[b].name, vb)

	f.heal(c)
	c.awaitViews("heal after "+f.name, allAliveViews(netnsNodes)...)
	c.awaitNodeAcks(l, c.stats(l), phaseAcks, "after the heal")
	l.stop()
	loadStopped := time.Now()
	t.Logf("load: %s", l)
	for _, n := range c.nodes {
		t.Logf("  %s: %s", n.name, l.nodeStats(n))
	}

	values := awaitAgreement(t, c.nodes, l)
	t.Logf("agreement %v after the load stopped", time.Since(loadStopped).Round(time.Millisecond))
	l.checkBounds(t, values)
	for _, n := range c.nodes {
		n.proc.Stop()
	}
	t.Logf("total %v", time.Since(began).Round(time.Millisecond))
}

// TestNetnsCutOneNodeOff takes node4's link down, so it can reach no peer and
// no peer can reach it, while clients keep changing counters on every node.
func TestNetnsCutOneNodeOff(t *testing.T) {
	const cut = 4
	exercise(t, netnsFault{
		name:  "node4 cut off",
		apply: func(c *netnsCluster) { c.ip("-n", c.hub, "link", "set", c.port(cut), "down") },
		heal:  func(c *netnsCluster) { c.ip("-n", c.hub, "link", "set", c.port(cut), "up") },
		views: []view{
			{observer: 0, alive: []int{1, 2, 3}, notAlive: []int{cut}},
			{observer: cut, notAlive: []int{0, 1, 2, 3}},
		},
		split: [2]int{0, cut},
	})
}

// TestNetnsSplit2And3 moves node0 and node1 to a bridge of their own, so the
// cluster splits into {node0, node1} and {node2, node3, node4}, each side
// taking load and seeing its own members alive.
func TestNetnsSplit2And3(t *testing.T) {
	left := []int{0, 1}
	move := func(br string) func(c *netnsCluster) {
		return func(c *netnsCluster) {
			for _, i := range left {
				c.ip("-n", c.hub, "link", "set", c.port(i), "master", br)
			}
		}
	}
	exercise(t, netnsFault{
		name:  "split {node0 node1} | {node2 node3 node4}",
		apply: move("br1"),
		heal:  move("br0"),
		views: []view{
			{observer: 0, alive: []int{1}, notAlive: []int{2, 3, 4}},
			{observer: 1, alive: []int{0}, notAlive: []int{2, 3, 4}},
			{observer: 2, alive: []int{3, 4}, notAlive: []int{0, 1}},
		},
		split: [2]int{0, 2},
	})
}

// TestNetnsOneWayLoss drops every frame sent toward node2 while its own
// frames still go out: its peers' requests reach it, their answers do not.
func TestNetnsOneWayLoss(t *testing.T) {
	const target = 2
	var heal func()
	exercise(t, netnsFault{
		name: "all frames toward node2 lost",
		apply: func(c *netnsCluster) {
			heal = c.dropToward(target)
		},
		heal: func(*netnsCluster) { heal() },
		views: []view{
			{observer: 0, alive: []int{1, 3, 4}, notAlive: []int{target}},
			{observer: 4, alive: []int{0, 1, 3}, notAlive: []int{target}},
		},
		split: [2]int{0, target},
	})
}

// dropToward makes the bridge lose every frame it sends to node i, and
// returns the function that heals it. It uses netem when it can.
func (c *netnsCluster) dropToward(i int) (heal func()) {
	c.t.Helper()
	port := c.port(i)
	var why string
	if _, err := exec.LookPath("tc"); err != nil {
		why = "tc is not installed"
	} else if err := run("tc", "-n", c.hub, "qdisc", "add", "dev", port, "root", "netem", "loss", "100%"); err != nil {
		why = err.Error()
	} else {
		c.t.Logf("one-way loss: tc qdisc netem loss 100%% on %s's bridge port", c.nodes[i].name)
		return func() {
			if err := run("tc", "-n", c.hub, "qdisc", "del", "dev", port, "root"); err != nil {
				c.t.Fatal(err)
			}
		}
	}
	// Without netem: the port learns no address and gets no flooded frame,
	// and its learned addresses are flushed, so the bridge has no way to
	// send a frame out of it; frames coming in from the node still pass.
	c.t.Logf("one-way loss: no netem (%s); dropping the same frames with learning and flooding off on %s's bridge port", why, c.nodes[i].name)
	c.ip("-n", c.hub, "link", "set", port, "type", "bridge_slave",
		"learning", "off", "flood", "off", "mcast_flood", "off", "bcast_flood", "off", "fdb_flush")
	return func() {
		c.ip("-n", c.hub, "link", "set", port, "type", "bridge_slave",
			"learning", "on", "flood", "on", "mcast_flood", "on", "bcast_flood", "on")
	}
}
