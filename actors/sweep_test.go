package actors

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"countd/crdt"
	"countd/internal/poll"
)

func sweepOf(t *testing.T, c *Counters) *sweepState {
	t.Helper()
	r, err := c.root.RequestFuture(c.pid, &sweepQuery{}, wait).Result()
	if err != nil {
		t.Fatal(err)
	}
	return r.(*sweepState)
}

// TestIdleCounterArmsNoSweep: with nothing that can come due the
// CounterActor arms no timer (an idle node sleeps); a TTL arms it for the
// expiry, a sooner one re-arms it sooner, and the sweep deletes the
// expired counter on the real clock, then sleeps towards the next.
func TestIdleCounterArmsNoSweep(t *testing.T) {
	sys := newSystem(t)
	obs := &recordingObserver{}
	pid := sys.Root.Spawn(NewCounterProps(crdt.New(self), nil, slog.New(slog.DiscardHandler), obs,
		WithSweep(10*time.Millisecond)))
	t.Cleanup(func() { sys.Root.PoisonFuture(pid).Wait() })
	c := NewCounters(sys.Root, pid, wait)
	ctx := context.Background()

	if s := sweepOf(t, c); s.Armed {
		t.Fatalf("a new actor with nothing due armed its sweep: %+v", s)
	}
	if _, err := c.Apply(ctx, Change{Counter: "plain", By: 1}); err != nil {
		t.Fatal(err)
	}
	if s := sweepOf(t, c); s.Armed {
		t.Fatalf("a change with no TTL armed the sweep: %+v", s)
	}
	late, err := c.Apply(ctx, Change{Counter: "late", By: 1, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if s := sweepOf(t, c); !s.Armed || s.For != late.Expires {
		t.Fatalf("after a TTL change the sweep is %+v, want armed for its expiry %d", s, late.Expires)
	}
	soon, err := c.Apply(ctx, Change{Counter: "soon", By: 1, TTL: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if s := sweepOf(t, c); !s.Armed || s.For != soon.Expires {
		t.Fatalf("after a sooner TTL the sweep is %+v, want armed for %d", s, soon.Expires)
	}
	if _, err := poll.Until(ctx, wait, time.Millisecond, "the sweep deletes the expired counter", func() (bool, string) {
		_, d, _ := obs.lifecycle()
		return d["expire"] == 1, ""
	}); err != nil {
		t.Fatal(err)
	}
	if now := uint64(time.Now().UnixMilli()); now < soon.Expires {
		t.Fatalf("deleted at %d, before its expiry %d", now, soon.Expires)
	}
	if v, _ := c.Lookup(ctx, "late"); !v.Exists {
		t.Fatal("the counter expiring in an hour was deleted")
	}
	if s := sweepOf(t, c); !s.Armed || s.For != late.Expires {
		t.Fatalf("after the sweep it is %+v, want armed for the next expiry %d", s, late.Expires)
	}
}

// TestKeyArmsSweepOnceSynced: an owned key entry arms the sweep only once
// Synced allows its retirement, for its window's end.
func TestKeyArmsSweepOnceSynced(t *testing.T) {
	sys := newSystem(t)
	clock := newFakeClock()
	c, pid := keyedCounter(t, sys, nil, clock, time.Minute, nil)
	ctx := context.Background()

	accepted := uint64(clock.now().UnixMilli())
	if _, err := c.Apply(ctx, Change{Counter: "c", By: 5, Key: "k"}); err != nil {
		t.Fatal(err)
	}
	if s := sweepOf(t, c); s.Armed {
		t.Fatalf("a key entry armed the sweep before any Synced: %+v", s)
	}
	window := uint64(time.Minute.Milliseconds())
	sys.Root.Send(pid, &Synced{At: accepted + window + crdt.RetireMargin(window) - 1})
	if s := sweepOf(t, c); s.Armed {
		t.Fatalf("armed by a Synced too early to retire: %+v", s)
	}
	sys.Root.Send(pid, &Synced{At: accepted + window + crdt.RetireMargin(window)})
	if s := sweepOf(t, c); !s.Armed || s.For != accepted+window {
		t.Fatalf("after Synced the sweep is %+v, want armed for %d", s, accepted+window)
	}
}
