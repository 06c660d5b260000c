package actors

import (
	"errors"
	"log/slog"
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
	f := &supervisorFixture{t: t, sys: newSystem(t), tr: newFakeTransport(), events: make(chan lifecycle, 100)}
	props := NewSupervisorProps(SupervisorConfig{
		Self: "127.0.0.1:1",
		Peer: PeerConfig{Transport: f.tr, Timeout: time.Second},
		PeerProps: func(addr string) *actor.Props {
			return actor.PropsFromProducer(func() actor.Actor { return &standIn{addr: addr, events: f.events} })
		},
		DownProbeMin: 5 * time.Millisecond,
		DownProbeMax: 20 * time.Millisecond,
		Logger:       slog.New(slog.DiscardHandler),
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
