package actors

import (
	"math"
	"testing"
)

// TestSupervisorTellsTheLeastSyncedClock: the CounterActor is told the
// least, over the members, of the clock as of which this process holds all
// the member held (Heard); a push cut for another process (an earlier one
// of this node) does not count, a new member holds the minimum at zero until
// it is heard, and a removed one no longer holds it back.
func TestSupervisorTellsTheLeastSyncedClock(t *testing.T) {
	sys := newSystem(t)
	counter := newProbe(t, sys, nil)
	const self = "00000000000a0001"
	f := newSupervisorFixtureOn(t, sys, func(c *SupervisorConfig) {
		c.Peer.Counter = counter.pid
		c.Replica = self
	})
	synced := func(want uint64) {
		t.Helper()
		fishFor(t, counter, wait, func(m *Synced) bool { return m.At == want })
	}
	synced(math.MaxUint64) // no members: nothing to wait for
	const a, b = "127.0.0.1:2", "127.0.0.1:3"
	f.ask(&RegisterPeer{Addr: a})
	f.event(a, "started")
	synced(0)
	f.ask(&RegisterPeer{Addr: b})
	f.event(b, "started")
	f.sys.Root.Send(f.sup, &Heard{Addr: a, To: self, At: 700})
	f.sys.Root.Send(f.sup, &Heard{Addr: b, To: "00000000000b0001", At: 900}) // cut for another process
	f.sys.Root.Send(f.sup, &Heard{Addr: b, To: self, At: 500})
	synced(500)
	f.sys.Root.Send(f.sup, &Heard{Addr: b, To: self, At: 400}) // older: no step back
	f.sys.Root.Send(f.sup, &Heard{Addr: b, To: self, At: 800})
	synced(700)
	f.ask(&RemovePeer{Addr: a})
	synced(800)
}
