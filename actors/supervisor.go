package actors

import (
	"context"
	"countd/crdt"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/scheduler"

	"countd/wire"
)

// ErrSelf means a request named this node as its own peer.
var ErrSelf = errors.New("actors: that address is this node")

// ErrTooManyPeers means a registration would take the membership table past
// SupervisorConfig.MaxPeers; nothing was changed.
var ErrTooManyPeers = errors.New("actors: peer limit reached")

// SupervisorObserver is told about the Supervisor's work; *metrics.Metrics
// implements it.
type SupervisorObserver interface {
	// GossipIgnored counts n addresses learned from gossip (or pushes from
	// unknown senders) that were ignored because the table was full.
	GossipIgnored(n int)
}

// SupervisorConfig configures the Supervisor.
type SupervisorConfig struct {
	// Self is this node's advertised address; it is never its own peer.
	Self string
	// Replica is this process's replica id: a push's sync clock (Heard)
	// counts only if it was cut for this process.
	Replica string
	// Peer configures every PeerActor.
	Peer PeerConfig
	// PeerProps makes a PeerActor's props; nil means NewPeerProps(addr, Peer).
	// Tests inject probes here.
	PeerProps func(addr string) *actor.Props
	// DownProbeMin and DownProbeMax bound the backed-off pace at which a down
	// peer is probed.
	DownProbeMin, DownProbeMax time.Duration
	// Logger receives membership changes.
	Logger *slog.Logger
	// Removed are the peers removed before this start (kept in the store).
	Removed []string
	// Initial are the peers to take as members from the start: those the
	// node knew when it last ran (Members) and those its flags name. A
	// removed one is left out (a flag's RegisterPeer lifts a tombstone).
	// Being members before the first Stable is told, they keep the
	// CounterActor from forgetting a tombstone they may lack.
	Initial []string
	// Members is where the member addresses are kept across restarts; nil
	// keeps them in memory only.
	Members MemberStore
	// Tombstones is where removals are kept across restarts; nil keeps
	// them in memory only. The Supervisor is its only writer.
	Tombstones Tombstones
	// MaxPeers caps the members (of every state); candidates count against
	// it too when gossip adds more. 0 means no cap.
	MaxPeers int
	// CandidateProbes caps the health checks of candidates in flight at
	// once; 0 means 4.
	CandidateProbes int
	// CandidateTimeout is how long a candidate may go without answering a
	// health check as a node before it is dropped; 0 means one minute.
	CandidateTimeout time.Duration
	// ReapAfter is how long a peer may stay down before it leaves the
	// membership table (with no tombstone); 0 means never.
	ReapAfter time.Duration
	// Observer is told about ignored gossip; nil means nobody.
	Observer SupervisorObserver
}

// MemberStore keeps the members' addresses across restarts.
type MemberStore interface {
	SetMembers(addrs []string) error
}

// membersWritten reports the end of a write of the member addresses.
type membersWritten struct{ err error }

// Tombstones keeps the addresses of removed peers across restarts.
// store.DB implements it. SetTombstone blocks until the change is on disk;
// the Supervisor calls it outside its mailbox, one call at a time.
type Tombstones interface {
	SetTombstone(addr string, on bool) error
}

// RegisterPeer asks the Supervisor to add a peer (from a flag or POST /peers).
// It lifts a tombstone left by RemovePeer. Reply: *RegisterResult, once the
// lifted tombstone is durable (see Supervisor).
type RegisterPeer struct {
	Addr string
	// FromDiscovery marks an address a DNS name resolved to (package
	// discovery): it is registered only if nothing removed it, so it lifts
	// no tombstone (a removal, or an address that answered as this node,
	// outlives every re-resolution), and it costs no write.
	FromDiscovery bool
}

// RegisterResult answers RegisterPeer. Err wraps ErrStore if the tombstone
// could not be lifted on disk; membership is then unchanged.
type RegisterResult struct {
	Created bool // false: the peer was known already
	Err     error
}

// RemovePeer stops replicating to a peer for good and tombstones its address,
// so gossip cannot bring it back. Reply: *RemoveResult, once the tombstone is
// durable (see Supervisor).
type RemovePeer struct{ Addr string }

// RemoveResult answers RemovePeer. Err wraps ErrStore if the tombstone
// could not be written; membership is then unchanged.
type RemoveResult struct{ Err error }

// Contact tells the Supervisor that a node pushed state to this one, with
// the members it sees alive. The sender is (re)added at once unless removed
// (or left, as the same process: see Leave).
type Contact struct {
	Addr    string
	Replica string // the sender's replica id
	Members []string
	// Incarnation and Suspects are the sender's failure-detection gossip
	// (swim.go): its incarnation, and the members it suspects.
	Incarnation uint64
	Suspects    []wire.Suspect
}

// Leave tells the Supervisor that the node at Addr, as the process with
// replica id Replica, is shutting down (POST /leave). A member goes to
// StateLeft at once: its PeerActor is stopped and it is neither probed nor
// gossiped. A push or a health-check answer from another process of it
// (a restart) makes it alive again; one from the process that left does
// not (a push of its last flush may arrive after the leave). An unknown
// address is ignored.
type Leave struct {
	Addr    string
	Replica string
}

// GetPeerPIDs asks for the PIDs of the running PeerActors. Reply: *PeerPIDs.
type GetPeerPIDs struct{}

// PeerPIDs answers GetPeerPIDs.
type PeerPIDs struct{ PIDs []*actor.PID }

// GetPeers asks for the membership table. Reply: *PeerList.
type GetPeers struct{}

// PeerList answers GetPeers, sorted by address.
type PeerList struct{ Peers []PeerInfo }

// PeerInfo is one row of the membership table.
type PeerInfo struct {
	Addr     string
	State    string // StateAlive, StateSuspect, StateDown, StateUnauthorized or StateLeft
	LastSeen time.Time
	// Behind is how many of this node's changes (entry versions) the peer
	// has not acknowledged yet: as of the last report of its PeerActor, or,
	// while the peer is down, counted on from Held (Cluster.Peers counts
	// it against this node's current version).
	Behind uint64
	// Held is this node's version the peer was known to hold when its
	// PeerActor last reported (0: none known).
	Held uint64
}

type (
	probeTick struct{ addr string }
	probeDone struct {
		addr    string
		replica string // the replica id it answered with
		err     error  // nil: the peer answered
	}
	// reapTick is due when a left member has been away for ReapAfter.
	reapTick struct{ addr string }
)

// tombstoneChange is a registration (remove false) or removal (remove true)
// waiting for its tombstone to be written. to is who asked (nil: nobody
// waits for the answer).
type tombstoneChange struct {
	addr   string
	remove bool
	to     *actor.PID
}

// tombstoneWritten reports the end of the write of the oldest pending
// tombstoneChange.
type tombstoneWritten struct{ err error }

type member struct {
	addr      string
	state     string
	lastSeen  time.Time
	behind    uint64     // as its PeerActor last reported
	held      uint64     // this node's version the peer held, as last reported
	heard     uint64     // the peer's clock (unix ms) as of which this process holds all it held (Heard)
	pid       *actor.PID // the PeerActor; nil while down, unauthorized or left
	downSince time.Time  // when it last went down, unauthorized or left
	probing   bool
	backoff   time.Duration
	probe     scheduler.CancelFunc
	// A left member: the replica id of the process that left, when it was
	// last probed (gossip naming it alive sets off a probe, at most one
	// per DownProbeMin), and the timer that reaps it.
	leftReplica string
	probedAt    time.Time
	reap        scheduler.CancelFunc
	// holds is this node's version the peer's process holdsBy is known
	// to hold, from its PeerActor's reports and flushes: what the write
	// levels count (levels.go).
	holds   uint64
	holdsBy string
	// Failure detection (swim.go): the member's incarnation as last heard
	// from it, and its suspicion (nil: none runs) with the sequence number
	// of its timer.
	incarnation uint64
	suspicion   scheduler.CancelFunc
	suspectSeq  uint64
	gossiped    bool // this node's gossip names the suspicion (its own probe failed)
	seenAlive   bool // it answered a probe or pushed here since it was added or revived
}

// Supervisor is the parent of the PeerActors and owns the membership table.
// It spawns a PeerActor per registered peer, tells one PeerActor per
// protocol period to probe its peer (swim.go), stops it when the peer stays
// suspect past the suspicion timeout or fails its health checks, probes the down peer at a backed-off pace, and spawns it
// again when the peer answers or contacts this node. A peer that refuses this
// node's cluster key is handled like a down one, in state StateUnauthorized
// (logged once at warn, and once at info when it ends). A PeerActor that panics
// is restarted by the supervision strategy in the Supervisor's props. An
// address learned from gossip is only a candidate until it answers as a
// node (candidates.go); MaxPeers caps the table, and a peer down for longer
// than ReapAfter leaves it (docs/design.md, section 7).
//
// The Supervisor alone writes tombstones. RegisterPeer and RemovePeer are
// queued in the order they arrive; the oldest one's tombstone is written
// outside the mailbox, and only when the write reports back is the change
// applied to the membership table and answered. One write is in flight at a
// time, so the writes land in the order the changes were decided and, after
// any interleaving, the table and the store agree. A failed write changes
// nothing: the table keeps what the store holds, and the asker gets ErrStore
// and may retry (both requests are idempotent).
type Supervisor struct {
	cfg      SupervisorConfig
	log      *slog.Logger
	timer    *scheduler.TimerScheduler
	pid      *actor.PID
	members  map[string]*member
	removed  map[string]bool
	pending  []tombstoneChange // the first is being written
	stopping bool
	cands    candidates

	stable, synced lastTold // as last told to the CounterActor

	// The member addresses are written one write at a time; a change
	// while one is in flight is written after it.
	membersWriting, membersDirty bool

	waits heldWaits // clients waiting for a write level (levels.go)

	rounds      rounds // whose turn it is to be probed (swim.go)
	incarnation uint64 // this node's, raised to refute a suspicion of it
}

// NewSupervisorProps returns the props of a Supervisor. A PeerActor that
// panics is restarted, up to 10 times a minute; past that it is stopped and
// its peer goes on the down list, to be probed like any failed peer.
func NewSupervisorProps(cfg SupervisorConfig) *actor.Props {
	if cfg.PeerProps == nil {
		peer := cfg.Peer
		cfg.PeerProps = func(addr string) *actor.Props { return NewPeerProps(addr, peer) }
	}
	strategy := actor.NewOneForOneStrategy(10, time.Minute, func(any) actor.Directive {
		return actor.RestartDirective
	})
	if cfg.CandidateProbes <= 0 {
		cfg.CandidateProbes = 4
	}
	if cfg.CandidateTimeout <= 0 {
		cfg.CandidateTimeout = time.Minute
	}
	return actor.PropsFromProducer(func() actor.Actor {
		s := &Supervisor{
			cfg:     cfg,
			log:     cfg.Logger,
			members: make(map[string]*member),
			removed: make(map[string]bool),
			cands:   candidates{byAddr: make(map[string]*candidate)},
		}
		for _, addr := range cfg.Removed {
			s.removed[addr] = true
		}
		return s
	}, actor.WithSupervisor(strategy))
}

// Receive implements actor.Actor.
func (s *Supervisor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		s.timer = scheduler.NewTimerScheduler(ctx.ActorSystem().Root)
		s.pid = ctx.Self()
		for _, addr := range s.cfg.Initial {
			if addr != s.cfg.Self && !s.removed[addr] && s.members[addr] == nil && !s.full(addr) {
				s.add(ctx, addr, StateSuspect)
				s.log.Info("peer registered", "peer", addr)
			}
		}
		if len(s.members) > 0 {
			s.announce(ctx)
		}
	case *membersWritten:
		s.membersWritten(ctx, m.err)
	case *actor.Stopping:
		s.stopping = true
		if s.rounds.tick != nil {
			s.rounds.tick()
		}
		for _, mb := range s.members {
			s.cancelProbe(mb)
			s.cancelReap(mb)
			s.cancelSuspicion(mb)
		}
		s.cands.stop()
	case *RegisterPeer:
		if m.FromDiscovery && s.removedOrPending(m.Addr) {
			if ctx.Sender() != nil {
				ctx.Respond(&RegisterResult{})
			}
		} else {
			s.change(ctx, m.Addr, false)
		}
	case *RemovePeer:
		s.change(ctx, m.Addr, true)
	case *tombstoneWritten:
		s.written(ctx, m.err)
	case *Contact:
		s.contact(ctx, m)
	case *Leave:
		s.leave(ctx, m)
	case *Heard:
		if mb, ok := s.members[m.Addr]; ok && m.To == s.cfg.Replica {
			mb.heard = max(mb.heard, m.At)
		}
	case *reapTick:
		if mb, ok := s.members[m.addr]; ok && mb.state == StateLeft {
			s.reap(ctx, mb)
		}
	case *GetPeers:
		ctx.Respond(s.list())
	case *GetPeerPIDs:
		pids := make([]*actor.PID, 0, len(s.members))
		for _, mb := range s.members {
			if mb.pid != nil {
				pids = append(pids, mb.pid)
			}
		}
		ctx.Respond(&PeerPIDs{PIDs: pids})
	case *PeerStatus:
		s.status(ctx, m)
	case *PeerUnhealthy:
		s.unhealthy(ctx, m)
	case *PeerUnauthorized:
		if mb, ok := s.members[m.Addr]; ok && mb.current(m.From) {
			ctx.Stop(mb.pid)
			s.away(ctx, mb, StateUnauthorized, m.Err)
		}
	case *PeerIsSelf:
		if mb, ok := s.members[m.Addr]; ok && mb.current(m.From) {
			s.log.Warn("peer address is this node; dropping it", "peer", m.Addr)
			s.remove(ctx, m.Addr)
		}
	case *periodTick:
		s.period(ctx)
	case *periodQuery:
		ctx.Respond(s.rounds.tick != nil)
	case *suspicionTimeout:
		s.suspicionTimedOut(ctx, m)
	case *probeTick:
		s.probe(ctx, m.addr)
	case *probeDone:
		s.probed(ctx, m)
	case *candidateTick:
		s.cands.ticking = false
		s.probeCandidates(ctx)
	case *candidateProbed:
		s.candidateProbed(ctx, m)
	case *actor.Terminated:
		s.terminated(ctx, m.Who)
	case *WaitHeld:
		s.waitHeld(ctx, m)
	case *PeerHolds:
		if mb, ok := s.members[m.Addr]; ok && mb.current(m.From) {
			mb.noteHeld(m.Replica, m.Held)
		}
	case *waitExpired:
		s.waitExpired(m)
	}
	s.tellStable(ctx)
	s.tellSynced(ctx)
	s.answerWaits()
}

// tellSynced tells the CounterActor, when it changes, the least over the
// members of the clock as of which this process holds everything the
// member held (Heard): a member that is away holds it back, as it holds
// back Stable, until it is removed or reaped.
func (s *Supervisor) tellSynced(ctx actor.Context) {
	if at := s.least(func(mb *member) uint64 { return mb.heard }); s.synced.changed(at) {
		s.tellCounter(ctx, &Synced{At: at})
	}
}

// tellStable tells the CounterActor, when it changes, the version of this
// node's state that every member holds: the least Held among them, down,
// unauthorized and left members included (a member that is away may still hold
// an old entry a tombstone must outlive). A member leaves the minimum only
// when it is removed or reaped.
func (s *Supervisor) tellStable(ctx actor.Context) {
	if through := s.least(func(mb *member) uint64 { return mb.held }); s.stable.changed(through) {
		s.tellCounter(ctx, &Stable{Through: through})
	}
}

// least returns the least of field over the members, math.MaxUint64 if
// there are none.
func (s *Supervisor) least(field func(*member) uint64) uint64 {
	v := uint64(math.MaxUint64)
	for _, mb := range s.members {
		v = min(v, field(mb))
	}
	return v
}

// tellCounter sends msg to the CounterActor, if there is one.
func (s *Supervisor) tellCounter(ctx actor.Context, msg any) {
	if c := s.cfg.Peer.Counter; c != nil {
		ctx.Send(c, msg)
	}
}

// lastTold is a figure as last told to the CounterActor, which is told
// again only when it changes.
type lastTold struct {
	v    uint64
	sent bool
}

// changed records v and reports whether it differs from what was told.
func (t *lastTold) changed(v uint64) bool {
	if t.sent && t.v == v {
		return false
	}
	t.v, t.sent = v, true
	return true
}

// change queues a registration or removal behind the ones whose tombstones
// are still being written. It applies it at once if there is no store, or
// if it registers an address with no tombstone and none on the way: the
// store holds no tombstone the table lacks, so there is nothing to lift
// (this keeps -peers at start and POST /peers of a known peer off the disk).
func (s *Supervisor) change(ctx actor.Context, addr string, remove bool) {
	c := tombstoneChange{addr: addr, remove: remove, to: ctx.Sender()}
	if addr == s.cfg.Self {
		s.settle(ctx, c, ErrSelf)
		return
	}
	if !remove && s.full(addr) {
		s.settle(ctx, c, ErrTooManyPeers)
		return
	}
	nothingToLift := !remove && !s.removedOrPending(addr)
	if s.cfg.Tombstones == nil || nothingToLift {
		s.settle(ctx, c, nil)
		return
	}
	s.pending = append(s.pending, c)
	if len(s.pending) == 1 {
		s.writeTombstone(ctx)
	}
}

// removedOrPending reports whether addr is tombstoned, or has a
// registration or removal waiting for its tombstone write.
func (s *Supervisor) removedOrPending(addr string) bool {
	return s.removed[addr] || slices.ContainsFunc(s.pending, func(p tombstoneChange) bool { return p.addr == addr })
}

// writeTombstone starts the write of the oldest pending change outside the
// mailbox; it reports back with a *tombstoneWritten.
func (s *Supervisor) writeTombstone(ctx actor.Context) {
	c, store := s.pending[0], s.cfg.Tombstones
	self, root := ctx.Self(), ctx.ActorSystem().Root
	go func() { root.Send(self, &tombstoneWritten{err: store.SetTombstone(c.addr, c.remove)}) }()
}

// written applies and answers the change whose tombstone was written (or
// answers ErrStore), then starts the next write.
func (s *Supervisor) written(ctx actor.Context, err error) {
	if len(s.pending) == 0 {
		return
	}
	c := s.pending[0]
	s.pending = slices.Delete(s.pending, 0, 1)
	if len(s.pending) > 0 {
		s.writeTombstone(ctx)
	}
	if err != nil {
		s.log.Error("tombstone write failed; membership unchanged", "peer", c.addr, "remove", c.remove, "err", err)
		err = fmt.Errorf("%w: %v", ErrStore, err)
	}
	s.settle(ctx, c, err)
}

// settle applies c to the membership table unless err is set, and answers
// whoever asked.
func (s *Supervisor) settle(ctx actor.Context, c tombstoneChange, err error) {
	var reply any
	switch {
	case c.remove && err != nil:
		reply = &RemoveResult{Err: err}
	case c.remove:
		reply = s.remove(ctx, c.addr)
	case err != nil:
		reply = &RegisterResult{Err: err}
	default:
		reply = s.register(ctx, c.addr)
	}
	if c.to != nil {
		ctx.Send(c.to, reply)
	}
}

func (s *Supervisor) register(ctx actor.Context, addr string) *RegisterResult {
	delete(s.removed, addr)
	if _, ok := s.members[addr]; ok {
		return &RegisterResult{}
	}
	if s.full(addr) {
		return &RegisterResult{Err: ErrTooManyPeers}
	}
	s.cands.drop(addr)
	s.add(ctx, addr, StateSuspect)
	s.log.Info("peer registered", "peer", addr)
	s.announce(ctx)
	return &RegisterResult{Created: true}
}

// remove drops a peer from the table and tombstones it in memory. It does
// not write the store: RemovePeer goes through change, and a PeerIsSelf
// removal lasts only until the process ends.
func (s *Supervisor) remove(ctx actor.Context, addr string) *RemoveResult {
	s.removed[addr] = true
	s.cands.drop(addr)
	mb, ok := s.members[addr]
	if !ok {
		return &RemoveResult{}
	}
	s.cancelProbe(mb)
	s.cancelReap(mb)
	s.cancelSuspicion(mb)
	if mb.pid != nil {
		ctx.Stop(mb.pid)
	}
	delete(s.members, addr)
	s.saveMembers(ctx)
	s.log.Info("peer removed", "peer", addr)
	s.announce(ctx)
	return &RemoveResult{}
}

// contact handles a push from another node: the sender is alive and joins
// at once (it proved itself a node by pushing; a down member is revived, an
// unauthorized one is not), and the members it lists
// become candidates, to be probed before they join (see candidates.go).
func (s *Supervisor) contact(ctx actor.Context, m *Contact) {
	changed, ignored := false, 0
	if m.Addr != s.cfg.Self && !s.removed[m.Addr] {
		mb, ok := s.members[m.Addr]
		switch {
		case !ok && s.full(m.Addr):
			ignored++
		case !ok:
			s.cands.drop(m.Addr)
			mb = s.add(ctx, m.Addr, StateAlive)
			s.log.Info("peer joined", "peer", m.Addr)
			changed = true
		case mb.state == StateDown, mb.state == StateLeft && m.Replica != mb.leftReplica:
			s.revive(ctx, mb)
			changed = true
		case mb.state == StateSuspect:
			// It answered for itself: a push refutes any suspicion.
			changed = s.unsuspect(mb) || changed
		}
		// An unauthorized peer stays so: its push shows that this node
		// takes its key, not that it takes this node's (a probe, signed,
		// tells). Reviving it would only log its refusal again.
		if mb != nil {
			mb.lastSeen = time.Now()
			mb.incarnation = max(mb.incarnation, m.Incarnation)
		}
		s.reapMoved(ctx, m)
	}
	if s.gossip(m.Addr, m.Suspects) {
		changed = true
	}
	learned := false
	for _, addr := range m.Members {
		if mb := s.members[addr]; mb != nil && mb.state == StateLeft && m.Addr != addr {
			s.probeLeft(ctx, mb)
		}
		if addr == s.cfg.Self || s.removed[addr] || s.members[addr] != nil || s.cands.byAddr[addr] != nil {
			continue
		}
		if s.cfg.MaxPeers > 0 && len(s.members)+len(s.cands.byAddr) >= s.cfg.MaxPeers {
			ignored++
			continue
		}
		s.cands.learn(addr, m.Addr, s.cfg.DownProbeMin)
		s.log.Debug("peer candidate learned", "peer", addr, "from", m.Addr)
		learned = true
	}
	if ignored > 0 {
		s.log.Debug("gossip ignored: peer limit reached", "from", m.Addr, "ignored", ignored, "max_peers", s.cfg.MaxPeers)
		if s.cfg.Observer != nil {
			s.cfg.Observer.GossipIgnored(ignored)
		}
	}
	if learned {
		s.probeCandidates(ctx)
	}
	if changed {
		s.announce(ctx)
	}
}

// leave marks a member left at once: its PeerActor is stopped, and it is
// not probed (but see probeLeft) and not gossiped. It keeps its place in
// the table, and so its Held in the least version every member holds
// (tellStable): it may come back with old entries a tombstone must
// outlive. It is reaped after ReapAfter like a down peer.
func (s *Supervisor) leave(ctx actor.Context, m *Leave) {
	mb, ok := s.members[m.Addr]
	if !ok {
		s.cands.drop(m.Addr)
		return
	}
	if mb.state == StateLeft && mb.leftReplica == m.Replica {
		return
	}
	if mb.pid != nil {
		ctx.Stop(mb.pid)
		mb.pid = nil
	}
	s.cancelProbe(mb)
	s.cancelReap(mb)
	s.cancelSuspicion(mb)
	mb.state, mb.leftReplica, mb.downSince = StateLeft, m.Replica, time.Now()
	if s.cfg.ReapAfter > 0 {
		mb.reap = s.timer.SendOnce(s.cfg.ReapAfter, s.pid, &reapTick{addr: mb.addr})
	}
	s.log.Info("peer left", "peer", mb.addr, "peer_replica", m.Replica)
	s.announce(ctx)
}

// probeLeft checks once whether a left member is back, when another
// node's gossip names it alive (it may have restarted and not pushed to
// this node yet): at most one probe per DownProbeMin, so every push of a
// peer that has not heard of the leave yet does not set off one more.
func (s *Supervisor) probeLeft(ctx actor.Context, mb *member) {
	if mb.probing || time.Since(mb.probedAt) < s.cfg.DownProbeMin {
		return
	}
	mb.probedAt = time.Now()
	s.probe(ctx, mb.addr)
}

func (s *Supervisor) cancelReap(mb *member) {
	if mb.reap != nil {
		mb.reap()
		mb.reap = nil
	}
}

// full reports whether addr, not a member yet, would take the table past
// MaxPeers.
func (s *Supervisor) full(addr string) bool {
	return s.cfg.MaxPeers > 0 && s.members[addr] == nil && len(s.members) >= s.cfg.MaxPeers
}

func (s *Supervisor) status(ctx actor.Context, m *PeerStatus) {
	mb, ok := s.members[m.Addr]
	if !ok || !mb.current(m.From) {
		return
	}
	// A failed probe starts a suspicion (swim.go), which the members'
	// gossip carries; an answered one ends it.
	gossip := false
	if m.State == StateSuspect {
		gossip = s.suspect(mb, "")
	} else {
		gossip = s.unsuspect(mb)
	}
	if gossip {
		s.announce(ctx)
	}
	if !m.LastSeen.IsZero() {
		mb.lastSeen = m.LastSeen
	}
	mb.behind, mb.held = m.Behind, m.Held
	mb.noteHeld(m.Replica, m.Held)
}

// unhealthy stops the PeerActor of a peer that failed its health checks and
// puts the peer on the down list.
func (s *Supervisor) unhealthy(ctx actor.Context, m *PeerUnhealthy) {
	mb, ok := s.members[m.Addr]
	if !ok || !mb.current(m.From) {
		return
	}
	ctx.Stop(mb.pid)
	s.away(ctx, mb, StateDown, m.Err)
}

// away takes a peer whose PeerActor is stopped off the members this node
// gossips and probes it at the down pace; state is StateDown or
// StateUnauthorized.
func (s *Supervisor) away(ctx actor.Context, mb *member, state string, why error) {
	s.cancelSuspicion(mb)
	mb.pid = nil
	mb.downSince = time.Now()
	mb.backoff = s.cfg.DownProbeMin
	s.setAway(mb, state, why)
	s.scheduleProbe(mb)
	s.announce(ctx)
}

// setAway sets the state of a peer with no PeerActor and logs the change:
// at warn when it becomes unauthorized (a misconfigured key needs an
// operator), at info otherwise. Probes that keep failing the same way log
// nothing.
func (s *Supervisor) setAway(mb *member, state string, why error) {
	if mb.state == state {
		return
	}
	was := mb.state
	mb.state = state
	switch {
	case state == StateUnauthorized:
		s.log.Warn("peer unauthorized: it refuses this node's cluster key", "peer", mb.addr, "err", why)
	case was == StateUnauthorized:
		s.log.Info("peer no longer unauthorized: down", "peer", mb.addr, "err", why)
	default:
		s.log.Info("peer down", "peer", mb.addr, "err", why)
	}
}

// terminated handles a PeerActor that stopped on its own (too many panics):
// its peer goes on the down list like a peer that failed health checks.
func (s *Supervisor) terminated(ctx actor.Context, who *actor.PID) {
	if s.stopping {
		return
	}
	for _, mb := range s.members {
		if mb.pid != nil && mb.pid.Equal(who) {
			s.away(ctx, mb, StateDown, errors.New("its PeerActor stopped after repeated panics"))
			return
		}
	}
}

func (s *Supervisor) probe(ctx actor.Context, addr string) {
	mb, ok := s.members[addr]
	if !ok || !Away(mb.state) || mb.probing {
		return
	}
	mb.probe, mb.probing = nil, true
	tr, timeout := s.cfg.Peer.Transport, s.cfg.Peer.Timeout
	self, root := ctx.Self(), ctx.ActorSystem().Root
	go func() {
		c, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		reply, err := health(c, tr, addr)
		root.Send(self, &probeDone{addr: addr, replica: reply.Replica, err: err})
	}()
}

func (s *Supervisor) probed(ctx actor.Context, m *probeDone) {
	mb, ok := s.members[m.addr]
	if !ok {
		return
	}
	mb.probing = false
	if !Away(mb.state) {
		return // revived meanwhile by a contact
	}
	if mb.state == StateLeft {
		// The one probe gossip set off: alive again only as another
		// process; otherwise it stays left, unprobed, until reaped.
		if m.err == nil && m.replica != mb.leftReplica {
			s.revive(ctx, mb)
			s.announce(ctx)
		}
		return
	}
	if m.err == nil {
		s.revive(ctx, mb)
		s.announce(ctx)
		return
	}
	if errors.Is(m.err, ErrUnauthorized) {
		s.setAway(mb, StateUnauthorized, m.err)
	} else {
		s.setAway(mb, StateDown, m.err)
	}
	if s.cfg.ReapAfter > 0 && time.Since(mb.downSince) >= s.cfg.ReapAfter {
		s.reap(ctx, mb)
		return
	}
	mb.backoff = min(2*mb.backoff, s.cfg.DownProbeMax)
	s.scheduleProbe(mb)
}

// reap drops a peer down (or left) for longer than ReapAfter. It leaves no
// tombstone: if the peer pushes to this node again, or gossip names it and
// it answers, it joins again.
// reapMoved reaps, at once, a left member whose data file now runs at
// another address: the push m comes from a later process of the lineage
// that left there (a pod that got a new IP, a node moved to another host
// with its data dir). The member will not come back at the old address,
// and its state lives on in the new one; left in the table until
// -reap-after, it would hold back Stable and Synced (tombstone collection,
// key retirement) all that time.
func (s *Supervisor) reapMoved(ctx actor.Context, m *Contact) {
	if !crdt.ValidReplica(m.Replica) {
		return
	}
	for _, mb := range s.members {
		if mb.state != StateLeft || mb.addr == m.Addr || !crdt.ValidReplica(mb.leftReplica) ||
			crdt.Lineage(mb.leftReplica) != crdt.Lineage(m.Replica) ||
			crdt.Incarnation(m.Replica) <= crdt.Incarnation(mb.leftReplica) {
			continue
		}
		s.log.Info("left peer reaped: its data file runs at another address now", "peer", mb.addr, "now_at", m.Addr, "replica", m.Replica)
		s.cancelProbe(mb)
		s.cancelReap(mb)
		delete(s.members, mb.addr)
		s.saveMembers(ctx)
		s.announce(ctx)
	}
}

func (s *Supervisor) reap(ctx actor.Context, mb *member) {
	s.cancelProbe(mb)
	s.cancelReap(mb)
	delete(s.members, mb.addr)
	s.saveMembers(ctx)
	s.log.Info("peer reaped: away too long", "state", mb.state, "peer", mb.addr, "down_since", mb.downSince, "reap_after", s.cfg.ReapAfter)
	s.announce(ctx)
}

func (s *Supervisor) scheduleProbe(mb *member) {
	s.cancelProbe(mb)
	d := mb.backoff/2 + rand.N(mb.backoff/2+1)
	mb.probe = s.timer.SendOnce(d, s.pid, &probeTick{addr: mb.addr})
}

func (s *Supervisor) cancelProbe(mb *member) {
	if mb.probe != nil {
		mb.probe()
		mb.probe = nil
	}
}

// revive takes a peer off the down list and spawns its PeerActor again.
func (s *Supervisor) revive(ctx actor.Context, mb *member) {
	s.cancelProbe(mb)
	s.cancelReap(mb)
	mb.leftReplica = ""
	switch mb.state {
	case StateUnauthorized:
		s.log.Info("peer no longer unauthorized: alive", "peer", mb.addr)
	case StateLeft:
		s.log.Info("peer back after leaving: alive", "peer", mb.addr)
	default:
		s.log.Info("peer alive", "peer", mb.addr)
	}
	mb.state, mb.seenAlive = StateAlive, true
	mb.lastSeen = time.Now()
	mb.pid = ctx.SpawnPrefix(s.cfg.PeerProps(mb.addr), "peer-")
	s.startPeriods()
	s.askPush(ctx, mb, s.waits.highest())
}

// current reports whether a report from the PeerActor at from is about this
// member's running PeerActor, not a predecessor stopped since (a report with
// no sender is taken as current).
func (mb *member) current(from *actor.PID) bool {
	return mb.pid != nil && (from == nil || from.Equal(mb.pid))
}

func (s *Supervisor) add(ctx actor.Context, addr, state string) *member {
	mb := &member{addr: addr, state: state, seenAlive: state == StateAlive}
	mb.pid = ctx.SpawnPrefix(s.cfg.PeerProps(addr), "peer-")
	s.startPeriods()
	s.members[addr] = mb
	s.saveMembers(ctx)
	s.askPush(ctx, mb, s.waits.highest())
	return mb
}

// saveMembers writes the member addresses outside the mailbox, after the
// write in flight if there is one.
func (s *Supervisor) saveMembers(ctx actor.Context) {
	if s.cfg.Members == nil {
		return
	}
	if s.membersWriting {
		s.membersDirty = true
		return
	}
	s.membersWriting, s.membersDirty = true, false
	addrs := slices.Sorted(maps.Keys(s.members))
	store, self, root := s.cfg.Members, ctx.Self(), ctx.ActorSystem().Root
	go func() { root.Send(self, &membersWritten{err: store.SetMembers(addrs)}) }()
}

func (s *Supervisor) membersWritten(ctx actor.Context, err error) {
	s.membersWriting = false
	if err != nil {
		s.log.Warn("writing the member list failed; a restart may know fewer members", "err", err)
	}
	if s.membersDirty {
		s.saveMembers(ctx)
	}
}

// announce tells every PeerActor the members this node sees alive; each
// carries them in its next push, which is how a new node reaches everyone.
func (s *Supervisor) announce(ctx actor.Context) {
	alive := make([]string, 0, len(s.members))
	for addr, mb := range s.members {
		if !Away(mb.state) {
			alive = append(alive, addr)
		}
	}
	slices.Sort(alive)
	suspects := s.suspects()
	for _, mb := range s.members {
		if mb.pid != nil {
			ctx.Send(mb.pid, &Members{Addrs: alive, Suspects: suspects, Incarnation: s.incarnation})
		}
	}
}

func (s *Supervisor) list() *PeerList {
	out := make([]PeerInfo, 0, len(s.members))
	for _, mb := range s.members {
		// An away peer's Behind is as its PeerActor last reported it;
		// Cluster.Peers counts it on from Held.
		out = append(out, PeerInfo{Addr: mb.addr, State: mb.state, LastSeen: mb.lastSeen, Behind: mb.behind, Held: mb.held})
	}
	slices.SortFunc(out, func(a, b PeerInfo) int { return strings.Compare(a.Addr, b.Addr) })
	return &PeerList{Peers: out}
}

// waitHeld queues a client waiting for a write level, asks the PeerActors
// of the members that may lack its version to push at once, and arms its
// deadline. It is answered by answerWaits, at the end of this Receive if
// the level is reached already.
func (s *Supervisor) waitHeld(ctx actor.Context, m *WaitHeld) {
	if m.Level != Quorum && m.Level != All {
		m.Reply <- &HeldResult{}
		return
	}
	w := s.waits.add(m.Level, m.Version, m.Reply)
	w.expire = s.timer.SendOnce(max(time.Until(m.Deadline), 0), s.pid, &waitExpired{level: m.Level, id: w.id})
	for _, mb := range s.members {
		if mb.holds < m.Version {
			s.askPush(ctx, mb, m.Version)
		}
	}
}

// askPush asks a member's PeerActor, if it has one, to push at once and
// report when its peer holds version (0: nobody waits).
func (s *Supervisor) askPush(ctx actor.Context, mb *member, version uint64) {
	if mb.pid != nil && version > 0 {
		ctx.Send(mb.pid, &WaitFor{Version: version})
	}
}

// answerWaits answers the clients whose level is reached.
func (s *Supervisor) answerWaits() {
	if s.waits.empty() {
		return
	}
	for _, w := range s.waits.answer(s.holding) {
		w.expire()
		w.reply <- &HeldResult{}
	}
}

// waitExpired answers a client whose deadline passed with how far its
// level got.
func (s *Supervisor) waitExpired(m *waitExpired) {
	w, ok := s.waits.take(m.level, m.id)
	if !ok {
		return
	}
	held, members := s.holding(w.version)
	w.reply <- &HeldResult{Err: &LevelError{Level: m.level, Reached: held, Need: m.level.Need(members), Members: members}}
}

// holding counts the members that hold this node's state at version, and
// the members: this node and every member not left (a down one counts as
// a member holding what it held when it went down).
func (s *Supervisor) holding(version uint64) (held, members int) {
	held, members = 1, 1
	for _, mb := range s.members {
		if mb.state == StateLeft {
			continue
		}
		members++
		if mb.holds >= version {
			held++
		}
	}
	return held, members
}

// noteHeld records that the peer's process replica holds this node's
// state up to version; a report from another process replaces what its
// predecessor held.
func (mb *member) noteHeld(replica string, version uint64) {
	if replica != mb.holdsBy {
		mb.holdsBy, mb.holds = replica, version
		return
	}
	mb.holds = max(mb.holds, version)
}
