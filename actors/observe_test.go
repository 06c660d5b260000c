package actors

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"countd/crdt"
)

// recordingObserver is an Observer that keeps what it is told.
type recordingObserver struct {
	mu        sync.Mutex
	committed []int // requests per commit
	counters  []int
	overLimit int // counters merged past the limit
	refused   int // merges refused for the entry limit
	entries   int // as last reported
	deleted   map[string]int
	collected int
	replays   int
	keys      int // key entries, as last reported
	retired   int // key entries retired
}

func (o *recordingObserver) Replayed() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.replays++
}

func (o *recordingObserver) Keys(n int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.keys = n
}

func (o *recordingObserver) KeysRetired(n int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.retired += n
}

// keyed returns the replays, the key entries last reported and the key
// entries retired.
func (o *recordingObserver) keyed() (replays, keys, retired int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.replays, o.keys, o.retired
}

func (o *recordingObserver) Entries(n int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.entries = n
}

func (o *recordingObserver) Deleted(reason string, n int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.deleted == nil {
		o.deleted = make(map[string]int)
	}
	o.deleted[reason] += n
}

func (o *recordingObserver) Collected(n int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.collected += n
}

// lifecycle returns the entries last reported, the deletions by reason
// and the tombstones collected.
func (o *recordingObserver) lifecycle() (entries int, deleted map[string]int, collected int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	d := make(map[string]int)
	for k, v := range o.deleted {
		d[k] = v
	}
	return o.entries, d, o.collected
}

func (o *recordingObserver) CountersOverLimit(n int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.overLimit += n
}

func (o *recordingObserver) MergeRefused() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.refused++
}

func (o *recordingObserver) limits() (overLimit, refused int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.overLimit, o.refused
}

func (o *recordingObserver) Committed(requests int, took time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.committed = append(o.committed, requests)
}

func (o *recordingObserver) Counters(n int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.counters = append(o.counters, n)
}

func (o *recordingObserver) snapshot() (committed, counters []int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]int(nil), o.committed...), append([]int(nil), o.counters...)
}

// TestCounterTellsObserverEveryCommitAndTheNumberOfCounters: each durable
// batch is reported once with its number of requests (so the batch sizes
// add up to the requests made), and the counter count as it grows.
func TestCounterTellsObserverEveryCommitAndTheNumberOfCounters(t *testing.T) {
	sys := newSystem(t)
	st := newFakeStore(true)
	obs := &recordingObserver{}
	pid := sys.Root.Spawn(NewCounterProps(crdt.New(self), st, slog.New(slog.DiscardHandler), obs))
	t.Cleanup(func() { sys.Root.PoisonFuture(pid).Wait() })
	client := NewCounters(sys.Root, pid, wait)

	const n = 30
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			_, err := client.Increment(context.Background(), []string{"a", "b", "c"}[i%3], 1)
			errs <- err
		})
	}
	st.awaitSave(t) // the first write is held; the others gather behind it
	for range n {   // release every write there will be
		st.release <- struct{}{}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	committed, counters := obs.snapshot()
	sum := 0
	for _, c := range committed {
		sum += c
	}
	if sum != n || len(committed) != st.saveCount() {
		t.Fatalf("commits reported %v (sum %d) for %d saves, want one per save summing to %d", committed, sum, st.saveCount(), n)
	}
	if len(counters) == 0 || counters[len(counters)-1] != 3 {
		t.Fatalf("counters reported %v, want it to end at 3", counters)
	}
	for i := 1; i < len(counters); i++ {
		if counters[i] == counters[i-1] {
			t.Fatalf("counters reported %v: the same number twice", counters)
		}
	}
}

// TestPeerReportsHowFarBehind: while pushes fail, the PeerActor's status
// reports say how many of this node's changes the peer lacks; once a push
// succeeds, none; and changes that came from the peer itself do not count.
func TestPeerReportsHowFarBehind(t *testing.T) {
	sys := newSystem(t)
	tr := newFakeTransport()
	tr.pushErr = errors.New("connection refused")
	var mu sync.Mutex
	version := uint64(5)
	counter := counterProbe(t, sys, func() uint64 { mu.Lock(); defer mu.Unlock(); return version })
	cfg := testPeerConfig(tr, counter.pid)
	peer, parent := spawnPeer(t, sys, cfg)
	probeEvery(t, sys, peer, 5*time.Millisecond)

	sys.Root.Send(peer, &Changed{Version: 5})
	fishFor(t, parent, wait, func(s *PeerStatus) bool { return s.Behind == 5 })

	tr.set(func(f *fakeTransport) { f.pushErr = nil })
	fishFor(t, parent, wait, func(s *PeerStatus) bool { return s.Behind == 0 })

	// Version 6 came from the peer's own push: it holds it.
	mu.Lock()
	version = 6
	mu.Unlock()
	sys.Root.Send(peer, &Changed{Version: 6, Origin: "127.0.0.2:2"})
	parent.drain()
	for range 3 {
		if s := fishFor(t, parent, wait, func(*PeerStatus) bool { return true }); s.Behind != 0 {
			t.Fatalf("behind = %d after a change from the peer itself, want 0", s.Behind)
		}
	}
}

// TestFreshPeerIsNotCreditedWithChangesItNeverGot: a PeerActor that has not
// yet brought its peer up to date knows nothing of what the peer holds. It
// must neither report the peer as 0 behind because no change notice came
// yet (a failed push already tells it this node's version), nor take a first
// notice of changes the peer itself pushed as proof that the peer holds
// everything before them.
func TestFreshPeerIsNotCreditedWithChangesItNeverGot(t *testing.T) {
	t.Run("failed pushes", func(t *testing.T) {
		sys := newSystem(t)
		tr := newFakeTransport()
		tr.pushErr = errors.New("connection refused")
		counter := counterProbe(t, sys, func() uint64 { return 5 })
		cfg := testPeerConfig(tr, counter.pid)
		peer, parent := spawnPeer(t, sys, cfg)
		probeEvery(t, sys, peer, 5*time.Millisecond)
		// No notice comes: the state was loaded before the actor started.
		fishFor(t, parent, wait, func(s *PeerStatus) bool { return s.Behind == 5 })
	})
	t.Run("first notice from the peer", func(t *testing.T) {
		sys := newSystem(t)
		tr := newFakeTransport()
		tr.gated = true
		counter := counterProbe(t, sys, func() uint64 { return 5 })
		cfg := testPeerConfig(tr, counter.pid)
		peer, parent := spawnPeer(t, sys, cfg)
		probeEvery(t, sys, peer, 5*time.Millisecond)
		tr.awaitPush(t) // the first full push, held: the peer has nothing yet
		// The first health check has learnt the peer's replica id.
		fishFor(t, parent, wait, func(s *PeerStatus) bool { return !s.LastSeen.IsZero() })
		sys.Root.Send(peer, &Changed{Version: 5, Origin: "127.0.0.2:2"})
		fishFor(t, parent, wait, func(s *PeerStatus) bool { return s.Behind == 5 })
		tr.set(func(f *fakeTransport) { f.gated = false })
		tr.gate <- struct{}{}
		fishFor(t, parent, wait, func(s *PeerStatus) bool { return s.Behind == 0 })
	})
}

// A peer that does not answer its health checks is still reported with how
// far behind it is, so /peers and the status page do not show 0 for it.
func TestUnansweringPeerIsReportedBehind(t *testing.T) {
	sys := newSystem(t)
	tr := newFakeTransport()
	tr.healthErr = errors.New("timeout")
	tr.pushErr = errors.New("connection refused")
	counter := counterProbe(t, sys, func() uint64 { return 3 })
	cfg := testPeerConfig(tr, counter.pid)
	cfg.FailuresBeforeDown = 1000
	peer, parent := spawnPeer(t, sys, cfg)
	probeEvery(t, sys, peer, 5*time.Millisecond)
	sys.Root.Send(peer, &Changed{Version: 3})
	fishFor(t, parent, wait, func(s *PeerStatus) bool { return s.State == StateSuspect && s.Behind == 3 })
}
