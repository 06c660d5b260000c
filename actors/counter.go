package actors

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/scheduler"

	"countd/crdt"
)

// Errors the CounterActor and its client return. Callers match them with
// errors.Is; crdt.ErrOverflow and crdt.ErrInvalid pass through unchanged.
var (
	// ErrStore means a write to the store failed. The change was applied in
	// memory and may yet become durable with a later write: its outcome is
	// unknown to the client, as after a timeout.
	ErrStore = errors.New("actors: store write failed")
	// ErrTimeout means the actor did not answer within the wait.
	ErrTimeout = errors.New("actors: no answer in time")
	// ErrStopped means the actor is not running.
	ErrStopped = errors.New("actors: stopped")
	// ErrFull means a client change would take the state past its limits
	// (crdt.Limits: a new counter past -max-counters, or a new entry on a
	// counter that holds -max-entries). Nothing was changed; changes to
	// what exists keep working. It wraps the crdt.ErrLimit that says why.
	ErrFull = errors.New("actors: limit reached")
	// ErrKeyConflict means the change's idempotency key was first used for
	// another change (another counter, operation or amount). Nothing was
	// changed.
	ErrKeyConflict = errors.New("actors: idempotency key used for another change")
	// ErrKeyInFlight means a change with the same idempotency key is still
	// being made on this node (not yet durable). Nothing was changed.
	ErrKeyInFlight = errors.New("actors: a change with this idempotency key is in flight")
)

// Store is where the CounterActor makes changes durable. Save must write all
// of put and delete all of del (keys; the same key may be in both, and the
// put wins) or nothing, and return only once that is on disk.
type Store interface {
	Save(put, del []crdt.Entry) error
}

// Observer is told about the CounterActor's work; *metrics.Metrics
// implements it. Its methods are called by the actor and must not block.
type Observer interface {
	// Committed reports a store write that made requests durable.
	Committed(requests int, took time.Duration)
	// Counters reports how many named counters there are, when it changes.
	Counters(n int)
	// CountersOverLimit reports n counters that merges created past
	// crdt.Limits.MaxCounters: kept, since dropping them would make nodes
	// disagree for good.
	CountersOverLimit(n int)
	// MergeRefused reports a merge refused whole because it would give a
	// counter more than crdt.Limits.MaxEntries entries.
	MergeRefused()
	// Entries reports how many replica entries the state holds, when it
	// changes.
	Entries(n int)
	// Deleted reports n counters deleted here: by a client (reason
	// "delete") or because their expiry passed ("expire").
	Deleted(reason string, n int)
	// Collected reports n dead counters (tombstones) forgotten because
	// every member holds them.
	Collected(n int)
	// Replayed reports a keyed change answered as a replay: its key had
	// recorded this very change before, and nothing was counted again.
	Replayed()
	// Keys reports how many key entries (idempotency keys) the state
	// holds, when it changes.
	Keys(n int)
	// KeysRetired reports n key entries retired here (their window passed).
	KeysRetired(n int)
}

// Increment asks the CounterActor to add By to Counter. A TTL above 0
// makes the counter expire that long from now if it has no expiry yet (the
// rate-limiter window: later changes do not extend it). A counter whose
// expiry has passed is deleted first, so the change starts a new one.
// Reply: *ChangeResult, once the change is durable.
type Increment struct {
	Counter string
	By      uint64
	TTL     time.Duration
	Key     string // the client's idempotency key; "" for none (see Change)
	Reply   Reply
}

// Decrement asks the CounterActor to subtract By from Counter; TTL as for
// Increment. Reply: *ChangeResult, once the change is durable.
type Decrement struct {
	Counter string
	By      uint64
	TTL     time.Duration
	Key     string // as for Increment
	Reply   Reply
}

// ChangeResult answers Increment and Decrement: the counter's value right
// after this change and when it expires (unix milliseconds, 0: never), or
// why it failed. Version is the node's state version that holds the change
// (what a peer must hold for it: the write levels wait for that). Replayed
// says the change's idempotency key had been used for this very change
// before: nothing was changed now, and Value is the counter's current value.
type ChangeResult struct {
	Counter  string
	Value    int64
	Expires  uint64
	Version  uint64
	Replayed bool
	Err      error
}

// Delete asks the CounterActor to delete Counter: an observed reset of
// every change this node has seen (crdt.State.Delete). Reply:
// *DeleteResult, once the delete is durable.
type Delete struct {
	Counter string
	Reply   Reply
}

// DeleteResult answers Delete: whether there was a counter to delete, or
// why the delete failed.
type DeleteResult struct {
	Deleted bool
	Err     error
}

// Changes asks the CounterActor to make several client changes at once, in
// order (a RESP pipeline's run of INCRs): one message, one group commit.
// Reply: *ChangesResult, once every change is durable.
type Changes struct {
	Changes []Change
	Reply   Reply
}

// ChangesResult answers Changes: one result per change, in order.
type ChangesResult struct {
	Results []ChangeResult
}

// Expire asks the CounterActor to make Counter expire TTL from now, or to
// never expire if TTL is 0. With NX it sets an expiry only if the counter
// has none; XX, GT and LT are Redis's: only if it has one, only if the new
// one is later (no expiry counts as the latest), only if it is earlier.
// Reply: *ExpireResult, once durable.
type Expire struct {
	Counter string
	TTL     time.Duration
	NX      bool
	XX      bool
	GT      bool
	LT      bool
	// Past says the expiry asked for has passed already (Redis's EXPIRE
	// with a ttl of 0 or less): the counter is deleted, if the conditions
	// allow, and TTL is ignored.
	Past  bool
	Reply Reply
}

// ExpireResult answers Expire: whether the expiry was set, and the
// counter's value and expiry after it (unix milliseconds, 0: never), or why
// it failed (crdt.ErrNotFound: no such counter).
type ExpireResult struct {
	Set     bool
	Value   int64
	Expires uint64
	Err     error
}

// GetCounter asks for one counter's value. Reply: *CounterValue.
type GetCounter struct {
	Counter string
	Reply   Reply
}

// CounterValue answers GetCounter. A counter that does not exist (never
// created, deleted or expired) has Exists false and Value 0.
type CounterValue struct {
	Counter string
	Value   int64
	Expires uint64 // unix milliseconds; 0: never
	Exists  bool
}

// GetAll asks for every counter's value. Reply: *AllCounters.
type GetAll struct{ Reply Reply }

// AllCounters answers GetAll: the value of every counter, and the expiry
// (unix milliseconds) of those that have one.
type AllCounters struct {
	Values  map[string]int64
	Expires map[string]uint64
}

// GetNames asks for the names of every counter that exists, in no order.
// Reply: *CounterNames. With GetValues it reads every counter in chunks
// (Counters.Range), so no copy of every value is ever made.
type GetNames struct{ Reply Reply }

// CounterNames answers GetNames.
type CounterNames struct{ Names []string }

// GetValues asks for the values of the named counters. Reply:
// *CounterValues, one CounterValue per name, in the same order.
type GetValues struct {
	Names []string
	Reply Reply
}

// CounterValues answers GetValues.
type CounterValues struct{ Values []CounterValue }

// Stable tells the CounterActor that every member of the cluster holds
// this node's durable state up to version Through (math.MaxUint64: there
// are no other members). Dead counters all of whose entries are that old
// are then held everywhere and can be forgotten (crdt.State.Collectable).
type Stable struct{ Through uint64 }

// Synced tells the CounterActor that every member of the cluster has sent
// this node everything it held as of its own clock At (unix milliseconds;
// the least over the members, math.MaxUint64: there are no other members).
// A key entry accepted before At minus the idempotency window can then be
// held nowhere this node has not seen, so its owner may retire it.
type Synced struct{ At uint64 }

// Merge asks the CounterActor to fold a peer's entries into the state.
// From names the peer that pushed them. Reply: *MergeResult, once the merged
// state is durable.
type Merge struct {
	Entries []crdt.Entry
	From    string
	Reply   Reply
}

// MergeResult answers Merge: how many entries changed, or why it failed
// (crdt.ErrInvalid: nothing was changed).
type MergeResult struct {
	Changed int
	Err     error
}

// GetVersion asks for the version of the durable state: how many changes
// (entry versions) peers are sent in all. Reply: *Version.
type GetVersion struct{ Reply Reply }

// Version answers GetVersion.
type Version struct{ Version uint64 }

// DeltaSince asks for the durable entries that changed after Version, at
// most Limit of them (0: no limit). Reply: *Delta.
type DeltaSince struct {
	Version uint64
	Limit   int
	Reply   Reply
}

// Delta answers DeltaSince. Version is the durable version the entries bring
// a peer up to: the next DeltaSince for that peer starts from it. More says
// the limit cut the delta short.
type Delta struct {
	Replica string
	Version uint64
	Entries []crdt.Entry
	More    bool
}

// Subscribe registers PID for a *Changed notice after each durable change.
// A subscriber is dropped when it stops.
type Subscribe struct{ PID *actor.PID }

// Changed tells a subscriber that the durable state reached Version.
// Origin is the peer whose pushes caused every change since the last notice,
// or "" if any change came from a client (or from several peers): a
// PeerActor need not echo a peer's own changes back to it at once.
type Changed struct {
	Version uint64
	Origin  string
}

// Reply, when set on a request, receives the answer instead of the sender.
// It must have room for one value. Counters uses it: a buffered channel
// costs a fraction of a protoactor future, and this is the hot path of every
// HTTP request.
type Reply chan<- any

// answer is where a request's reply goes: its Reply channel, else its
// sender; or, for one change of a Changes, its slot in the group's reply.
type answer struct {
	ch    Reply
	pid   *actor.PID
	group *group
	slot  int
}

// group gathers the results of a Changes: it answers once every change has
// its result.
type group struct {
	to   answer
	res  *ChangesResult
	left int
}

func answerTo(ctx actor.Context, ch Reply) answer { return answer{ch: ch, pid: ctx.Sender()} }

func (w answer) send(ctx actor.Context, msg any) {
	switch {
	case w.group != nil:
		g := w.group
		g.res.Results[w.slot] = *msg.(*ChangeResult)
		if g.left--; g.left == 0 {
			g.to.send(ctx, g.res)
		}
	case w.ch != nil:
		w.ch <- msg
	case w.pid != nil:
		ctx.Send(w.pid, msg)
	}
}

// saved reports the end of a store write to the CounterActor.
type saved struct{ err error }

type entryKey struct{ counter, replica string }

// batch is one group commit: the entries it writes and the requests waiting
// for it to be durable.
type batch struct {
	dirty   map[entryKey]struct{}
	removed []crdt.Entry // entries the state dropped: deleted from the store
	waiters []waiter
	clients int          // waiters that are client changes, not merges (pacer)
	entries []crdt.Entry // what it writes
	origin  origin
	started time.Time // when its write began
}

// origin tracks where the changes of a batch came from.
type origin struct {
	peer  string // the one peer all changes came from so far
	mixed bool   // a client change, or changes from several peers
}

func (o *origin) add(peer string) {
	switch {
	case peer == "" || o.mixed:
		o.mixed = true
	case o.peer == "":
		o.peer = peer
	case o.peer != peer:
		o.mixed = true
	}
}

// merge folds the origin of another batch into o.
func (o *origin) merge(other origin) {
	switch {
	case other.mixed:
		o.mixed = true
	case other.peer != "":
		o.add(other.peer)
	}
}

func (o origin) String() string {
	if o.mixed {
		return ""
	}
	return o.peer
}

type waiter struct {
	to    answer
	reply any
	key   string // a keyed change's key, pending until answered
}

// CounterActor owns the counters. Changes are applied in memory at once and
// answered once durable: requests that arrive while a write is in flight are
// gathered into the next write (group commit), and each gets its own reply.
// Peers are only ever sent durable state (see DeltaSince), so a crash can lose
// only changes that no client saw acknowledged.
type CounterActor struct {
	state *crdt.State
	store Store // nil: keep nothing on disk
	log   *slog.Logger
	obs   Observer // nil: none
	// disk holds the durable totals of every entry: what peers are sent.
	// It has versions of its own, which change notices and deltas carry.
	// A hot entry's in-memory version is nearly always ahead of the
	// durable version, so a delta of state itself would hold it back for
	// as long as clients keep changing it. In memory mode disk is state.
	disk      *crdt.State
	dispatch  *pinnedDispatcher // runs the mailbox
	announced uint64            // the disk version subscribers were last told of
	known     int               // counters last reported to obs
	entries   int               // entries last reported to obs
	keys      int               // key entries last reported to obs
	overTold  bool              // counters past the limit were logged (once)
	stable    uint64            // every member holds disk up to this version (Stable)
	synced    uint64            // every member sent what it held as of this time (Synced; unix ms)
	window    uint64            // the idempotency window, in milliseconds
	// pending holds the keys of keyed changes taken and not yet answered
	// (waiting for their commit): the same key again is ErrKeyInFlight.
	pending map[string]struct{}

	now   func() time.Time
	sweep time.Duration // the least time between sweeps (expiries, key retirement)
	// clocked says the clock was injected (WithClock): it may jump, so
	// the sweep cannot sleep until what is due and checks every sweep
	// period while anything is pending.
	clocked bool

	next batch // gathering
	// gathering holds writes back while a Changes is taken, so that all
	// its changes share one commit.
	gathering bool
	inFlight  *batch // being written, or nil
	// After a write the next batch may be held for the clients it
	// answered to come back (pacer): holdTimer ends the hold.
	pace      pacer
	holdTimer scheduler.CancelFunc // nil: not holding
	holdGen   uint64               // the armed hold's holdEnd.gen; a cancelled one's is ignored
	subs      []*actor.PID

	// After a failed write the dirty entries are written again after a
	// backoff (or with the next request, whichever comes first).
	timer      *scheduler.TimerScheduler
	retryDelay time.Duration // 0: the last write did not fail
	retryTimer scheduler.CancelFunc
	sweepTimer scheduler.CancelFunc // nil: no sweep armed (nothing is due)
	sweepFor   uint64               // what the armed sweep is for: the due time it covers (unix ms)
	sweepAt    time.Time            // when the armed sweep fires
	sweepGen   uint64               // the armed sweep's sweepTick.gen; a cancelled one's tick is ignored
}

// Bounds of the backoff between retries of a failed store write.
const (
	writeRetryMin = 50 * time.Millisecond
	writeRetryMax = 5 * time.Second
)

// retryWrite is the CounterActor's timer for writing again after a failure.
type retryWrite struct{}

// holdEnd is the CounterActor's timer that ends the hold of a gathered
// batch (pacer). gen names the hold.
type holdEnd struct{ gen uint64 }

// sweepTick is the CounterActor's timer for deleting expired counters and
// retiring key entries. gen names the timer that sent it.
type sweepTick struct{ gen uint64 }

// DefaultSweep is the least time between two sweeps of a CounterActor,
// which delete the counters whose expiry passed and retire key entries,
// unless WithSweep says otherwise: an expired counter is deleted within
// this of its expiry. Reads treat an expired counter as gone at once; the
// sweep makes it gone on every node and lets its storage be reclaimed.
// The sweep runs only when something is due: an idle node with nothing
// pending arms no timer.
const DefaultSweep = time.Second

// maxSweepSleep bounds how long the sweep timer sleeps towards something
// due, so that a step of the wall clock delays a sweep by at most this.
const maxSweepSleep = time.Minute

// CounterOption tunes a CounterActor.
type CounterOption func(*CounterActor)

// WithClock makes the CounterActor read the time from now (expiries).
func WithClock(now func() time.Time) CounterOption {
	return func(a *CounterActor) { a.now, a.clocked = now, true }
}

// DefaultIdempotencyWindow is how long a key entry is kept, unless
// WithIdempotencyWindow says otherwise: a retry of a keyed change within
// it is counted once.
const DefaultIdempotencyWindow = 24 * time.Hour

// WithIdempotencyWindow sets how long after a keyed change its key entry
// is kept before its owner retires it (in the sweep, once Synced allows).
func WithIdempotencyWindow(d time.Duration) CounterOption {
	return func(a *CounterActor) { a.window = uint64(max(d.Milliseconds(), 0)) }
}

// WithCommitHold sets the longest time a gathered batch is held for the
// clients the last write answered (DefaultCommitHold; 0: never held).
func WithCommitHold(d time.Duration) CounterOption {
	return func(a *CounterActor) { a.pace.max = max(d, 0) }
}

// WithSweep sets the least time between sweeps (DefaultSweep).
func WithSweep(every time.Duration) CounterOption {
	return func(a *CounterActor) { a.sweep = every }
}

// NewCounterProps returns the props of a CounterActor that owns state (loaded
// from store by the caller) and writes to store; a nil store keeps nothing.
// obs, if not nil, is told about commits and the number of counters.
func NewCounterProps(state *crdt.State, store Store, log *slog.Logger, obs Observer, opts ...CounterOption) *actor.Props {
	disk := state
	if store != nil {
		disk = durableCopy(state)
	}
	// From here on the state merges peers' entries: a tombstone it does not
	// hold (forgotten, or never needed) is not taken back.
	state.SkipDeadNew(true)
	dispatch := newPinnedDispatcher(counterThroughput)
	return actor.PropsFromProducer(func() actor.Actor {
		// A restart after a panic keeps the same state: it is the only copy.
		a := &CounterActor{state: state, store: store, log: log, obs: obs, disk: disk, dispatch: dispatch, announced: disk.Version(),
			known: -1, entries: -1, keys: -1, now: time.Now, sweep: DefaultSweep, pace: pacer{max: DefaultCommitHold},
			window: uint64(DefaultIdempotencyWindow.Milliseconds())}
		for _, o := range opts {
			o(a)
		}
		return a
	}, actor.WithDispatcher(dispatch))
}

// counterThroughput is how many messages the CounterActor's mailbox
// handles before it yields the processor: protoactor's default.
const counterThroughput = 300

// copyChunk is how many entries durableCopy moves at a time.
const copyChunk = 4096

// durableCopy returns a copy of state (just loaded: all of it is durable)
// with versions of its own, for CounterActor.disk. It copies a chunk at a
// time, so that a million loaded entries are not held a third time, as
// one []Entry, while the copy is made.
func durableCopy(state *crdt.State) *crdt.State {
	disk := crdt.New(state.Replica())
	for since := uint64(0); since < state.Version(); {
		entries, through := state.DeltaLimit(since, state.Version(), copyChunk)
		if err := disk.Load(entries); err != nil {
			panic(fmt.Sprintf("actors: state does not merge into a copy of itself: %v", err))
		}
		since = through
	}
	disk.TakeRemoved()
	return disk
}

// nowMs returns the time in unix milliseconds, as expiries hold it.
func (a *CounterActor) nowMs() uint64 { return uint64(max(a.now().UnixMilli(), 0)) }

// Receive implements actor.Actor.
func (a *CounterActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		a.timer = scheduler.NewTimerScheduler(ctx.ActorSystem().Root)
		a.armSweep(ctx) // the loaded state may hold expiries and keys
		a.countCounters()
	case *actor.Stopping, *actor.Restarting:
		if a.retryTimer != nil {
			a.retryTimer()
		}
		a.disarmSweep()
		a.endHold()
	case *actor.Stopped:
		a.dispatch.retire()
	case *holdEnd:
		if m.gen != a.holdGen || a.holdTimer == nil {
			return // the hold ended before its timer fired
		}
		a.holdTimer = nil
		a.pace.ended(false)
		a.flush(ctx, true)
	case *retryWrite:
		a.retryTimer = nil
		a.flush(ctx, true)
	case *sweepTick:
		if m.gen != a.sweepGen || a.sweepTimer == nil {
			return // a cancelled timer's tick
		}
		a.sweepTimer = nil
		a.sweepExpired(ctx)
		a.retire(ctx)
		a.armSweep(ctx)
	case *Increment:
		a.change(ctx, answerTo(ctx, m.Reply), m.Counter, m.By, false, m.TTL, m.Key)
		a.armSweep(ctx)
	case *Decrement:
		a.change(ctx, answerTo(ctx, m.Reply), m.Counter, m.By, true, m.TTL, m.Key)
		a.armSweep(ctx)
	case *Changes:
		a.changes(ctx, m)
		a.armSweep(ctx)
	case *Delete:
		a.delete(ctx, m)
	case *Expire:
		a.expire(ctx, m)
		a.armSweep(ctx)
	case *Stable:
		a.stable = m.Through
		a.collect(ctx)
	case *Synced:
		a.synced = m.At
		a.armSweep(ctx) // key entries may be due now
	case *Merge:
		a.merge(ctx, m)
		a.armSweep(ctx) // merged expiries, or this lineage's keys back from a peer
	case *sweepQuery:
		ctx.Respond(&sweepState{Armed: a.sweepTimer != nil, For: a.sweepFor})
	case *GetCounter:
		r := &CounterValue{Counter: m.Counter}
		if v, exp, ok := a.state.Lookup(m.Counter); ok && !crdt.Expired(exp, a.nowMs()) {
			r.Value, r.Expires, r.Exists = v, exp, true
		}
		answerTo(ctx, m.Reply).send(ctx, r)
	case *GetAll:
		all := &AllCounters{Values: make(map[string]int64, a.state.Len())}
		for name, c := range a.state.Values(a.nowMs()) {
			all.Values[name] = c.Value
			if c.Expires != 0 {
				if all.Expires == nil {
					all.Expires = make(map[string]uint64)
				}
				all.Expires[name] = c.Expires
			}
		}
		answerTo(ctx, m.Reply).send(ctx, all)
	case *GetNames:
		answerTo(ctx, m.Reply).send(ctx, &CounterNames{Names: a.state.Names(a.nowMs())})
	case *GetValues:
		now := a.nowMs()
		r := &CounterValues{Values: make([]CounterValue, len(m.Names))}
		for i, name := range m.Names {
			r.Values[i].Counter = name
			if v, exp, ok := a.state.Lookup(name); ok && !crdt.Expired(exp, now) {
				r.Values[i].Value, r.Values[i].Expires, r.Values[i].Exists = v, exp, true
			}
		}
		answerTo(ctx, m.Reply).send(ctx, r)
	case *GetVersion:
		answerTo(ctx, m.Reply).send(ctx, &Version{Version: a.disk.Version()})
	case *GetEntries:
		answerTo(ctx, m.Reply).send(ctx, &CounterEntries{Replica: a.state.Replica(), Entries: a.disk.EntriesOf(m.Counter)})
	case *DeltaSince:
		entries, through := a.disk.DeltaLimit(m.Version, a.disk.Version(), m.Limit)
		answerTo(ctx, m.Reply).send(ctx, &Delta{
			Replica: a.state.Replica(),
			Version: through,
			Entries: entries,
			More:    through < a.disk.Version(),
		})
	case *saved:
		a.saved(ctx, m.err)
	case *Subscribe:
		a.subscribe(ctx, m.PID)
	case *actor.Terminated:
		a.unsubscribe(m.Who)
	}
}

// change applies a client's Increment or Decrement: one lookup of the
// counter, and the clock read only where an expiry or a key is involved.
// A keyed change (key not "") is recorded in the counter's key entry
// (crdt.State.ChangeKeyed).
func (a *CounterActor) change(ctx actor.Context, to answer, counter string, by uint64, neg bool, ttl time.Duration, key string) {
	if key != "" {
		if _, ok := a.pending[key]; ok {
			to.send(ctx, &ChangeResult{Counter: counter, Err: ErrKeyInFlight})
			return
		}
	}
	before := a.state.Version()
	_, exp, live := a.state.Lookup(counter) // exp is 0 for a dead counter
	var now uint64
	if exp != 0 || ttl > 0 || key != "" {
		now = a.nowMs()
	}
	restarted := live && crdt.Expired(exp, now) && a.state.Delete(counter, now)
	if restarted {
		a.deleted("expire", 1)
		exp = 0 // the change starts a new counter, with no expiry
	}
	var v int64
	var err error
	var replayed bool
	switch {
	case key != "":
		v, replayed, err = a.state.ChangeKeyed(counter, key, by, neg, now)
	case neg:
		v, err = a.state.Decrement(counter, by)
	default:
		v, err = a.state.Increment(counter, by)
	}
	if replayed {
		a.replay(ctx, to, counter, key, restarted, before)
		return
	}
	if err == nil && ttl > 0 {
		if _, err = a.state.Expire(counter, now+uint64(ttl.Milliseconds()), true, now); err == nil {
			_, exp, _ = a.state.Lookup(counter)
		}
	}
	if restarted || ttl > 0 || err != nil || key != "" {
		a.dirtySince(before) // the delete of the expired counter, the expiry, or whatever a refusal left
	} else {
		a.dirty(entryKey{counter, a.state.Replica()}) // all a plain change writes
	}
	if err != nil {
		var kc *crdt.KeyConflict
		switch {
		case errors.Is(err, crdt.ErrLimit):
			err = fmt.Errorf("%w: %w", ErrFull, err)
		case errors.As(err, &kc):
			err = fmt.Errorf("%w: %s", ErrKeyConflict, kc.First)
		}
		to.send(ctx, &ChangeResult{Counter: counter, Err: err})
		a.flush(ctx, true) // the delete of an expired counter, if any
		return
	}
	a.next.origin.add("")
	if key != "" && a.store != nil {
		if a.pending == nil {
			a.pending = make(map[string]struct{})
		}
		a.pending[key] = struct{}{}
	}
	a.awaitKey(ctx, to, &ChangeResult{Counter: counter, Value: v, Expires: exp}, key)
}

// changes applies a Changes: each change as Increment or Decrement would,
// with the write held back until all are taken, so that they share one
// commit.
func (a *CounterActor) changes(ctx actor.Context, m *Changes) {
	to := answerTo(ctx, m.Reply)
	g := &group{to: to, res: &ChangesResult{Results: make([]ChangeResult, len(m.Changes))}, left: len(m.Changes)}
	if g.left == 0 {
		to.send(ctx, g.res)
		return
	}
	a.gathering = true
	for i, ch := range m.Changes {
		a.change(ctx, answer{group: g, slot: i}, ch.Counter, ch.By, ch.Neg, ch.TTL, ch.Key)
	}
	a.gathering = false
	a.flush(ctx, true)
}

// replay answers a keyed change whose key recorded this very change: the
// counter's current value, and the version of the durable key entry. A
// key entry not yet durable here (merged from a peer, or after a failed
// write) is answered once it is, with the version that holds it.
// restarted says an expired counter was deleted first (a write).
func (a *CounterActor) replay(ctx actor.Context, to answer, counter, key string, restarted bool, before uint64) {
	if a.obs != nil {
		a.obs.Replayed()
	}
	r := &ChangeResult{Counter: counter, Replayed: true}
	if v, exp, ok := a.state.Lookup(counter); ok {
		r.Value, r.Expires = v, exp
	}
	if restarted {
		a.dirtySince(before)
		a.next.origin.add("")
	}
	id := crdt.KeyID(key)
	held, _ := a.state.Get(counter, id)
	if durable, ok := a.disk.Get(counter, id); ok && durable == held && !restarted {
		r.Version, _ = a.disk.KeyVersion(counter, key)
		to.send(ctx, r)
		return
	}
	if b := a.inFlight; b != nil && !restarted {
		if _, ok := b.dirty[entryKey{counter, id}]; ok {
			b.waiters = append(b.waiters, waiter{to: to, reply: r}) // answered with the write that holds it
			return
		}
	}
	a.await(ctx, to, r)
}

// expireIfDue deletes counter if its expiry has passed.
func (a *CounterActor) expireIfDue(counter string, now uint64) {
	if _, exp, ok := a.state.Lookup(counter); ok && crdt.Expired(exp, now) && a.state.Delete(counter, now) {
		a.deleted("expire", 1)
	}
}

func (a *CounterActor) delete(ctx actor.Context, m *Delete) {
	to := answerTo(ctx, m.Reply)
	if !crdt.ValidName(m.Counter) {
		to.send(ctx, &DeleteResult{Err: fmt.Errorf("%w: counter name %q", crdt.ErrInvalid, m.Counter)})
		return
	}
	now := a.nowMs()
	before := a.state.Version()
	_, exp, ok := a.state.Lookup(m.Counter)
	deleted := a.state.Delete(m.Counter, now)
	if deleted {
		reason := "delete"
		if ok && crdt.Expired(exp, now) {
			reason = "expire" // already gone to readers
		}
		a.deleted(reason, 1)
	}
	a.dirtySince(before)
	a.next.origin.add("")
	a.await(ctx, to, &DeleteResult{Deleted: deleted && !(ok && crdt.Expired(exp, now))})
}

// retire retires the key entries whose window passed and that every member
// has sent this node everything about (Synced): crdt.State.Retire.
func (a *CounterActor) retire(ctx actor.Context) {
	if a.synced == 0 {
		return
	}
	before := a.state.Version()
	retired := a.state.Retire(a.window, a.synced, a.nowMs())
	if len(retired) == 0 {
		return
	}
	if a.obs != nil {
		a.obs.KeysRetired(len(retired))
	}
	a.dirtySince(before)
	a.next.origin.add("")
	a.flush(ctx, true)
}

func (a *CounterActor) expire(ctx actor.Context, m *Expire) {
	to := answerTo(ctx, m.Reply)
	now := a.nowMs()
	before := a.state.Version()
	a.expireIfDue(m.Counter, now)
	var at uint64
	if m.TTL > 0 {
		at = now + uint64(m.TTL.Milliseconds())
	}
	var set bool
	var err error
	switch {
	case m.Past:
		set, err = a.expireNow(m, now)
	case m.XX || m.GT || m.LT:
		set, err = a.expireIf(m, at, now)
	default:
		set, err = a.state.Expire(m.Counter, at, m.NX, now)
	}
	a.dirtySince(before)
	if err != nil {
		if errors.Is(err, crdt.ErrLimit) {
			err = fmt.Errorf("%w: %w", ErrFull, err)
		}
		to.send(ctx, &ExpireResult{Err: err})
		a.flush(ctx, true)
		return
	}
	v, exp, _ := a.state.Lookup(m.Counter)
	a.next.origin.add("")
	a.await(ctx, to, &ExpireResult{Set: set, Value: v, Expires: exp})
}

// expireNow is Expire with Past: the counter is deleted if it exists and
// the conditions allow (an expiry of now is earlier than any it may have).
func (a *CounterActor) expireNow(m *Expire, now uint64) (bool, error) {
	if !crdt.ValidName(m.Counter) {
		return false, fmt.Errorf("%w: counter name %q", crdt.ErrInvalid, m.Counter)
	}
	_, exp, ok := a.state.Lookup(m.Counter)
	if !ok {
		return false, fmt.Errorf("%w: %q", crdt.ErrNotFound, m.Counter)
	}
	if m.NX && exp != 0 || m.XX && exp == 0 || m.GT {
		return false, nil
	}
	if a.state.Delete(m.Counter, now) {
		a.deleted("delete", 1)
	}
	return true, nil
}

// expireIf is Expire with Redis's XX, GT or LT: the expiry is set only if
// the counter has one (XX), or the new one is later (GT) or earlier (LT)
// than the one it has, no expiry counting as later than any time.
func (a *CounterActor) expireIf(m *Expire, at, now uint64) (bool, error) {
	_, exp, ok := a.state.Lookup(m.Counter)
	if !ok || !crdt.ValidName(m.Counter) {
		return a.state.Expire(m.Counter, at, false, now) // its error
	}
	later := func(x, y uint64) bool { return x != y && (x == 0 || y != 0 && x > y) } // x after y, 0 = never
	switch {
	case m.XX && exp == 0,
		m.GT && !later(at, exp),
		m.LT && !later(exp, at):
		return false, nil
	}
	return a.state.Expire(m.Counter, at, false, now)
}

// nextSweep returns the earliest time (unix ms) something is due for the
// sweep: a counter's expiry, or a key entry's retirement that the sync
// clock already allows; false: nothing is, until a change, a merge or a
// Synced. Collection is not the sweep's: Stable and each durable change
// run it.
func (a *CounterActor) nextSweep() (uint64, bool) {
	at, ok := a.state.NextDue()
	if a.synced != 0 {
		if r, rok := a.state.NextRetire(a.window, a.synced); rok && (!ok || r < at) {
			at, ok = r, true
		}
	}
	return at, ok
}

// armSweep arms the sweep timer for the next thing due, unless it is
// armed to fire no later; with nothing due it arms nothing. The timer
// fires no sooner than the sweep period from now, so that a stream of
// short expiries costs at most one sweep a period, as a fixed tick did.
// It costs two heap peeks when nothing changed, and a clock read only
// when something became due sooner than the armed timer covers.
func (a *CounterActor) armSweep(ctx actor.Context) {
	due, ok := a.nextSweep()
	if !ok || a.sweepTimer != nil && a.sweepFor <= due {
		return
	}
	delay := a.sweep
	if !a.clocked {
		if now := a.nowMs(); due > now {
			delay = min(max(time.Duration(due-now)*time.Millisecond, a.sweep), max(maxSweepSleep, a.sweep))
		}
	}
	fire := time.Now().Add(delay)
	if a.sweepTimer != nil && !fire.Before(a.sweepAt) {
		a.sweepFor = due // the armed timer fires first; its sweep re-arms
		return
	}
	a.disarmSweep()
	a.sweepGen++
	a.sweepFor, a.sweepAt = due, fire
	// SendOnce, armed again after each tick: SendRepeatedly's cancel races
	// its timer in this version of protoactor (an unsynchronised read of
	// the timer's state, seen by -race).
	a.sweepTimer = a.timer.SendOnce(delay, ctx.Self(), &sweepTick{gen: a.sweepGen})
}

func (a *CounterActor) disarmSweep() {
	if a.sweepTimer != nil {
		a.sweepTimer()
		a.sweepTimer = nil
	}
}

// sweepQuery asks the CounterActor whether its sweep timer is armed, for
// tests. Reply: *sweepState.
type sweepQuery struct{}

type sweepState struct {
	Armed bool
	For   uint64 // the due time (unix ms) it is armed for
}

// sweepExpired deletes every counter whose expiry has passed.
func (a *CounterActor) sweepExpired(ctx actor.Context) {
	now := a.nowMs()
	before := a.state.Version()
	n := 0
	for _, name := range a.state.Due(now) {
		if a.state.Delete(name, now) {
			n++
		}
	}
	if n == 0 {
		return
	}
	a.deleted("expire", n)
	a.dirtySince(before)
	a.next.origin.add("")
	a.flush(ctx, true)
}

// collect forgets the dead counters, and the retired key entries that
// count zero, that every member holds (Stable).
func (a *CounterActor) collect(ctx actor.Context) {
	through := min(a.stable, a.disk.Version())
	keys := a.forgetKeys(through)
	names := a.disk.Collectable(through)
	n := 0
	for _, name := range names {
		if _, _, live := a.state.Lookup(name); live {
			continue // changed since it was made durable; a candidate again once dead
		}
		a.state.Forget(name)
		if a.disk != a.state {
			a.disk.Forget(name)
			a.disk.TakeRemoved()
		}
		n++
	}
	if n == 0 && keys == 0 {
		return
	}
	if a.obs != nil && n > 0 {
		a.obs.Collected(n)
	}
	a.takeRemoved()
	a.countCounters()
	a.flush(ctx, true)
}

// forgetKeys forgets the retired key entries that count zero and that
// every member holds as of version through of disk, and returns how many.
func (a *CounterActor) forgetKeys(through uint64) int {
	n := 0
	for _, e := range a.disk.ForgettableKeys(through) {
		if cur, ok := a.state.Get(e.Counter, e.Replica); !ok || cur != e {
			continue // changed since it was made durable
		}
		a.state.ForgetKey(e.Counter, e.Replica)
		if a.disk != a.state {
			a.disk.ForgetKey(e.Counter, e.Replica)
			a.disk.TakeRemoved()
		}
		n++
	}
	return n
}

func (a *CounterActor) deleted(reason string, n int) {
	if a.obs != nil {
		a.obs.Deleted(reason, n)
	}
}

// dirtySince marks every entry changed after version before as dirty, and
// gathers the entries the state dropped.
func (a *CounterActor) dirtySince(before uint64) {
	for _, e := range a.state.DeltaSince(before, a.state.Version()) {
		a.dirty(entryKey{e.Counter, e.Replica})
	}
	a.takeRemoved()
}

// takeRemoved moves the entries the state dropped into the next write.
func (a *CounterActor) takeRemoved() {
	r := a.state.TakeRemoved()
	if a.store != nil {
		a.next.removed = append(a.next.removed, r...)
	}
}

func (a *CounterActor) merge(ctx actor.Context, m *Merge) {
	to := answerTo(ctx, m.Reply)
	counters := a.state.Len()
	changed, err := a.state.Merge(m.Entries)
	if err != nil {
		if errors.Is(err, crdt.ErrLimit) {
			a.log.Warn("merge refused: it would pass the entry limit (-max-entries); nothing of it was applied",
				"peer", m.From, "entries", len(m.Entries), "err", err)
			if a.obs != nil {
				a.obs.MergeRefused()
			}
		}
		to.send(ctx, &MergeResult{Err: err})
		return
	}
	a.overLimit(counters, m.From)
	for _, e := range changed {
		a.dirty(entryKey{e.Counter, e.Replica})
	}
	if removed := a.state.TakeRemoved(); len(removed) > 0 {
		// A fold covered entries held here: the fold entry now carries
		// floors this node derived, which the peer may lack.
		if a.store != nil {
			a.next.removed = append(a.next.removed, removed...)
		}
		a.next.origin.add("")
	}
	if len(changed) > 0 {
		a.next.origin.add(m.From)
	}
	if len(changed) == 0 && a.inFlight == nil && len(a.next.waiters) == 0 && len(a.next.dirty) == 0 && len(a.next.removed) == 0 {
		// Nothing new and nothing unwritten: what the peer sent is durable here.
		to.send(ctx, &MergeResult{})
		return
	}
	a.await(ctx, to, &MergeResult{Changed: len(changed)})
}

func (a *CounterActor) dirty(k entryKey) {
	if a.store == nil {
		return
	}
	if a.next.dirty == nil {
		a.next.dirty = make(map[entryKey]struct{})
	}
	a.next.dirty[k] = struct{}{}
}

// await answers reply once the current state is durable.
func (a *CounterActor) await(ctx actor.Context, to answer, reply any) {
	a.awaitKey(ctx, to, reply, "")
}

// awaitKey is await for a keyed change: key is in pending until the reply
// is sent. A *ChangeResult is given the durable version that holds the
// change, unless it has one.
func (a *CounterActor) awaitKey(ctx actor.Context, to answer, reply any, key string) {
	if a.store == nil {
		versioned(reply, a.disk.Version())
		to.send(ctx, reply)
		a.announce(ctx, a.next.origin)
		a.next.origin = origin{}
		return
	}
	a.next.waiters = append(a.next.waiters, waiter{to: to, reply: reply, key: key})
	if _, merge := reply.(*MergeResult); !merge {
		a.next.clients++
	}
	a.flush(ctx, false)
}

// versioned sets the Version of a successful *ChangeResult that has none.
func versioned(reply any, v uint64) {
	if r, ok := reply.(*ChangeResult); ok && r.Err == nil && r.Version == 0 {
		r.Version = v
	}
}

// flush starts writing the gathered batch unless a write is in flight or
// the batch is held (pacer) and not yet full; the write runs outside the
// actor and reports back with a *saved. A batch with no one waiting (entries
// left by a failed write, or by a sweep) is written only when retry is set,
// by the backoff timer or the background work itself.
func (a *CounterActor) flush(ctx actor.Context, retry bool) {
	if a.gathering {
		return // changes() flushes once all are taken
	}
	if a.store == nil {
		if len(a.next.waiters) == 0 {
			a.announce(ctx, a.next.origin) // changes no client waits for
			a.next.origin = origin{}
		}
		return
	}
	if a.inFlight != nil || len(a.next.waiters) == 0 && (!retry || len(a.next.dirty) == 0 && len(a.next.removed) == 0) {
		return
	}
	if a.holdTimer != nil {
		if !a.pace.enough(a.next.clients) {
			return // held for the clients just answered; holdEnd writes it
		}
		a.pace.ended(true)
		a.endHold()
	}
	b := a.next
	a.next = batch{}
	b.started = a.now()
	entries := make([]crdt.Entry, 0, len(b.dirty))
	for k := range b.dirty {
		if e, ok := a.state.Get(k.counter, k.replica); ok {
			entries = append(entries, e)
		}
	}
	b.entries = entries
	a.inFlight = &b
	store, self, root, del := a.store, ctx.Self(), ctx.ActorSystem().Root, b.removed
	go func() { root.Send(self, &saved{err: store.Save(entries, del)}) }()
}

func (a *CounterActor) saved(ctx actor.Context, err error) {
	b := a.inFlight
	a.inFlight = nil
	if b == nil {
		return
	}
	if err != nil {
		a.log.Error("store write failed", "entries", len(b.dirty), "err", err)
		// Keep the entries dirty, and where they came from: the next write
		// carries them. It starts with the next request or after a backoff,
		// not in a loop against a failing disk.
		for k := range b.dirty {
			a.dirty(k)
		}
		a.next.removed = append(b.removed, a.next.removed...)
		a.next.origin.merge(b.origin)
		err = fmt.Errorf("%w: %v", ErrStore, err)
		for _, w := range b.waiters {
			switch r := w.reply.(type) {
			case *ChangeResult:
				r.Value, r.Err = 0, err
			case *MergeResult:
				r.Changed, r.Err = 0, err
			}
			a.answerWaiter(ctx, w)
		}
		a.pace.failed()
		a.retryDelay = min(max(2*a.retryDelay, writeRetryMin), writeRetryMax)
		if a.retryTimer == nil {
			a.retryTimer = a.timer.SendOnce(a.retryDelay, ctx.Self(), &retryWrite{})
		}
		a.flush(ctx, false)
		return
	}
	a.retryDelay = 0
	if _, err := a.disk.Merge(b.entries); err != nil {
		panic(fmt.Sprintf("actors: durable entries do not merge: %v", err)) // they came from state
	}
	a.disk.TakeRemoved()
	took := a.now().Sub(b.started)
	if a.obs != nil {
		a.obs.Committed(len(b.waiters), took)
	}
	// Unless the next batch is held for this one's clients (pacer), start
	// its write before waking them, so that the disk is not idle while
	// their replies are written. Tell subscribers first, so that a change
	// a client saw acknowledged is already known to every PeerActor (a
	// shutdown flush must not miss it).
	hold := a.pace.written(b.clients, a.next.clients, took)
	if hold == 0 {
		a.flush(ctx, false)
	}
	a.announce(ctx, b.origin)
	v := a.disk.Version()
	for _, w := range b.waiters {
		versioned(w.reply, v)
		a.answerWaiter(ctx, w)
	}
	if hold > 0 && a.inFlight == nil {
		a.holdGen++
		a.holdTimer = a.timer.SendOnce(hold, ctx.Self(), &holdEnd{gen: a.holdGen})
	}
}

// endHold ends the hold of the gathered batch, if any.
func (a *CounterActor) endHold() {
	if a.holdTimer != nil {
		a.holdTimer()
		a.holdTimer = nil
	}
}

// answerWaiter sends a waiter its reply; its key is no longer in flight.
func (a *CounterActor) answerWaiter(ctx actor.Context, w waiter) {
	if w.key != "" {
		delete(a.pending, w.key)
	}
	w.to.send(ctx, w.reply)
}

// overLimit counts the counters a merge created past the counter limit
// (before is how many there were): they are kept, since a counter a peer
// holds must reach every node; the first is logged.
func (a *CounterActor) overLimit(before int, from string) {
	limit, now := a.state.Limits().MaxCounters, a.state.Len()
	if limit <= 0 || now <= limit || now == before {
		return
	}
	if a.obs != nil {
		a.obs.CountersOverLimit(now - max(before, limit))
	}
	if !a.overTold {
		a.overTold = true
		a.log.Warn("peers hold more counters than -max-counters; keeping them (nodes must agree), refusing new ones from clients",
			"peer", from, "counters", now, "limit", limit)
	}
}

// countCounters tells the observer the number of counters and entries if
// they changed.
func (a *CounterActor) countCounters() {
	if a.obs == nil {
		return
	}
	if n := a.state.Len(); n != a.known {
		a.known = n
		a.obs.Counters(n)
	}
	if n := a.state.Entries(); n != a.entries {
		a.entries = n
		a.obs.Entries(n)
	}
	if n := a.state.Keys(); n != a.keys {
		a.keys = n
		a.obs.Keys(n)
	}
}

// announce tells subscribers (and the observer) that the durable state
// advanced, if it did: a write that made nothing new durable (a batch of
// merges that changed nothing) is no news, and a notice with no origin would
// make every PeerActor push.
func (a *CounterActor) announce(ctx actor.Context, o origin) {
	if a.disk.Version() == a.announced {
		return
	}
	a.announced = a.disk.Version()
	a.countCounters()
	for _, pid := range a.subs {
		ctx.Send(pid, &Changed{Version: a.announced, Origin: o.String()})
	}
	a.collect(ctx) // the change may have made tombstones that are held everywhere
}

func (a *CounterActor) subscribe(ctx actor.Context, pid *actor.PID) {
	for _, s := range a.subs {
		if s.Equal(pid) {
			return
		}
	}
	a.subs = append(a.subs, pid)
	ctx.Watch(pid)
}

func (a *CounterActor) unsubscribe(pid *actor.PID) {
	for i, s := range a.subs {
		if s.Equal(pid) {
			a.subs = append(a.subs[:i], a.subs[i+1:]...)
			return
		}
	}
}
