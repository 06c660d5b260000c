package actors

import (
	"context"
	"countd/wire"
	"errors"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/scheduler"
)

// PeerConfig configures the PeerActors. Durations are wall-clock time.
type PeerConfig struct {
	// Self is this node's advertised address, sent with every push.
	Self string
	// HeartbeatInterval is the mean time between health checks; each is
	// jittered by ±25%, and the first comes after a random part of it. With
	// more than HeartbeatBudget peers alive it is stretched (see stretch).
	HeartbeatInterval time.Duration
	// Timeout bounds one health check or push.
	Timeout time.Duration
	// FailuresBeforeDown is how many health checks in a row must fail before
	// the peer is reported unhealthy to the parent.
	FailuresBeforeDown int
	// FlushDelay is the wait between a change notice and the push it causes,
	// so that changes close together share one push.
	FlushDelay time.Duration
	// RetryMin and RetryMax bound the backoff between failed pushes.
	RetryMin, RetryMax time.Duration
	// AntiEntropyInterval is the mean time between full-state pushes, which
	// repair whatever a lost or mishandled delta might have left behind.
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
)

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
}

// PeerUnhealthy tells the parent that a peer failed FailuresBeforeDown health
// checks in a row. It is sent once; the parent is expected to stop the actor.
type PeerUnhealthy struct {
	From *actor.PID // the reporting PeerActor
	Addr string
	Err  error // the last health check's failure
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

// Members gives a PeerActor the addresses this node sees alive, which every
// push carries to the peer. A change of members triggers a push.
type Members struct{ Addrs []string }

// Timer and I/O results a PeerActor sends itself.
type (
	heartbeatTick   struct{ gen uint64 }
	pushTick        struct{ gen uint64 }
	antiEntropyTick struct{ gen uint64 }
	heartbeatDone   struct {
		gen   uint64
		reply wire.HealthReply
		err   error
	}
	pushDone struct {
		gen            uint64 // the PeerActor instance that started the push
		since, version uint64
		target         string // the peer replica the push was meant for
		reply          *wire.ReplicateReply
		err            error
	}
)

// generational is a message stamped with the PeerActor instance it is for.
type generational interface{ generation() uint64 }

func (m *heartbeatTick) generation() uint64   { return m.gen }
func (m *pushTick) generation() uint64        { return m.gen }
func (m *antiEntropyTick) generation() uint64 { return m.gen }
func (m *heartbeatDone) generation() uint64   { return m.gen }
func (m *pushDone) generation() uint64        { return m.gen }

// PeerActor replicates this node's state to one remote node and watches its
// health. At most one push is in flight; change notices that arrive meanwhile
// only mark it dirty, so traffic stays bounded however fast clients write.
// Each push carries everything changed since the version the peer last
// acknowledged, so a failed push is simply retried (with capped exponential
// backoff), and nothing is queued per change.
type PeerActor struct {
	addr  string
	gen   uint64 // tells this instance's I/O results from a predecessor's
	cfg   PeerConfig
	log   *slog.Logger
	timer *scheduler.TimerScheduler

	// replication
	peerReplica string // the peer's replica id, as last seen
	acked       uint64 // our durable version the peer holds
	latest      uint64 // our durable version, from the last change notice
	credited    uint64 // a version the peer holds because it sent all changes up to it
	synced      bool   // a full push reached the peer's current process: acked is what it holds
	fullNext    bool   // the next push sends full state
	dirty       bool   // something to push
	pushing     bool
	pushTimer   scheduler.CancelFunc
	pushLazy    bool // the pending push timer is a lazy forward, not a retry
	backoff     time.Duration
	members     []string
	flushers    []*actor.PID // waiting for a Flushed

	// health
	checking bool
	fails    int
	state    string
	hbTimer  scheduler.CancelFunc
	aeTimer  scheduler.CancelFunc
}

// NewPeerProps returns the props of a PeerActor for the node at addr.
func NewPeerProps(addr string, cfg PeerConfig) *actor.Props {
	return actor.PropsFromProducer(func() actor.Actor {
		return &PeerActor{addr: addr, gen: rand.Uint64(), cfg: cfg, log: cfg.Logger.With("peer", addr)}
	})
}

// Receive implements actor.Actor.
func (p *PeerActor) Receive(ctx actor.Context) {
	if m, ok := ctx.Message().(generational); ok && m.generation() != p.gen {
		return // a timer or I/O result of a predecessor, from before a restart
	}
	switch m := ctx.Message().(type) {
	case *actor.Started:
		p.start(ctx)
	case *actor.Stopping, *actor.Restarting:
		p.stopTimers()
	case *Changed:
		p.changed(ctx, m)
	case *Flush:
		p.flush(ctx)
	case *Members:
		p.members = m.Addrs
		p.markDirty(ctx)
	case *pushTick:
		p.pushTimer = nil
		p.push(ctx)
	case *pushDone:
		p.pushed(ctx, m)
	case *heartbeatTick:
		p.hbTimer = nil
		p.heartbeat(ctx)
	case *heartbeatDone:
		p.heartbeatDone(ctx, m)
	case *antiEntropyTick:
		p.fullNext = true
		p.markDirty(ctx)
		p.scheduleAntiEntropy(ctx)
	}
}

func (p *PeerActor) start(ctx actor.Context) {
	p.timer = scheduler.NewTimerScheduler(ctx.ActorSystem().Root)
	p.state = StateAlive
	p.fullNext = true
	ctx.Send(p.cfg.Counter, &Subscribe{PID: ctx.Self()})
	p.hbTimer = p.timer.SendOnce(rand.N(p.cfg.HeartbeatInterval)+1, ctx.Self(), &heartbeatTick{gen: p.gen})
	p.scheduleAntiEntropy(ctx)
	p.markDirty(ctx) // the first push brings the peer up to date
}

func (p *PeerActor) stopTimers() {
	for _, c := range []scheduler.CancelFunc{p.pushTimer, p.hbTimer, p.aeTimer} {
		if c != nil {
			c()
		}
	}
	p.pushTimer, p.hbTimer, p.aeTimer = nil, nil, nil
}

// changed handles a change notice. Changes that came from this very peer
// need no push back; changes that came from one other peer are forwarded
// lazily (that peer pushes them here itself), which keeps a full mesh from
// multiplying pushes. Client changes go out after the flush delay.
func (p *PeerActor) changed(ctx actor.Context, m *Changed) {
	// Until a full push reached the peer, latest and acked say nothing of
	// what it holds: a fresh actor's latest is 0, not this node's version.
	held := p.synced && p.latest <= max(p.acked, p.credited)
	p.latest = max(p.latest, m.Version)
	switch m.Origin {
	case "":
		p.markDirty(ctx)
	case p.addr:
		// Our next push carries them anyway; the peer has them.
		if held {
			p.credited = p.latest
		}
	default:
		p.dirty = true
		if p.pushTimer == nil && !p.pushing {
			p.schedulePush(ctx, p.cfg.HeartbeatInterval)
			p.pushLazy = true
		}
	}
}

// markDirty records that the peer needs a push and schedules one unless a
// push is already scheduled or in flight (it will look at dirty when done).
func (p *PeerActor) markDirty(ctx actor.Context) {
	p.dirty = true
	if p.pushTimer != nil && p.pushLazy {
		p.cancelPush() // a lazy forward must not hold back a client change
	}
	p.schedulePush(ctx, p.cfg.FlushDelay)
}

func (p *PeerActor) schedulePush(ctx actor.Context, d time.Duration) {
	if p.pushTimer != nil || p.pushing {
		return
	}
	p.pushLazy = false
	p.pushTimer = p.timer.SendOnce(d, ctx.Self(), &pushTick{gen: p.gen})
}

func (p *PeerActor) cancelPush() {
	if p.pushTimer != nil {
		p.pushTimer()
		p.pushTimer = nil
	}
}

// push asks the CounterActor for the delta the peer lacks, then sends it
// from a goroutine that reports back with a *pushDone.
func (p *PeerActor) push(ctx actor.Context) {
	if p.pushing || !p.dirty {
		return
	}
	p.dirty, p.pushing = false, true
	since := p.acked
	if p.fullNext {
		since = 0
	}
	target := p.peerReplica
	f := ctx.RequestFuture(p.cfg.Counter, &DeltaSince{Version: since, Limit: MaxPushEntries}, p.cfg.Timeout)
	ctx.ReenterAfter(f, func(res any, err error) {
		d, ok := res.(*Delta)
		if err != nil || !ok {
			p.pushed(ctx, &pushDone{gen: p.gen, since: since, target: target, err: ErrTimeout})
			return
		}
		if d.More {
			p.dirty = true // the rest goes in the next push
		}
		req := &wire.ReplicateRequest{From: p.cfg.Self, Replica: d.Replica, Members: p.members, Entries: d.Entries}
		tr, addr, timeout, gen := p.cfg.Transport, p.addr, p.cfg.Timeout, p.gen
		self, root := ctx.Self(), ctx.ActorSystem().Root
		go func() {
			c, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			reply, err := tr.Replicate(c, addr, req)
			if err == nil && reply == nil {
				err = errNoReply
			}
			root.Send(self, &pushDone{gen: gen, since: since, version: d.Version, target: target, reply: reply, err: err})
		}()
	})
}

// flush pushes at once, without the flush delay, and answers when done.
func (p *PeerActor) flush(ctx actor.Context) {
	if !p.dirty && !p.pushing {
		ctx.Respond(&Flushed{})
		return
	}
	p.flushers = append(p.flushers, ctx.Sender())
	p.cancelPush()
	p.push(ctx)
}

func (p *PeerActor) flushed(ctx actor.Context, err error) {
	for _, pid := range p.flushers {
		ctx.Send(pid, &Flushed{Err: err})
	}
	p.flushers = nil
}

func (p *PeerActor) pushed(ctx actor.Context, m *pushDone) {
	p.pushing = false
	p.latest = max(p.latest, m.version) // known even if the push failed
	if len(p.flushers) > 0 {
		if m.err != nil {
			p.flushed(ctx, m.err)
		} else if !p.dirty {
			defer p.flushed(ctx, nil)
		}
	}
	if m.err != nil {
		p.dirty = true
		p.backoff = min(max(2*p.backoff, p.cfg.RetryMin), p.cfg.RetryMax)
		p.log.Debug("push failed", "err", m.err, "retry_in", p.backoff)
		p.schedulePush(ctx, p.backoff/2+rand.N(p.backoff/2+1))
		return
	}
	p.backoff = 0
	switch {
	case m.since == 0:
		// Full state: whoever answered now holds everything up to version.
		p.acked, p.fullNext, p.synced = m.version, false, true
	case m.reply.Replica == m.target:
		p.acked = max(p.acked, m.version)
	default:
		// A different process answered than the one the delta was cut
		// for: it may lack what its predecessor acknowledged.
		p.fullNext, p.dirty, p.synced, p.credited = true, true, false, 0
	}
	if m.reply.Replica != m.target {
		// News: a process the push was not cut for. A reply from the
		// target itself must not undo a newer id a heartbeat has seen.
		p.peerReplica = m.reply.Replica
	}
	if p.dirty && len(p.flushers) > 0 {
		p.push(ctx)
	} else if p.dirty {
		p.schedulePush(ctx, p.cfg.FlushDelay)
	}
}

func (p *PeerActor) heartbeat(ctx actor.Context) {
	if p.checking {
		return
	}
	p.checking = true
	tr, addr, timeout, gen := p.cfg.Transport, p.addr, p.cfg.Timeout, p.gen
	self, root := ctx.Self(), ctx.ActorSystem().Root
	go func() {
		c, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		reply, err := tr.Health(c, addr)
		root.Send(self, &heartbeatDone{gen: gen, reply: reply, err: err})
	}()
}

func (p *PeerActor) heartbeatDone(ctx actor.Context, m *heartbeatDone) {
	p.checking = false
	p.hbTimer = p.timer.SendOnce(jitter(p.stretch(p.cfg.HeartbeatInterval)), ctx.Self(), &heartbeatTick{gen: p.gen})
	if m.err != nil {
		p.fails++
		p.log.Debug("health check failed", "fails", p.fails, "err", m.err)
		// Every failed check reports, so that how far behind the peer is
		// stays current while it does not answer.
		p.state = StateSuspect
		ctx.Send(ctx.Parent(), &PeerStatus{From: ctx.Self(), Addr: p.addr, State: StateSuspect, Replica: p.peerReplica,
			Behind: p.behind()})
		if p.fails == p.cfg.FailuresBeforeDown {
			ctx.Send(ctx.Parent(), &PeerUnhealthy{From: ctx.Self(), Addr: p.addr, Err: m.err})
		}
		return
	}
	if p.fails > 0 && p.dirty && !p.pushing {
		// The peer answers again: retry now, not when the backoff ends.
		p.cancelPush()
		p.backoff = 0
		p.schedulePush(ctx, 0)
	}
	if m.reply.Node == p.cfg.Self {
		ctx.Send(ctx.Parent(), &PeerIsSelf{From: ctx.Self(), Addr: p.addr})
		return
	}
	p.fails = 0
	p.state = StateAlive
	if m.reply.Replica != p.peerReplica {
		if p.peerReplica != "" {
			p.log.Info("peer restarted", "replica", m.reply.Replica, "was", p.peerReplica)
		}
		p.peerReplica = m.reply.Replica
		p.fullNext, p.synced, p.credited = true, false, 0
		p.markDirty(ctx)
	}
	ctx.Send(ctx.Parent(), &PeerStatus{From: ctx.Self(), Addr: p.addr, State: StateAlive, LastSeen: time.Now(),
		Replica: p.peerReplica, Behind: p.behind()})
}

// HeartbeatBudget is how many peers a node health-checks per heartbeat
// interval (and pushes full state to per anti-entropy interval), at most.
// Each PeerActor checks its own peer, so without a bound a cluster of N
// nodes makes N(N-1) checks per interval, and on a VM a check that wakes an
// idle process costs about a millisecond of CPU. Past the budget each peer
// is checked less often, a node's checks stay at about HeartbeatBudget per
// interval, and a dead peer is found later in step (32 nodes: every ~3.9
// intervals).
const HeartbeatBudget = 8

// scheduleAntiEntropy sets the timer of the next full-state push.
func (p *PeerActor) scheduleAntiEntropy(ctx actor.Context) {
	p.aeTimer = p.timer.SendOnce(jitter(p.stretch(p.cfg.AntiEntropyInterval)), ctx.Self(), &antiEntropyTick{gen: p.gen})
}

// stretch scales a per-peer interval so that all of a node's PeerActors
// together keep to HeartbeatBudget per interval.
func (p *PeerActor) stretch(d time.Duration) time.Duration {
	if n := len(p.members); n > HeartbeatBudget {
		return d * time.Duration(n) / HeartbeatBudget
	}
	return d
}

// behind returns how many of our changes the peer has not acknowledged.
func (p *PeerActor) behind() uint64 {
	if !p.synced {
		return p.latest
	}
	return p.latest - min(p.latest, max(p.acked, p.credited))
}

var errNoReply = errors.New("actors: transport returned no reply")

// jitter returns d scaled by a random factor in [0.75, 1.25).
func jitter(d time.Duration) time.Duration {
	return d*3/4 + rand.N(d/2+1)
}
