// Package crdt holds countd's replicated state: a set of named PN-counters.
//
// Each counter maps a replica id to two grow-only totals, P (increments) and
// N (decrements); its value is ΣP − ΣN. Merging two states takes the
// per-entry maximum of P and of N, which is commutative, associative and
// idempotent, so a state can be duplicated, reordered, delayed or retried in
// transit and every replica still ends with the same value.
//
// A replica writes only its own entries. Every change (local or merged)
// stamps the entry with the next local version, so DeltaSince(v) can hand a
// peer exactly the entries that changed after the last version it
// acknowledged.
//
// The package has no goroutines, no I/O and no clock: the caller owns the
// State and serialises access to it.
package crdt

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"sort"
)

// Errors returned by State. Callers match them with errors.Is.
var (
	// ErrOverflow means a change would take a value (or a grow-only total)
	// outside its range. Nothing was changed.
	ErrOverflow = errors.New("crdt: value out of range")
	// ErrInvalid means an argument or a decoded entry is malformed.
	ErrInvalid = errors.New("crdt: invalid input")
	// ErrLimit means a change or a merge would take the state past one of
	// its Limits. Nothing was changed.
	ErrLimit = errors.New("crdt: limit reached")
)

// Limits bound what a State may hold; 0 means no bound. They are checked
// when a change or a merge would add to the state, never when reading, so a
// state loaded before a limit was lowered keeps everything it holds (and its
// counters keep working).
type Limits struct {
	// MaxEntries is the most replica entries one counter may hold. A merge
	// that would give a counter more is refused whole; so is a local change
	// that would add this replica's entry to a counter already full, since
	// every peer would refuse to merge that entry.
	MaxEntries int
	// MaxCounters is the most counters a local change may create. Merges are
	// never refused for it: a counter a peer holds must reach every node, or
	// nodes would disagree for good.
	MaxCounters int
}

// MaxNameLen is the longest counter name accepted.
const MaxNameLen = 128

// ReplicaLen is the length of a replica id: 16 lowercase hex digits.
const ReplicaLen = 16

// Entry is one replica's totals for one counter: the unit of replication
// and of storage.
type Entry struct {
	Counter string `json:"counter"`
	Replica string `json:"replica"`
	P       uint64 `json:"p"`
	N       uint64 `json:"n"`
}

// State is a set of named PN-counters as seen by one replica.
// The zero value is not usable; call New.
type State struct {
	replica  string
	version  uint64
	counters map[string]*counter
	entries  int // live entries, for log compaction
	limits   Limits

	// log records (version, key) for every change in version order. An item
	// is stale when its entry has changed again since; compact drops those.
	log []logItem
}

type counter struct {
	// slots holds the totals per replica id. A counter usually has few (one
	// per process that changed it), and a slice searched in order costs less
	// memory than a map and no more time: 100,000 counters take a third of
	// the memory they took in a map each. Past indexFrom slots, index maps a
	// replica id to its slot, so a counter with very many entries (a long
	// history, or a peer flooding it) is still found in O(1), and merging
	// or loading n entries takes O(n), not O(n²).
	slots []slot
	index map[string]int32 // nil until len(slots) > indexFrom
	p, n  u128             // cached ΣP and ΣN
}

// indexFrom is the number of slots a counter searches in order; past it
// the counter builds its index. A search of 16 ids costs about what one map
// lookup does (BenchmarkFind), and a counter that has no more than that
// (three nodes restarted five times) pays no memory for an index.
const indexFrom = 16

type slot struct {
	replica string
	p, n    uint64
	ver     uint64 // version of the last change to this entry
}

// slot returns the totals of replica, or nil.
func (c *counter) slot(replica string) *slot {
	if c.index == nil {
		for i := range c.slots {
			if c.slots[i].replica == replica {
				return &c.slots[i]
			}
		}
		return nil
	}
	if i, ok := c.index[replica]; ok {
		return &c.slots[i]
	}
	return nil
}

// add appends an empty slot for replica and returns it. own puts it first
// (this node's own entry, changed most, is found first by the search in
// order).
func (c *counter) add(replica string, own bool) *slot {
	c.slots = append(c.slots, slot{replica: replica})
	i := len(c.slots) - 1
	if own {
		c.slots[0], c.slots[i] = c.slots[i], c.slots[0]
		if c.index != nil {
			c.index[c.slots[i].replica] = int32(i)
		}
		i = 0
	}
	switch {
	case c.index != nil:
		c.index[replica] = int32(i)
	case len(c.slots) > indexFrom:
		c.index = make(map[string]int32, 2*len(c.slots))
		for j := range c.slots {
			c.index[c.slots[j].replica] = int32(j)
		}
	}
	return &c.slots[i]
}

type logItem struct {
	ver     uint64
	counter string
	replica string
}

// New returns an empty state that writes as the given replica.
// It panics if replica is not a valid replica id: that is a programming error.
func New(replica string) *State {
	if !ValidReplica(replica) {
		panic(fmt.Sprintf("crdt: invalid replica id %q", replica))
	}
	return &State{replica: replica, counters: make(map[string]*counter)}
}

// Replica returns the id this state writes its own entries under.
func (s *State) Replica() string { return s.replica }

// Version returns the version of the latest change; 0 for an empty state.
func (s *State) Version() uint64 { return s.version }

// Len returns the number of counters known.
func (s *State) Len() int { return len(s.counters) }

// SetLimits bounds what later changes and merges may add. It refuses
// nothing already held.
func (s *State) SetLimits(l Limits) { s.limits = l }

// Limits returns the bounds set by SetLimits.
func (s *State) Limits() Limits { return s.limits }

// Increment adds by to counter name on this replica and returns the new value.
// It returns ErrOverflow, changing nothing, if the value would exceed int64.
func (s *State) Increment(name string, by uint64) (int64, error) {
	return s.change(name, by, false)
}

// Decrement subtracts by from counter name on this replica and returns the
// new value. It returns ErrOverflow, changing nothing, if the value would go
// below math.MinInt64.
func (s *State) Decrement(name string, by uint64) (int64, error) {
	return s.change(name, by, true)
}

func (s *State) change(name string, by uint64, neg bool) (int64, error) {
	if !ValidName(name) {
		return 0, fmt.Errorf("%w: counter name %q", ErrInvalid, name)
	}
	if by == 0 {
		return 0, fmt.Errorf("%w: change by 0", ErrInvalid)
	}
	c, sl := s.find(name, s.replica)
	if sl == nil { // a new entry, maybe a new counter: off the common path
		if err := s.roomForChange(name, c); err != nil {
			return 0, err
		}
	}
	var p, n uint64
	if sl != nil {
		p, n = sl.p, sl.n
	}
	var cp, cn u128
	if c != nil {
		cp, cn = c.p, c.n
	}
	var carry uint64
	if neg {
		n, carry = addOverflows(n, by)
		cn = cn.add(by)
	} else {
		p, carry = addOverflows(p, by)
		cp = cp.add(by)
	}
	v, ok := cp.sub(cn)
	if carry != 0 || !ok {
		return 0, fmt.Errorf("%w: counter %q", ErrOverflow, name)
	}
	s.set(name, s.replica, c, sl, p, n)
	return v, nil
}

// Value returns the value of counter name (0 if unknown). Merged replicas
// can in principle hold a sum outside int64 (each side of a partition
// staying in range on its own); such a value is clamped to the int64 range.
func (s *State) Value(name string) int64 {
	c := s.counters[name]
	if c == nil {
		return 0
	}
	return c.value()
}

// Values returns the value of every counter.
func (s *State) Values() map[string]int64 {
	out := make(map[string]int64, len(s.counters))
	for name, c := range s.counters {
		out[name] = c.value()
	}
	return out
}

// Get returns the entry of counter name for replica, and whether it exists.
func (s *State) Get(name, replica string) (Entry, bool) {
	_, sl := s.find(name, replica)
	if sl == nil {
		return Entry{}, false
	}
	return Entry{Counter: name, Replica: replica, P: sl.p, N: sl.n}, true
}

// Merge folds entries into the state, taking the per-entry maximum of P and
// of N, and returns the entries whose totals changed (with their new totals).
// Invalid input changes nothing and returns an error wrapping ErrInvalid;
// entries that would give a counter more than Limits.MaxEntries change
// nothing and return an error wrapping ErrLimit.
func (s *State) Merge(entries []Entry) ([]Entry, error) {
	if err := Validate(entries); err != nil {
		return nil, err
	}
	if err := s.room(entries); err != nil {
		return nil, err
	}
	var changed []Entry
	for _, e := range entries {
		c, sl := s.find(e.Counter, e.Replica)
		var cur slot // an absent entry counts as 0, 0
		if sl != nil {
			cur = *sl
		}
		p, n := max(cur.p, e.P), max(cur.n, e.N)
		if p == cur.p && n == cur.n {
			continue // nothing new
		}
		s.set(e.Counter, e.Replica, c, sl, p, n)
		changed = append(changed, Entry{Counter: e.Counter, Replica: e.Replica, P: p, N: n})
	}
	return changed, nil
}

// roomForChange checks that a local change may add this replica's entry
// to counter name (c, nil if the counter is new) within the limits.
func (s *State) roomForChange(name string, c *counter) error {
	switch lim := s.limits; {
	case c == nil && lim.MaxCounters > 0 && len(s.counters) >= lim.MaxCounters:
		return fmt.Errorf("%w: counter %q would be a new counter, and there are %d, the most a change may create",
			ErrLimit, name, len(s.counters))
	case c != nil && lim.MaxEntries > 0 && len(c.slots) >= lim.MaxEntries:
		return fmt.Errorf("%w: counter %q holds %d replica entries, the most a counter may hold, and this change would add one",
			ErrLimit, name, len(c.slots))
	}
	return nil
}

// room checks that merging entries leaves every counter within
// Limits.MaxEntries. Only entries that would be added count, once each: a
// merge that updates entries already held always fits.
func (s *State) room(entries []Entry) error {
	limit := s.limits.MaxEntries
	if limit <= 0 {
		return nil
	}
	var added map[Entry]struct{} // new keys, P and N zeroed
	var per map[string]int       // new entries per counter
	for _, e := range entries {
		if e.P == 0 && e.N == 0 {
			continue // merges as nothing new
		}
		c, sl := s.find(e.Counter, e.Replica)
		if sl != nil {
			continue
		}
		k := Entry{Counter: e.Counter, Replica: e.Replica}
		if _, dup := added[k]; dup {
			continue
		}
		if added == nil {
			added, per = make(map[Entry]struct{}), make(map[string]int)
		}
		added[k] = struct{}{}
		per[e.Counter]++
		held := 0
		if c != nil {
			held = len(c.slots)
		}
		if held+per[e.Counter] > limit {
			return fmt.Errorf("%w: counter %q would hold more than %d replica entries, the most a counter may hold (it holds %d)",
				ErrLimit, e.Counter, limit, held)
		}
	}
	return nil
}

// DeltaSince returns every entry whose latest change has a version v with
// since < v <= upTo, in version order. An entry that changed again after
// upTo is left out: its totals at upTo are no longer known, and it will be in
// a later delta. DeltaSince(0, s.Version()) is the full state.
func (s *State) DeltaSince(since, upTo uint64) []Entry {
	entries, _ := s.DeltaLimit(since, upTo, 0)
	return entries
}

// DeltaLimit is DeltaSince returning at most limit entries (no limit if
// limit <= 0), and the version through which the delta is complete: upTo if
// nothing was cut, else the version of the last entry returned. A peer that
// merges the entries holds every change up to through.
func (s *State) DeltaLimit(since, upTo uint64, limit int) (entries []Entry, through uint64) {
	i := sort.Search(len(s.log), func(i int) bool { return s.log[i].ver > since })
	for ; i < len(s.log) && s.log[i].ver <= upTo; i++ {
		it := s.log[i]
		sl := s.counters[it.counter].slot(it.replica)
		if sl.ver != it.ver {
			continue // changed again later
		}
		if limit > 0 && len(entries) == limit {
			return entries, s.log[i-1].ver
		}
		entries = append(entries, Entry{Counter: it.counter, Replica: it.replica, P: sl.p, N: sl.n})
	}
	return entries, max(upTo, since)
}

// find returns counter name and its entry for replica; either is nil when
// absent. Pass both to set, which creates what is missing.
func (s *State) find(name, replica string) (*counter, *slot) {
	c := s.counters[name]
	if c == nil {
		return nil, nil
	}
	return c, c.slot(replica)
}

// set stores totals for one entry (c and sl as find returned them), stamps
// it with the next version and keeps the cached sums and the change log in
// step.
func (s *State) set(name, replica string, c *counter, sl *slot, p, n uint64) {
	if c == nil {
		c = &counter{}
		s.counters[name] = c
	}
	if sl == nil {
		sl = c.add(replica, replica == s.replica)
		s.entries++
	}
	c.p = c.p.add(p - sl.p) // totals only grow
	c.n = c.n.add(n - sl.n)
	s.version++
	sl.p, sl.n, sl.ver = p, n, s.version
	s.log = append(s.log, logItem{ver: s.version, counter: name, replica: replica})
	if len(s.log) > 2*s.entries+64 {
		s.compact()
	}
}

// compact drops stale log items in place, keeping version order.
func (s *State) compact() {
	live := s.log[:0]
	for _, it := range s.log {
		if s.counters[it.counter].slot(it.replica).ver == it.ver {
			live = append(live, it)
		}
	}
	clear(s.log[len(live):])
	s.log = live
}

func (c *counter) value() int64 {
	v, ok := c.p.sub(c.n)
	if ok {
		return v
	}
	if c.p.less(c.n) {
		return math.MinInt64
	}
	return math.MaxInt64
}

// ValidName reports whether name is a valid counter name:
// 1 to 128 characters from [A-Za-z0-9._-].
func ValidName(name string) bool {
	if len(name) == 0 || len(name) > MaxNameLen {
		return false
	}
	for i := 0; i < len(name); i++ {
		switch b := name[i]; {
		case b >= 'a' && b <= 'z', b >= 'A' && b <= 'Z', b >= '0' && b <= '9',
			b == '.', b == '_', b == '-':
		default:
			return false
		}
	}
	return true
}

// ValidReplica reports whether id is a valid replica id: 16 lowercase hex digits.
func ValidReplica(id string) bool {
	if len(id) != ReplicaLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if b := id[i]; !(b >= '0' && b <= '9' || b >= 'a' && b <= 'f') {
			return false
		}
	}
	return true
}

// Validate checks every entry's counter name and replica id.
func Validate(entries []Entry) error {
	for i, e := range entries {
		if !ValidName(e.Counter) {
			return fmt.Errorf("%w: entry %d: counter name %q", ErrInvalid, i, e.Counter)
		}
		if !ValidReplica(e.Replica) {
			return fmt.Errorf("%w: entry %d: replica id %q", ErrInvalid, i, e.Replica)
		}
	}
	return nil
}

func addOverflows(a, b uint64) (sum, carry uint64) {
	sum = a + b
	if sum < a {
		carry = 1
	}
	return sum, carry
}

// NewReplicaID returns a fresh random replica id. Every process start takes a
// new one: a replica that restarted having lost its latest writes must never
// write under its old id again, or max() would swallow its new changes.
func NewReplicaID() string {
	var b [ReplicaLen / 2]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("crdt: reading random bytes: %v", err)) // crypto/rand does not fail on Linux
	}
	return hex.EncodeToString(b[:])
}
