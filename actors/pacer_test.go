package actors

import (
	"log/slog"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"countd/crdt"
)

func TestPacer(t *testing.T) {
	ms := time.Millisecond
	for _, tc := range []struct {
		name              string
		max               time.Duration
		clients, gathered int
		took              time.Duration
		hold              time.Duration
		enough            []int // gathered counts that are enough to write
		notEnough         []int
	}{
		{name: "one client comes back and is written at once", max: 2 * ms, clients: 1, took: ms, hold: ms, enough: []int{1}, notEnough: []int{0}},
		{name: "waits for the answered and the gathered", max: 2 * ms, clients: 40, gathered: 24, took: ms, hold: ms, enough: []int{64, 65}, notEnough: []int{24, 63}},
		{name: "hold bounded by max", max: 2 * ms, clients: 8, took: 10 * ms, hold: 2 * ms, enough: []int{8}, notEnough: []int{7}},
		{name: "no clients answered (merges, background)", max: 2 * ms, clients: 0, gathered: 5, took: ms, hold: 0, enough: []int{0, 5}},
		{name: "hold off", max: 0, clients: 8, took: ms, hold: 0, enough: []int{0}},
		{name: "a clock step back", max: 2 * ms, clients: 8, took: -ms, hold: 0, enough: []int{0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := pacer{max: tc.max}
			if got := p.written(tc.clients, tc.gathered, tc.took); got != tc.hold {
				t.Fatalf("written(%d, %d, %v) = %v, want %v", tc.clients, tc.gathered, tc.took, got, tc.hold)
			}
			for _, n := range tc.enough {
				if !p.enough(n) {
					t.Errorf("enough(%d) = false, want true", n)
				}
			}
			for _, n := range tc.notEnough {
				if p.enough(n) {
					t.Errorf("enough(%d) = true, want false", n)
				}
			}
			p.failed()
			if !p.enough(0) {
				t.Error("after failed, enough(0) = false: a failed write must not hold the next")
			}
		})
	}
}

// Holds that run out are skipped for 1, 3, 7, ... maxSkip writes; one that
// fills makes the next write hold again.
func TestPacerSkipsHoldsThatRunOut(t *testing.T) {
	p := pacer{max: time.Second}
	hold := func() bool { return p.written(8, 0, time.Millisecond) > 0 }
	want := []int{1, 3, 7, 15, 15}
	for round, skip := range want {
		if !hold() {
			t.Fatalf("round %d: no hold after %d skipped writes", round, skip)
		}
		p.ended(false) // ran out
		for i := range skip {
			if hold() {
				t.Fatalf("round %d: write %d held, want %d writes skipped after a hold that ran out", round, i+1, skip)
			}
		}
	}
	if !hold() {
		t.Fatal("no hold after the skipped writes")
	}
	p.ended(true) // filled
	if !hold() {
		t.Fatal("no hold right after a hold that filled")
	}
}

// After a write that answered a client, the next batch waits for that
// client to come back, so one write carries both it and what was gathered
// meanwhile (instead of a write for the gathered alone, then one for it).
func TestGroupCommitHoldsForTheClientsItAnswered(t *testing.T) {
	sys, pid, st, clock := heldCounter(t)
	a, b := make(chan any, 1), make(chan any, 1)
	sys.Root.Send(pid, &Increment{Counter: "a", By: 1, Reply: a})
	st.awaitSave(t)
	sys.Root.Send(pid, &Increment{Counter: "b", By: 1, Reply: b})
	roundTrip(t, sys, pid)
	clock.advance(time.Hour) // the write took an hour: the hold may be as long
	st.release <- struct{}{}
	if r := receive[*ChangeResult](t, a); r.Err != nil || r.Value != 1 {
		t.Fatalf("a's reply = %+v", r)
	}
	// b is gathered, a is answered: the actor holds the batch for a.
	roundTrip(t, sys, pid)
	if n := len(st.started); n != 0 {
		t.Fatalf("a write started (%v) before the answered client came back", <-st.started)
	}
	sys.Root.Send(pid, &Increment{Counter: "a", By: 1, Reply: a})
	if got := st.awaitSave(t); len(got) != 2 {
		t.Fatalf("second write = %v, want a and b in one write", got)
	}
	st.release <- struct{}{}
	if r := receive[*ChangeResult](t, a); r.Err != nil || r.Value != 2 {
		t.Fatalf("a's second reply = %+v", r)
	}
	if r := receive[*ChangeResult](t, b); r.Err != nil || r.Value != 1 {
		t.Fatalf("b's reply = %+v", r)
	}
}

// A hold that runs out (the answered client does not come back) makes the
// next write skip holding: the batch gathered during it is written as soon
// as it ends, even though that write took long enough for a long hold.
func TestGroupCommitSkipsTheHoldAfterOneRanOut(t *testing.T) {
	sys, pid, st, clock := heldCounter(t)
	a, b, c := make(chan any, 1), make(chan any, 1), make(chan any, 1)
	sys.Root.Send(pid, &Increment{Counter: "a", By: 1, Reply: a})
	st.awaitSave(t)
	sys.Root.Send(pid, &Increment{Counter: "b", By: 1, Reply: b})
	roundTrip(t, sys, pid)
	clock.advance(time.Millisecond) // the hold after this write: 1 ms
	st.release <- struct{}{}
	receive[*ChangeResult](t, a) // a never comes back: the hold runs out
	if got := st.awaitSave(t); len(got) != 1 || got[0].Counter != "b" {
		t.Fatalf("write after the hold = %v, want b alone", got)
	}
	sys.Root.Send(pid, &Increment{Counter: "c", By: 1, Reply: c})
	roundTrip(t, sys, pid)
	clock.advance(time.Hour) // long enough for an hour's hold, were it not skipped
	st.release <- struct{}{}
	receive[*ChangeResult](t, b)
	if got := st.awaitSave(t); len(got) != 1 || got[0].Counter != "c" {
		t.Fatalf("write after b's = %v, want c at once", got)
	}
}

// heldCounter starts a CounterActor for the hold tests: a gated store, a
// fake clock (so a write takes as long as the test says) and holds of up
// to an hour.
func heldCounter(t *testing.T) (*actor.ActorSystem, *actor.PID, *fakeStore, *fakeClock) {
	t.Helper()
	sys := newSystem(t)
	st := newFakeStore(true)
	clock := newFakeClock()
	pid := sys.Root.Spawn(NewCounterProps(crdt.New(self), st, slog.New(slog.DiscardHandler), nil,
		WithClock(clock.now), WithSweep(time.Hour), WithCommitHold(time.Hour)))
	t.Cleanup(func() {
		for range 10 {
			st.release <- struct{}{} // let any write the test left in flight end
		}
		sys.Root.PoisonFuture(pid).Wait()
	})
	return sys, pid, st, clock
}

// roundTrip returns once the actor has handled every message sent before.
func roundTrip(t *testing.T, sys *actor.ActorSystem, pid *actor.PID) {
	t.Helper()
	if _, err := sys.Root.RequestFuture(pid, &GetAll{}, wait).Result(); err != nil {
		t.Fatal(err)
	}
}
