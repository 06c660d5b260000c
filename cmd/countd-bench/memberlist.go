package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"

	"countd/internal/poll"
	"countd/internal/proc"
)

// The idle mode's peer (-idle-peer=memberlist): hashicorp/memberlist, SWIM
// over UDP, the failure detector countd's own SWIM follows (docs/design.md,
// "Failure detection"). The tool starts N memberlist nodes on 127.0.0.1,
// each a child process running this binary with the hidden flag
// -memberlist-node and DefaultLANConfig (probe every 1 s, gossip every
// 200 ms, push-pull every 30 s), every one but the first joined to the
// first, and measures their CPU and memory over the same -idle window, from
// /proc, as it does countd's nodes.
//
// A node speaks to the tool on stdout: its address as the first line, then
// "members N" each time the number of members it lists alive changes, so
// the tool learns that the cluster is ready, and that a SIGKILLed member
// was declared dead, without asking (no polling traffic that would cost
// the nodes CPU). memberlist's own log goes to stderr, the node's log file.

// peerMemberlist is -idle-peer's one value.
const peerMemberlist = "memberlist"

// memberlistVersion is the version of memberlist built into this binary
// (the one go.mod pins), for the report.
func memberlistVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, m := range bi.Deps {
			if m.Path == "github.com/hashicorp/memberlist" {
				return m.Version
			}
		}
	}
	return "(version unknown)"
}

// serveMemberlist runs this process as one memberlist node
// (-memberlist-node), joined to the node at join unless it is empty,
// until SIGTERM or SIGINT or until stdin ends.
func serveMemberlist(join string, stdin io.Reader, stdout, stderr io.Writer) int {
	ctx, stop := stopContext(stdin)
	defer stop()
	ev := &memberEvents{out: stdout, alive: make(map[string]bool)}
	conf := memberlist.DefaultLANConfig()
	conf.Name = "memberlist-" + strconv.Itoa(os.Getpid()) // the default, the host name, is the same for all
	conf.BindAddr, conf.BindPort, conf.AdvertisePort = "127.0.0.1", 0, 0
	conf.LogOutput = stderr
	conf.Events = ev
	ml, err := memberlist.Create(conf)
	if err != nil {
		fmt.Fprintln(stderr, "countd-bench -memberlist-node:", err)
		return 1
	}
	defer ml.Shutdown()
	ev.start(ml.LocalNode().Address())
	if join != "" {
		if _, err := ml.Join([]string{join}); err != nil {
			fmt.Fprintln(stderr, "countd-bench -memberlist-node:", err)
			return 1
		}
	}
	<-ctx.Done()
	if err := ml.Shutdown(); err != nil {
		fmt.Fprintln(stderr, "countd-bench -memberlist-node:", err)
		return 1
	}
	return 0
}

// memberEvents is a node's memberlist.EventDelegate: it counts the
// members alive and prints "members N" on each change, once the address
// line is out. memberlist calls it with its own lock held, so it must not
// call back into the memberlist.
type memberEvents struct {
	mu      sync.Mutex
	out     io.Writer
	started bool
	alive   map[string]bool
}

var _ memberlist.EventDelegate = (*memberEvents)(nil)

// start prints addr, then the count so far.
func (e *memberEvents) start(addr string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	fmt.Fprintln(e.out, addr)
	e.started = true
	e.print()
}

func (e *memberEvents) NotifyJoin(n *memberlist.Node)  { e.set(n.Name, true) }
func (e *memberEvents) NotifyLeave(n *memberlist.Node) { e.set(n.Name, false) }
func (e *memberEvents) NotifyUpdate(*memberlist.Node)  {}
func (e *memberEvents) set(name string, alive bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	before := len(e.alive)
	if alive {
		e.alive[name] = true
	} else {
		delete(e.alive, name)
	}
	if e.started && len(e.alive) != before {
		e.print()
	}
}

func (e *memberEvents) print() { fmt.Fprintf(e.out, "members %d\n", len(e.alive)) }

// memberCounts is what the tool knows of its memberlist nodes: the last
// member count each printed, and when it came.
type memberCounts struct {
	mu    sync.Mutex
	count []int
	at    []time.Time
}

// record takes line from node i.
func (m *memberCounts) record(i int, line string) {
	v, ok := strings.CutPrefix(line, "members ")
	n, err := strconv.Atoi(v)
	if !ok || err != nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.count[i], m.at[i] = n, time.Now()
}

// all reports whether nodes 0..k-1 all list want members alive, when the
// last of them came to it, and otherwise what the first that does not
// lists.
func (m *memberCounts) all(k, want int) (bool, time.Time, string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var last time.Time
	for i := range k {
		if m.count[i] != want {
			return false, last, fmt.Sprintf("node %d lists %d members alive, want %d", i, m.count[i], want)
		}
		if m.at[i].After(last) {
			last = m.at[i]
		}
	}
	return true, last, ""
}

// startMemberlist starts n memberlist nodes, the first alone and every
// other joined to it, and waits until each lists all n alive. On any
// error it stops what it started.
func startMemberlist(ctx context.Context, cfg *Config, n int) (_ *cluster, err error) {
	dir, err := os.MkdirTemp("", fmt.Sprintf("countd-bench-memberlist-%dnodes-", n))
	if err != nil {
		return nil, fmt.Errorf("start memberlist: %w", err)
	}
	m := &memberCounts{count: make([]int, n), at: make([]time.Time, n)}
	c := &cluster{dir: dir, keep: cfg.Keep, stopTimeout: cfg.StopTimeout, peer: peerMemberlist, members: m}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	began := time.Now()
	for i := range n {
		args := []string{"-memberlist-node"}
		if i > 0 {
			args = append(args, "-memberlist-join="+c.addrs[0])
		}
		var y *yardstickProc
		_, err := startLogged(filepath.Join(dir, "memberlist-"+strconv.Itoa(i)+".log"), func(logf io.Writer) (*proc.Proc, error) {
			var err error
			y, err = startSelf(ctx, "memberlist node "+strconv.Itoa(i), args, logf,
				func(line string) { m.record(i, line) }, cfg.StopTimeout)
			if err != nil {
				return nil, err
			}
			return y.Proc, nil
		})
		if err != nil {
			return nil, fmt.Errorf("start memberlist: %w", err)
		}
		c.addrs = append(c.addrs, y.addr)
		c.procs = append(c.procs, y.Proc)
		c.closers = append(c.closers, y.stdin)
	}
	if _, err := poll.Until(ctx, cfg.ReadyTimeout, 20*time.Millisecond, "every memberlist node lists all alive", func() (bool, string) {
		if err := c.exitedNode(); err != nil {
			return false, err.Error()
		}
		ok, _, saw := m.all(n, n)
		return ok, saw
	}); err != nil {
		return nil, fmt.Errorf("start memberlist of %d: %w", n, err)
	}
	c.readyAfter = time.Since(began)
	return c, nil
}

// detectMemberlist SIGKILLs the last memberlist node and returns the time
// until every other printed that it lists one member fewer (memberlist
// declared the victim dead), to the arrival of the last such line.
func detectMemberlist(ctx context.Context, cl *cluster, timeout time.Duration) (time.Duration, error) {
	n := len(cl.procs)
	if n < 2 {
		return 0, errors.New("-detect needs at least 2 nodes the tool started")
	}
	start := time.Now()
	if err := cl.procs[n-1].Kill(5 * time.Second); err != nil {
		return 0, fmt.Errorf("kill %s: %w", cl.addrs[n-1], err)
	}
	var last time.Time
	_, err := poll.Until(ctx, timeout, 20*time.Millisecond, cl.addrs[n-1]+" dead on every other node", func() (bool, string) {
		ok, at, saw := cl.members.all(n-1, n-1)
		last = at
		return ok, saw
	})
	return last.Sub(start), err
}
