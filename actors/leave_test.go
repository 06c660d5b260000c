package actors

import (
	"context"
	"errors"
	"math"
	"slices"
	"testing"
	"time"

	"countd/internal/poll"
)

// The replica ids of the process of a peer that leaves, and of the next
// process on its address.
const (
	leftProcess = "00000000000000aa"
	nextProcess = "00000000000000bb"
	bProcess    = "0000000000bb0001" // another node, of a lineage of its own
)

// noProbes checks that the Supervisor makes no health check for a while
// longer than several down-pace probes (DownProbeMax is 20ms).
func (f *supervisorFixture) noProbes(what string) {
	f.t.Helper()
	for len(f.tr.healthCalls) > 0 {
		<-f.tr.healthCalls
	}
	err := poll.While(context.Background(), 150*time.Millisecond, 5*time.Millisecond, what, func() (bool, string) {
		return len(f.tr.healthCalls) == 0, "a health check was made"
	})
	if err != nil {
		f.t.Fatal(err)
	}
}

// TestSupervisorLeftPeer: a peer that says it leaves is left at once (its
// PeerActor stopped, not gossiped, not probed), keeps its place in the
// least held version, stays left when a late push of the process that
// left arrives, and is alive again when its next process pushes.
func TestSupervisorLeftPeer(t *testing.T) {
	f, stable := newStableFixture(t)
	const a, b = "127.0.0.1:2", "127.0.0.1:3"
	f.ask(&RegisterPeer{Addr: a})
	ea := f.event(a, "started")
	f.ask(&RegisterPeer{Addr: b})
	eb := f.event(b, "started")
	toldB := func() []string { m, _ := f.members.Load(b); ms, _ := m.([]string); return ms }
	waitFor(t, "b told of a", func() bool { return slices.Contains(toldB(), a) })
	f.sys.Root.Send(f.sup, &PeerStatus{From: ea.pid, Addr: a, State: StateAlive, Held: 7})
	f.sys.Root.Send(f.sup, &PeerStatus{From: eb.pid, Addr: b, State: StateAlive, Held: 5})
	stable(5)

	f.sys.Root.Send(f.sup, &Leave{Addr: a, Replica: leftProcess})
	f.event(a, "stopped")
	if s := f.state(a); s != StateLeft {
		t.Fatalf("state after its leave = %q, want left", s)
	}
	waitFor(t, "b no longer told of a", func() bool { return !slices.Contains(toldB(), a) })
	f.noProbes("a left peer is not probed")
	// Its report from before the leave changes nothing.
	f.sys.Root.Send(f.sup, &PeerStatus{From: ea.pid, Addr: a, State: StateAlive, Held: 8})
	if s := f.state(a); s != StateLeft {
		t.Fatalf("state after a stale report = %q, want left", s)
	}
	// It still holds only 7: b moving on does not take the least past it.
	f.sys.Root.Send(f.sup, &PeerStatus{From: eb.pid, Addr: b, State: StateAlive, Held: 20})
	stable(7)

	// A push of the process that left (its flush, late) does not revive it.
	f.sys.Root.Send(f.sup, &Contact{Addr: a, Replica: leftProcess})
	if s := f.state(a); s != StateLeft {
		t.Fatalf("state after a late push of the process that left = %q, want left", s)
	}
	// Its next process pushes: alive at once, with a PeerActor, gossiped.
	f.sys.Root.Send(f.sup, &Contact{Addr: a, Replica: nextProcess})
	f.event(a, "started")
	if s := f.state(a); s != StateAlive {
		t.Fatalf("state after its next process pushed = %q, want alive", s)
	}
	waitFor(t, "b told of a again", func() bool { return slices.Contains(toldB(), a) })

	// A leave from an address that is no member adds nothing.
	const stranger = "127.0.0.1:9"
	f.sys.Root.Send(f.sup, &Leave{Addr: stranger, Replica: leftProcess})
	if s := f.state(stranger); s != "" {
		t.Fatalf("a stranger's leave listed it as %q", s)
	}
}

// TestSupervisorLeftPeerNamedByGossip: a left peer that another node's
// push names alive is probed once (it may have restarted and not pushed
// here yet): alive if another process answers, still left if nothing or
// the process that left answers, and probed again no sooner than
// DownProbeMin.
func TestSupervisorLeftPeerNamedByGossip(t *testing.T) {
	f := newSupervisorFixtureConfig(t, func(c *SupervisorConfig) {
		c.DownProbeMin = 200 * time.Millisecond
		c.DownProbeMax = 400 * time.Millisecond
	})
	const a, b = "127.0.0.1:2", "127.0.0.1:3"
	for _, addr := range []string{a, b} {
		f.ask(&RegisterPeer{Addr: addr})
		f.event(addr, "started")
	}
	f.sys.Root.Send(f.sup, &Leave{Addr: a, Replica: leftProcess})
	f.event(a, "stopped")

	// Nothing answers: one probe, for two pushes naming it; still left.
	f.tr.set(func(tr *fakeTransport) { tr.healthErr = errors.New("connection refused") })
	f.sys.Root.Send(f.sup, &Contact{Addr: b, Replica: bProcess, Members: []string{a}})
	f.sys.Root.Send(f.sup, &Contact{Addr: b, Replica: bProcess, Members: []string{a}})
	f.tr.awaitHealth(t)
	f.noProbes("one probe per DownProbeMin")
	if s := f.state(a); s != StateLeft {
		t.Fatalf("state after a failed probe = %q, want left", s)
	}

	// The process that left answers (it is still draining): still left.
	f.tr.set(func(tr *fakeTransport) { tr.healthErr, tr.replica = nil, leftProcess })
	waitFor(t, "a probed again", func() bool {
		f.sys.Root.Send(f.sup, &Contact{Addr: b, Replica: bProcess, Members: []string{a}})
		select {
		case <-f.tr.healthCalls:
			return true
		case <-time.After(10 * time.Millisecond):
			return false
		}
	})
	if s := f.state(a); s != StateLeft {
		t.Fatalf("state after the process that left answered = %q, want left", s)
	}

	// Its next process answers: alive.
	f.tr.set(func(tr *fakeTransport) { tr.replica = nextProcess })
	waitFor(t, "a alive", func() bool {
		f.sys.Root.Send(f.sup, &Contact{Addr: b, Replica: bProcess, Members: []string{a}})
		return f.state(a) == StateAlive
	})
	f.event(a, "started")
}

// TestSupervisorReapsTheLeft: a peer left for longer than ReapAfter leaves
// the table, with no tombstone (it joins again when it pushes), and the
// least held version no longer waits for it.
func TestSupervisorReapsTheLeft(t *testing.T) {
	sys := newSystem(t)
	counter := newProbe(t, sys, nil)
	const reapAfter = 100 * time.Millisecond
	f := newSupervisorFixtureOn(t, sys, func(c *SupervisorConfig) {
		c.Peer.Counter = counter.pid
		c.ReapAfter = reapAfter
	})
	const a = "127.0.0.1:2"
	f.ask(&RegisterPeer{Addr: a})
	f.event(a, "started")
	fishFor(t, counter, wait, func(m *Stable) bool { return m.Through == 0 })
	f.sys.Root.Send(f.sup, &Leave{Addr: a, Replica: leftProcess})
	left := time.Now()
	f.event(a, "stopped")
	waitFor(t, "a reaped", func() bool { return f.state(a) == "" })
	if d := time.Since(left); d < reapAfter {
		t.Fatalf("reaped %v after it left, before ReapAfter (%v)", d, reapAfter)
	}
	fishFor(t, counter, wait, func(m *Stable) bool { return m.Through == math.MaxUint64 })
	f.sys.Root.Send(f.sup, &Contact{Addr: a, Replica: nextProcess})
	f.event(a, "started")
	if s := f.state(a); s != StateAlive {
		t.Fatalf("state after it pushed again = %q, want alive", s)
	}
}

// TestSupervisorReapsALeftPeerThatMoved: a left peer whose data file pushes
// from another address (a later process of its lineage: a pod with a new
// IP) is reaped at once, so it no longer holds back the least version
// every member holds; a push from another lineage does not reap it.
func TestSupervisorReapsALeftPeerThatMoved(t *testing.T) {
	f, stable := newStableFixture(t)
	const a, b, moved = "127.0.0.1:2", "127.0.0.1:3", "127.0.0.1:4"
	const (
		left  = "1234567890ab0003" // a's process that leaves
		other = "ba09876543210001" // another node's lineage
		later = "1234567890ab0004" // the next process of a's data file
	)
	f.ask(&RegisterPeer{Addr: a})
	ea := f.event(a, "started")
	f.ask(&RegisterPeer{Addr: b})
	eb := f.event(b, "started")
	f.sys.Root.Send(f.sup, &PeerStatus{From: ea.pid, Addr: a, State: StateAlive, Held: 3})
	f.sys.Root.Send(f.sup, &PeerStatus{From: eb.pid, Addr: b, State: StateAlive, Held: 9})
	stable(3)
	f.sys.Root.Send(f.sup, &Leave{Addr: a, Replica: left})
	f.event(a, "stopped")

	f.sys.Root.Send(f.sup, &Contact{Addr: moved, Replica: other})
	f.event(moved, "started")
	if s := f.state(a); s != StateLeft {
		t.Fatalf("after a push of another lineage from a new address, a is %q, want left", s)
	}
	f.sys.Root.Send(f.sup, &Contact{Addr: "127.0.0.1:5", Replica: later})
	f.event("127.0.0.1:5", "started")
	if s := f.state(a); s != "" {
		t.Fatalf("after its data file pushed from a new address, a is %q, want gone", s)
	}
	stable(0) // the new members hold nothing yet; a no longer counts
}
