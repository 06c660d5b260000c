package actors

import (
	"errors"
	"testing"
	"time"
)

// waitAsked is a WaitFor a stand-in PeerActor got.
type waitAsked struct {
	addr    string
	version uint64
}

// waitHeld sends a WaitHeld and returns where its answer arrives.
func (f *supervisorFixture) waitHeld(version uint64, l Level, within time.Duration) chan any {
	ch := make(chan any, 1)
	f.sys.Root.Send(f.sup, &WaitHeld{Version: version, Level: l, Deadline: time.Now().Add(within), Reply: ch})
	return ch
}

func answered(t *testing.T, ch chan any) *HeldResult { t.Helper(); return receive[*HeldResult](t, ch) }

// notAnswered checks, after a round trip through the Supervisor (whose
// messages are handled in order), that ch holds no answer.
func (f *supervisorFixture) notAnswered(ch chan any) {
	f.t.Helper()
	f.ask(&GetPeers{})
	select {
	case r := <-ch:
		f.t.Fatalf("answered %+v before the level was reached", r)
	default:
	}
}

func (f *supervisorFixture) holds(e lifecycle, replica string, held uint64) {
	f.sys.Root.Send(f.sup, &PeerHolds{From: e.pid, Addr: e.addr, Replica: replica, Held: held})
}

// TestWaitHeldCountsTheMembersHolding: a quorum of three is this node and
// one peer holding the version; all is every member not left; a peer that
// goes down while waited on keeps what it held, and holds back all until
// the deadline, which answers how far the level got.
func TestWaitHeldCountsTheMembersHolding(t *testing.T) {
	f := newSupervisorFixture(t)
	const a, b, c = "127.0.0.1:2", "127.0.0.1:3", "127.0.0.1:4"
	f.ask(&RegisterPeer{Addr: a})
	ea := f.event(a, "started")
	f.ask(&RegisterPeer{Addr: b})
	eb := f.event(b, "started")

	quorum := f.waitHeld(5, Quorum, time.Hour)
	all := f.waitHeld(5, All, time.Hour)
	// Both PeerActors are asked to push for it (twice: once per wait).
	got := map[waitAsked]int{}
	for range 4 {
		select {
		case w := <-f.asked:
			got[w]++
		case <-time.After(wait):
			t.Fatalf("WaitFor asked of %v, want each peer twice", got)
		}
	}
	if got[waitAsked{a, 5}] != 2 || got[waitAsked{b, 5}] != 2 {
		t.Fatalf("WaitFor asked: %v, want a and b twice for 5", got)
	}
	f.holds(ea, "aa", 4) // not enough
	f.notAnswered(quorum)
	f.holds(ea, "aa", 5)
	if r := answered(t, quorum); r.Err != nil {
		t.Fatalf("quorum with 2 of 3 holding: %v", r.Err)
	}
	f.notAnswered(all)
	// A report from the peer's next process says it holds less.
	f.sys.Root.Send(f.sup, &PeerStatus{From: eb.pid, Addr: b, State: StateAlive, Replica: "bb", Held: 9})
	if r := answered(t, all); r.Err != nil {
		t.Fatalf("all with every member holding: %v", r.Err)
	}

	// Left members are not counted: all of {self, a} once b has left.
	all = f.waitHeld(10, All, time.Hour)
	f.holds(ea, "aa", 10)
	f.notAnswered(all)
	f.sys.Root.Send(f.sup, &Leave{Addr: b, Replica: "bb"})
	f.event(b, "stopped")
	if r := answered(t, all); r.Err != nil {
		t.Fatalf("all after b left: %v", r.Err)
	}

	// A member that goes down while waited on holds back all until the
	// deadline; it still counts as a member.
	f.ask(&RegisterPeer{Addr: c})
	ec := f.event(c, "started")
	all = f.waitHeld(11, All, 300*time.Millisecond)
	f.holds(ea, "aa", 11)
	f.tr.set(func(tr *fakeTransport) { tr.healthErr = errors.New("refused") }) // it stays down
	f.sys.Root.Send(f.sup, &PeerUnhealthy{From: ec.pid, Addr: c, Err: errors.New("gone")})
	f.event(c, "stopped")
	r := answered(t, all)
	var le *LevelError
	if !errors.As(r.Err, &le) || !errors.Is(r.Err, ErrNotReached) {
		t.Fatalf("all with a member down: %v, want a *LevelError", r.Err)
	}
	if *le != (LevelError{Level: All, Reached: 2, Need: 3, Members: 3}) {
		t.Fatalf("level error %+v, want 2 of 3 reached, 3 needed", *le)
	}
	// ... while a quorum of the same members is reached.
	if r := answered(t, f.waitHeld(11, Quorum, time.Hour)); r.Err != nil {
		t.Fatalf("quorum with c down: %v", r.Err)
	}
}

func TestHeldWaitsAnswerInVersionOrder(t *testing.T) {
	var w heldWaits
	for _, v := range []uint64{7, 3, 5, 3} {
		w.add(Quorum, v, nil)
	}
	w.add(All, 1, nil)
	holding := uint64(5)
	count := func(v uint64) (int, int) {
		if v <= holding {
			return 2, 3
		}
		return 1, 3
	}
	var got []uint64
	for _, h := range w.answer(count) {
		got = append(got, h.version)
	}
	if want := []uint64{3, 3, 5}; !equalU64(got, want) {
		t.Fatalf("answered %v, want %v (all needs 3 of 3)", got, want)
	}
	if w.highest() != 7 {
		t.Fatalf("highest = %d, want 7", w.highest())
	}
}

func equalU64(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestPeerActorPushesAtOnceForAWait: with a flush delay of an hour, only a
// wait makes the PeerActor push; it reports what the peer holds once the
// push is answered, and waits that arrive while a push is in flight share
// the next push.
func TestPeerActorPushesAtOnceForAWait(t *testing.T) {
	sys := newSystem(t)
	tr := newFakeTransport()
	var version uint64 = 3
	counter := counterProbe(t, sys, func() uint64 { return version })
	cfg := testPeerConfig(tr, counter.pid)
	cfg.FlushDelay = time.Hour
	tr.set(func(f *fakeTransport) { f.gated = true })
	peer, parent := spawnPeer(t, sys, cfg)
	sys.Root.Send(peer, &Changed{Version: 1})
	sys.Root.Send(peer, &WaitFor{Version: 1})
	tr.awaitPush(t) // at once, not after the flush delay: held at the gate
	// Two more clients wait while it is in flight.
	for v := uint64(2); v <= 3; v++ {
		sys.Root.Send(peer, &Changed{Version: v})
		sys.Root.Send(peer, &WaitFor{Version: v})
	}
	tr.gate <- struct{}{} // the first push ends; one more carries the rest
	tr.awaitPush(t)
	tr.gate <- struct{}{}
	h := fishFor(t, parent, wait, func(m *PeerHolds) bool { return m.Held >= 3 })
	if h.Addr != "127.0.0.2:2" || h.Replica != tr.replica || !h.From.Equal(peer) {
		t.Fatalf("PeerHolds %+v, want from the PeerActor of 127.0.0.2:2 as %s", h, tr.replica)
	}
	select {
	case c := <-tr.pushes:
		t.Fatalf("a third push %+v for three waits that fit in two", c.req)
	case <-time.After(50 * time.Millisecond):
	}
}
