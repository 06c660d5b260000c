package replication

import "time"

// Config tunes a Peer. The Peer waits for nothing itself: its durations
// come back in SchedulePush decisions.
type Config struct {
	// Addr is the peer's address, as change notices name their origin.
	Addr string
	// FlushDelay is the wait between a change and the push it causes, so
	// that changes close together share one push.
	FlushDelay time.Duration
	// LazyDelay is the wait before forwarding changes that came from a third
	// node (which pushes them to the peer itself). A change that owes the
	// peer a push sooner cuts the wait short.
	LazyDelay time.Duration
	// RetryMin and RetryMax bound the backoff between failed pushes; each
	// retry comes between half the backoff and all of it.
	RetryMin, RetryMax time.Duration
	// FailuresBeforeDown is how many health checks in a row must fail
	// before the peer is reported unhealthy.
	FailuresBeforeDown int
}

// owed is how soon the peer needs a push.
type owed int

const (
	owedNothing owed = iota
	owedLazy         // only changes a third node also pushes to the peer
	owedSoon         // changes the peer gets from no one else, or a full push
)

// Peer is the replication bookkeeping for one remote node. Its zero value is
// not ready; use New. It is not safe for concurrent use: its shell calls
// Step from one goroutine at a time (an actor's Receive).
type Peer struct {
	cfg Config

	// What the peer holds.
	replica  string // the peer's process, as last learnt
	synced   bool   // a full push reached replica, so acked is what it holds
	acked    uint64 // this node's version replica acknowledged
	credited uint64 // a version replica holds because every change up to it came from it
	latest   uint64 // this node's latest durable version, as far as known
	fullNext bool   // the next push sends the full state
	// fullAt is the version of the last full push replica acknowledged
	// (meaningful while synced): while latest has not passed it, a full
	// push would resend exactly what replica made durable.
	fullAt uint64

	// Pushing.
	owed     owed
	pushing  bool
	since    uint64 // of the push in flight
	target   string // the process the push in flight was cut for
	armed    bool   // a PushDue with seq is on its way
	lazy     bool   // the armed timer is a lazy forward
	seq      uint64
	backoff  time.Duration // 0: the last push did not fail
	flushers bool          // someone waits for an AnswerFlush
	probing  bool          // the push in flight is a probe (ProbeDue)

	fails   int   // health checks failed in a row
	refused error // the peer refused this node's key (why); no push until it answers

	out []Action
}

// New returns the Peer of the node at cfg.Addr. Nothing has been pushed to
// it yet: the first push, on Start, sends the full state.
func New(cfg Config) *Peer {
	return &Peer{cfg: cfg, fullNext: true}
}

// Step feeds the Peer one event and returns what to do about it, in order.
func (p *Peer) Step(e Event) []Action {
	p.out = nil
	switch e := e.(type) {
	case Start, MembersChanged:
		p.owe()
	case Changed:
		p.changed(e)
	case AntiEntropy:
		if p.synced && p.latest <= p.fullAt {
			// Nothing changed since replica acknowledged the full state:
			// a full push would resend it. The sync clock advances with
			// the probes (ProbeDue) instead.
			return nil
		}
		p.fullNext = true
		p.owe()
	case ProbeDue:
		p.probe()
	case Flush:
		p.flush()
	case PushDue:
		if p.armed && e.Seq == p.seq { // else cancelled, or replaced by a later timer
			p.armed = false
			p.push()
		}
	case Pushed:
		p.pushed(e)
	case Health:
		p.health(e)
	}
	return p.out
}

// Replica returns the peer's replica id, as last learnt ("" before).
func (p *Peer) Replica() string { return p.replica }

// held returns this node's version the peer is known to hold.
func (p *Peer) held() uint64 {
	if !p.synced {
		return 0 // until a full push reached it, nothing is known
	}
	return max(p.acked, p.credited)
}

func (p *Peer) emit(a Action) { p.out = append(p.out, a) }

// changed handles a change notice. Changes that came from this very peer
// need no push back; changes that came from a third node are forwarded
// lazily (that node pushes them here itself), which keeps a full mesh from
// multiplying pushes. Client changes go out after the flush delay.
func (p *Peer) changed(e Changed) {
	held := p.synced && p.latest <= p.held()
	p.latest = max(p.latest, e.Version)
	switch e.Origin {
	case "":
		p.owe()
	case p.cfg.Addr:
		// The peer has them, and if it held everything before them, it
		// holds everything up to them.
		if held {
			p.credited = p.latest
		}
	default:
		p.owed = max(p.owed, owedLazy)
		p.schedule(p.cfg.LazyDelay, p.cfg.LazyDelay, true)
	}
}

// owe records that the peer needs a push soon and arms the push timer
// unless a push is armed (not lazily) or in flight: the end of a push looks
// at what is owed.
func (p *Peer) owe() {
	p.owed = owedSoon
	if p.armed && p.lazy {
		p.armed = false // a lazy forward must not hold back a client change
	}
	p.schedule(p.cfg.FlushDelay, p.cfg.FlushDelay, false)
}

// schedule arms the push timer unless it is armed, a push is in flight or
// the peer refuses this node's key.
func (p *Peer) schedule(min, max time.Duration, lazy bool) {
	if p.armed || p.pushing || p.refused != nil {
		return
	}
	p.seq++
	p.armed, p.lazy = true, lazy
	p.emit(SchedulePush{Seq: p.seq, Min: min, Max: max})
}

// push starts a push of what the peer lacks, unless one is in flight or
// nothing is owed.
func (p *Peer) push() {
	if p.pushing || p.owed == owedNothing || p.refused != nil {
		return
	}
	p.since = p.acked
	if p.fullNext {
		p.since = 0
	}
	p.target = p.replica
	p.pushing, p.owed, p.armed = true, owedNothing, false
	push := Push{Since: p.since}
	if p.synced || p.since == 0 {
		push.To = p.replica
	}
	p.emit(push)
}

// probe answers the Supervisor's turn to probe the peer. A peer that holds
// all this node is known to have (synced, nothing owed, no push in flight)
// is probed with a push of what it lacks, normally nothing: its answer
// shows the peer alive like a health check, and since the push is complete
// and cut for the process that holds everything before it, it carries the
// sync clock (To and At) that idle peers would otherwise only advance with
// full anti-entropy pushes. Otherwise the probe is a plain health check.
func (p *Peer) probe() {
	if !p.synced || p.pushing || p.owed != owedNothing || p.refused != nil || p.replica == "" {
		p.emit(Check{})
		return
	}
	p.since, p.target = p.held(), p.replica
	p.pushing, p.probing = true, true
	p.emit(Push{Since: p.since, To: p.replica, Probe: true})
}

// flush pushes at once, without the flush delay, and answers when the peer
// is up to date or a push failed. A peer that refuses this node's key gets
// no push: the flush fails at once.
func (p *Peer) flush() {
	if p.owed == owedNothing && !p.pushing {
		p.emit(AnswerFlush{})
		return
	}
	if p.refused != nil && !p.pushing {
		p.emit(AnswerFlush{Err: p.refused})
		return
	}
	p.flushers = true
	p.push()
}

func (p *Peer) answerFlush(err error) {
	if p.flushers {
		p.flushers = false
		p.emit(AnswerFlush{Err: err})
	}
}

func (p *Peer) pushed(e Pushed) {
	probing := p.probing
	p.pushing, p.probing = false, false
	p.latest = max(p.latest, e.Version) // known even if the push failed
	if e.Err != nil && probing && p.owed == owedNothing {
		// A probe that owed nothing failed: the peer still holds all it
		// held (a flush is answered so), the Health event that follows
		// judges it, and there is nothing to retry.
		if e.Unauthorized {
			p.answerFlush(e.Err)
			p.refuse(e.Err)
			return
		}
		p.answerFlush(nil)
		return
	}
	if e.Err != nil {
		p.owed = owedSoon
		p.backoff = min(max(2*p.backoff, p.cfg.RetryMin), p.cfg.RetryMax)
		p.answerFlush(e.Err)
		if e.Unauthorized {
			p.refuse(e.Err)
		}
		p.schedule(p.backoff/2, p.backoff, false)
		return
	}
	p.backoff = 0
	if e.More {
		p.owed = owedSoon // the rest goes in the next push
	}
	p.acknowledged(e.Version, e.Replica)
	switch {
	case p.flushers && p.owed != owedNothing:
		p.push()
	case p.flushers:
		p.answerFlush(nil)
	case p.owed == owedSoon:
		p.schedule(p.cfg.FlushDelay, p.cfg.FlushDelay, false)
	case p.owed == owedLazy:
		p.schedule(p.cfg.LazyDelay, p.cfg.LazyDelay, true)
	}
}

// acknowledged learns from the process that answered a push what it holds.
func (p *Peer) acknowledged(version uint64, from string) {
	switch {
	case from == p.target && from != p.replica:
		// The process the push was cut for answered, but a health check
		// has met its successor since: this says nothing of what the
		// successor holds (it gets the full push the check asked for).
	case p.since == 0:
		// Full state: whoever answered now holds everything up to version.
		if from != p.replica {
			p.replica, p.credited = from, 0
		}
		p.acked, p.synced, p.fullNext, p.fullAt = version, true, false, version
	case from == p.target:
		p.acked = max(p.acked, version)
	default:
		// A different process answered than the one the delta was cut
		// for: it may lack what its predecessor acknowledged.
		p.restarted(from)
	}
}

// restarted records that the peer runs a new process, which gets the full
// state.
func (p *Peer) restarted(replica string) {
	p.replica = replica
	p.fullNext, p.synced, p.credited = true, false, 0
	p.owed = owedSoon
}

// refuse records that the peer refused this node's key: pushes stop until a
// health check succeeds, and the parent hears of it once.
func (p *Peer) refuse(err error) {
	if p.refused == nil {
		p.refused, p.armed = err, false
		p.emit(ReportUnauthorized{Err: err})
	}
}

func (p *Peer) health(e Health) {
	if e.Unauthorized {
		p.refuse(e.Err)
		return
	}
	if e.Err != nil {
		p.fails++
		// Every failed check reports, so that how far behind the peer is
		// stays current while it does not answer.
		p.emit(p.report(false))
		if p.fails == p.cfg.FailuresBeforeDown {
			p.emit(ReportUnhealthy{Err: e.Err})
		}
		return
	}
	if e.Self {
		p.emit(ReportSelf{})
		return
	}
	if p.fails > 0 || p.refused != nil {
		// The peer answers again: retry now, not when the backoff ends.
		p.refused, p.backoff = nil, 0
		if p.owed != owedNothing && !p.pushing {
			p.armed = false
			p.schedule(0, 0, false)
		}
	}
	p.fails = 0
	if e.Replica != p.replica {
		p.restarted(e.Replica)
		p.owe()
	}
	p.emit(p.report(true))
}

func (p *Peer) report(answered bool) Report {
	return Report{Answered: answered, Replica: p.replica, Held: p.held(), Latest: p.latest}
}
