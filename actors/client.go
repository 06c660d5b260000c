package actors

import (
	"context"
	"countd/wire"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// Counters is the synchronous face of a CounterActor for code outside
// the actor system, such as HTTP handlers. Every call waits at most Timeout
// (or less, if ctx ends sooner).
type Counters struct{ asker }

// asker sends requests to one actor and waits a bounded time for replies.
type asker struct {
	root    *actor.RootContext
	pid     *actor.PID
	timeout time.Duration
}

// NewCounters returns a client of the CounterActor at pid.
func NewCounters(root *actor.RootContext, pid *actor.PID, timeout time.Duration) *Counters {
	return &Counters{asker{root: root, pid: pid, timeout: timeout}}
}

// Increment adds by to counter and returns its value once durable.
func (c *Counters) Increment(ctx context.Context, counter string, by uint64) (int64, error) {
	r, err := ask[*ChangeResult](ctx, c.asker, &Increment{Counter: counter, By: by})
	if err != nil {
		return 0, err
	}
	return r.Value, r.Err
}

// Decrement subtracts by from counter and returns its value once durable.
func (c *Counters) Decrement(ctx context.Context, counter string, by uint64) (int64, error) {
	r, err := ask[*ChangeResult](ctx, c.asker, &Decrement{Counter: counter, By: by})
	if err != nil {
		return 0, err
	}
	return r.Value, r.Err
}

// Change is a client's change to one counter: add By, or subtract it if
// Neg; a TTL above 0 sets an expiry if the counter has none (Increment).
type Change struct {
	Counter string
	By      uint64
	Neg     bool
	TTL     time.Duration
	// Key is the client's Idempotency-Key (1 to 255 printable ASCII
	// characters, checked by httpapi), or "" for none: a change sent again
	// with the same key, to any node, is counted once.
	Key string
}

// Apply makes a change and returns the counter's value and expiry (unix
// milliseconds, 0: never) once it is durable.
func (c *Counters) Apply(ctx context.Context, ch Change) (*ChangeResult, error) {
	var msg any = &Increment{Counter: ch.Counter, By: ch.By, TTL: ch.TTL, Key: ch.Key}
	if ch.Neg {
		msg = &Decrement{Counter: ch.Counter, By: ch.By, TTL: ch.TTL, Key: ch.Key}
	}
	r, err := ask[*ChangeResult](ctx, c.asker, msg)
	if err != nil {
		return nil, err
	}
	return r, r.Err
}

// Delete deletes counter (an observed reset: see crdt.State.Delete) and
// reports whether it existed, once the delete is durable.
func (c *Counters) Delete(ctx context.Context, counter string) (bool, error) {
	r, err := ask[*DeleteResult](ctx, c.asker, &Delete{Counter: counter})
	if err != nil {
		return false, err
	}
	return r.Deleted, r.Err
}

// Expire makes counter expire ttl from now (0: never), only if it has no
// expiry when nx is set. It fails with crdt.ErrNotFound if the counter
// does not exist.
func (c *Counters) Expire(ctx context.Context, counter string, ttl time.Duration, nx bool) (*ExpireResult, error) {
	r, err := ask[*ExpireResult](ctx, c.asker, &Expire{Counter: counter, TTL: ttl, NX: nx})
	if err != nil {
		return nil, err
	}
	return r, r.Err
}

// ExpireWith is Expire with every condition of an Expire message (NX, XX,
// GT, LT, Past); m's Reply is ignored.
func (c *Counters) ExpireWith(ctx context.Context, m Expire) (*ExpireResult, error) {
	m.Reply = nil
	r, err := ask[*ExpireResult](ctx, c.asker, &m)
	if err != nil {
		return nil, err
	}
	return r, r.Err
}

// ApplyAll makes every change in order, in one message to the actor and one
// commit, and returns each change's result (its Err says if it failed)
// once all are durable.
func (c *Counters) ApplyAll(ctx context.Context, chs []Change) ([]ChangeResult, error) {
	r, err := ask[*ChangesResult](ctx, c.asker, &Changes{Changes: chs})
	if err != nil {
		return nil, err
	}
	return r.Results, nil
}

// LookupAll returns the value and expiry of each counter named, in order
// (Exists false: there is none), in one message to the actor.
func (c *Counters) LookupAll(ctx context.Context, names []string) ([]CounterValue, error) {
	r, err := ask[*CounterValues](ctx, c.asker, &GetValues{Names: names})
	if err != nil {
		return nil, err
	}
	return r.Values, nil
}

// Names returns the names of every counter that exists, in no order.
func (c *Counters) Names(ctx context.Context) ([]string, error) {
	r, err := ask[*CounterNames](ctx, c.asker, &GetNames{})
	if err != nil {
		return nil, err
	}
	return r.Names, nil
}

// Value returns one counter's value (0 if it does not exist).
func (c *Counters) Value(ctx context.Context, counter string) (int64, error) {
	r, err := c.Lookup(ctx, counter)
	if err != nil {
		return 0, err
	}
	return r.Value, nil
}

// Lookup returns one counter's value and expiry, and whether it exists.
func (c *Counters) Lookup(ctx context.Context, counter string) (*CounterValue, error) {
	return ask[*CounterValue](ctx, c.asker, &GetCounter{Counter: counter})
}

// Values returns every counter's value.
func (c *Counters) Values(ctx context.Context) (map[string]int64, error) {
	r, err := c.All(ctx)
	if err != nil {
		return nil, err
	}
	return r.Values, nil
}

// All returns every counter's value, and the expiry of those that have one.
func (c *Counters) All(ctx context.Context) (*AllCounters, error) {
	return ask[*AllCounters](ctx, c.asker, &GetAll{})
}

// rangeChunk is how many counters Range reads from the actor at a time.
const rangeChunk = 4096

// Range calls fn with every counter that exists, in order of name, until
// fn returns an error, which Range returns. It reads the names, then the
// values in chunks of a few thousand, so it never holds a copy of every
// value (GET /counters on a million counters). It is not one snapshot:
// a counter deleted while it runs is left out, one created is not seen.
func (c *Counters) Range(ctx context.Context, fn func(CounterValue) error) error {
	n, err := ask[*CounterNames](ctx, c.asker, &GetNames{})
	if err != nil {
		return err
	}
	names := n.Names
	slices.Sort(names)
	for len(names) > 0 {
		chunk := names[:min(rangeChunk, len(names))]
		names = names[len(chunk):]
		r, err := ask[*CounterValues](ctx, c.asker, &GetValues{Names: chunk})
		if err != nil {
			return err
		}
		for _, v := range r.Values {
			if !v.Exists {
				continue
			}
			if err := fn(v); err != nil {
				return err
			}
		}
	}
	return nil
}

// Merge folds a peer's entries into the state and returns once durable.
func (c *Counters) Merge(ctx context.Context, m *Merge) (int, error) {
	r, err := ask[*MergeResult](ctx, c.asker, m)
	if err != nil {
		return 0, err
	}
	return r.Changed, r.Err
}

// ask sends msg to the actor and waits for a reply of type T. Messages
// with a Reply field are answered on a channel, others through a future.
func ask[T any](ctx context.Context, c asker, msg any) (T, error) {
	var zero T
	if err := ctx.Err(); err != nil {
		return zero, fmt.Errorf("%w: %v", ErrTimeout, err)
	}
	d := c.timeout
	if dl, ok := ctx.Deadline(); ok {
		d = min(d, time.Until(dl))
	}
	if d <= 0 {
		return zero, ErrTimeout
	}
	var res any
	if ch := withReply(msg); ch != nil {
		r, err := c.await(ctx, msg, ch, d)
		if err != nil {
			return zero, err
		}
		res = r
	} else {
		r, err := c.root.RequestFuture(c.pid, msg, d).Result()
		switch {
		case errors.Is(err, actor.ErrTimeout):
			return zero, ErrTimeout
		case errors.Is(err, actor.ErrDeadLetter):
			return zero, ErrStopped
		case err != nil:
			return zero, err
		}
		res = r
	}
	v, ok := res.(T)
	if !ok {
		return zero, fmt.Errorf("actors: unexpected reply %T to %T", res, msg)
	}
	return v, nil
}

// withReply gives msg a reply channel if it takes one, and returns it.
func withReply(msg any) chan any {
	var reply *Reply
	switch m := msg.(type) {
	case *Increment:
		reply = &m.Reply
	case *Decrement:
		reply = &m.Reply
	case *Changes:
		reply = &m.Reply
	case *Delete:
		reply = &m.Reply
	case *Expire:
		reply = &m.Reply
	case *GetCounter:
		reply = &m.Reply
	case *GetAll:
		reply = &m.Reply
	case *GetNames:
		reply = &m.Reply
	case *GetValues:
		reply = &m.Reply
	case *Merge:
		reply = &m.Reply
	case *GetVersion:
		reply = &m.Reply
	case *DeltaSince:
		reply = &m.Reply
	case *GetEntries:
		reply = &m.Reply
	case *WaitHeld:
		reply = &m.Reply
	default:
		return nil
	}
	ch := make(chan any, 1)
	*reply = ch
	return ch
}

// await sends msg and waits up to d (or until ctx ends) for its answer on ch.
func (c asker) await(ctx context.Context, msg any, ch chan any, d time.Duration) (any, error) {
	if _, alive := c.root.ActorSystem().ProcessRegistry.Get(c.pid); !alive {
		return nil, ErrStopped
	}
	c.root.Send(c.pid, msg)
	var expire <-chan time.Time
	if dl, ok := ctx.Deadline(); !ok || time.Until(dl) > d {
		t := time.NewTimer(d)
		defer t.Stop()
		expire = t.C
	}
	select {
	case r := <-ch:
		return r, nil
	case <-ctx.Done():
		return nil, ErrTimeout
	case <-expire:
		return nil, ErrTimeout
	}
}

// Cluster is the synchronous face of the Supervisor (membership) and
// of the replication endpoint, for HTTP handlers.
type Cluster struct {
	sup      asker
	counters *Counters
	reader   EntriesReader // nil: reads at a level are local (ReadWith)
}

// NewCluster returns a client of the Supervisor at supervisor that merges
// replicated state through counters.
func NewCluster(root *actor.RootContext, supervisor *actor.PID, counters *Counters, timeout time.Duration) *Cluster {
	return &Cluster{sup: asker{root: root, pid: supervisor, timeout: timeout}, counters: counters}
}

// Peers returns the membership table, sorted by address. A down (or
// unauthorized, or left) peer has
// no PeerActor to report how far behind it is, so its Behind is counted
// here, from the version it held and this node's current version: the
// Supervisor need not follow every change (on the hot path of every write)
// for a figure only a read of the table shows.
func (c *Cluster) Peers(ctx context.Context) ([]PeerInfo, error) {
	r, err := ask[*PeerList](ctx, c.sup, &GetPeers{})
	if err != nil {
		return nil, err
	}
	if !slices.ContainsFunc(r.Peers, func(p PeerInfo) bool { return Away(p.State) }) {
		return r.Peers, nil
	}
	v, err := ask[*Version](ctx, c.counters.asker, &GetVersion{})
	if err != nil {
		return nil, err
	}
	for i, p := range r.Peers {
		if Away(p.State) {
			r.Peers[i].Behind = max(p.Behind, v.Version-min(v.Version, p.Held))
		}
	}
	return r.Peers, nil
}

// States counts the peers in each state (for the metrics), without asking
// the CounterActor, which Peers may: a scrape stays out of its mailbox.
func (c *Cluster) States(ctx context.Context) (map[string]int, error) {
	r, err := ask[*PeerList](ctx, c.sup, &GetPeers{})
	if err != nil {
		return nil, err
	}
	out := make(map[string]int, 4)
	for _, p := range r.Peers {
		out[p.State]++
	}
	return out, nil
}

// AddPeer registers a peer, lifting a removal (on disk too, before it
// returns); created is false if it was known already.
func (c *Cluster) AddPeer(ctx context.Context, addr string) (created bool, err error) {
	r, err := ask[*RegisterResult](ctx, c.sup, &RegisterPeer{Addr: addr})
	if err != nil {
		return false, err
	}
	return r.Created, r.Err
}

// RemovePeer removes a peer for good, on disk too before it returns.
func (c *Cluster) RemovePeer(ctx context.Context, addr string) error {
	r, err := ask[*RemoveResult](ctx, c.sup, &RemovePeer{Addr: addr})
	if err != nil {
		return err
	}
	return r.Err
}

// Replicate handles a push from another node: it tells the Supervisor about
// the sender and its members (without waiting), then merges the entries and
// returns once they are durable. req must be validated already.
func (c *Cluster) Replicate(ctx context.Context, req *wire.ReplicateRequest) (changed int, err error) {
	c.sup.root.Send(c.sup.pid, &Contact{Addr: req.From, Replica: req.Replica, Members: req.Members,
		Incarnation: req.Incarnation, Suspects: req.Suspects})
	if len(req.Entries) > 0 {
		// A push with no entries (a probe of a peer in sync, section 7
		// of docs/design.md) has nothing to merge: what the sender pushed
		// before was acknowledged once durable, so it needs no commit.
		changed, err = c.counters.Merge(ctx, &Merge{Entries: req.Entries, From: req.From})
	}
	if err == nil && req.At != 0 {
		// Durable here now: this process holds all the sender held at At.
		c.sup.root.Send(c.sup.pid, &Heard{Addr: req.From, To: req.To, At: req.At})
	}
	return changed, err
}

// Leave handles POST /leave: the node at addr, as the process with replica
// id replica, is shutting down. The Supervisor marks it left (without this
// call waiting for it). req must be validated already.
func (c *Cluster) Leave(ctx context.Context, req *wire.LeaveRequest) error {
	if _, alive := c.sup.root.ActorSystem().ProcessRegistry.Get(c.sup.pid); !alive {
		return ErrStopped
	}
	c.sup.root.Send(c.sup.pid, &Leave{Addr: req.From, Replica: req.Replica})
	return nil
}
