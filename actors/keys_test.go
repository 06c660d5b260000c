package actors

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"countd/crdt"
	"countd/internal/poll"
)

// peerReplica is another node's replica id (another lineage than self's).
const peerReplica = "0000000000bb0001"

// keyedCounter starts a CounterActor as lifecycleCounter does, with an
// idempotency window.
func keyedCounter(t *testing.T, sys *actor.ActorSystem, st Store, clock *fakeClock, window time.Duration, obs Observer) (*Counters, *actor.PID) {
	t.Helper()
	var store Store
	if st != nil {
		store = st
	}
	pid := sys.Root.Spawn(NewCounterProps(crdt.New(self), store, slog.New(slog.DiscardHandler), obs,
		WithClock(clock.now), WithSweep(5*time.Millisecond), WithIdempotencyWindow(window)))
	t.Cleanup(func() { sys.Root.PoisonFuture(pid).Wait() })
	return NewCounters(sys.Root, pid, wait), pid
}

func TestKeyedChangeReplayAndConflict(t *testing.T) {
	sys := newSystem(t)
	obs := &recordingObserver{}
	c, pid := keyedCounter(t, sys, nil, newFakeClock(), time.Hour, obs)
	ctx := context.Background()

	first, err := c.Apply(ctx, Change{Counter: "c", By: 5, Key: "pay-1"})
	if err != nil || first.Value != 5 || first.Replayed || first.Version == 0 {
		t.Fatalf("first = %+v, %v", first, err)
	}
	plain, err := c.Apply(ctx, Change{Counter: "c", By: 1})
	if err != nil || plain.Value != 6 || plain.Version <= first.Version {
		t.Fatalf("unkeyed = %+v, %v; want value 6 and a later version than %d", plain, err, first.Version)
	}
	again, err := c.Apply(ctx, Change{Counter: "c", By: 5, Key: "pay-1"})
	if err != nil || !again.Replayed || again.Value != 6 || again.Version != first.Version {
		t.Fatalf("retry = %+v, %v; want a replay of value 6 at version %d", again, err, first.Version)
	}
	for _, ch := range []Change{
		{Counter: "c", By: 6, Key: "pay-1"},
		{Counter: "c", By: 5, Neg: true, Key: "pay-1"},
		{Counter: "d", By: 5, Key: "pay-1"},
	} {
		_, err := c.Apply(ctx, ch)
		if !errors.Is(err, ErrKeyConflict) || !strings.Contains(err.Error(), `increment counter "c" by 5`) {
			t.Fatalf("%+v: err %v, want ErrKeyConflict naming the first use", ch, err)
		}
	}
	if v, _ := c.Value(ctx, "c"); v != 6 {
		t.Fatalf("value %d after the replay and conflicts, want 6", v)
	}
	askActor(t, sys, pid, &GetVersion{}) // the observer calls are made
	if replays, keys, _ := obs.keyed(); replays != 1 || keys != 1 {
		t.Fatalf("observer: %d replays, %d keys; want 1, 1", replays, keys)
	}
}

// TestKeyInFlight: while a keyed change waits for its write, the same key
// again is ErrKeyInFlight; once durable, it is a replay answered without a
// write, with the version that holds it.
func TestKeyInFlight(t *testing.T) {
	sys := newSystem(t)
	st := newFakeStore(true)
	_, pid := keyedCounter(t, sys, st, newFakeClock(), time.Hour, nil)
	client := newProbe(t, sys, nil)

	sys.Root.RequestWithCustomSender(pid, &Increment{Counter: "c", By: 2, Key: "k"}, client.pid)
	saved := st.awaitSave(t)
	if len(saved) != 1 || saved[0].Replica != crdt.KeyID("k") || saved[0].P != 2 || saved[0].O != self {
		t.Fatalf("write %+v, want the key entry", saved)
	}
	if r := askActor(t, sys, pid, &Increment{Counter: "c", By: 2, Key: "k"}).(*ChangeResult); !errors.Is(r.Err, ErrKeyInFlight) {
		t.Fatalf("same key in flight: %+v, want ErrKeyInFlight", r)
	}
	st.release <- struct{}{}
	r, _ := expect[*ChangeResult](t, client, wait)
	v := askActor(t, sys, pid, &GetVersion{}).(*Version)
	if r.Err != nil || r.Value != 2 || r.Version != v.Version {
		t.Fatalf("first = %+v; want value 2 at the durable version %d", r, v.Version)
	}
	writes := st.saveCount()
	again := askActor(t, sys, pid, &Increment{Counter: "c", By: 2, Key: "k"}).(*ChangeResult)
	if again.Err != nil || !again.Replayed || again.Value != 2 || again.Version != r.Version {
		t.Fatalf("retry = %+v; want a replay at version %d", again, r.Version)
	}
	if st.saveCount() != writes {
		t.Fatal("a replay of a durable key wrote to the store")
	}
}

// TestReplayOfAKeyNotYetDurable: a key entry merged from a peer and not
// yet durable here is replayed once it is durable.
func TestReplayOfAKeyNotYetDurable(t *testing.T) {
	sys := newSystem(t)
	st := newFakeStore(true)
	_, pid := keyedCounter(t, sys, st, newFakeClock(), time.Hour, nil)
	client := newProbe(t, sys, nil)

	e := crdt.Entry{Counter: "c", Replica: crdt.KeyID("k"), P: 4, O: peerReplica, A: 1}
	sys.Root.RequestWithCustomSender(pid, &Merge{Entries: []crdt.Entry{e}, From: "peer"}, client.pid)
	st.awaitSave(t)
	sys.Root.RequestWithCustomSender(pid, &Increment{Counter: "c", By: 4, Key: "k"}, client.pid)
	if _, err := sys.Root.RequestFuture(pid, &GetVersion{}, wait).Result(); err != nil {
		t.Fatal(err)
	}
	if len(client.ch) != 0 {
		t.Fatal("a replay answered before the key entry was durable")
	}
	st.release <- struct{}{}
	expect[*MergeResult](t, client, wait)
	r, _ := expect[*ChangeResult](t, client, wait)
	if r.Err != nil || !r.Replayed || r.Value != 4 || r.Version == 0 {
		t.Fatalf("retry = %+v; want a replay of value 4 with a version", r)
	}
}

// TestSyncedRetiresAndStableForgets: a key entry is retired in the sweep
// only once its window passed and Synced says every member sent what it
// held since; the value does not change; Stable then forgets it.
func TestSyncedRetiresAndStableForgets(t *testing.T) {
	sys := newSystem(t)
	clock := newFakeClock()
	obs := &recordingObserver{}
	c, pid := keyedCounter(t, sys, nil, clock, time.Minute, obs)
	ctx := context.Background()

	r, err := c.Apply(ctx, Change{Counter: "c", By: 5, Key: "k"})
	if err != nil {
		t.Fatal(err)
	}
	accepted := uint64(clock.now().UnixMilli())
	notRetired := func(what string) {
		t.Helper()
		if err := poll.While(ctx, 50*time.Millisecond, time.Millisecond, what, func() (bool, string) {
			_, _, retired := obs.keyed()
			return retired == 0, "retired too early"
		}); err != nil {
			t.Fatal(err)
		}
	}
	// Synced long ago, the window not passed: nothing.
	sys.Root.Send(pid, &Synced{At: accepted + uint64(time.Hour.Milliseconds())})
	notRetired("window not passed")
	sys.Root.Send(pid, &Synced{At: accepted + uint64(time.Minute.Milliseconds()) + crdt.RetireMargin(uint64(time.Minute.Milliseconds())) - 1})
	askActor(t, sys, pid, &GetVersion{}) // handled before the clock moves
	clock.advance(time.Minute)
	notRetired("synced before window and margin")
	sys.Root.Send(pid, &Synced{At: accepted + uint64(time.Minute.Milliseconds()) + crdt.RetireMargin(uint64(time.Minute.Milliseconds()))})
	if _, err := poll.Until(ctx, wait, time.Millisecond, "the sweep retires the key", func() (bool, string) {
		_, _, retired := obs.keyed()
		return retired == 1, ""
	}); err != nil {
		t.Fatal(err)
	}
	if v, _ := c.Value(ctx, "c"); v != 5 {
		t.Fatalf("value %d after the retirement, want 5", v)
	}
	// Still known until forgotten: a retry is a replay.
	if again, err := c.Apply(ctx, Change{Counter: "c", By: 5, Key: "k"}); err != nil || !again.Replayed {
		t.Fatalf("retry after the retirement = %+v, %v", again, err)
	}
	sys.Root.Send(pid, &Stable{Through: r.Version}) // before the retirement: kept
	askActor(t, sys, pid, &GetVersion{})
	if _, keys, _ := obs.keyed(); keys != 1 {
		t.Fatalf("%d keys held after a Stable older than the retirement, want 1", keys)
	}
	sys.Root.Send(pid, &Stable{Through: ^uint64(0)})
	if _, err := poll.Until(ctx, wait, time.Millisecond, "Stable forgets the retired key", func() (bool, string) {
		_, keys, _ := obs.keyed()
		return keys == 0, ""
	}); err != nil {
		t.Fatal(err)
	}
	if v, _ := c.Value(ctx, "c"); v != 5 {
		t.Fatalf("value %d after forgetting the key, want 5", v)
	}
}

// TestRetirementIsWritten: a retirement writes the retired key entry and
// the node's own entry that took its change, and a forgotten key entry is
// deleted from the store.
func TestRetirementIsWritten(t *testing.T) {
	sys := newSystem(t)
	st := newFakeStore(false)
	clock := newFakeClock()
	c, pid := keyedCounter(t, sys, st, clock, time.Minute, nil)
	ctx := context.Background()
	if _, err := c.Apply(ctx, Change{Counter: "c", By: 5, Key: "k"}); err != nil {
		t.Fatal(err)
	}
	st.awaitSave(t)
	clock.advance(time.Minute)
	sys.Root.Send(pid, &Synced{At: ^uint64(0)})
	saved := st.awaitSave(t)
	want := map[string]bool{crdt.KeyID("k"): false, self: false}
	for _, e := range saved {
		switch e.Replica {
		case crdt.KeyID("k"):
			want[e.Replica] = e.Retired() && e.RP == 5
		case self:
			want[e.Replica] = e.P == 5
		}
	}
	if !want[crdt.KeyID("k")] || !want[self] {
		t.Fatalf("retirement wrote %+v", saved)
	}
	sys.Root.Send(pid, &Stable{Through: ^uint64(0)})
	if _, err := poll.Until(ctx, wait, time.Millisecond, "the forgotten key is deleted from the store", func() (bool, string) {
		for _, e := range st.deleted() {
			if e.Replica == crdt.KeyID("k") {
				return true, ""
			}
		}
		return false, ""
	}); err != nil {
		t.Fatal(err)
	}
}
