package actors

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"countd/internal/poll"
	"countd/wire"
)

// New members, a raised incarnation or a new suspicion is worth a push of
// its own; a suspicion that ended only rides on the next push.
func TestPeerPushesGossipNews(t *testing.T) {
	sys := newSystem(t)
	tr := newFakeTransport()
	counter, _ := spawnCounter(t, sys, nil)
	peer, _ := spawnPeer(t, sys, testPeerConfig(tr, counter))
	tr.awaitPush(t) // the first full push

	sus := []wire.Suspect{{Addr: "127.0.0.3:3", Incarnation: 2}}
	for _, step := range []struct {
		name string
		m    *Members
		push bool
	}{
		{"members", &Members{Addrs: []string{"127.0.0.3:3"}}, true},
		{"same again", &Members{Addrs: []string{"127.0.0.3:3"}}, false},
		{"a suspicion", &Members{Addrs: []string{"127.0.0.3:3"}, Suspects: sus}, true},
		{"it ended", &Members{Addrs: []string{"127.0.0.3:3"}}, false},
		{"a refutation", &Members{Addrs: []string{"127.0.0.3:3"}, Incarnation: 1}, true},
	} {
		sys.Root.Send(peer, step.m)
		// A Flush answers once the push a Members set off is done; with
		// nothing owed it answers at once and pushes nothing.
		if _, err := sys.Root.RequestFuture(peer, &Flush{}, wait).Result(); err != nil {
			t.Fatal(err)
		}
		var got *wire.ReplicateRequest
		select {
		case c := <-tr.pushes:
			got = c.req
		default:
		}
		if (got != nil) != step.push {
			t.Fatalf("%s: pushed %v, want %v", step.name, got != nil, step.push)
		}
		if got != nil && (got.Incarnation != step.m.Incarnation || !slices.Equal(got.Suspects, step.m.Suspects)) {
			t.Fatalf("%s: push carries incarnation %d, suspects %v", step.name, got.Incarnation, got.Suspects)
		}
	}
}

// A PeerActor checks its peer only when told to (the Supervisor's turn),
// once per Probe.
func TestPeerProbesOncePerProbe(t *testing.T) {
	sys := newSystem(t)
	tr := newFakeTransport()
	counter, _ := spawnCounter(t, sys, nil)
	cfg := testPeerConfig(tr, counter)
	cfg.HeartbeatInterval = time.Millisecond // no timer of its own may use it
	peer, parent := spawnPeer(t, sys, cfg)

	for i := range 3 {
		sys.Root.Send(peer, &Probe{})
		s := fishFor(t, parent, wait, func(*PeerStatus) bool { return true })
		if s.State != StateAlive {
			t.Fatalf("probe %d: report %+v, want alive", i+1, s)
		}
		if n := len(tr.healthCalls); n != i+1 {
			t.Fatalf("%d health checks after %d probes", n, i+1)
		}
	}
}

// A failed direct check asks the members named in the Probe to check the
// peer; one that reaches it keeps the peer alive. Only when every route
// fails is the peer reported suspect.
func TestPeerProbesIndirectlyBeforeSuspecting(t *testing.T) {
	sys := newSystem(t)
	tr := newFakeTransport()
	tr.healthErr = errors.New("timeout")
	tr.viaErr = map[string]error{"127.0.0.5:5": errors.New("no route")}
	counter, _ := spawnCounter(t, sys, nil)
	peer, parent := spawnPeer(t, sys, testPeerConfig(tr, counter))

	sys.Root.Send(peer, &Probe{Via: []string{"127.0.0.5:5", "127.0.0.6:6"}})
	s := fishFor(t, parent, wait, func(*PeerStatus) bool { return true })
	if s.State != StateAlive || s.LastSeen.IsZero() {
		t.Fatalf("report %+v, want alive: a member reached the peer", s)
	}
	var calls []string
	for range 2 {
		select {
		case c := <-tr.probeCalls:
			calls = append(calls, c)
		case <-time.After(wait):
			t.Fatalf("indirect probes %v, want two", calls)
		}
	}
	slices.Sort(calls)
	if want := []string{"127.0.0.5:5>127.0.0.2:2", "127.0.0.6:6>127.0.0.2:2"}; !slices.Equal(calls, want) {
		t.Fatalf("indirect probes %v, want %v", calls, want)
	}

	tr.set(func(f *fakeTransport) { f.viaErr["127.0.0.6:6"] = errors.New("no route") })
	sys.Root.Send(peer, &Probe{Via: []string{"127.0.0.5:5", "127.0.0.6:6"}})
	if s := fishFor(t, parent, wait, func(*PeerStatus) bool { return true }); s.State != StateSuspect {
		t.Fatalf("report %+v, want suspect: no route reached the peer", s)
	}
}

// A peer that refuses this node's key is not probed through others: the
// refusal is an answer.
func TestPeerRefusalIsNotProbedIndirectly(t *testing.T) {
	sys := newSystem(t)
	tr := newFakeTransport()
	tr.healthErr = fmt.Errorf("401: %w", ErrUnauthorized)
	counter, _ := spawnCounter(t, sys, nil)
	peer, parent := spawnPeer(t, sys, testPeerConfig(tr, counter))
	sys.Root.Send(peer, &Probe{Via: []string{"127.0.0.5:5"}})
	fishFor(t, parent, wait, func(*PeerUnauthorized) bool { return true })
	if n := len(tr.probeCalls); n != 0 {
		t.Fatalf("%d indirect probes of a peer that refused the key", n)
	}
}

// joinAlive makes addrs members that pushed to the Supervisor (alive),
// and waits for their stand-ins to start.
func (f *supervisorFixture) joinAlive(addrs ...string) map[string]lifecycle {
	f.t.Helper()
	started := map[string]lifecycle{}
	for _, a := range addrs {
		f.sys.Root.Send(f.sup, &Contact{Addr: a, Replica: "00000000000000aa"})
		started[a] = f.event(a, "started")
	}
	return started
}

// lastGossip returns the last Members the stand-in of addr got.
func (f *supervisorFixture) lastGossip(addr string) *Members {
	v, ok := f.gossip.Load(addr)
	if !ok {
		return nil
	}
	return v.(*Members)
}

// The Supervisor probes one member per period, each once per round in a
// shuffled order, and names up to IndirectProbes other alive members to
// probe through.
func TestSupervisorProbesOneMemberPerPeriodInRounds(t *testing.T) {
	f := newSupervisorFixtureConfig(t, func(c *SupervisorConfig) {
		c.Peer.HeartbeatInterval = 2 * time.Millisecond
	})
	addrs := []string{"127.0.0.2:2", "127.0.0.3:3", "127.0.0.4:4", "127.0.0.5:5", "127.0.0.6:6"}
	f.joinAlive(addrs...)
	// Drain the probes of rounds that began before every member joined.
	for len(f.probes) > 0 {
		<-f.probes
	}
	// Find a round's start: the probes after a full round are rounds.
	var got []probeAsked
	for len(got) < 4*len(addrs) {
		select {
		case p := <-f.probes:
			got = append(got, p)
		case <-time.After(wait):
			t.Fatalf("%d probes, want %d", len(got), 4*len(addrs))
		}
	}
	for _, p := range got {
		if len(p.via) != IndirectProbes || slices.Contains(p.via, p.addr) {
			t.Fatalf("probe of %s through %v: want %d other members", p.addr, p.via, IndirectProbes)
		}
	}
	// Some window of len(addrs) consecutive probes in the middle is a whole
	// round: each member exactly once, and so is every window aligned to it.
	n := len(addrs)
	for off := range n {
		ok := true
		for r := off; r+n <= len(got); r += n {
			seen := map[string]bool{}
			for _, p := range got[r : r+n] {
				seen[p.addr] = true
			}
			ok = ok && len(seen) == n
		}
		if ok {
			return
		}
	}
	t.Fatalf("probes %v are not rounds of every member once", got)
}

// A failed probe makes the member suspect and gossips it; not refuted
// within the suspicion timeout, the member is down.
func TestSupervisorSuspicionTimesOutToDown(t *testing.T) {
	f := newSupervisorFixtureConfig(t, func(c *SupervisorConfig) {
		c.Peer.HeartbeatInterval = time.Hour // no probes; the test reports
		c.Peer.FailuresBeforeDown = 1
		c.DownProbeMin, c.DownProbeMax = time.Hour, time.Hour
	})
	started := f.joinAlive("127.0.0.2:2", "127.0.0.3:3")
	sup := f.sys.Root
	sup.Send(f.sup, &PeerStatus{From: started["127.0.0.2:2"].pid, Addr: "127.0.0.2:2", State: StateSuspect})
	waitFor(t, "suspect, and gossiped to the other member", func() bool {
		g := f.lastGossip("127.0.0.3:3")
		return f.state("127.0.0.2:2") == StateSuspect && g != nil &&
			slices.Equal(g.Suspects, []wire.Suspect{{Addr: "127.0.0.2:2"}})
	})
	// The suspicion timeout is an hour here; a short one is tested below
	// by its effect, not its length.
	f2 := newSupervisorFixtureConfig(t, func(c *SupervisorConfig) {
		c.Peer.HeartbeatInterval = time.Millisecond
		c.Peer.FailuresBeforeDown = 1
		c.DownProbeMin, c.DownProbeMax = time.Hour, time.Hour
	})
	started = f2.joinAlive("127.0.0.2:2")
	f2.sys.Root.Send(f2.sup, &PeerStatus{From: started["127.0.0.2:2"].pid, Addr: "127.0.0.2:2", State: StateSuspect})
	f2.event("127.0.0.2:2", "stopped")
	if s := f2.state("127.0.0.2:2"); s != StateDown {
		t.Fatalf("state %q after the suspicion timed out, want down", s)
	}
}

// A suspect that pushes to this node refutes the suspicion; an answered
// probe ends it too. Either way the gossip no longer names it.
func TestSupervisorSuspicionEndsWhenTheSuspectAnswers(t *testing.T) {
	f := newSupervisorFixtureConfig(t, func(c *SupervisorConfig) {
		c.Peer.HeartbeatInterval = time.Hour
		c.Peer.FailuresBeforeDown = 1
	})
	started := f.joinAlive("127.0.0.2:2", "127.0.0.3:3")
	pid := started["127.0.0.2:2"].pid
	suspected := func() bool {
		g := f.lastGossip("127.0.0.3:3")
		return g != nil && len(g.Suspects) == 1
	}
	cleared := func() bool {
		g := f.lastGossip("127.0.0.3:3")
		return f.state("127.0.0.2:2") == StateAlive && g != nil && len(g.Suspects) == 0
	}

	f.sys.Root.Send(f.sup, &PeerStatus{From: pid, Addr: "127.0.0.2:2", State: StateSuspect})
	waitFor(t, "suspected", suspected)
	f.sys.Root.Send(f.sup, &Contact{Addr: "127.0.0.2:2", Replica: "00000000000000aa", Incarnation: 1})
	waitFor(t, "refuted by its push", cleared)

	f.sys.Root.Send(f.sup, &PeerStatus{From: pid, Addr: "127.0.0.2:2", State: StateSuspect})
	waitFor(t, "suspected again", suspected)
	if g := f.lastGossip("127.0.0.3:3"); g.Suspects[0].Incarnation != 1 {
		t.Fatalf("suspicion at incarnation %d, want the one the suspect last pushed, 1", g.Suspects[0].Incarnation)
	}
	f.sys.Root.Send(f.sup, &PeerStatus{From: pid, Addr: "127.0.0.2:2", State: StateAlive, LastSeen: time.Now()})
	waitFor(t, "ended by an answered probe", cleared)
}

// Gossip of a suspicion starts one here, unless this node heard of a later
// incarnation of the suspect; gossip that suspects this very node is
// refuted with a higher incarnation, which every push then carries.
func TestSupervisorTakesGossipedSuspicionAndRefutesItsOwn(t *testing.T) {
	f := newSupervisorFixtureConfig(t, func(c *SupervisorConfig) {
		c.Peer.HeartbeatInterval = time.Hour
		c.Peer.FailuresBeforeDown = 1
	})
	f.joinAlive("127.0.0.2:2", "127.0.0.3:3", "127.0.0.4:4")
	// 4 refuted a suspicion once: it pushed with incarnation 5.
	f.sys.Root.Send(f.sup, &Contact{Addr: "127.0.0.4:4", Replica: "00000000000000aa", Incarnation: 5})
	// 3 suspects 2 (at 0: current) and 4 (at 3: stale).
	f.sys.Root.Send(f.sup, &Contact{Addr: "127.0.0.3:3", Replica: "00000000000000aa",
		Suspects: []wire.Suspect{{Addr: "127.0.0.2:2"}, {Addr: "127.0.0.4:4", Incarnation: 3}}})
	waitFor(t, "2 suspect", func() bool { return f.state("127.0.0.2:2") == StateSuspect })
	if s := f.state("127.0.0.4:4"); s != StateAlive {
		t.Fatalf("4 is %s after a stale suspicion, want alive", s)
	}
	// A suspicion learnt from gossip is not passed on: 3 pushed it to
	// every member itself, and passing it on would make every node push
	// to every other.
	if g := f.lastGossip("127.0.0.4:4"); g != nil && len(g.Suspects) > 0 {
		t.Fatalf("gossip %+v passes on a suspicion learnt from gossip", g)
	}

	// 3 suspects this node, at its incarnation (0): it refutes with 1.
	f.sys.Root.Send(f.sup, &Contact{Addr: "127.0.0.3:3", Replica: "00000000000000aa",
		Suspects: []wire.Suspect{{Addr: "127.0.0.1:1"}}})
	waitFor(t, "incarnation 1 in every member's gossip", func() bool {
		for _, a := range []string{"127.0.0.2:2", "127.0.0.3:3", "127.0.0.4:4"} {
			if g := f.lastGossip(a); g == nil || g.Incarnation != 1 {
				return false
			}
		}
		return true
	})
	// A stale suspicion of this node (incarnation 0 < 1) is not refuted again.
	f.sys.Root.Send(f.sup, &Contact{Addr: "127.0.0.4:4", Replica: "00000000000000aa", Incarnation: 5,
		Suspects: []wire.Suspect{{Addr: "127.0.0.1:1"}}})
	f.ask(&GetPeers{}) // the contact is handled
	if g := f.lastGossip("127.0.0.4:4"); g.Incarnation != 1 {
		t.Fatalf("incarnation %d after a stale suspicion, want 1", g.Incarnation)
	}
}

// TestPeerProbesAPeerInSyncWithAPush: once the peer holds all this node
// has, a probe is a push of nothing that names the peer's process and the
// time (the sync clock, which idle peers advance no other way), not a
// health check, and its round trip is timed as one; if that push fails,
// the peer is probed through others.
func TestPeerProbesAPeerInSyncWithAPush(t *testing.T) {
	sys := newSystem(t)
	tr := newFakeTransport()
	counter, _ := spawnCounter(t, sys, nil)
	peer, parent := spawnPeer(t, sys, testPeerConfig(tr, counter))
	if first := tr.awaitPush(t); first.req.To != "" {
		t.Fatalf("first push names %q: the peer's process is not known yet", first.req.To)
	}
	// The full push's answer is in once a flush is answered with nothing owed.
	if _, err := sys.Root.RequestFuture(peer, &Flush{}, wait).Result(); err != nil {
		t.Fatal(err)
	}

	before := uint64(time.Now().UnixMilli())
	sys.Root.Send(peer, &Probe{Via: []string{"127.0.0.5:5"}})
	p := tr.awaitPush(t)
	if len(p.req.Entries) != 0 || p.req.To != tr.replica || p.req.At < before {
		t.Fatalf("probe push: %d entries, to %q at %d; want none, to %q at %d or later",
			len(p.req.Entries), p.req.To, p.req.At, tr.replica, before)
	}
	if s := fishFor(t, parent, wait, func(*PeerStatus) bool { return true }); s.State != StateAlive {
		t.Fatalf("report %+v, want alive", s)
	}
	if n := len(tr.healthCalls); n != 0 {
		t.Fatalf("%d health checks, want none: the push was the probe", n)
	}
	if n := tr.rtts.Load(); n != 1 {
		t.Fatalf("%d round trips timed, want 1: the probe push is the check (countd_heartbeat_rtt_seconds)", n)
	}

	tr.set(func(f *fakeTransport) { f.pushErr = errors.New("connection reset") })
	sys.Root.Send(peer, &Probe{Via: []string{"127.0.0.5:5"}})
	if s := fishFor(t, parent, wait, func(*PeerStatus) bool { return true }); s.State != StateAlive {
		t.Fatalf("report %+v, want alive: a member reached the peer", s)
	}
	select {
	case c := <-tr.probeCalls:
		if c != "127.0.0.5:5>127.0.0.2:2" {
			t.Fatalf("indirect probe %q", c)
		}
	case <-time.After(wait):
		t.Fatal("no indirect probe after the probe push failed")
	}
	if n := tr.rtts.Load(); n != 1 {
		t.Fatalf("%d round trips timed, want still 1: a failed push and an indirect probe time nothing", n)
	}
}

// TestSupervisorProtocolPeriodsOnlyWithPeers: a Supervisor with no member
// to probe arms no protocol period (a lone node wakes for nothing); the
// periods start with the first PeerActor and stop when the last goes.
func TestSupervisorProtocolPeriodsOnlyWithPeers(t *testing.T) {
	f := newSupervisorFixtureConfig(t, func(c *SupervisorConfig) {
		c.Peer.HeartbeatInterval = 2 * time.Millisecond
	})
	armed := func(want bool) {
		t.Helper()
		_, err := poll.Until(t.Context(), wait, time.Millisecond, fmt.Sprintf("a protocol period armed: %v", want), func() (bool, string) {
			r, err := f.sys.Root.RequestFuture(f.sup, &periodQuery{}, wait).Result()
			if err != nil {
				t.Fatal(err)
			}
			return r == want, fmt.Sprintf("armed: %v", r)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	armed(false)
	f.joinAlive("127.0.0.2:2")
	armed(true)
	select {
	case p := <-f.probes:
		if p.addr != "127.0.0.2:2" {
			t.Fatalf("probe of %s", p.addr)
		}
	case <-time.After(wait):
		t.Fatal("no probe once a member joined")
	}
	f.ask(&RemovePeer{Addr: "127.0.0.2:2"})
	armed(false)
}
