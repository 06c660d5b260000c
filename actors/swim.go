package actors

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/scheduler"

	"countd/wire"
)

// Failure detection, SWIM-style (memberlist's model; docs/design.md,
// section 7): the Supervisor probes one member per protocol period
// (PeerConfig.HeartbeatInterval), taking them in a shuffled round robin,
// by telling that member's PeerActor to Probe. A probe that fails directly
// and through IndirectProbes other members makes the member suspect; a
// suspect that neither answers a probe nor pushes to this node within the
// suspicion timeout is down. Suspicions ride on every push (wire.Suspect,
// beside the members), so every node starts its own timer; the suspect
// refutes one by raising its incarnation, which its next pushes carry.

// IndirectProbes is how many members a failed direct probe asks to probe
// the peer for this node (memberlist's IndirectChecks).
const IndirectProbes = 3

type (
	// periodTick starts a protocol period.
	periodTick struct{}
	// suspicionTimeout is due when a member has been suspect for the
	// suspicion timeout; seq tells it from a suspicion since ended.
	suspicionTimeout struct {
		addr string
		seq  uint64
	}
)

// rounds is the Supervisor's probe order: a shuffled list of the members
// with a PeerActor, taken one per period, shuffled anew each round.
type rounds struct {
	order []string
	next  int
	tick  scheduler.CancelFunc
}

// startPeriods arms the first protocol period at a random point of one,
// so that nodes started together do not probe in lockstep, unless one is
// armed or the Supervisor stops. The Supervisor calls it when it starts
// and whenever it spawns a PeerActor: the periods stop while no member
// has one (a lone node wakes for nothing). A zero HeartbeatInterval
// probes nothing (tests that send reports by hand).
func (s *Supervisor) startPeriods() {
	if d := s.cfg.Peer.HeartbeatInterval; d > 0 && s.rounds.tick == nil && !s.stopping {
		s.rounds.tick = s.timer.SendOnce(rand.N(d)+1, s.pid, &periodTick{})
	}
}

// period probes the member whose turn it is and arms the next period,
// jittered by ±25%; with no member to probe it arms none.
func (s *Supervisor) period(ctx actor.Context) {
	mb := s.nextTurn()
	if mb == nil {
		s.rounds.tick = nil
		return
	}
	s.rounds.tick = s.timer.SendOnce(jitter(s.cfg.Peer.HeartbeatInterval), s.pid, &periodTick{})
	ctx.Send(mb.pid, &Probe{Via: s.helpers(mb.addr)})
}

// periodQuery asks the Supervisor whether a protocol period is armed, for
// tests. Reply: bool.
type periodQuery struct{}

// nextTurn returns the next member in the round that still has a
// PeerActor, starting a new round, in a new random order of the members
// as they are now, when one ends. Nil: no member has a PeerActor.
func (s *Supervisor) nextTurn() *member {
	for range 2 {
		for s.rounds.next < len(s.rounds.order) {
			addr := s.rounds.order[s.rounds.next]
			s.rounds.next++
			if mb := s.members[addr]; mb != nil && mb.pid != nil {
				return mb
			}
		}
		s.rounds.order, s.rounds.next = s.rounds.order[:0], 0
		for addr, mb := range s.members {
			if mb.pid != nil {
				s.rounds.order = append(s.rounds.order, addr)
			}
		}
		rand.Shuffle(len(s.rounds.order), func(i, j int) {
			s.rounds.order[i], s.rounds.order[j] = s.rounds.order[j], s.rounds.order[i]
		})
	}
	return nil
}

// helpers picks up to IndirectProbes members, other than target, that
// are alive here, to probe target if this node cannot reach it.
func (s *Supervisor) helpers(target string) []string {
	var alive []string
	for addr, mb := range s.members {
		if addr != target && mb.pid != nil && mb.state == StateAlive {
			alive = append(alive, addr)
		}
	}
	rand.Shuffle(len(alive), func(i, j int) { alive[i], alive[j] = alive[j], alive[i] })
	return alive[:min(len(alive), IndirectProbes)]
}

// suspicionTimeout is how long a member may stay suspect before it is
// down: FailuresBeforeDown protocol periods, scaled by log10 of the
// cluster size (memberlist's SuspicionMult), since gossip takes longer
// to reach the suspect in a larger cluster. Zero: suspicion never times
// out (no protocol period).
func (s *Supervisor) suspicionTimeout() time.Duration {
	d := s.cfg.Peer.HeartbeatInterval
	if d <= 0 || s.cfg.Peer.FailuresBeforeDown <= 0 {
		return 0
	}
	scale := max(1, math.Log10(float64(len(s.members)+1)))
	return time.Duration(float64(s.cfg.Peer.FailuresBeforeDown) * scale * float64(d))
}

// suspect starts the suspicion of a member with a PeerActor, unless one
// runs: by is the member whose gossip named it, "" when this node's own
// probe failed. It reports whether this node's gossip now names it: only
// a suspicion of its own, of a member it has seen alive, is gossiped (a
// suspicion learnt from gossip is not passed on, or one false suspicion
// would make every node push to every other).
func (s *Supervisor) suspect(mb *member, by string) bool {
	if mb.pid == nil || mb.suspicion != nil {
		return false
	}
	mb.gossiped = by == "" && mb.seenAlive
	if mb.state != StateSuspect {
		s.log.Debug("peer suspect", "peer", mb.addr, "by", by)
		mb.state = StateSuspect
	}
	mb.suspectSeq++
	mb.suspicion = func() {}
	if d := s.suspicionTimeout(); d > 0 {
		mb.suspicion = s.timer.SendOnce(d, s.pid, &suspicionTimeout{addr: mb.addr, seq: mb.suspectSeq})
	}
	return mb.gossiped
}

// unsuspect makes a member alive again: it answered a probe or pushed to
// this node. It reports whether this node's gossip named it.
func (s *Supervisor) unsuspect(mb *member) bool {
	if mb.state != StateAlive {
		s.log.Info("peer alive", "peer", mb.addr)
		mb.state = StateAlive
	}
	mb.seenAlive = true
	return s.cancelSuspicion(mb)
}

// cancelSuspicion ends a member's suspicion, if one runs, and reports
// whether this node's gossip named it.
func (s *Supervisor) cancelSuspicion(mb *member) bool {
	if mb.suspicion == nil {
		return false
	}
	mb.suspicion()
	mb.suspicion = nil
	gossiped := mb.gossiped
	mb.gossiped = false
	return gossiped
}

// suspicionTimedOut takes a member that stayed suspect for the suspicion
// timeout off the members, like one that failed its health checks.
func (s *Supervisor) suspicionTimedOut(ctx actor.Context, m *suspicionTimeout) {
	mb, ok := s.members[m.addr]
	if !ok || mb.suspicion == nil || mb.suspectSeq != m.seq || mb.pid == nil {
		return
	}
	mb.suspicion = nil
	ctx.Stop(mb.pid)
	s.away(ctx, mb, StateDown, fmt.Errorf("suspect for %v and not refuted", s.suspicionTimeout()))
}

// gossip takes a push's suspicions: one of this node is refuted by
// raising its incarnation above it; one of a member alive here, at an
// incarnation no older than this node knows, starts a suspicion here.
// It reports whether this node's gossip changed (a refutation).
func (s *Supervisor) gossip(from string, suspects []wire.Suspect) (refuted bool) {
	for _, sp := range suspects {
		if sp.Addr == s.cfg.Self {
			if sp.Incarnation >= s.incarnation {
				s.incarnation = sp.Incarnation + 1
				s.log.Info("refuting a suspicion of this node", "by", from, "incarnation", s.incarnation)
				refuted = true
			}
			continue
		}
		if mb := s.members[sp.Addr]; mb != nil && sp.Addr != from && mb.state == StateAlive && sp.Incarnation >= mb.incarnation {
			s.suspect(mb, from)
		}
	}
	return refuted
}

// suspects lists the members this node suspects itself (see suspect), at
// the incarnations it knows, for gossip.
func (s *Supervisor) suspects() []wire.Suspect {
	var out []wire.Suspect
	for _, mb := range s.members {
		if mb.suspicion != nil && mb.gossiped && mb.pid != nil {
			out = append(out, wire.Suspect{Addr: mb.addr, Incarnation: mb.incarnation})
		}
	}
	slices.SortFunc(out, func(a, b wire.Suspect) int { return strings.Compare(a.Addr, b.Addr) })
	return out
}
