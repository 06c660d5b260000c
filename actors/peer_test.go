package actors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"countd/crdt"
	"countd/wire"
)

// fakeTransport stands in for the network: it records every call, answers
// with what the test sets, and can hold pushes at a gate. healthErr makes
// the peer unreachable (pushes fail with it too); pushErr fails pushes only.
type fakeTransport struct {
	mu          sync.Mutex
	replica     string // the peer's replica id in replies
	healthErr   error
	pushErr     error
	gated       bool
	gate        chan struct{}
	pushes      chan pushCall
	healthCalls chan time.Time
	viaErr      map[string]error // indirect probes through these members fail
	probeCalls  chan string      // "via>target" of every indirect probe
	rtts        atomic.Int64     // successful direct checks timed (RTTObserver)
}

// CheckRTT implements RTTObserver: it counts the timed checks.
func (f *fakeTransport) CheckRTT(time.Duration) { f.rtts.Add(1) }

type pushCall struct {
	at  time.Time
	req *wire.ReplicateRequest
}

func newFakeTransport() *fakeTransport {
	return &fakeTransport{
		replica:     "00000000000000cc",
		gate:        make(chan struct{}, 100),
		pushes:      make(chan pushCall, 10000),
		healthCalls: make(chan time.Time, 10000),
		probeCalls:  make(chan string, 10000),
	}
}

func (f *fakeTransport) set(fn func(f *fakeTransport)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakeTransport) Health(ctx context.Context, addr string) (wire.HealthReply, error) {
	f.mu.Lock()
	replica, err := f.replica, f.healthErr
	f.mu.Unlock()
	f.healthCalls <- time.Now()
	if err != nil {
		return wire.HealthReply{}, err
	}
	return wire.HealthReply{Status: "ok", Node: addr, Replica: replica}, nil
}

// Probe answers for target as Health does, unless the test made via fail
// (viaErr); it records every call.
func (f *fakeTransport) Probe(ctx context.Context, via, target string) (wire.HealthReply, error) {
	f.mu.Lock()
	replica, err := f.replica, f.viaErr[via]
	f.mu.Unlock()
	f.probeCalls <- via + ">" + target
	if err != nil {
		return wire.HealthReply{}, err
	}
	return wire.HealthReply{Status: "ok", Node: target, Replica: replica}, nil
}

func (f *fakeTransport) Replicate(ctx context.Context, addr string, req *wire.ReplicateRequest) (*wire.ReplicateReply, error) {
	f.mu.Lock()
	replica, err, gated := f.replica, f.pushErr, f.gated
	if err == nil {
		// A peer that fails health checks does not take pushes either
		// (and a probe of a peer in sync is a push).
		err = f.healthErr
	}
	f.mu.Unlock()
	f.pushes <- pushCall{at: time.Now(), req: req}
	if gated {
		select {
		case <-f.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if err != nil {
		return nil, err
	}
	return &wire.ReplicateReply{Node: addr, Replica: replica, Changed: len(req.Entries)}, nil
}

func (f *fakeTransport) awaitPush(t *testing.T) pushCall {
	t.Helper()
	select {
	case c := <-f.pushes:
		return c
	case <-time.After(wait):
		t.Fatal("no push")
		return pushCall{}
	}
}

// awaitHealth waits for the PeerActor's next health check and returns when
// it was made.
func (f *fakeTransport) awaitHealth(t *testing.T) time.Time {
	t.Helper()
	select {
	case at := <-f.healthCalls:
		return at
	case <-time.After(wait):
		t.Fatal("no health check")
		return time.Time{}
	}
}

func testPeerConfig(tr Transport, counter *actor.PID) PeerConfig {
	return PeerConfig{
		Self:                "127.0.0.1:1",
		HeartbeatInterval:   time.Hour, // tests that want heartbeats set it
		Timeout:             time.Second,
		FailuresBeforeDown:  3,
		FlushDelay:          time.Millisecond,
		RetryMin:            5 * time.Millisecond,
		RetryMax:            time.Second,
		AntiEntropyInterval: time.Hour,
		Transport:           tr,
		Counter:             counter,
		Logger:              slog.New(slog.DiscardHandler),
	}
}

// spawnPeer starts a PeerActor as the child of a parent probe.
func spawnPeer(t *testing.T, sys *actor.ActorSystem, cfg PeerConfig) (peer *actor.PID, parent *probe) {
	t.Helper()
	parent = newProbe(t, sys, nil)
	res, err := sys.Root.RequestFuture(parent.pid, &spawnChild{NewPeerProps("127.0.0.2:2", cfg)}, wait).Result()
	if err != nil {
		t.Fatal(err)
	}
	return res.(*actor.PID), parent
}

// probeEvery sends the PeerActor a Probe every d until the test ends, as
// the Supervisor does when the peer's turn comes.
func probeEvery(t *testing.T, sys *actor.ActorSystem, peer *actor.PID, d time.Duration) {
	t.Helper()
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		tick := time.NewTicker(d)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				sys.Root.Send(peer, &Probe{})
			}
		}
	}()
	t.Cleanup(func() { close(done); <-stopped })
}

// counterProbe stands in for the CounterActor: it answers DeltaSince with
// one entry at the given version, and records every request.
func counterProbe(t *testing.T, sys *actor.ActorSystem, version func() uint64) *probe {
	return newProbe(t, sys, func(msg any) any {
		if m, ok := msg.(*DeltaSince); ok {
			d := &Delta{Replica: self, Version: version(),
				Entries: []crdt.Entry{{Counter: "c", Replica: self, P: version()}}}
			if m.Reply == nil {
				return d
			}
			m.Reply <- d
		}
		return nil
	})
}

func TestPeerCoalescesChangeNotices(t *testing.T) {
	sys := newSystem(t)
	tr := newFakeTransport()
	tr.gated = true
	counter, _ := spawnCounter(t, sys, nil)
	peer, _ := spawnPeer(t, sys, testPeerConfig(tr, counter))

	first := tr.awaitPush(t) // the initial full-state push, held at the gate
	if len(first.req.Entries) != 0 {
		t.Fatalf("first push = %v, want the empty full state", first.req.Entries)
	}
	client := NewCounters(sys.Root, counter, wait)
	for i := 0; i < 1000; i++ {
		if _, err := client.Increment(context.Background(), "c", 1); err != nil {
			t.Fatal(err)
		}
	}
	tr.gate <- struct{}{}
	second := tr.awaitPush(t)
	tr.set(func(f *fakeTransport) { f.gated = false })
	tr.gate <- struct{}{}
	want := []crdt.Entry{{Counter: "c", Replica: self, P: 1000}}
	if len(second.req.Entries) != 1 || second.req.Entries[0] != want[0] {
		t.Fatalf("second push = %v, want %v: one push for all 1000 changes", second.req.Entries, want)
	}
	// Flush waits for anything still owed; after it, count the pushes.
	if r, err := sys.Root.RequestFuture(peer, &Flush{}, wait).Result(); err != nil || r.(*Flushed).Err != nil {
		t.Fatalf("flush: %v %v", r, err)
	}
	if n := len(tr.pushes); n != 0 {
		t.Fatalf("%d more pushes after the coalesced one, want 0 (1000 changes, 2 pushes in all)", n)
	}
}

func TestPeerRetriesWithGrowingBackoff(t *testing.T) {
	sys := newSystem(t)
	tr := newFakeTransport()
	tr.pushErr = errors.New("connection refused")
	version := uint64(1)
	counter := counterProbe(t, sys, func() uint64 { return version })
	spawnPeer(t, sys, testPeerConfig(tr, counter.pid))

	var at []time.Time
	for len(at) < 7 {
		at = append(at, tr.awaitPush(t).at)
	}
	var gaps []time.Duration
	for i := 1; i < len(at); i++ {
		gaps = append(gaps, at[i].Sub(at[i-1]))
	}
	// Backoff doubles from RetryMin: 5, 10, 20, 40, 80, 160ms. With jitter
	// each gap lies in [b/2, b], plus scheduling delay. Timers never fire
	// early, so the lower bounds are exact and prove the growth; the upper
	// bounds depend on how loaded the machine is and are not checked.
	b := 5 * time.Millisecond
	for i, g := range gaps {
		if g < b/2-time.Millisecond/2 {
			t.Fatalf("retry gaps %v: gap %d is %v, under half its backoff %v", gaps, i, g, b)
		}
		b *= 2
	}
}

func TestPeerReportsUnhealthyOnceAfterNFailures(t *testing.T) {
	sys := newSystem(t)
	tr := newFakeTransport()
	tr.healthErr = errors.New("timeout")
	counter, _ := spawnCounter(t, sys, nil)
	cfg := testPeerConfig(tr, counter)
	peer, parent := spawnPeer(t, sys, cfg)
	probeEvery(t, sys, peer, 5*time.Millisecond)

	suspect, _ := expect[*PeerStatus](t, parent, wait)
	if suspect.State != StateSuspect {
		t.Fatalf("first report = %+v, want suspect", suspect)
	}
	// Each failed check reports suspect (with how far behind); the third
	// also reports the peer unhealthy.
	down := fishFor(t, parent, wait, func(*PeerUnhealthy) bool { return true })
	if down.Addr != "127.0.0.2:2" {
		t.Fatalf("unhealthy report for %q", down.Addr)
	}
	if n := len(tr.healthCalls); n < 3 {
		t.Fatalf("unhealthy after %d health checks, want 3", n)
	}
	// Three more failures must not repeat the report.
	for range len(tr.healthCalls) + 3 {
		tr.awaitHealth(t)
	}
	for _, m := range parent.drain() {
		if _, ok := m.(*PeerUnhealthy); ok {
			t.Fatal("a second unhealthy report")
		}
	}
	// Recovery is reported as alive.
	tr.set(func(f *fakeTransport) { f.healthErr = nil })
	fishFor(t, parent, wait, func(s *PeerStatus) bool { return s.State == StateAlive && !s.LastSeen.IsZero() })
}

func TestPeerSendsFullStateWhenPeerRestarts(t *testing.T) {
	sys := newSystem(t)
	tr := newFakeTransport()
	version := uint64(7)
	var mu sync.Mutex
	counter := counterProbe(t, sys, func() uint64 { mu.Lock(); defer mu.Unlock(); return version })
	cfg := testPeerConfig(tr, counter.pid)
	peer, _ := spawnPeer(t, sys, cfg)
	probeEvery(t, sys, peer, 5*time.Millisecond)

	expect[*Subscribe](t, counter, wait)
	if s, _ := expect[*DeltaSince](t, counter, wait); s.Version != 0 {
		t.Fatalf("first push asks for delta since %d, want 0", s.Version)
	}
	tr.awaitPush(t)
	// A change: the next push is a delta since the acknowledged version.
	mu.Lock()
	version = 9
	mu.Unlock()
	sys.Root.Send(peer, &Changed{Version: 9})
	if s := fishFor(t, counter, wait, func(d *DeltaSince) bool { return true }); s.Version != 7 {
		t.Fatalf("delta push since %d, want 7", s.Version)
	}
	// The peer restarts: a new replica id in its health replies.
	tr.set(func(f *fakeTransport) { f.replica = "00000000000000dd" })
	fishFor(t, counter, wait, func(d *DeltaSince) bool { return d.Version == 0 })
}

func TestPeerThatIsThisNodeIsReported(t *testing.T) {
	sys := newSystem(t)
	tr := newFakeTransport()
	counter, _ := spawnCounter(t, sys, nil)
	cfg := testPeerConfig(tr, counter)
	cfg.Self = "127.0.0.2:2" // the address the PeerActor was made for answers as us
	peer, parent := spawnPeer(t, sys, cfg)
	probeEvery(t, sys, peer, 5*time.Millisecond)
	if m := fishFor(t, parent, wait, func(*PeerIsSelf) bool { return true }); m.Addr != "127.0.0.2:2" {
		t.Fatalf("self report for %q", m.Addr)
	}
}

// Every Flush waiting on the same push is answered when it ends, and a Flush
// sent without a sender (nobody to answer) is no trouble.
func TestPeerAnswersEveryFlusher(t *testing.T) {
	sys := newSystem(t)
	tr := newFakeTransport()
	tr.gated = true
	counter, _ := spawnCounter(t, sys, nil)
	peer, _ := spawnPeer(t, sys, testPeerConfig(tr, counter))
	tr.awaitPush(t) // the first full push, held at the gate

	sys.Root.Send(peer, &Flush{})
	first := sys.Root.RequestFuture(peer, &Flush{}, wait)
	second := sys.Root.RequestFuture(peer, &Flush{}, wait)
	tr.gate <- struct{}{}
	for i, f := range []*actor.Future{first, second} {
		if r, err := f.Result(); err != nil || r.(*Flushed).Err != nil {
			t.Fatalf("flush %d: %v %v", i+1, r, err)
		}
	}
}

// A peer that refuses this node's key (a 401) is reported to the parent
// once, and gets no push while its health checks are refused.
func TestPeerReportsAKeyRefusalOnceAndStopsPushing(t *testing.T) {
	sys := newSystem(t)
	tr := newFakeTransport()
	refused := fmt.Errorf("401: %w", ErrUnauthorized)
	tr.pushErr, tr.healthErr = refused, refused
	counter, _ := spawnCounter(t, sys, nil)
	cfg := testPeerConfig(tr, counter)
	peer, parent := spawnPeer(t, sys, cfg)
	probeEvery(t, sys, peer, 5*time.Millisecond)

	// The first push or health check, whichever comes first, is refused.
	m := fishFor(t, parent, wait, func(*PeerUnauthorized) bool { return true })
	if m.Addr != "127.0.0.2:2" || !errors.Is(m.Err, ErrUnauthorized) {
		t.Fatalf("unauthorized report = %+v", m)
	}
	// A change owes the peer a push, but a flush fails at once (or when a
	// push already in flight is refused) instead of pushing.
	sys.Root.Send(peer, &Changed{Version: 1})
	r, err := sys.Root.RequestFuture(peer, &Flush{}, wait).Result()
	if err != nil {
		t.Fatal(err)
	}
	if f := r.(*Flushed); !errors.Is(f.Err, ErrUnauthorized) {
		t.Fatalf("flush of a refused peer = %+v, want its refusal", f)
	}
	pushed := len(tr.pushes)
	// Refused health checks neither repeat the report nor bring a push
	// (the retry backoff is 5ms, so several would have come by now).
	for range 5 {
		tr.awaitHealth(t)
	}
	for _, m := range parent.drain() {
		switch m := m.(type) {
		case *PeerUnauthorized:
			t.Fatal("a second unauthorized report")
		case *PeerUnhealthy:
			t.Fatalf("a refused peer reported unhealthy: %+v", m)
		}
	}
	if n := len(tr.pushes) - pushed; n != 0 {
		t.Fatalf("%d pushes to a peer that refuses this node's key", n)
	}
	// The key is fixed: the peer answers and gets its push.
	tr.set(func(f *fakeTransport) { f.pushErr, f.healthErr = nil, nil })
	tr.awaitPush(t)
	fishFor(t, parent, wait, func(s *PeerStatus) bool { return s.State == StateAlive })
}
