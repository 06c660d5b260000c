package apiclient

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
)

// Ledger adds up what clients were told about their changes, classified by
// Classify, so that a test can bound what the nodes must converge to
// (invariant 2 of docs/design.md): per counter, the acknowledged sum and
// the range the unknown outcomes allow; per node, how many changes had
// each outcome. It keeps sums, not the changes, so it stays small under
// any load. The zero Ledger is empty and ready; it is safe for concurrent
// use.
type Ledger struct {
	mu       sync.Mutex
	total    Counts
	nodes    map[string]Counts
	counters map[string]Tally
	errs     map[string]int64 // distinct error texts, at most maxErrs
}

// maxErrs bounds how many distinct error texts a Ledger keeps.
const maxErrs = 8

// Tally is what a Ledger knows of one counter.
type Tally struct {
	Changes Counts // how many changes had each outcome
	Up      Counts // the increments' sizes added up, by outcome
	Down    Counts // the decrements' sizes added up (positive), by outcome
}

// Bounds returns the range invariant 2 allows the counter's converged value.
func (t Tally) Bounds() Bounds {
	acked := t.Up.OK - t.Down.OK
	return Bounds{Acked: acked, Lo: acked - t.Down.Unknown, Hi: acked + t.Up.Unknown, Unknowns: t.Changes.Unknown}
}

// Bounds is the range a converged counter's value must lie in.
type Bounds struct {
	Acked    int64 // sum of the acknowledged changes
	Lo, Hi   int64 // Acked less the unknown decrements; Acked plus the unknown increments
	Unknowns int64 // how many changes of the counter had an unknown outcome
}

// Holds reports whether v lies within the bounds.
func (b Bounds) Holds(v int64) bool { return b.Lo <= v && v <= b.Hi }

func (b Bounds) String() string {
	if b.Lo == b.Hi {
		return fmt.Sprintf("exactly %d", b.Acked)
	}
	return fmt.Sprintf("%d..%d (acked %d, %d unknown)", b.Lo, b.Hi, b.Acked, b.Unknowns)
}

// Record adds one change of delta (non-zero; negative for a decrement) to
// counter, sent to node, with its result, and returns the totals so far
// (so a load can stop or signal at a number of acknowledgements without a
// count of its own).
func (l *Ledger) Record(node, counter string, delta int64, r Result) Counts {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.nodes == nil {
		l.nodes, l.counters, l.errs = map[string]Counts{}, map[string]Tally{}, map[string]int64{}
	}
	l.total.Add(r.Outcome)
	n := l.nodes[node]
	n.Add(r.Outcome)
	l.nodes[node] = n
	t := l.counters[counter]
	t.Changes.Add(r.Outcome)
	if delta < 0 {
		t.Down.AddN(r.Outcome, -delta)
	} else {
		t.Up.AddN(r.Outcome, delta)
	}
	l.counters[counter] = t
	if r.Err != nil {
		k := errText(r)
		if _, ok := l.errs[k]; ok || len(l.errs) < maxErrs {
			l.errs[k]++
		}
	}
	return l.total
}

// errText is r's error without addresses, so that one kind of failure is
// one text: "503 Service Unavailable: {...}", "connection refused".
func errText(r Result) string {
	s := r.Err.Error()
	if r.Status != 0 {
		return s
	}
	if i := strings.LastIndex(s, ": "); i >= 0 {
		return s[i+2:]
	}
	return s
}

// Counts returns how many changes had each outcome.
func (l *Ledger) Counts() Counts {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

// Node returns how many changes sent to node had each outcome.
func (l *Ledger) Node(node string) Counts {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.nodes[node]
}

// Counter returns what the ledger knows of counter.
func (l *Ledger) Counter(counter string) Tally {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.counters[counter]
}

// Bounds returns, per counter changed, the range its value must end in.
func (l *Ledger) Bounds() map[string]Bounds {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]Bounds, len(l.counters))
	for name, t := range l.counters {
		out[name] = t.Bounds()
	}
	return out
}

// Exact returns the acknowledged sum of each counter changed, or an error
// unless every change was acknowledged: only then are the bounds one value.
func (l *Ledger) Exact() (map[string]int64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.total.Failed != 0 || l.total.Unknown != 0 {
		return nil, fmt.Errorf("not every change was acknowledged: %s; errors seen: %s", l.total, l.errsLocked())
	}
	out := make(map[string]int64, len(l.counters))
	for name, t := range l.counters {
		out[name] = t.Up.OK - t.Down.OK
	}
	return out, nil
}

// Errors describes the distinct errors seen (the first few kinds) and how
// often each came: "[connection refused ×3, 503 Service Unavailable: ... ×1]".
func (l *Ledger) Errors() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.errsLocked()
}

func (l *Ledger) errsLocked() string {
	parts := make([]string, 0, len(l.errs))
	for _, k := range slices.Sorted(maps.Keys(l.errs)) {
		parts = append(parts, fmt.Sprintf("%s ×%d", k, l.errs[k]))
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

func (l *Ledger) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return fmt.Sprintf("%s; errors seen: %s", l.total, l.errsLocked())
}
