package actors

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"

	"countd/crdt"
)

// TestChangesShareOneCommitAndAnswerInOrder: a Changes (a RESP pipeline's
// run of INCRs) is written in one store write, answered only once it is
// durable, with each change's own result in order, a refused change's
// error among them.
func TestChangesShareOneCommitAndAnswerInOrder(t *testing.T) {
	sys := newSystem(t)
	st := newFakeStore(true)
	pid, _ := spawnCounter(t, sys, st)
	c := NewCounters(sys.Root, pid, wait)
	ctx := context.Background()

	type answer struct {
		rs  []ChangeResult
		err error
	}
	done := make(chan answer, 1)
	go func() {
		rs, err := c.ApplyAll(ctx, []Change{
			{Counter: "a", By: 2},
			{Counter: "b", By: 5, Neg: true},
			{Counter: "a", By: math.MaxUint64}, // overflow: refused alone
			{Counter: "a", By: 1},
		})
		done <- answer{rs, err}
	}()
	entries := st.awaitSave(t)
	select {
	case a := <-done:
		t.Fatalf("answered before the write was durable: %+v", a)
	default:
	}
	if len(entries) != 2 {
		t.Fatalf("the write holds %d entries, want 2 (a and b in one commit)", len(entries))
	}
	st.release <- struct{}{}
	a := <-done
	if a.err != nil {
		t.Fatal(a.err)
	}
	if len(a.rs) != 4 || a.rs[0].Value != 2 || a.rs[1].Value != -5 || !errors.Is(a.rs[2].Err, crdt.ErrOverflow) || a.rs[3].Value != 3 {
		t.Fatalf("results = %+v; want 2, -5, overflow, 3", a.rs)
	}
	if n := st.saveCount(); n != 1 {
		t.Fatalf("%d store writes, want 1", n)
	}
	if rs, err := c.ApplyAll(ctx, nil); err != nil || len(rs) != 0 {
		t.Fatalf("ApplyAll of nothing = %v, %v", rs, err)
	}
}

// TestExpireConditions: XX, GT and LT as Redis has them (no expiry is
// later than any time), and Past deletes the counter unless a condition
// says no.
func TestExpireConditions(t *testing.T) {
	sys := newSystem(t)
	clock := newFakeClock()
	c := lifecycleCounter(t, sys, nil, clock, time.Hour, nil)
	ctx := context.Background()
	c.Apply(ctx, Change{Counter: "c", By: 1})
	now := uint64(clock.now().UnixMilli())
	steps := []struct {
		name    string
		m       Expire
		set     bool
		expires uint64
	}{
		{"XX without expiry", Expire{TTL: time.Minute, XX: true}, false, 0},
		{"GT without expiry (infinite)", Expire{TTL: time.Minute, GT: true}, false, 0},
		{"LT without expiry", Expire{TTL: time.Minute, LT: true}, true, now + 60_000},
		{"GT later", Expire{TTL: 2 * time.Minute, GT: true}, true, now + 120_000},
		{"GT earlier", Expire{TTL: time.Second, GT: true}, false, now + 120_000},
		{"LT later", Expire{TTL: time.Hour, LT: true}, false, now + 120_000},
		{"LT earlier", Expire{TTL: time.Second, LT: true}, true, now + 1_000},
		{"XX with expiry", Expire{TTL: time.Minute, XX: true}, true, now + 60_000},
		{"Past with GT", Expire{Past: true, GT: true}, false, now + 60_000},
		{"Past with NX and an expiry", Expire{Past: true, NX: true}, false, now + 60_000},
	}
	for _, s := range steps {
		s.m.Counter = "c"
		r, err := c.ExpireWith(ctx, s.m)
		if err != nil || r.Set != s.set || r.Expires != s.expires {
			t.Fatalf("%s: %+v, %v; want set %v, expires %d", s.name, r, err, s.set, s.expires)
		}
	}
	if r, err := c.ExpireWith(ctx, Expire{Counter: "c", Past: true, LT: true}); err != nil || !r.Set {
		t.Fatalf("Past with LT = %+v, %v; want set", r, err)
	}
	if v, _ := c.Lookup(ctx, "c"); v.Exists {
		t.Fatalf("after Past the counter exists: %+v", v)
	}
	if _, err := c.ExpireWith(ctx, Expire{Counter: "c", TTL: time.Minute, XX: true}); !errors.Is(err, crdt.ErrNotFound) {
		t.Fatalf("XX on a deleted counter = %v, want ErrNotFound", err)
	}
}
