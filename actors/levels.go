package actors

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/scheduler"

	"countd/crdt"
	"countd/wire"
)

// Level is how many members a client's change must reach, or a read must
// hear from, before it is answered (?wait=, docs/design.md, section 6,
// "Write and read levels").
type Level int

// Levels. Members are every member this node lists, itself included and
// left ones excluded.
const (
	Local  Level = iota // this node alone: today's behaviour
	Quorum              // a majority of the members
	All                 // every member
)

// Levels are the names ?wait= takes, in the order of the constants.
var Levels = []string{"local", "quorum", "all"}

func (l Level) String() string {
	if l < 0 || int(l) >= len(Levels) {
		return fmt.Sprintf("Level(%d)", int(l))
	}
	return Levels[l]
}

// Need is how many of members (this node included) the level needs.
func (l Level) Need(members int) int {
	switch l {
	case Quorum:
		return members/2 + 1
	case All:
		return members
	}
	return 1
}

// ErrNotReached means a level was not reached in time. For a change, the
// change is applied and durable on this node and will still reach the
// others; for a read, nothing was answered. A *LevelError wraps it.
var ErrNotReached = errors.New("actors: level not reached in time")

// LevelError says how far a level got: Reached of Members held the change
// (or answered the read), Need were needed.
type LevelError struct {
	Level                  Level
	Reached, Need, Members int
}

func (e *LevelError) Error() string {
	return fmt.Sprintf("%v: %d of %d members, %s needs %d", ErrNotReached, e.Reached, e.Members, e.Level, e.Need)
}

func (e *LevelError) Unwrap() error { return ErrNotReached }

// WaitHeld asks the Supervisor to answer once enough members hold this
// node's durable state at Version for Level, or at Deadline. Reply:
// *HeldResult. The PeerActors of members that may lack it are asked to
// push at once (WaitFor), so waiting clients ride on the pushes.
type WaitHeld struct {
	Version  uint64
	Level    Level
	Deadline time.Time
	Reply    Reply
}

// HeldResult answers WaitHeld: Err is a *LevelError if the level was not
// reached by the deadline.
type HeldResult struct{ Err error }

// WaitFor asks a PeerActor to push at once what its peer lacks, and to
// report (PeerHolds) once its peer holds this node's state at Version.
type WaitFor struct{ Version uint64 }

// PeerHolds tells the Supervisor that a PeerActor's peer, as the process
// Replica, holds this node's durable state up to Held: its last push was
// answered and nothing since is owed (a Flush answered).
type PeerHolds struct {
	From    *actor.PID
	Addr    string
	Replica string
	Held    uint64
}

// GetEntries asks the CounterActor for every durable entry of Counter
// (what a read at a level asks each peer for). Reply: *CounterEntries.
type GetEntries struct {
	Counter string
	Reply   Reply
}

// CounterEntries answers GetEntries.
type CounterEntries struct {
	Replica string
	Entries []crdt.Entry
}

// EntriesReader reads a counter's durable entries from a peer (GET
// /entries/{name}); transport.HTTP implements it.
type EntriesReader interface {
	Entries(ctx context.Context, addr, counter string) (*wire.EntriesReply, error)
}

// heldWait is a client waiting for members to hold version.
type heldWait struct {
	id      uint64
	version uint64
	reply   Reply
	expire  scheduler.CancelFunc
}

// waitExpired is due at a heldWait's deadline.
type waitExpired struct {
	level Level
	id    uint64
}

// heldWaits are the clients waiting for a level, by level, each list in
// version order: the members holding a version are as many or more than
// those holding a later one, so the waits answered are a prefix.
type heldWaits struct {
	next   uint64
	queues [All + 1][]heldWait
}

func (w *heldWaits) empty() bool { return len(w.queues[Quorum]) == 0 && len(w.queues[All]) == 0 }

// add queues a wait and returns its id.
func (w *heldWaits) add(l Level, version uint64, reply Reply) *heldWait {
	w.next++
	q := w.queues[l]
	i, _ := slices.BinarySearchFunc(q, version, func(h heldWait, v uint64) int {
		return cmpU64(h.version, v+1) // after every wait for the same version
	})
	w.queues[l] = slices.Insert(q, i, heldWait{id: w.next, version: version, reply: reply})
	return &w.queues[l][i]
}

// answer takes off and returns the waits whose level count says is reached.
// count(v) is how many members hold version v, and of how many.
func (w *heldWaits) answer(count func(v uint64) (held, members int)) []heldWait {
	var done []heldWait
	for l := Quorum; l <= All; l++ {
		q := w.queues[l]
		n := 0
		for n < len(q) {
			held, members := count(q[n].version)
			if held < l.Need(members) {
				break
			}
			n++
		}
		done = append(done, q[:n]...)
		w.queues[l] = slices.Delete(q, 0, n)
	}
	return done
}

// take removes the wait id of level l, if it is still there.
func (w *heldWaits) take(l Level, id uint64) (heldWait, bool) {
	i := slices.IndexFunc(w.queues[l], func(h heldWait) bool { return h.id == id })
	if i < 0 {
		return heldWait{}, false
	}
	h := w.queues[l][i]
	w.queues[l] = slices.Delete(w.queues[l], i, i+1)
	return h, true
}

// highest returns the highest version any client waits for (0: none).
func (w *heldWaits) highest() uint64 {
	var v uint64
	for _, q := range w.queues {
		if len(q) > 0 {
			v = max(v, q[len(q)-1].version)
		}
	}
	return v
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// WaitHeld waits until enough members hold this node's durable state at
// version for level (Local: at once), or until the timeout: then it returns
// a *LevelError (ErrNotReached). The change at version is durable here
// whatever it returns.
func (c *Cluster) WaitHeld(ctx context.Context, version uint64, level Level) error {
	if level == Local {
		return nil
	}
	deadline := time.Now().Add(c.sup.timeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		// Early enough that the Supervisor's answer, which says how far
		// the level got, comes before ctx ends.
		deadline = dl.Add(-min(100*time.Millisecond, time.Until(dl)/10))
	}
	// The Supervisor answers at the deadline with how far the level got;
	// the ask itself waits a little longer for that answer.
	a := c.sup
	a.timeout = time.Until(deadline) + time.Second
	r, err := ask[*HeldResult](ctx, a, &WaitHeld{Version: version, Level: level, Deadline: deadline})
	if err != nil {
		return fmt.Errorf("%w: %w", ErrNotReached, err)
	}
	return r.Err
}

// Entries returns every durable entry of counter on this node (for a
// peer's read at a level).
func (c *Cluster) Entries(ctx context.Context, counter string) (*CounterEntries, error) {
	return ask[*CounterEntries](ctx, c.counters.asker, &GetEntries{Counter: counter})
}

// ReadWith sets how ReadCounter reaches peers, and returns c. Call it
// before c is used.
func (c *Cluster) ReadWith(r EntriesReader) *Cluster {
	c.reader = r
	return c
}

// ReadCounter reads counter at level: it asks every member (not left) for
// its durable entries of counter and merges what they send into this
// node's state, until enough have answered for the level (this node
// counts as one), then answers the merged value. Not reached within the
// timeout: a *LevelError (ErrNotReached).
func (c *Cluster) ReadCounter(ctx context.Context, counter string, level Level) (*CounterValue, error) {
	if level == Local || c.reader == nil {
		return c.counters.Lookup(ctx, counter)
	}
	list, err := ask[*PeerList](ctx, c.sup, &GetPeers{})
	if err != nil {
		return nil, err
	}
	var addrs []string
	for _, p := range list.Peers {
		if p.State != StateLeft {
			addrs = append(addrs, p.Addr)
		}
	}
	need := level.Need(len(addrs) + 1)
	if need > 1 {
		if err := c.readFrom(ctx, counter, addrs, need-1); err != nil {
			return nil, &LevelError{Level: level, Reached: 1 + err.reached, Need: need, Members: len(addrs) + 1}
		}
	}
	return c.counters.Lookup(ctx, counter)
}

// readFail says how many peers a read reached before it gave up.
type readFail struct{ reached int }

// readFrom asks every peer at addrs for its entries of counter at once and
// merges each answer, until need of them are merged or the timeout.
func (c *Cluster) readFrom(ctx context.Context, counter string, addrs []string, need int) *readFail {
	ctx, cancel := context.WithTimeout(ctx, c.sup.timeout)
	defer cancel() // the peers not needed are not waited for
	done := make(chan error, len(addrs))
	for _, addr := range addrs {
		go func() {
			r, err := c.reader.Entries(ctx, addr, counter)
			if err == nil {
				_, err = c.counters.Merge(ctx, &Merge{Entries: r.Entries, From: addr})
			}
			done <- err
		}()
	}
	reached := 0
	for range addrs {
		select {
		case err := <-done:
			if err == nil {
				if reached++; reached >= need {
					return nil
				}
			}
		case <-ctx.Done():
			return &readFail{reached: reached}
		}
	}
	return &readFail{reached: reached}
}
