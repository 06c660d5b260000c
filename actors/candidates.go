package actors

import (
	"context"
	"math/rand/v2"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/scheduler"

	"countd/wire"
)

// An address learned from gossip is a candidate, not a member, until it
// answers a health check as a node: a /health reply that names a node and
// a replica id. Until then it has no PeerActor, gets no push, is not listed
// in the membership table and is not gossiped on. The Supervisor probes its
// candidates itself, at most CandidateProbes at a time, each with a backoff
// that doubles from DownProbeMin to DownProbeMax, and drops a candidate that
// has not answered within CandidateTimeout of being learned (gossip may
// name it again later). So a push that lists a thousand addresses costs a
// few health checks in flight, not a thousand PeerActors pushing state to
// strangers (issue 11).

type (
	// candidateTick wakes the Supervisor when the next candidate probe is due.
	candidateTick struct{}
	// candidateProbed reports the end of a candidate's health check.
	candidateProbed struct {
		addr  string
		reply wire.HealthReply
		err   error
	}
)

type candidate struct {
	addr    string
	from    string    // who named it first
	learned time.Time // when it was first named
	next    time.Time // when its next probe is due
	backoff time.Duration
	probing bool
}

// candidates is the Supervisor's table of candidates and their probes.
type candidates struct {
	byAddr   map[string]*candidate
	inFlight int  // probes running, candidates dropped meanwhile included
	ticking  bool // a candidateTick is scheduled
	cancel   scheduler.CancelFunc
}

// learn adds a candidate, due for a probe at once.
func (c *candidates) learn(addr, from string, backoff time.Duration) {
	now := time.Now()
	c.byAddr[addr] = &candidate{addr: addr, from: from, learned: now, next: now, backoff: backoff}
}

// drop forgets a candidate; a probe of it still in flight is ignored when
// it reports.
func (c *candidates) drop(addr string) { delete(c.byAddr, addr) }

func (c *candidates) stop() {
	if c.cancel != nil {
		c.cancel()
		c.cancel = nil
	}
}

// probeCandidates drops the candidates that ran out of time, starts the
// probes that are due (up to CandidateProbes in flight), and schedules a
// tick for the next one due.
func (s *Supervisor) probeCandidates(ctx actor.Context) {
	if s.stopping {
		return
	}
	c := &s.cands
	now := time.Now()
	var next time.Time
	for addr, cd := range c.byAddr {
		if cd.probing {
			continue
		}
		if now.Sub(cd.learned) >= s.cfg.CandidateTimeout {
			s.log.Debug("peer candidate dropped: never answered", "peer", addr, "from", cd.from)
			c.drop(addr)
			continue
		}
		if !cd.next.After(now) {
			// Due: probed now, or when a probe in flight ends.
			if c.inFlight < s.cfg.CandidateProbes {
				s.startCandidateProbe(ctx, cd)
			}
			continue
		}
		if next.IsZero() || cd.next.Before(next) {
			next = cd.next
		}
	}
	if next.IsZero() || c.ticking {
		return
	}
	// The tick is for candidates whose backoff is still running; a due one
	// waiting for a free slot is probed when a probe in flight ends.
	c.ticking = true
	c.cancel = s.timer.SendOnce(max(next.Sub(now), time.Millisecond), s.pid, &candidateTick{})
}

func (s *Supervisor) startCandidateProbe(ctx actor.Context, cd *candidate) {
	cd.probing = true
	s.cands.inFlight++
	addr, tr, timeout := cd.addr, s.cfg.Peer.Transport, s.cfg.Peer.Timeout
	self, root := ctx.Self(), ctx.ActorSystem().Root
	go func() {
		c, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		reply, err := health(c, tr, addr)
		root.Send(self, &candidateProbed{addr: addr, reply: reply, err: err})
	}()
}

// candidateProbed admits a candidate that answered as a node, or backs off
// its next probe.
func (s *Supervisor) candidateProbed(ctx actor.Context, m *candidateProbed) {
	s.cands.inFlight--
	cd, ok := s.cands.byAddr[m.addr]
	switch {
	case s.stopping:
		return
	case !ok || !cd.probing:
		// Dropped, registered or joined meanwhile.
	case m.err == nil && m.reply.Node == s.cfg.Self:
		// Another name of this node: never a peer, until the process ends.
		s.cands.drop(m.addr)
		s.removed[m.addr] = true
		s.log.Warn("peer candidate is this node; dropping it", "peer", m.addr)
	case m.err == nil && m.reply.Node != "" && m.reply.Replica != "":
		s.cands.drop(m.addr)
		if s.full(m.addr) {
			if s.cfg.Observer != nil {
				s.cfg.Observer.GossipIgnored(1)
			}
			break
		}
		s.add(ctx, m.addr, StateAlive).lastSeen = time.Now()
		s.log.Info("peer joined: answered as a node", "peer", m.addr, "node", m.reply.Node, "from", cd.from)
		s.announce(ctx)
	default:
		cd.probing = false
		d := cd.backoff/2 + rand.N(cd.backoff/2+1)
		cd.next = time.Now().Add(d)
		cd.backoff = min(2*cd.backoff, s.cfg.DownProbeMax)
	}
	s.probeCandidates(ctx)
}
