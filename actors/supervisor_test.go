package actors

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
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
	addr   string
	events chan lifecycle
}

func (s *standIn) Receive(ctx actor.Context) {
	switch ctx.Message().(type) {
	case *actor.Started:
		s.events <- lifecycle{s.addr, "started", ctx.Self()}
	case *actor.Stopped:
		s.events <- lifecycle{s.addr, "stopped", ctx.Self()}
	case *boom:
		panic("boom")
	}
}

type supervisorFixture struct {
	t      *testing.T
	sys    *actor.ActorSystem
	sup    *actor.PID
	tr     *fakeTransport
	events chan lifecycle
}

func newSupervisorFixture(t *testing.T) *supervisorFixture {
	t.Helper()
	return newSupervisorFixtureWith(t, nil)
}

// newSupervisorFixtureWith starts a Supervisor that keeps its tombstones in
// tombstones (nil: in memory only).
func newSupervisorFixtureWith(t *testing.T, tombstones Tombstones) *supervisorFixture {
	t.Helper()
	f := &supervisorFixture{t: t, sys: newSystem(t), tr: newFakeTransport(), events: make(chan lifecycle, 10000)}
	props := NewSupervisorProps(SupervisorConfig{
		Self: "127.0.0.1:1",
		Peer: PeerConfig{Transport: f.tr, Timeout: time.Second},
		PeerProps: func(addr string) *actor.Props {
			return actor.PropsFromProducer(func() actor.Actor { return &standIn{addr: addr, events: f.events} })
		},
		DownProbeMin: 5 * time.Millisecond,
		DownProbeMax: 20 * time.Millisecond,
		Logger:       slog.New(slog.DiscardHandler),
		Tombstones:   tombstones,
	})
	f.sup = f.sys.Root.Spawn(props)
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

	// a pushes to us while its probes still fail: it is alive at once, and
	// the member it lists (b) is learned.
	f.sys.Root.Send(f.sup, &Contact{Addr: a, Members: []string{b, "127.0.0.1:1"}})
	got := map[string]bool{}
	for i := 0; i < 2; i++ {
		select {
		case e := <-f.events:
			got[e.addr+" "+e.event] = true
		case <-time.After(wait):
			t.Fatal("no respawn on contact")
		}
	}
	if !got[a+" started"] || !got[b+" started"] {
		t.Fatalf("events after contact = %v, want %s and %s started", got, a, b)
	}
	if s := f.state(a); s != StateAlive {
		t.Fatalf("state after contact = %q, want alive", s)
	}
	if s := f.state("127.0.0.1:1"); s != "" {
		t.Fatal("a node learned itself as a peer")
	}
}

func TestSupervisorTombstoneBlocksGossip(t *testing.T) {
	f := newSupervisorFixture(t)
	const a, c = "127.0.0.1:2", "127.0.0.1:4"
	f.ask(&RegisterPeer{Addr: c})
	f.event(c, "started")
	f.ask(&RemovePeer{Addr: c})
	f.event(c, "stopped")

	f.sys.Root.Send(f.sup, &Contact{Addr: c, Members: []string{}})
	f.sys.Root.Send(f.sup, &Contact{Addr: a, Members: []string{c}})
	f.event(a, "started")
	if s := f.state(c); s != "" {
		t.Fatalf("removed peer came back through gossip as %q", s)
	}
	// An explicit registration lifts the tombstone.
	if r := f.ask(&RegisterPeer{Addr: c}).(*RegisterResult); !r.Created {
		t.Fatal("registering a removed peer did not re-add it")
	}
	f.event(c, "started")
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
	// The tombstone still blocks gossip.
	f.sys.Root.Send(f.sup, &Contact{Addr: a, Members: []string{b}})
	if f.listed(b) {
		t.Fatal("gossip brought back a peer whose tombstone could not be lifted")
	}

	store.set(func(s *fakeTombstones) { s.failWith = nil })
	if r := f.ask(&RegisterPeer{Addr: b}).(*RegisterResult); r.Err != nil || !r.Created {
		t.Fatalf("register after the store recovered = %+v, want created", r)
	}
	f.event(b, "started")
	if store.tombstoned(b) {
		t.Fatal("tombstone not lifted on disk")
	}
}
