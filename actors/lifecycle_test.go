package actors

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"countd/crdt"
	"countd/internal/poll"
)

// fakeClock is a clock a test moves by hand.
type fakeClock struct{ ms atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ms.Store(1_700_000_000_000)
	return c
}

func (c *fakeClock) now() time.Time          { return time.UnixMilli(c.ms.Load()) }
func (c *fakeClock) advance(d time.Duration) { c.ms.Add(d.Milliseconds()) }

// lifecycleCounter starts a CounterActor on clock, sweeping every sweep,
// writing to st (nil: memory mode), telling obs.
func lifecycleCounter(t *testing.T, sys *actor.ActorSystem, st Store, clock *fakeClock, sweep time.Duration, obs Observer) *Counters {
	t.Helper()
	var store Store
	if st != nil {
		store = st
	}
	pid := sys.Root.Spawn(NewCounterProps(crdt.New(self), store, slog.New(slog.DiscardHandler), obs,
		WithClock(clock.now), WithSweep(sweep)))
	t.Cleanup(func() { sys.Root.PoisonFuture(pid).Wait() })
	return NewCounters(sys.Root, pid, wait)
}

func TestDeleteIsDurableThenGone(t *testing.T) {
	sys := newSystem(t)
	st := newFakeStore(true)
	clock := newFakeClock()
	c := lifecycleCounter(t, sys, st, clock, time.Hour, nil)
	ctx := context.Background()

	done := make(chan error, 1)
	go func() { _, err := c.Apply(ctx, Change{Counter: "c", By: 3}); done <- err }()
	st.awaitSave(t)
	st.release <- struct{}{}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	deleted := make(chan bool, 1)
	go func() {
		ok, err := c.Delete(ctx, "c")
		if err != nil {
			t.Error(err)
		}
		deleted <- ok
	}()
	// The delete writes the entry at its floor, and answers only after.
	saved := st.awaitSave(t)
	if len(saved) != 1 || saved[0].FP != 3 || saved[0].P != 3 {
		t.Fatalf("delete wrote %v, want the entry with its floor at 3", saved)
	}
	if err := poll.While(ctx, 20*time.Millisecond, time.Millisecond, "the delete waits for its write", func() (bool, string) {
		return len(deleted) == 0, "the delete was answered before its write was durable"
	}); err != nil {
		t.Fatal(err)
	}
	st.release <- struct{}{}
	if !<-deleted {
		t.Fatal("Delete of a live counter reported no counter")
	}
	if v, err := c.Lookup(ctx, "c"); err != nil || v.Exists || v.Value != 0 {
		t.Fatalf("after the delete: %+v, %v; want a counter that does not exist", v, err)
	}
	if all, err := c.All(ctx); err != nil || len(all.Values) != 0 {
		t.Fatalf("All after the delete = %v, %v", all, err)
	}
	go func() { ok, _ := c.Delete(ctx, "never"); deleted <- ok }()
	st.awaitSave(t) // a delete of nothing still waits for what is in flight
	st.release <- struct{}{}
	if <-deleted {
		t.Fatal("Delete of an unknown counter reported a counter")
	}
}

func TestTTLSetOnceThenSweptAndCounted(t *testing.T) {
	sys := newSystem(t)
	clock := newFakeClock()
	obs := &recordingObserver{}
	c := lifecycleCounter(t, sys, nil, clock, 5*time.Millisecond, obs)
	ctx := context.Background()

	r, err := c.Apply(ctx, Change{Counter: "w", By: 1, TTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	at := uint64(clock.now().UnixMilli()) + 1000
	if r.Expires != at {
		t.Fatalf("expiry %d, want %d", r.Expires, at)
	}
	clock.advance(500 * time.Millisecond)
	if r, err = c.Apply(ctx, Change{Counter: "w", By: 1, TTL: time.Minute}); err != nil || r.Expires != at || r.Value != 2 {
		t.Fatalf("second change = %+v, %v; want value 2 and the first expiry kept", r, err)
	}
	clock.advance(500 * time.Millisecond)
	// Expired: a read answers as for a deleted counter at once, and the
	// sweep deletes it.
	if v, _ := c.Lookup(ctx, "w"); v.Exists {
		t.Fatalf("read at the expiry = %+v, want absent", v)
	}
	_, err = poll.Until(ctx, wait, time.Millisecond, "the sweep deletes the expired counter", func() (bool, string) {
		_, d, _ := obs.lifecycle()
		return d["expire"] == 1, ""
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, d, _ := obs.lifecycle(); d["delete"] != 0 {
		t.Fatalf("deletions by reason %v, want one expire", d)
	}
	// A change after the expiry starts a new window.
	if r, err = c.Apply(ctx, Change{Counter: "w", By: 1, TTL: 2 * time.Second}); err != nil || r.Value != 1 ||
		r.Expires != uint64(clock.now().UnixMilli())+2000 {
		t.Fatalf("change after the expiry = %+v, %v; want value 1 and a new expiry", r, err)
	}
}

func TestChangeToExpiredCounterBeforeTheSweepStartsAgain(t *testing.T) {
	sys := newSystem(t)
	clock := newFakeClock()
	obs := &recordingObserver{}
	c := lifecycleCounter(t, sys, nil, clock, time.Hour, obs) // no sweep in this test
	ctx := context.Background()
	if _, err := c.Apply(ctx, Change{Counter: "w", By: 5, TTL: time.Second}); err != nil {
		t.Fatal(err)
	}
	clock.advance(time.Second)
	r, err := c.Apply(ctx, Change{Counter: "w", By: 1})
	if err != nil || r.Value != 1 || r.Expires != 0 {
		t.Fatalf("change after the expiry = %+v, %v; want value 1, no expiry", r, err)
	}
	if _, d, _ := obs.lifecycle(); d["expire"] != 1 {
		t.Fatalf("deletions %v, want the expired counter counted once", d)
	}
}

func TestExpireSetsReplacesAndRefusesUnknown(t *testing.T) {
	sys := newSystem(t)
	clock := newFakeClock()
	c := lifecycleCounter(t, sys, nil, clock, time.Hour, nil)
	ctx := context.Background()
	if _, err := c.Expire(ctx, "nope", time.Second, false); !errors.Is(err, crdt.ErrNotFound) {
		t.Fatalf("Expire of an unknown counter = %v, want ErrNotFound", err)
	}
	c.Apply(ctx, Change{Counter: "c", By: 1})
	now := uint64(clock.now().UnixMilli())
	if r, err := c.Expire(ctx, "c", 10*time.Second, false); err != nil || !r.Set || r.Expires != now+10_000 {
		t.Fatalf("Expire = %+v, %v", r, err)
	}
	if r, err := c.Expire(ctx, "c", 3*time.Second, false); err != nil || r.Expires != now+3_000 {
		t.Fatalf("Expire replacing = %+v, %v; want the new expiry", r, err)
	}
	if r, err := c.Expire(ctx, "c", time.Minute, true); err != nil || r.Set || r.Expires != now+3_000 {
		t.Fatalf("Expire NX on a counter with one = %+v, %v; want it kept", r, err)
	}
	if r, err := c.Expire(ctx, "c", 0, false); err != nil || r.Expires != 0 {
		t.Fatalf("Expire 0 (persist) = %+v, %v; want no expiry", r, err)
	}
}

// TestStableCollectsTombstones: a dead counter is forgotten, in memory and
// in the store, only once Stable says every member holds its delete.
func TestStableCollectsTombstones(t *testing.T) {
	sys := newSystem(t)
	st := newFakeStore(false)
	clock := newFakeClock()
	obs := &recordingObserver{}
	pid := sys.Root.Spawn(NewCounterProps(crdt.New(self), st, slog.New(slog.DiscardHandler), obs,
		WithClock(clock.now), WithSweep(time.Hour)))
	t.Cleanup(func() { sys.Root.PoisonFuture(pid).Wait() })
	c := NewCounters(sys.Root, pid, wait)
	ctx := context.Background()
	for _, name := range []string{"gone", "kept"} {
		if _, err := c.Apply(ctx, Change{Counter: name, By: 1}); err != nil {
			t.Fatal(err)
		}
	}
	before := askActor(t, sys, pid, &GetVersion{}).(*Version).Version
	if _, err := c.Delete(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	// The members hold only the state from before the delete: nothing goes.
	sys.Root.Send(pid, &Stable{Through: before})
	askActor(t, sys, pid, &GetVersion{}) // the Stable was handled
	if d := st.deleted(); len(d) != 0 {
		t.Fatalf("store deletes %v before every member held the delete", d)
	}
	sys.Root.Send(pid, &Stable{Through: math.MaxUint64})
	_, err := poll.Until(ctx, wait, time.Millisecond, "the tombstone is deleted from the store", func() (bool, string) {
		d := st.deleted()
		return len(d) == 1 && d[0].Counter == "gone", ""
	})
	if err != nil {
		t.Fatalf("%v (deleted %v)", err, st.deleted())
	}
	_, err = poll.Until(ctx, wait, time.Millisecond, "the observer is told", func() (bool, string) {
		entries, _, collected := obs.lifecycle()
		return collected == 1 && entries == 1, ""
	})
	if err != nil {
		t.Fatal(err)
	}
	// The name is free again: a change starts a counter anew.
	if r, err := c.Apply(ctx, Change{Counter: "gone", By: 2}); err != nil || r.Value != 2 {
		t.Fatalf("change after collection = %+v, %v", r, err)
	}
	if v, _ := c.Value(ctx, "kept"); v != 1 {
		t.Fatalf("kept = %d, want 1", v)
	}
}

// newStableFixture starts a Supervisor whose CounterActor is a probe, and
// returns it with a check that waits for the probe to be told Stable{want}.
func newStableFixture(t *testing.T) (*supervisorFixture, func(want uint64)) {
	t.Helper()
	sys := newSystem(t)
	counter := newProbe(t, sys, nil)
	f := newSupervisorFixtureOn(t, sys, func(c *SupervisorConfig) { c.Peer.Counter = counter.pid })
	return f, func(want uint64) {
		t.Helper()
		fishFor(t, counter, wait, func(m *Stable) bool { return m.Through == want })
	}
}

func TestSupervisorTellsTheLeastHeldVersion(t *testing.T) {
	f, stable := newStableFixture(t)
	stable(math.MaxUint64) // no members: nothing else holds anything
	const a, b = "127.0.0.1:2", "127.0.0.1:3"
	f.ask(&RegisterPeer{Addr: a})
	ea := f.event(a, "started")
	stable(0) // a new member holds nothing yet
	f.ask(&RegisterPeer{Addr: b})
	eb := f.event(b, "started")
	f.sys.Root.Send(f.sup, &PeerStatus{From: ea.pid, Addr: a, State: StateAlive, Held: 7})
	f.sys.Root.Send(f.sup, &PeerStatus{From: eb.pid, Addr: b, State: StateAlive, Held: 5})
	stable(5)
	f.sys.Root.Send(f.sup, &PeerStatus{From: eb.pid, Addr: b, State: StateAlive, Held: 9})
	stable(7)
	f.ask(&RemovePeer{Addr: a})
	stable(9)
}

// TestExpiredCounterDeletedEvenWhenTheChangeIsRefused: a change to an
// expired counter deletes it first; if the change itself is then refused
// (here: reviving the counter would pass -max-counters), the delete is
// still written, entry by entry, whoever's entries they are.
func TestExpiredCounterDeletedEvenWhenTheChangeIsRefused(t *testing.T) {
	sys := newSystem(t)
	st := newFakeStore(false)
	clock := newFakeClock()
	state := crdt.New(self)
	now := uint64(clock.now().UnixMilli())
	// w is a peer's counter, expiring in 1 s; x is live and fills the limit.
	if _, err := state.Merge([]crdt.Entry{
		{Counter: "w", Replica: other, P: 4, T: now, E: now + 1000},
		{Counter: "x", Replica: other, P: 1},
	}); err != nil {
		t.Fatal(err)
	}
	state.SetLimits(crdt.Limits{MaxCounters: 1})
	pid := sys.Root.Spawn(NewCounterProps(state, st, slog.New(slog.DiscardHandler), nil,
		WithClock(clock.now), WithSweep(time.Hour)))
	t.Cleanup(func() { sys.Root.PoisonFuture(pid).Wait() })
	c := NewCounters(sys.Root, pid, wait)
	clock.advance(time.Second)
	if _, err := c.Apply(context.Background(), Change{Counter: "w", By: 1}); !errors.Is(err, ErrFull) {
		t.Fatalf("change past the counter limit = %v, want ErrFull", err)
	}
	saved := st.awaitSave(t)
	if len(saved) != 1 || saved[0].Counter != "w" || saved[0].Replica != other || saved[0].FP != 4 {
		t.Fatalf("store write %v, want the peer's entry of w at its floor (the delete)", saved)
	}
}
