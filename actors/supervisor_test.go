package actors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"countd/internal/logsink"
	"countd/internal/poll"
	"countd/wire"
)

// lifecycle is what a stand-in PeerActor reports about itself.
type lifecycle struct {
	addr  string
	event string // "started" or "stopped"
	pid   *actor.PID
}

type boom struct{}

// standIn is a PeerActor stand-in: it reports its lifecycle and panics on
// *boom, so tests see exactly what the Supervisor does with its children.
type standIn struct {
	addr    string
	events  chan lifecycle
	members *sync.Map // addr -> the Addrs of the last Members it got
	gossip  *sync.Map // addr -> the last *Members it got
	asked   chan waitAsked
	probes  chan probeAsked
}

// probeAsked is a Probe a stand-in got.
type probeAsked struct {
	addr string
	via  []string
}

func (s *standIn) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *Members:
		s.members.Store(s.addr, m.Addrs)
		s.gossip.Store(s.addr, m)
	case *Probe:
		if s.probes != nil {
			s.probes <- probeAsked{s.addr, m.Via}
		}
	case *WaitFor:
		if s.asked != nil {
			s.asked <- waitAsked{s.addr, m.Version}
		}
	case *actor.Started:
		s.events <- lifecycle{s.addr, "started", ctx.Self()}
	case *actor.Stopped:
		s.events <- lifecycle{s.addr, "stopped", ctx.Self()}
	case *boom:
		panic("boom")
	}
}

type supervisorFixture struct {
	t       *testing.T
	sys     *actor.ActorSystem
	sup     *actor.PID
	tr      *fakeTransport
	events  chan lifecycle
	members sync.Map // addr -> the members its stand-in was last told
	gossip  sync.Map // addr -> the last *Members its stand-in got
	asked   chan waitAsked
	probes  chan probeAsked
}

func newSupervisorFixture(t *testing.T) *supervisorFixture {
	t.Helper()
	return newSupervisorFixtureWith(t, nil)
}

// newSupervisorFixtureWith starts a Supervisor that keeps its tombstones in
// tombstones (nil: in memory only).
func newSupervisorFixtureWith(t *testing.T, tombstones Tombstones) *supervisorFixture {
	t.Helper()
	return newSupervisorFixtureConfig(t, func(c *SupervisorConfig) { c.Tombstones = tombstones })
}

// newSupervisorFixtureConfig starts a Supervisor whose config tune changes.
func newSupervisorFixtureConfig(t *testing.T, tune func(*SupervisorConfig)) *supervisorFixture {
	t.Helper()
	return newSupervisorFixtureOn(t, newSystem(t), tune)
}

// newSupervisorFixtureOn is newSupervisorFixtureConfig in the actor system
// sys, where the test may have spawned probes the config names.
func newSupervisorFixtureOn(t *testing.T, sys *actor.ActorSystem, tune func(*SupervisorConfig)) *supervisorFixture {
	t.Helper()
	f := &supervisorFixture{t: t, sys: sys, tr: newFakeTransport(), events: make(chan lifecycle, 10000),
		asked: make(chan waitAsked, 10000), probes: make(chan probeAsked, 10000)}
	cfg := SupervisorConfig{
		Self: "127.0.0.1:1",
		Peer: PeerConfig{Transport: f.tr, Timeout: time.Second},
		PeerProps: func(addr string) *actor.Props {
			return actor.PropsFromProducer(func() actor.Actor {
				return &standIn{addr: addr, events: f.events, members: &f.members, gossip: &f.gossip, asked: f.asked, probes: f.probes}
			})
		},
		DownProbeMin: 5 * time.Millisecond,
		DownProbeMax: 20 * time.Millisecond,
		Logger:       slog.New(slog.DiscardHandler),
	}
	tune(&cfg)
	f.sup = f.sys.Root.Spawn(NewSupervisorProps(cfg))
	t.Cleanup(func() { f.sys.Root.PoisonFuture(f.sup).Wait() })
	return f
}

func (f *supervisorFixture) ask(msg any) any {
	f.t.Helper()
	r, err := f.sys.Root.RequestFuture(f.sup, msg, wait).Result()
	if err != nil {
		f.t.Fatal(err)
	}
	return r
}

func (f *supervisorFixture) event(addr, event string) lifecycle {
	f.t.Helper()
	select {
	case e := <-f.events:
		if e.addr != addr || e.event != event {
			f.t.Fatalf("child event %s %s, want %s %s", e.addr, e.event, addr, event)
		}
		return e
	case <-time.After(wait):
		f.t.Fatalf("no child event, want %s %s", addr, event)
		return lifecycle{}
	}
}

// eventsAnyOrder waits for the child events want, in any order: children that
// start at about the same time (one spawned at once, one after a probe)
// report in whatever order their mailboxes run.
func (f *supervisorFixture) eventsAnyOrder(want ...lifecycle) {
	f.t.Helper()
	left := slices.Clone(want)
	for len(left) > 0 {
		select {
		case e := <-f.events:
			i := slices.IndexFunc(left, func(w lifecycle) bool { return w.addr == e.addr && w.event == e.event })
			if i < 0 {
				f.t.Fatalf("child event %s %s, want one of %v", e.addr, e.event, left)
			}
			left = slices.Delete(left, i, i+1)
		case <-time.After(wait):
			f.t.Fatalf("no child event, want %v", left)
		}
	}
}

// neverListed checks that addr stays out of the table, and that no child
// starts, for a while after the probes of the candidates learned with it
// ended: a negative no single look can show.
func (f *supervisorFixture) neverListed(addr string) {
	f.t.Helper()
	err := poll.While(context.Background(), 100*time.Millisecond, 5*time.Millisecond, addr+" stays out of the table", func() (bool, string) {
		if s := f.state(addr); s != "" {
			return false, addr + " is listed as " + s
		}
		select {
		case e := <-f.events:
			return false, fmt.Sprintf("child event %s %s", e.addr, e.event)
		default:
			return true, ""
		}
	})
	if err != nil {
		f.t.Fatal(err)
	}
}

func (f *supervisorFixture) state(addr string) string {
	f.t.Helper()
	for _, p := range f.ask(&GetPeers{}).(*PeerList).Peers {
		if p.Addr == addr {
			return p.State
		}
	}
	return ""
}

func TestSupervisorSpawnsStopsAndRespawnsPeers(t *testing.T) {
	f := newSupervisorFixture(t)
	const a = "127.0.0.1:2"

	if r := f.ask(&RegisterPeer{Addr: a}).(*RegisterResult); !r.Created || r.Err != nil {
		t.Fatalf("register = %+v, want created", r)
	}
	f.event(a, "started")
	if r := f.ask(&RegisterPeer{Addr: a}).(*RegisterResult); r.Created {
		t.Fatal("registering a known peer again created it")
	}

	// Failed health checks: the child is stopped and the peer is down.
	f.tr.set(func(tr *fakeTransport) { tr.healthErr = errors.New("refused") })
	f.sys.Root.Send(f.sup, &PeerUnhealthy{Addr: a})
	f.event(a, "stopped")
	if s := f.state(a); s != StateDown {
		t.Fatalf("state after unhealthy = %q, want down", s)
	}
	// The down peer is probed (and fails) a few times at a growing pace ...
	for i := 0; i < 3; i++ {
		select {
		case <-f.tr.healthCalls:
		case <-time.After(wait):
			t.Fatal("down peer not probed")
		}
	}
	if s := f.state(a); s != StateDown {
		t.Fatalf("state while probes fail = %q, want down", s)
	}
	// ... and respawned when it answers.
	f.tr.set(func(tr *fakeTransport) { tr.healthErr = nil })
	f.event(a, "started")
	if s := f.state(a); s != StateAlive {
		t.Fatalf("state after a probe answered = %q, want alive", s)
	}

	// Removal stops the child for good.
	if r := f.ask(&RemovePeer{Addr: a}).(*RemoveResult); r.Err != nil {
		t.Fatal(r.Err)
	}
	f.event(a, "stopped")
	if s := f.state(a); s != "" {
		t.Fatalf("removed peer still listed as %q", s)
	}
}

func TestSupervisorRespawnsAtOnceOnContact(t *testing.T) {
	f := newSupervisorFixture(t)
	const a, b = "127.0.0.1:2", "127.0.0.1:3"
	f.tr.set(func(tr *fakeTransport) { tr.healthErr = errors.New("refused") })
	f.ask(&RegisterPeer{Addr: a})
	f.event(a, "started")
	f.sys.Root.Send(f.sup, &PeerUnhealthy{Addr: a})
	f.event(a, "stopped")

	// a pushes to us while its probes still fail: it is alive at once; the
	// member it lists (b) is only a candidate while health checks fail.
	f.sys.Root.Send(f.sup, &Contact{Addr: a, Members: []string{b, "127.0.0.1:1"}})
	f.event(a, "started")
	if s := f.state(a); s != StateAlive {
		t.Fatalf("state after contact = %q, want alive", s)
	}
	if s := f.state(b); s != "" {
		t.Fatalf("candidate %s listed as %q before it answered", b, s)
	}
	if s := f.state("127.0.0.1:1"); s != "" {
		t.Fatal("a node learned itself as a peer")
	}
	// Once b answers as a node, it joins.
	f.tr.set(func(tr *fakeTransport) { tr.healthErr = nil })
	f.event(b, "started")
	if s := f.state(b); s != StateAlive {
		t.Fatalf("state of %s after it answered = %q, want alive", b, s)
	}
}

func TestSupervisorTombstoneBlocksGossip(t *testing.T) {
	f := newSupervisorFixture(t)
	const a, c, control = "127.0.0.1:2", "127.0.0.1:4", "127.0.0.1:5"
	f.ask(&RegisterPeer{Addr: c})
	f.event(c, "started")
	f.ask(&RemovePeer{Addr: c})
	f.event(c, "stopped")

	f.sys.Root.Send(f.sup, &Contact{Addr: c, Members: []string{}})
	f.sys.Root.Send(f.sup, &Contact{Addr: a, Members: []string{c, control}})
	// a joins at once; gossip makes candidates, admitted once a probe
	// answers: the control, learned beside c, shows that the probes ran.
	f.eventsAnyOrder(lifecycle{addr: a, event: "started"}, lifecycle{addr: control, event: "started"})
	f.neverListed(c)
	// An explicit registration lifts the tombstone.
	if r := f.ask(&RegisterPeer{Addr: c}).(*RegisterResult); !r.Created {
		t.Fatal("registering a removed peer did not re-add it")
	}
	f.event(c, "started")
}

// An address from DNS discovery joins like a registered one, costs no
// write when known, and lifts no tombstone: neither a removal's (on disk,
// or still being written) nor that of an address that answered as this node.
func TestSupervisorDiscoveryLiftsNoTombstone(t *testing.T) {
	const a, removed, writing = "127.0.0.1:2", "127.0.0.1:3", "127.0.0.1:4"
	store := newFakeTombstones(0)
	f := newSupervisorFixtureConfig(t, func(c *SupervisorConfig) {
		c.Tombstones = store
		c.Removed = []string{removed}
	})
	discovered := func(addr string) *RegisterResult {
		return f.ask(&RegisterPeer{Addr: addr, FromDiscovery: true}).(*RegisterResult)
	}
	if r := discovered(a); !r.Created || r.Err != nil {
		t.Fatalf("discovering a new address = %+v, want it created", r)
	}
	f.event(a, "started")
	if r := discovered(a); r.Created || r.Err != nil {
		t.Fatalf("discovering a member again = %+v, want nothing done", r)
	}
	if r := discovered(removed); r.Created || r.Err != nil {
		t.Fatalf("discovering a tombstoned address = %+v, want nothing done", r)
	}
	select {
	case addr := <-store.started:
		t.Fatalf("discovery wrote a tombstone for %s", addr)
	default:
	}

	// A removal whose write is in flight: discovery must not queue a lift
	// behind it.
	f.ask(&RegisterPeer{Addr: writing})
	f.event(writing, "started")
	store.set(func(s *fakeTombstones) { s.gated = true })
	removal := f.sys.Root.RequestFuture(f.sup, &RemovePeer{Addr: writing}, wait)
	if got := <-store.started; got != writing {
		t.Fatalf("write of %s, want %s", got, writing)
	}
	if r := discovered(writing); r.Created || r.Err != nil {
		t.Fatalf("discovering an address being removed = %+v, want nothing done", r)
	}
	store.set(func(s *fakeTombstones) { s.gated = false })
	store.gate <- struct{}{}
	if _, err := removal.Result(); err != nil {
		t.Fatal(err)
	}
	f.event(writing, "stopped")
	for _, addr := range []string{removed, writing} {
		discovered(addr)
		if f.listed(addr) || !(addr == removed || store.tombstoned(addr)) {
			t.Fatalf("%s is listed again after discovery, or lost its tombstone", addr)
		}
	}
	select {
	case addr := <-store.started:
		t.Fatalf("discovery wrote a tombstone for %s", addr)
	default:
	}
}

func TestSupervisorRefusesItself(t *testing.T) {
	f := newSupervisorFixture(t)
	if r := f.ask(&RegisterPeer{Addr: "127.0.0.1:1"}).(*RegisterResult); !errors.Is(r.Err, ErrSelf) {
		t.Fatalf("register self = %+v, want ErrSelf", r)
	}
	if r := f.ask(&RemovePeer{Addr: "127.0.0.1:1"}).(*RemoveResult); !errors.Is(r.Err, ErrSelf) {
		t.Fatalf("remove self = %+v, want ErrSelf", r)
	}
}

func TestPanickingPeerIsRestartedBySupervision(t *testing.T) {
	f := newSupervisorFixture(t)
	const a = "127.0.0.1:2"
	f.ask(&RegisterPeer{Addr: a})
	first := f.event(a, "started")
	f.sys.Root.Send(first.pid, &boom{})
	// Restart: the same PID starts again, and the peer stays a member.
	again := f.event(a, "started")
	if !again.pid.Equal(first.pid) {
		t.Fatalf("restarted as %v, want the same PID %v", again.pid, first.pid)
	}
	if s := f.state(a); s == StateDown || s == "" {
		t.Fatalf("state after a restart = %q", s)
	}
}

func TestSupervisorIgnoresReportsOfAStoppedPeerActor(t *testing.T) {
	f := newSupervisorFixture(t)
	const a = "127.0.0.1:2"
	f.ask(&RegisterPeer{Addr: a})
	old := f.event(a, "started")
	f.ask(&RemovePeer{Addr: a})
	f.event(a, "stopped")
	f.ask(&RegisterPeer{Addr: a})
	f.event(a, "started")

	// A report the old PeerActor sent before it stopped arrives late.
	f.sys.Root.Send(f.sup, &PeerUnhealthy{From: old.pid, Addr: a})
	if s := f.state(a); s == StateDown {
		t.Fatal("a stale report from a stopped PeerActor took the new one down")
	}
	select {
	case e := <-f.events:
		t.Fatalf("unexpected child event %+v", e)
	default:
	}
}

// fakeTombstones keeps tombstones in memory. Each write takes a random time
// up to maxDelay, so that writes started together land in any order; a
// write fails with failWith while it is set, and waits for a value on gate
// while gated.
type fakeTombstones struct {
	mu       sync.Mutex
	on       map[string]bool
	maxDelay time.Duration
	failWith error
	gated    bool
	gate     chan struct{}
	started  chan string // the address of every write, as it starts
}

func newFakeTombstones(maxDelay time.Duration) *fakeTombstones {
	return &fakeTombstones{on: map[string]bool{}, maxDelay: maxDelay, gate: make(chan struct{}), started: make(chan string, 10000)}
}

func (f *fakeTombstones) SetTombstone(addr string, on bool) error {
	f.started <- addr
	f.mu.Lock()
	gated, fail, d := f.gated, f.failWith, f.maxDelay
	f.mu.Unlock()
	if gated {
		<-f.gate
	}
	if d > 0 {
		time.Sleep(rand.N(d)) // a slow disk: lets concurrent writes overtake each other
	}
	if fail != nil {
		return fail
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.on[addr] = on
	return nil
}

func (f *fakeTombstones) tombstoned(addr string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.on[addr]
}

func (f *fakeTombstones) set(fn func(f *fakeTombstones)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

// listed reports whether the Supervisor's table holds addr: for a peer that
// is only ever registered and removed, that is whether it is not removed.
func (f *supervisorFixture) listed(addr string) bool {
	f.t.Helper()
	return f.state(addr) != ""
}

// Concurrent POST /peers and DELETE /peers/{addr} of one address must leave
// the store and the Supervisor agreeing whether the address is removed.
// Each round starts a burst of concurrent registrations and removals, waits
// for every answer, and compares.
func TestSupervisorTombstonesAgreeAfterConcurrentAddAndRemove(t *testing.T) {
	const (
		a       = "127.0.0.1:2"
		rounds  = 50
		workers = 8
	)
	store := newFakeTombstones(300 * time.Microsecond)
	f := newSupervisorFixtureWith(t, store)
	cluster := NewCluster(f.sys.Root, f.sup, nil, wait)
	r := rand.New(rand.NewPCG(10, 2))
	for round := range rounds {
		var wg sync.WaitGroup
		errs := make(chan error, workers)
		for range workers {
			remove := r.IntN(2) == 0
			wg.Add(1)
			go func() {
				defer wg.Done()
				var err error
				if remove {
					err = cluster.RemovePeer(context.Background(), a)
				} else {
					_, err = cluster.AddPeer(context.Background(), a)
				}
				errs <- err
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
		if stored, listed := store.tombstoned(a), f.listed(a); stored == listed {
			t.Fatalf("round %d: the store says removed=%v, the Supervisor lists the peer=%v", round, stored, listed)
		}
	}
}

// A removal is answered only once its tombstone is written, and the
// Supervisor keeps answering other requests meanwhile.
func TestSupervisorAnswersAfterTheTombstoneIsWritten(t *testing.T) {
	const a = "127.0.0.1:2"
	store := newFakeTombstones(0)
	f := newSupervisorFixtureWith(t, store)
	f.ask(&RegisterPeer{Addr: a})
	f.event(a, "started")
	select {
	case <-store.started:
		t.Fatal("registering a peer with no tombstone wrote to the store")
	default:
	}

	store.set(func(s *fakeTombstones) { s.gated = true })
	removed := f.sys.Root.RequestFuture(f.sup, &RemovePeer{Addr: a}, wait)
	select {
	case <-store.started:
	case <-time.After(wait):
		t.Fatal("RemovePeer wrote no tombstone")
	}
	if !f.listed(a) {
		t.Fatal("peer dropped from the table before its tombstone was written")
	}
	if store.tombstoned(a) {
		t.Fatal("tombstone written before the gate opened") // the fake is broken
	}
	store.gate <- struct{}{}
	r, err := removed.Result()
	if err != nil {
		t.Fatal(err)
	}
	if r.(*RemoveResult).Err != nil {
		t.Fatal(r.(*RemoveResult).Err)
	}
	if !store.tombstoned(a) || f.listed(a) {
		t.Fatalf("after RemovePeer: stored %v, listed %v; want stored and not listed", store.tombstoned(a), f.listed(a))
	}
	f.event(a, "stopped")
}

// A failed write changes nothing: the asker gets ErrStore, and the table
// keeps what the store holds.
func TestSupervisorTombstoneWriteFailureChangesNothing(t *testing.T) {
	const a, b = "127.0.0.1:2", "127.0.0.1:3"
	store := newFakeTombstones(0)
	f := newSupervisorFixtureWith(t, store)
	f.ask(&RegisterPeer{Addr: a})
	f.event(a, "started")
	f.ask(&RegisterPeer{Addr: b})
	f.event(b, "started")
	f.ask(&RemovePeer{Addr: b})
	f.event(b, "stopped")

	store.set(func(s *fakeTombstones) { s.failWith = errors.New("disk full") })
	if r := f.ask(&RemovePeer{Addr: a}).(*RemoveResult); !errors.Is(r.Err, ErrStore) {
		t.Fatalf("remove with a failing store = %+v, want ErrStore", r)
	}
	if store.tombstoned(a) || !f.listed(a) {
		t.Fatal("a failed removal changed membership")
	}
	if r := f.ask(&RegisterPeer{Addr: b}).(*RegisterResult); !errors.Is(r.Err, ErrStore) || r.Created {
		t.Fatalf("register with a failing store = %+v, want ErrStore", r)
	}
	if !store.tombstoned(b) || f.listed(b) {
		t.Fatal("a failed registration changed membership")
	}
	// The tombstone still blocks gossip; the control, learned beside b,
	// shows that the candidates' probes ran.
	const control = "127.0.0.1:5"
	f.sys.Root.Send(f.sup, &Contact{Addr: a, Members: []string{b, control}})
	f.event(control, "started")
	f.neverListed(b)

	store.set(func(s *fakeTombstones) { s.failWith = nil })
	if r := f.ask(&RegisterPeer{Addr: b}).(*RegisterResult); r.Err != nil || !r.Created {
		t.Fatalf("register after the store recovered = %+v, want created", r)
	}
	f.event(b, "started")
	if store.tombstoned(b) {
		t.Fatal("tombstone not lifted on disk")
	}
}

// addrTransport answers health checks per address: a node at the
// addresses in up, refused elsewhere. It counts the checks per address and
// the most in flight at once; while held, checks wait for release.
type addrTransport struct {
	mu          sync.Mutex
	up          map[string]bool
	calls       map[string]int
	inFlight    int
	maxInFlight int
	held        bool
	release     chan struct{}
}

func newAddrTransport() *addrTransport {
	return &addrTransport{up: map[string]bool{}, calls: map[string]int{}, release: make(chan struct{})}
}

func (a *addrTransport) Health(ctx context.Context, addr string) (wire.HealthReply, error) {
	a.mu.Lock()
	a.calls[addr]++
	a.inFlight++
	a.maxInFlight = max(a.maxInFlight, a.inFlight)
	held, up := a.held, a.up[addr]
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		a.inFlight--
		a.mu.Unlock()
	}()
	if held {
		select {
		case <-a.release:
		case <-ctx.Done():
			return wire.HealthReply{}, ctx.Err()
		}
	}
	if !up {
		return wire.HealthReply{}, errors.New("connection refused")
	}
	return wire.HealthReply{Status: "ok", Node: addr, Replica: "00000000000000dd"}, nil
}

func (a *addrTransport) Replicate(context.Context, string, *wire.ReplicateRequest) (*wire.ReplicateReply, error) {
	return nil, errors.New("addrTransport: no pushes")
}

func (a *addrTransport) Probe(context.Context, string, string) (wire.HealthReply, error) {
	return wire.HealthReply{}, errors.New("addrTransport: no indirect probes")
}

func (a *addrTransport) with(fn func(a *addrTransport)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	fn(a)
}

// countObserver counts ignored gossip.
type countObserver struct{ ignored atomic.Int64 }

func (c *countObserver) GossipIgnored(n int) { c.ignored.Add(int64(n)) }

// waitFor polls cond until it holds, failing the test after wait.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// A hundred candidates are probed a few at a time, and none gets a
// PeerActor or a row in the table until it answers as a node.
func TestSupervisorProbesCandidatesAFewAtATime(t *testing.T) {
	tr := newAddrTransport()
	tr.held = true
	f := newSupervisorFixtureConfig(t, func(c *SupervisorConfig) {
		c.Peer.Transport = tr
		c.CandidateProbes = 3
	})
	const from = "127.0.0.1:2"
	members := make([]string, 100)
	for i := range members {
		members[i] = fmt.Sprintf("127.0.0.2:%d", 1000+i)
	}
	f.sys.Root.Send(f.sup, &Contact{Addr: from, Members: members})
	f.event(from, "started")
	waitFor(t, "3 probes in flight", func() bool {
		var n int
		tr.with(func(a *addrTransport) { n = a.inFlight })
		return n == 3
	})
	if peers := f.ask(&GetPeers{}).(*PeerList).Peers; len(peers) != 1 {
		t.Fatalf("table lists %d peers while candidates are probed, want 1 (the sender)", len(peers))
	}
	// Let every probe through (all refused): the probes go on, a few at a time.
	tr.with(func(a *addrTransport) { a.held = false })
	close(tr.release)
	waitFor(t, "every candidate probed", func() bool {
		var n int
		tr.with(func(a *addrTransport) { n = len(a.calls) })
		return n == len(members)
	})
	tr.with(func(a *addrTransport) {
		if a.maxInFlight > 3 {
			t.Errorf("%d probes in flight at once, want at most 3", a.maxInFlight)
		}
	})
	// One answers as a node: it joins, alone.
	tr.with(func(a *addrTransport) { a.up[members[42]] = true })
	f.event(members[42], "started")
	if peers := f.ask(&GetPeers{}).(*PeerList).Peers; len(peers) != 2 {
		t.Fatalf("table lists %d peers, want 2", len(peers))
	}
}

// -max-peers: a registration past it gets ErrTooManyPeers, and gossip (or a
// push from an unknown sender) past it is ignored and counted. A candidate
// that never answers is dropped after CandidateTimeout, which frees its
// place.
func TestSupervisorMaxPeers(t *testing.T) {
	tr := newAddrTransport()
	tr.held = true // b stays a candidate, its probe in flight, until released
	obs := &countObserver{}
	f := newSupervisorFixtureConfig(t, func(c *SupervisorConfig) {
		c.Peer.Transport = tr
		c.MaxPeers = 2
		c.CandidateTimeout = 100 * time.Millisecond
		c.Observer = obs
	})
	const a, b, c, d, e = "127.0.0.1:2", "127.0.0.1:3", "127.0.0.1:4", "127.0.0.1:5", "127.0.0.1:6"
	f.ask(&RegisterPeer{Addr: a})
	f.event(a, "started")
	// b is a candidate (never answers): with a, the table is full.
	f.sys.Root.Send(f.sup, &Contact{Addr: a, Members: []string{b}})
	waitFor(t, "b probed", func() bool {
		var n int
		tr.with(func(t *addrTransport) { n = t.calls[b] })
		return n > 0
	})
	f.sys.Root.Send(f.sup, &Contact{Addr: a, Members: []string{c, d}})
	waitFor(t, "c and d ignored", func() bool { return obs.ignored.Load() == 2 })
	f.ask(&RegisterPeer{Addr: e})
	f.event(e, "started")
	if r := f.ask(&RegisterPeer{Addr: c}).(*RegisterResult); !errors.Is(r.Err, ErrTooManyPeers) {
		t.Fatalf("register past the limit = %+v, want ErrTooManyPeers", r)
	}
	f.sys.Root.Send(f.sup, &Contact{Addr: d, Members: nil})
	waitFor(t, "a push from an unknown sender ignored", func() bool { return obs.ignored.Load() == 3 })
	if peers := f.ask(&GetPeers{}).(*PeerList).Peers; len(peers) != 2 {
		t.Fatalf("table lists %d peers, want 2", len(peers))
	}
	// Known peers are never refused.
	if r := f.ask(&RegisterPeer{Addr: a}).(*RegisterResult); r.Err != nil || r.Created {
		t.Fatalf("register of a known peer at the limit = %+v", r)
	}
	// Removing one frees a place.
	f.ask(&RemovePeer{Addr: e})
	f.event(e, "stopped")
	// b never answers: once dropped, gossip naming c makes c a candidate.
	tr.with(func(a *addrTransport) { a.held = false })
	close(tr.release)
	waitFor(t, "c probed after b was dropped", func() bool {
		f.sys.Root.Send(f.sup, &Contact{Addr: a, Members: []string{c}})
		var n int
		tr.with(func(t *addrTransport) { n = t.calls[c] })
		return n > 0
	})
}

// A peer down for longer than ReapAfter leaves the table, with no
// tombstone: when it pushes again, it joins again.
func TestSupervisorReapsTheLongDead(t *testing.T) {
	tr := newAddrTransport()
	f := newSupervisorFixtureConfig(t, func(c *SupervisorConfig) {
		c.Peer.Transport = tr
		c.ReapAfter = 50 * time.Millisecond
	})
	const a = "127.0.0.1:2"
	f.ask(&RegisterPeer{Addr: a})
	f.event(a, "started")
	f.sys.Root.Send(f.sup, &PeerUnhealthy{Addr: a})
	f.event(a, "stopped")
	if s := f.state(a); s != StateDown {
		t.Fatalf("state = %q, want down", s)
	}
	waitFor(t, "a reaped", func() bool { return f.state(a) == "" })
	f.sys.Root.Send(f.sup, &Contact{Addr: a})
	f.event(a, "started")
	if s := f.state(a); s != StateAlive {
		t.Fatalf("state after it pushed again = %q, want alive", s)
	}
}

// A peer that refuses this node's key is unauthorized: its PeerActor is
// stopped, it is not gossiped, it is probed at the down pace, the change is
// logged once at warn however many probes are refused, and once at info
// when it ends: down if the peer stops answering, alive when its key is
// fixed.
func TestSupervisorUnauthorizedPeer(t *testing.T) {
	var logs logsink.Sink
	f := newSupervisorFixtureConfig(t, func(c *SupervisorConfig) { c.Logger = logs.Logger("A") })
	const a, b = "127.0.0.1:2", "127.0.0.1:3"
	for _, addr := range []string{a, b} {
		f.ask(&RegisterPeer{Addr: addr})
		f.event(addr, "started")
	}
	lines := func(msg string) int {
		all, _ := logs.Last(0)
		n := 0
		for _, l := range all {
			if strings.Contains(l, "msg=\""+msg) {
				n++
			}
		}
		return n
	}
	toldB := func() []string { m, _ := f.members.Load(b); ms, _ := m.([]string); return ms }
	waitFor(t, "b told of a", func() bool { return slices.Contains(toldB(), a) })

	refused := fmt.Errorf("GET /health: %w", ErrUnauthorized)
	f.tr.set(func(tr *fakeTransport) { tr.healthErr = refused })
	f.sys.Root.Send(f.sup, &PeerUnauthorized{Addr: a, Err: refused})
	f.event(a, "stopped")
	if s := f.state(a); s != StateUnauthorized {
		t.Fatalf("state = %q, want unauthorized", s)
	}
	waitFor(t, "b no longer told of a", func() bool { return !slices.Contains(toldB(), a) })
	// A push from it shows that this node takes its key, not that it
	// takes this node's: it stays unauthorized.
	f.sys.Root.Send(f.sup, &Contact{Addr: a})
	if s := f.state(a); s != StateUnauthorized {
		t.Fatalf("state after a push from it = %q, want unauthorized", s)
	}
	for range 4 {
		f.tr.awaitHealth(t) // probes, refused
	}
	if s := f.state(a); s != StateUnauthorized {
		t.Fatalf("state while probes are refused = %q, want unauthorized", s)
	}
	if n := lines("peer unauthorized"); n != 1 {
		t.Fatalf("%d warn lines for one unauthorized peer, want 1", n)
	}
	if all, _ := logs.Last(0); !slices.ContainsFunc(all, func(l string) bool {
		return strings.Contains(l, "level=WARN") && strings.Contains(l, "peer unauthorized")
	}) {
		t.Fatalf("no warn line: %q", all)
	}

	// It stops answering: down, with one info line.
	f.tr.set(func(tr *fakeTransport) { tr.healthErr = errors.New("connection refused") })
	waitFor(t, "a down", func() bool { return f.state(a) == StateDown })
	// Its key is refused again, then fixed: unauthorized, then alive.
	f.tr.set(func(tr *fakeTransport) { tr.healthErr = refused })
	waitFor(t, "a unauthorized again", func() bool { return f.state(a) == StateUnauthorized })
	f.tr.set(func(tr *fakeTransport) { tr.healthErr = nil })
	f.event(a, "started")
	if s := f.state(a); s != StateAlive {
		t.Fatalf("state after its key is fixed = %q, want alive", s)
	}
	waitFor(t, "b told of a again", func() bool { return slices.Contains(toldB(), a) })
	if w, d, l := lines("peer unauthorized"), lines("peer no longer unauthorized: down"), lines("peer no longer unauthorized: alive"); w != 2 || d != 1 || l != 1 {
		t.Fatalf("log lines: %d unauthorized, %d ended down, %d ended alive; want 2, 1, 1", w, d, l)
	}
}
