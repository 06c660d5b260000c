package chaos

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"countd/internal/apiclient"
)

// OpKind is what a lifecycle operation did.
type OpKind int

// The lifecycle operations.
const (
	OpChange OpKind = iota // POST .../increment|decrement, with ?ttl= if TTL > 0
	OpDelete               // DELETE /counters/{name}
	OpExpire               // POST /counters/{name}/expire?ttl=TTL
)

func (k OpKind) String() string {
	switch k {
	case OpChange:
		return "change"
	case OpDelete:
		return "delete"
	case OpExpire:
		return "expire"
	}
	return fmt.Sprintf("op(%d)", int(k))
}

// Op is one lifecycle operation a client made, with when it was sent and
// when its outcome came.
type Op struct {
	Kind    OpKind
	Counter string
	Node    string // the node it was sent to
	Life    int    // how many times Node had been wiped when it was sent
	Delta   int64  // OpChange: the change (negative for a decrement)
	TTL     int64  // OpChange, OpExpire: seconds; 0 for none
	// ExpiresIn is the expires_in of an OK reply (seconds left, rounded
	// up): a change with a ttl sets none if the counter has one already.
	ExpiresIn int64
	Sent      time.Time
	Done      time.Time
	Outcome   apiclient.Outcome
}

func (o Op) String() string {
	var what string
	switch o.Kind {
	case OpChange:
		what = fmt.Sprintf("%+d", o.Delta)
	case OpDelete:
		what = "delete"
	case OpExpire:
		what = "expire"
	}
	if o.TTL > 0 {
		what += fmt.Sprintf(" ttl=%ds", o.TTL)
	}
	return fmt.Sprintf("%s %s on %s: %s", o.Counter, what, o.Node, o.Outcome)
}

// History records every lifecycle operation of a run. Unlike
// apiclient.Ledger it keeps each operation with its times, because the
// bounds of a counter that is deleted depend on the order of its changes
// and deletes (docs/invariants.md). It is safe for concurrent use; the
// zero History is empty and ready.
type History struct {
	mu  sync.Mutex
	ops []Op
}

// Record adds one operation.
func (h *History) Record(op Op) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ops = append(h.ops, op)
}

// Ops returns a copy of the operations recorded so far.
func (h *History) Ops() []Op {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.ops)
}

// Counts returns how many operations of each kind had each outcome.
func (h *History) Counts() map[OpKind]apiclient.Counts {
	out := map[OpKind]apiclient.Counts{}
	for _, op := range h.Ops() {
		c := out[op.Kind]
		c.Add(op.Outcome)
		out[op.Kind] = c
	}
	return out
}

func (h *History) String() string {
	n := h.Counts()
	var parts []string
	for _, k := range []OpKind{OpChange, OpDelete, OpExpire} {
		parts = append(parts, fmt.Sprintf("%ss %s", k, n[k]))
	}
	return strings.Join(parts, "; ")
}

// Fate is what the checker knows of one change of a counter that is
// deleted (docs/invariants.md, "Deletes").
type Fate int

// The fates of a change.
const (
	Gone  Fate = iota // never counts: Failed, or surely reset by a delete
	Sure              // surely counts
	Maybe             // may count or not
)

func (f Fate) String() string { return [...]string{"gone", "sure", "maybe"}[f] }

// DeleteBounds is what the checker knows of a counter that is changed and
// deleted but never given an expiry: the range its converged value must
// lie in, and how the changes add up to it.
type DeleteBounds struct {
	apiclient.Bounds        // Acked is the sure sum, Unknowns the number of maybes
	Sure, Maybe, Gone int   // changes of each fate (Gone: Failed ones not counted)
	Reset             int64 // the sum of the changes surely reset by a delete
	Deletes           apiclient.Counts
}

func (b DeleteBounds) String() string {
	return fmt.Sprintf("%d..%d (%d sure changes = %d, %d maybe, %d reset by a delete = %d; deletes %s)",
		b.Lo, b.Hi, b.Sure, b.Acked, b.Maybe, b.Gone, b.Reset, b.Deletes)
}

// fate classifies change c of a counter whose deletes (not Failed) are
// dels, by the rules of docs/invariants.md:
//
//   - a Failed change never counts;
//   - an OK change is gone if an OK delete was sent to the node that
//     acknowledged it, on the same data (not wiped since), after its reply
//     came: that node held it, so the delete reset it;
//   - an OK change is sure if every delete completed with an OK before it
//     was sent: none of them can have seen it;
//   - any other OK or Unknown change may or may not count.
func fate(c Op, dels []Op) Fate {
	if c.Outcome == apiclient.Failed {
		return Gone
	}
	if c.Outcome == apiclient.OK {
		for _, d := range dels {
			if d.Outcome == apiclient.OK && d.Node == c.Node && d.Life == c.Life && d.Sent.After(c.Done) {
				return Gone
			}
		}
	}
	if c.Outcome != apiclient.OK {
		return Maybe
	}
	for _, d := range dels {
		if d.Outcome != apiclient.OK || !d.Done.Before(c.Sent) {
			return Maybe
		}
	}
	return Sure
}

// DeleteBounds returns, for each counter changed and deleted without an
// expiry, the range its converged value must lie in: the sure sum plus any
// subset of the maybes.
func (h *History) DeleteBounds(counters []string) map[string]DeleteBounds {
	ops := h.Ops()
	out := map[string]DeleteBounds{}
	for _, name := range counters {
		var dels, changes []Op
		var b DeleteBounds
		for _, op := range ops {
			if op.Counter != name {
				continue
			}
			switch op.Kind {
			case OpDelete:
				b.Deletes.Add(op.Outcome)
				if op.Outcome != apiclient.Failed {
					dels = append(dels, op)
				}
			case OpChange:
				changes = append(changes, op)
			}
		}
		for _, c := range changes {
			switch fate(c, dels) {
			case Sure:
				b.Sure++
				b.Acked += c.Delta
			case Maybe:
				b.Maybe++
				if c.Delta < 0 {
					b.Lo += c.Delta
				} else {
					b.Hi += c.Delta
				}
			case Gone:
				if c.Outcome == apiclient.OK {
					b.Gone++
					b.Reset += c.Delta
				}
			}
		}
		b.Lo += b.Acked
		b.Hi += b.Acked
		b.Unknowns = int64(b.Maybe)
		if len(changes) > 0 || b.Deletes.Total() > 0 {
			out[name] = b
		}
	}
	return out
}

// ExpiryDeadline returns the latest time an expiry of the named counters
// was set for, as far as the clients know: the latest end of an operation
// (not Failed) that carried a ttl, plus the expires_in of its reply if OK
// or its ttl if Unknown; the zero time if none did. An Unknown operation may have been applied after its client gave
// up (a 503), so the check waits past this time, not just until it.
func (h *History) ExpiryDeadline(counters []string) time.Time {
	var last time.Time
	for _, op := range h.Ops() {
		if op.TTL == 0 || op.Outcome == apiclient.Failed || !slices.Contains(counters, op.Counter) {
			continue
		}
		left := op.TTL
		if op.Outcome == apiclient.OK {
			left = op.ExpiresIn
		}
		at := op.Done.Add(time.Duration(left) * time.Second)
		if at.After(last) {
			last = at
		}
	}
	return last
}

// Describe lists the operations on counter, one a line, timed from start.
func (h *History) Describe(counter string, start time.Time) []string {
	var out []string
	for _, op := range h.Ops() {
		if op.Counter == counter {
			out = append(out, fmt.Sprintf("%7.3fs..%7.3fs %s", op.Sent.Sub(start).Seconds(), op.Done.Sub(start).Seconds(), op))
		}
	}
	return out
}

func describeDeleteBounds(bounds map[string]DeleteBounds) string {
	var parts []string
	for _, name := range slices.Sorted(maps.Keys(bounds)) {
		parts = append(parts, fmt.Sprintf("%s %s", name, bounds[name]))
	}
	return strings.Join(parts, ", ")
}
