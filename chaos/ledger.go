package chaos

import (
	"fmt"
	"sync"

	"countd/internal/apiclient"
)

// Outcome is what a client learned from one change.
type Outcome = apiclient.Outcome

// The outcomes of a change; apiclient.Client.Change says which is which.
const (
	OK      = apiclient.OK      // 2xx: applied and durable on that node
	Failed  = apiclient.Failed  // refused for certain (4xx, connection refused): not applied
	Unknown = apiclient.Unknown // no answer, a lost reply, a 5xx: it may have been applied
)

// Op is one client change and its outcome.
type Op struct {
	Client  int
	Node    string
	Counter string
	Delta   int64 // non-zero; negative for a decrement
	Outcome Outcome
	Err     string // why, if not OK
}

func (o Op) String() string {
	s := fmt.Sprintf("client %d: %s %s %+d: %s", o.Client, o.Node, o.Counter, o.Delta, o.Outcome)
	if o.Err != "" {
		s += ": " + o.Err
	}
	return s
}

// Bounds is the range invariant 2 allows a converged counter's value.
type Bounds struct {
	Acked    int64 // sum of acknowledged changes
	Lo, Hi   int64 // Acked plus the unknown decrements; Acked plus the unknown increments
	Unknowns int   // how many changes of this counter had an unknown outcome
}

func (b Bounds) String() string {
	if b.Lo == b.Hi {
		return fmt.Sprintf("exactly %d", b.Acked)
	}
	return fmt.Sprintf("%d..%d (acked %d, %d unknown)", b.Lo, b.Hi, b.Acked, b.Unknowns)
}

// Ledger records every client change. It is safe for concurrent use.
type Ledger struct {
	mu  sync.Mutex
	ops []Op
}

// Record adds one change.
func (l *Ledger) Record(op Op) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ops = append(l.ops, op)
}

// Counts returns how many changes had each outcome.
func (l *Ledger) Counts() [3]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out [3]int
	for _, op := range l.ops {
		out[op.Outcome]++
	}
	return out
}

// Bounds returns, per counter, the range its value must end in.
func (l *Ledger) Bounds() map[string]Bounds {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]Bounds{}
	for _, op := range l.ops {
		b := out[op.Counter]
		switch op.Outcome {
		case OK:
			b.Acked += op.Delta
			b.Lo += op.Delta
			b.Hi += op.Delta
		case Unknown:
			b.Unknowns++
			if op.Delta < 0 {
				b.Lo += op.Delta
			} else {
				b.Hi += op.Delta
			}
		}
		out[op.Counter] = b
	}
	return out
}

// AckedOn returns, per counter, the sum of changes node acknowledged.
func (l *Ledger) AckedOn(node string) map[string]int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]int64{}
	for _, op := range l.ops {
		if op.Outcome == OK && op.Node == node {
			out[op.Counter] += op.Delta
		}
	}
	return out
}
