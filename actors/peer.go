package actors

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/scheduler"

	"countd/replication"
	"countd/wire"
)

// PeerConfig configures the PeerActors. Durations are wall-clock time.
type PeerConfig struct {
	// Self is this node's advertised address, sent with every push.
	Self string
	// HeartbeatInterval is the protocol period: the Supervisor probes one
	// peer per period (a PeerActor probes only when told to, with Probe).
	// Changes that came from a third node are forwarded to the peer after
	// it (see replication.Config.LazyDelay).
	HeartbeatInterval time.Duration
	// Timeout bounds one health check or push; an indirect probe gets
	// twice as long (two hops).
	Timeout time.Duration
	// FailuresBeforeDown is how many probes in a row must fail before the
	// peer is reported unhealthy to the parent (the Supervisor's suspicion
	// timeout usually comes first).
	FailuresBeforeDown int
	// FlushDelay is the wait between a change notice and the push it causes,
	// so that changes close together share one push.
	FlushDelay time.Duration
	// RetryMin and RetryMax bound the backoff between failed pushes.
	RetryMin, RetryMax time.Duration
	// AntiEntropyInterval is the mean time between full-state pushes, which
	// repair whatever a lost or mishandled delta might have left behind. A
	// tick sends nothing while the peer's process took the full state as
	// it is now (replication.AntiEntropy).
	AntiEntropyInterval time.Duration
	// Transport reaches the peer.
	Transport Transport
	// Counter is the CounterActor whose state is pushed.
	Counter *actor.PID
	// Logger receives state changes.
	Logger *slog.Logger
}

// Peer health as the Supervisor reports it.
const (
	StateAlive   = "alive"
	StateSuspect = "suspect"
	StateDown    = "down"
	// StateUnauthorized: the peer refuses this node's cluster key (a 401).
	// Like a down peer it has no PeerActor, gets no push, is not gossiped
	// and is probed at the down pace.
	StateUnauthorized = "unauthorized"
	// StateLeft: the peer said it was shutting down (POST /leave). It has
	// no PeerActor, gets no push, is not gossiped and is not probed; it
	// is alive again when it pushes to this node, or answers the one
	// probe a peer's gossip naming it alive sets off.
	StateLeft = "left"
)

// Away reports whether a peer in state has no PeerActor: it is down or
// unauthorized, probed by the Supervisor until it answers, or it left.
func Away(state string) bool {
	return state == StateDown || state == StateUnauthorized || state == StateLeft
}

// MaxPushEntries caps the entries in one push, keeping its body well under
// the 1 MiB a node accepts (an entry is at most about 230 bytes of JSON).
const MaxPushEntries = 2000

// PeerStatus tells the parent how a peer is doing: sent after every health
// check (LastSeen is set when it succeeded).
type PeerStatus struct {
	From     *actor.PID // the reporting PeerActor
	Addr     string
	State    string // StateAlive or StateSuspect
	LastSeen time.Time
	Replica  string
	Behind   uint64 // this node's changes the peer has not acknowledged
	// Held is this node's version the peer is known to hold: once the
	// PeerActor is stopped, Cluster.Peers goes on counting Behind from it.
	Held uint64
}

// PeerUnhealthy tells the parent that a peer failed FailuresBeforeDown health
// checks in a row. It is sent once; the parent is expected to stop the actor.
type PeerUnhealthy struct {
	From *actor.PID // the reporting PeerActor
	Addr string
	Err  error // the last health check's failure
}

// PeerUnauthorized tells the parent that a peer refused this node's cluster
// key, on a health check or a push. It is sent once; the parent is expected
// to stop the actor.
type PeerUnauthorized struct {
	From *actor.PID // the reporting PeerActor
	Addr string
	Err  error // the refusal
}

// Flush asks a PeerActor to push what its peer lacks right away (used at
// shutdown). Reply: *Flushed, once the peer is up to date or a push failed.
type Flush struct{}

// Flushed answers Flush.
type Flushed struct{ Err error }

// PeerIsSelf tells the parent that the address answers as this very node
// (an alias such as localhost:PORT for 127.0.0.1:PORT).
type PeerIsSelf struct {
	From *actor.PID
	Addr string
}

// Heard tells the Supervisor that a push from the member at Addr, cut for
// the process To, is durable here: that process now holds everything the
// member held at its clock At (unix milliseconds). See Synced.
type Heard struct {
	Addr string
	To   string
	At   uint64
}

// Members gives a PeerActor the addresses this node sees alive, the
// members it suspects and its own incarnation, which every push carries to
// the peer (gossip). A change of any of them triggers a push.
type Members struct {
	Addrs       []string
	Suspects    []wire.Suspect
	Incarnation uint64
}

// news reports whether m tells the peer something o did not, which is
// worth a push of its own: other members, a raised incarnation (a
// refutation) or a new suspicion. A suspicion that ended only rides on
// the next push.
func (m *Members) news(o *Members) bool {
	if o == nil || m.Incarnation != o.Incarnation || !slices.Equal(m.Addrs, o.Addrs) {
		return true
	}
	for _, sp := range m.Suspects {
		if !slices.Contains(o.Suspects, sp) {
			return true
		}
	}
	return false
}

// Probe asks a PeerActor to check that its peer is alive, now: a health
// check, and if that fails, the same check through each of the members
// Via at once (an indirect probe: POST /probe), so that one lost route
// does not make the peer suspect. The outcome is reported like every
// health check (PeerStatus). A Probe while one is in flight is ignored.
// The Supervisor sends it, to one peer per protocol period.
type Probe struct{ Via []string }

// Timer and I/O results a PeerActor sends itself.
type (
	pushTick        struct{ gen, seq uint64 }
	antiEntropyTick struct{ gen uint64 }
	probeResult     struct {
		gen      uint64
		reply    wire.HealthReply
		err      error
		indirect bool // the direct check failed; a member reached the peer
	}
	pushDone struct {
		gen    uint64
		result replication.Pushed
		probe  *probeResult // the push was a probe (replication.Push.Probe): its outcome
	}
)

// generational is a message stamped with the PeerActor instance it is for.
type generational interface{ generation() uint64 }

func (m *pushTick) generation() uint64        { return m.gen }
func (m *antiEntropyTick) generation() uint64 { return m.gen }
func (m *probeResult) generation() uint64     { return m.gen }
func (m *pushDone) generation() uint64        { return m.gen }

// PeerActor replicates this node's state to one remote node and watches its
// health. It is the shell of a replication.Peer, which decides what to push
// and when: the actor feeds it messages, timer ticks and I/O results, and
// carries out its decisions, running the I/O outside Receive and adding
// jitter to the timers.
type PeerActor struct {
	addr     string
	gen      uint64 // tells this instance's timers and I/O results from a predecessor's
	cfg      PeerConfig
	log      *slog.Logger
	core     *replication.Peer
	timer    *scheduler.TimerScheduler
	members  *Members
	checking bool         // a probe is in flight
	via      []string     // the members the probe in flight may go through
	flushers []*actor.PID // waiting for a Flushed

	// Write levels (levels.go): want is the highest version a client waits
	// for the peer to hold (0: none); flushing says a Flush of the core's
	// is unanswered; failing says the last push failed, so a new wait
	// does not cut the core's retry backoff short. seen is the highest
	// version of this node the core has heard of (notices and pushes).
	want, seen        uint64
	flushing, failing bool

	pushTimer, aeTimer scheduler.CancelFunc
}

// NewPeerProps returns the props of a PeerActor for the node at addr.
func NewPeerProps(addr string, cfg PeerConfig) *actor.Props {
	return actor.PropsFromProducer(func() actor.Actor {
		return &PeerActor{addr: addr, gen: rand.Uint64(), cfg: cfg, log: cfg.Logger.With("peer", addr),
			core: replication.New(replication.Config{
				Addr:               addr,
				FlushDelay:         cfg.FlushDelay,
				LazyDelay:          cfg.HeartbeatInterval,
				RetryMin:           cfg.RetryMin,
				RetryMax:           cfg.RetryMax,
				FailuresBeforeDown: cfg.FailuresBeforeDown,
			})}
	})
}

// Receive implements actor.Actor.
func (p *PeerActor) Receive(ctx actor.Context) {
	if m, ok := ctx.Message().(generational); ok && m.generation() != p.gen {
		return // a timer or I/O result of a predecessor, from before a restart
	}
	switch m := ctx.Message().(type) {
	case *actor.Started:
		p.timer = scheduler.NewTimerScheduler(ctx.ActorSystem().Root)
		ctx.Send(p.cfg.Counter, &Subscribe{PID: ctx.Self()})
		p.scheduleAntiEntropy(ctx)
		p.step(ctx, replication.Start{})
	case *actor.Stopping, *actor.Restarting:
		for _, cancel := range []scheduler.CancelFunc{p.pushTimer, p.aeTimer} {
			if cancel != nil {
				cancel()
			}
		}
	case *Changed:
		p.seen = max(p.seen, m.Version)
		p.step(ctx, replication.Changed{Version: m.Version, Origin: m.Origin})
		p.flushForWaits(ctx) // a client may wait for it already
	case *WaitFor:
		p.want = max(p.want, m.Version)
		p.flushForWaits(ctx)
	case *Flush:
		if ctx.Sender() != nil {
			p.flushers = append(p.flushers, ctx.Sender())
		}
		p.step(ctx, replication.Flush{})
	case *Members:
		news := m.news(p.members)
		p.members = m
		if news {
			p.step(ctx, replication.MembersChanged{})
		}
	case *pushTick:
		p.step(ctx, replication.PushDue{Seq: m.seq})
	case *pushDone:
		if m.result.Err != nil {
			p.log.Debug("push failed", "err", m.result.Err)
		} else {
			p.seen = max(p.seen, m.result.Version)
		}
		// A failed probe push leaves no retry backoff to protect.
		p.failing = m.result.Err != nil && m.probe == nil
		p.step(ctx, m.result)
		if m.probe != nil {
			p.probed(ctx, m.probe)
		}
		p.flushForWaits(ctx)
	case *Probe:
		if !p.checking {
			p.checking, p.via = true, m.Via
			p.step(ctx, replication.ProbeDue{})
		}
	case *probeResult:
		p.probed(ctx, m)
	case *antiEntropyTick:
		p.scheduleAntiEntropy(ctx)
		p.step(ctx, replication.AntiEntropy{})
	}
}

// step feeds the core an event and carries out its decisions.
func (p *PeerActor) step(ctx actor.Context, e replication.Event) {
	was := p.core.Replica()
	actions := p.core.Step(e)
	if now := p.core.Replica(); was != "" && now != was {
		p.log.Info("peer restarted", "replica", now, "was", was)
	}
	for _, a := range actions {
		switch a := a.(type) {
		case replication.Push:
			p.push(ctx, a)
		case replication.Check:
			p.probe(ctx)
		case replication.SchedulePush:
			if p.pushTimer != nil {
				p.pushTimer()
			}
			d := a.Min + rand.N(a.Max-a.Min+1)
			p.pushTimer = p.timer.SendOnce(d, ctx.Self(), &pushTick{gen: p.gen, seq: a.Seq})
		case replication.Report:
			s := &PeerStatus{From: ctx.Self(), Addr: p.addr, State: StateSuspect, Replica: a.Replica,
				Behind: a.Behind(), Held: a.Held}
			if a.Answered {
				s.State, s.LastSeen = StateAlive, time.Now()
			}
			ctx.Send(ctx.Parent(), s)
		case replication.ReportUnhealthy:
			ctx.Send(ctx.Parent(), &PeerUnhealthy{From: ctx.Self(), Addr: p.addr, Err: a.Err})
		case replication.ReportUnauthorized:
			ctx.Send(ctx.Parent(), &PeerUnauthorized{From: ctx.Self(), Addr: p.addr, Err: a.Err})
		case replication.ReportSelf:
			ctx.Send(ctx.Parent(), &PeerIsSelf{From: ctx.Self(), Addr: p.addr})
		case replication.AnswerFlush:
			for _, pid := range p.flushers {
				ctx.Send(pid, &Flushed{Err: a.Err})
			}
			p.flushers = nil
			p.flushed(ctx, a.Err)
		}
	}
}

// flushForWaits asks the core for a push at once (a Flush) while a client
// waits for the peer to hold a version, unless one is unanswered or the
// last push failed (the core's backoff retries it; its success comes back
// here). Clients that wait meanwhile ride on the same push.
func (p *PeerActor) flushForWaits(ctx actor.Context) {
	if p.want == 0 || p.flushing || p.failing {
		return
	}
	p.flushing = true
	p.step(ctx, replication.Flush{})
}

// flushed handles the core's answer to a Flush: with no error, the peer
// holds everything the core has heard of, which the Supervisor is told.
func (p *PeerActor) flushed(ctx actor.Context, err error) {
	if !p.flushing {
		return
	}
	p.flushing = false
	if err != nil {
		return
	}
	ctx.Send(ctx.Parent(), &PeerHolds{From: ctx.Self(), Addr: p.addr, Replica: p.core.Replica(), Held: p.seen})
	if p.seen >= p.want {
		p.want = 0
	}
}

// push cuts the delta a asks for and sends it, from a goroutine that
// reports back with a *pushDone.
func (p *PeerActor) push(ctx actor.Context, a replication.Push) {
	tr, addr, timeout, gen, counter := p.cfg.Transport, p.addr, p.cfg.Timeout, p.gen, p.cfg.Counter
	from, members, via := p.cfg.Self, p.members, p.via
	if members == nil {
		members = &Members{}
	}
	self, root := ctx.Self(), ctx.ActorSystem().Root
	go func() {
		// Taken before the delta is cut: the delta holds every change made
		// before it.
		at := uint64(time.Now().UnixMilli())
		// ask answers DeltaSince on its Reply channel, not through a
		// protoactor future, whose reply racing its timeout is written
		// unlocked (protoactor-go #1145).
		d, err := ask[*Delta](context.Background(), asker{root: root, pid: counter, timeout: timeout},
			&DeltaSince{Version: a.Since, Limit: MaxPushEntries})
		if err != nil {
			done := &pushDone{gen: gen, result: replication.Pushed{Err: err}}
			if a.Probe {
				// This node's CounterActor did not answer: that says
				// nothing of the peer, which still gets its probe.
				done.probe = check(tr, addr, via, timeout, func(c context.Context) (wire.HealthReply, error) {
					return tr.Health(c, addr)
				})
			}
			root.Send(self, done)
			return
		}
		req := &wire.ReplicateRequest{From: from, Replica: d.Replica, Members: members.Addrs, Entries: d.Entries,
			Incarnation: members.Incarnation, Suspects: members.Suspects}
		if a.To != "" && !d.More {
			req.To, req.At = a.To, at
		}
		done := &pushDone{gen: gen, result: replication.Pushed{Version: d.Version, More: d.More}}
		replicate := func(c context.Context) (wire.HealthReply, error) {
			reply, err := tr.Replicate(c, addr, req)
			switch {
			case err != nil:
				done.result.Err, done.result.Unauthorized = err, errors.Is(err, ErrUnauthorized)
				return wire.HealthReply{}, err
			case reply == nil:
				done.result.Err = errNoReply
				return wire.HealthReply{}, errNoReply
			}
			done.result.Replica = reply.Replica
			return wire.HealthReply{Status: "ok", Node: reply.Node, Replica: reply.Replica}, nil
		}
		if a.Probe {
			done.probe = check(tr, addr, via, timeout, replicate)
		} else {
			c, cancel := context.WithTimeout(context.Background(), timeout)
			replicate(c)
			cancel()
		}
		root.Send(self, done)
	}()
}

// probe checks the peer with a health check, from a goroutine that
// reports back with a *probeResult.
func (p *PeerActor) probe(ctx actor.Context) {
	tr, addr, timeout, gen, via := p.cfg.Transport, p.addr, p.cfg.Timeout, p.gen, p.via
	self, root := ctx.Self(), ctx.ActorSystem().Root
	go func() {
		r := check(tr, addr, via, timeout, func(c context.Context) (wire.HealthReply, error) { return tr.Health(c, addr) })
		r.gen = gen
		root.Send(self, r)
	}()
}

// probed feeds the core the outcome of a probe: a health check's, or a
// push's that was the probe.
func (p *PeerActor) probed(ctx actor.Context, m *probeResult) {
	p.checking, p.via = false, nil
	switch {
	case m.err != nil:
		p.log.Debug("probe failed", "err", m.err)
	case m.indirect:
		p.log.Debug("peer answered an indirect probe only")
	}
	p.step(ctx, replication.Health{Replica: m.reply.Replica, Self: m.reply.Node == p.cfg.Self, Err: m.err,
		Unauthorized: errors.Is(m.err, ErrUnauthorized)})
}

// check probes addr with direct (a health check, or the push that is the
// probe) within timeout, and if that fails (but not for a refused key),
// through every member of via at once; the first to reach the peer wins.
func check(tr Transport, addr string, via []string, timeout time.Duration,
	direct func(context.Context) (wire.HealthReply, error)) *probeResult {
	c, cancel := context.WithTimeout(context.Background(), timeout)
	reply, err := timed(tr, func() (wire.HealthReply, error) { return direct(c) })
	cancel()
	if err == nil || errors.Is(err, ErrUnauthorized) || len(via) == 0 {
		return &probeResult{reply: reply, err: err}
	}
	if r, ok := probeVia(tr, via, addr, 2*timeout); ok {
		return &probeResult{reply: r, indirect: true}
	}
	return &probeResult{err: err}
}

// probeVia asks every member of via at once to check target, and returns
// the first answer that says target is alive.
func probeVia(tr Transport, via []string, target string, timeout time.Duration) (wire.HealthReply, bool) {
	c, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	answers := make(chan *wire.HealthReply, len(via))
	for _, v := range via {
		go func() {
			r, err := tr.Probe(c, v, target)
			if err != nil {
				answers <- nil
				return
			}
			answers <- &r
		}()
	}
	for range via {
		if r := <-answers; r != nil {
			return *r, true
		}
	}
	return wire.HealthReply{}, false
}

// HeartbeatBudget is how many peers a node pushes full state to per
// anti-entropy interval, at most: past it, each PeerActor stretches its
// anti-entropy interval by N/HeartbeatBudget, so a node's idle full pushes
// stay about HeartbeatBudget per interval at any cluster size. (Probes
// need no budget: the Supervisor sends one per protocol period.)
const HeartbeatBudget = 8

// scheduleAntiEntropy sets the timer of the next full-state push.
func (p *PeerActor) scheduleAntiEntropy(ctx actor.Context) {
	p.aeTimer = p.timer.SendOnce(jitter(p.stretch(p.cfg.AntiEntropyInterval)), ctx.Self(), &antiEntropyTick{gen: p.gen})
}

// stretch scales a per-peer interval so that all of a node's PeerActors
// together keep to HeartbeatBudget per interval.
func (p *PeerActor) stretch(d time.Duration) time.Duration {
	if p.members == nil {
		return d
	}
	if n := len(p.members.Addrs); n > HeartbeatBudget {
		return d * time.Duration(n) / HeartbeatBudget
	}
	return d
}

var errNoReply = errors.New("actors: transport returned no reply")

// jitter returns d scaled by a random factor in [0.75, 1.25).
func jitter(d time.Duration) time.Duration {
	return d*3/4 + rand.N(d/2+1)
}
