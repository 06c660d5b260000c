// Package crdt holds countd's replicated state: a set of named PN-counters
// that can be deleted and can expire.
//
// Each counter maps a replica id to an entry: two grow-only totals, P
// (increments) and N (decrements), and a reset floor FP, FN: the totals of
// that entry a delete observed. Its value is Σ(P − FP) − Σ(N − FN). Merging
// two states takes the per-field maximum of every entry, which is
// commutative, associative and idempotent, so a state can be duplicated,
// reordered, delayed or retried in transit and every replica still ends
// with the same value.
//
// A delete raises every floor it sees to the totals it sees (observed
// reset): what it had not seen, a concurrent change on another node,
// survives. A counter whose every entry stands at its floor is dead: it is
// absent to readers, and its entries are a tombstone that keeps a slow
// replica's old totals from bringing it back, until Collectable says every
// replica holds it.
//
// An expiry is a register on the entries: the pair (T, E) with the greatest
// T across a counter's entries says when it expires (E, unix milliseconds;
// 0: never). A replica sets it in its own entry, with a T above every T it
// has seen, so the latest setting wins everywhere.
//
// A replica writes the totals of its own entries only. Every change (local
// or merged) stamps the entry with the next local version, so
// DeltaSince(v) can hand a peer exactly the entries that changed after the
// last version it acknowledged.
//
// The package has no goroutines, no I/O and no clock: the caller owns the
// State, serialises access to it, and passes the time where it matters.
package crdt

import (
	"errors"
	"fmt"
	"math"
	"slices"
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
	// ErrNotFound means the counter does not exist (never created, or
	// deleted). Nothing was changed.
	ErrNotFound = errors.New("crdt: no such counter")
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
	// MaxCounters is the most live counters a local change may create.
	// Merges are never refused for it: a counter a peer holds must reach
	// every node, or nodes would disagree for good.
	MaxCounters int
	// MaxKeys is the most key entries (keys.go) the state may hold for a
	// keyed change to add one. Key entries do not count in MaxEntries, and
	// merges are never refused for them, as for MaxCounters.
	MaxKeys int
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
	// FP and FN are the reset floor: the totals of this entry that deletes
	// observed (FP ≤ P, FN ≤ N). Anyone may raise them.
	FP uint64 `json:"fp,omitempty"`
	FN uint64 `json:"fn,omitempty"`
	// T and E are the expiry register: set at T, expiring at E (unix
	// milliseconds; E 0: no expiry). The pair with the greatest T (then E)
	// among a counter's entries is the counter's.
	T uint64 `json:"t,omitempty"`
	E uint64 `json:"e,omitempty"`
	// G, on a fold entry (incarnation 0000), is how many incarnations of
	// its lineage it covers: 1 to G. It is 0 on every other entry.
	G uint32 `json:"g,omitempty"`
	// FG, on a fold entry, is the count of covered incarnations its floor
	// is for: a delete that saw the fold entry covering FG incarnations
	// reset all of them (FP, FN are its totals then). Floors a delete put
	// on later covered incarnations' own entries are kept in those entries
	// (shadows, see Merge). FG ≤ G.
	FG uint32 `json:"fg,omitempty"`
	// O, A, RP, RN and X are set on key entries only (replica id "k" and
	// 31 hex digits, see keys.go): the owner (the least replica id that
	// accepted the keyed change), when it was accepted (unix milliseconds,
	// the least), what retirement moved out of it into the owner's entry,
	// and whether it is retired (X; RP and RN may be zero).
	O  string `json:"o,omitempty"`
	A  uint64 `json:"a,omitempty"`
	RP uint64 `json:"rp,omitempty"`
	RN uint64 `json:"rn,omitempty"`
	X  bool   `json:"x,omitempty"`
}

// join returns the least upper bound of two entries of one key.
func join(a, b Entry) Entry {
	out := a
	out.P, out.N = max(a.P, b.P), max(a.N, b.N)
	out.FP, out.FN = max(a.FP, b.FP), max(a.FN, b.FN)
	out.G, out.FG = max(a.G, b.G), max(a.FG, b.FG)
	if pairLess(a.T, a.E, b.T, b.E) {
		out.T, out.E = b.T, b.E
	}
	if a.O == "" || b.O != "" && b.O < a.O {
		out.O = b.O
	}
	if a.A == 0 || b.A != 0 && b.A < a.A {
		out.A = b.A
	}
	out.RP, out.RN = max(a.RP, b.RP), max(a.RN, b.RN)
	out.X = a.X || b.X
	return out
}

func pairLess(t1, e1, t2, e2 uint64) bool { return t1 < t2 || t1 == t2 && e1 < e2 }

// State is a set of named PN-counters as seen by one replica.
// The zero value is not usable; call New.
type State struct {
	replica  string
	version  uint64
	counters map[string]*counter
	live     int // counters that are not dead
	entries  int // entries held, for log compaction
	limits   Limits
	// high is at least every total of this replica's own entry and of its
	// lineage's fold entry that the state dropped: an entry of either made
	// anew starts from it (totals and floors), so it never shows a peer
	// that still holds the old entry totals below the old ones.
	high uint64

	// log records (version, key) for every change in version order. An item
	// is stale when its entry has changed again (or was dropped) since;
	// compact drops those.
	log []logItem
	// dead records, in version order, changes after which their counter
	// was dead: the candidates of Collectable.
	dead []logItem
	// expiring holds the counters' expiry times, earliest first; an item
	// is stale once its counter's expiry changed.
	expiring expiryHeap
	// keys is the number of key entries held; keyIndex maps each key id to
	// its counter (the counter of the first one held, if a partition put a
	// key on two), for the other-counter check of ChangeKeyed.
	keys     int
	peakKeys int // the most keys held since keyIndex was last rebuilt (shrink)
	keyIndex map[string]string
	// owned holds the unretired key entries of this replica's lineage,
	// earliest acceptance first, for Retire; an item is stale once its entry
	// changed owner or time, retired, or was dropped.
	owned keyHeap
	// retired records, in version order, changes after which a key entry
	// was retired and counted zero: the candidates of ForgettableKeys.
	retired []logItem
	// removed gathers the entries dropped since TakeRemoved.
	removed []Entry
	// peak is the most counters held since the map was last rebuilt
	// (shrink).
	peak int
	// ids holds one copy of each replica id (not key ids, which are one
	// per key entry) that slots name: an entry decoded from a store or a
	// peer brings a string of its own, and a million slots would otherwise
	// hold a million copies of a few ids.
	ids map[string]string
	// skipDead: a merged entry that is dead by itself (at its floor) and
	// of a counter this state does not hold is not kept (SkipDeadNew).
	skipDead bool
}

type counter struct {
	// slots holds the entries by replica id. A counter usually has few (one
	// per process that changed it), and a slice searched in order costs less
	// memory than a map and no more time: 100,000 counters take a third of
	// the memory they took in a map each. Past indexFrom slots, index maps a
	// replica id to its slot, so a counter with very many entries (a long
	// history, or a peer flooding it) is still found in O(1), and merging
	// or loading n entries takes O(n), not O(n²).
	slots []slot
	index map[string]int32 // nil until len(slots) > indexFrom
	// p and n cache Σ(P − FP) and Σ(N − FN) of the entries that count;
	// shadows, if any, caches ΣFP and ΣFN of the shadows, which subtract
	// (rare: a pointer costs a counter less than the sums).
	p, n    u128
	shadows *[2]u128
	t, e    uint64 // the expiry register with the greatest T
	// keyed counts the key entries among slots (not in Limits.MaxEntries),
	// live those of them not retired (a counter holding one is not
	// collected: its key must stay known for the window).
	keyed, liveKeys int32
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
	x       *extra // nil while all of it is zero: most entries
}

// extra holds the fields most entries leave at zero.
type extra struct {
	fp, fn, t, e uint64
	g, fg        uint32
	// shadow: the entry is of an incarnation a fold entry covers, and is
	// kept only for its floor (see Merge).
	shadow bool
	// shared: one of foldExtras, which slots share and store never writes.
	shared bool
	k      *keyExtra // a key entry's fields; nil on every other entry
}

// foldExtras are the extras of fold entries that carry nothing but G (no
// floor, FG 0, no expiry), indexed by G. After a restart every counter the
// lineage wrote has such a fold entry; sharing its extra saves one (64
// bytes) per counter.
var foldExtras = func() (f [64]extra) {
	for g := range f {
		f[g] = extra{g: uint32(g), shared: true}
	}
	return f
}()

// keyExtra holds the fields of a key entry.
type keyExtra struct {
	o         string
	a, rp, rn uint64
	x         bool
}

func (sl *slot) entry(name string) Entry {
	e := Entry{Counter: name, Replica: sl.replica, P: sl.p, N: sl.n}
	if x := sl.x; x != nil {
		e.FP, e.FN, e.T, e.E, e.G, e.FG = x.fp, x.fn, x.t, x.e, x.g, x.fg
		if k := x.k; k != nil {
			e.O, e.A, e.RP, e.RN, e.X = k.o, k.a, k.rp, k.rn, k.x
		}
	}
	return e
}

func (sl *slot) shadow() bool { return sl.x != nil && sl.x.shadow }

func (sl *slot) store(e Entry, shadow bool) {
	sl.p, sl.n = e.P, e.N
	keyed := e.O != "" || e.A|e.RP|e.RN != 0 || e.X
	if e.FP|e.FN|e.T|e.E|uint64(e.G)|uint64(e.FG) == 0 && !shadow && !keyed {
		sl.x = nil
		return
	}
	if e.FP|e.FN|e.T|e.E|uint64(e.FG) == 0 && !shadow && !keyed && e.G < uint32(len(foldExtras)) {
		sl.x = &foldExtras[e.G]
		return
	}
	if sl.x == nil || sl.x.shared {
		sl.x = new(extra) // reused after: a change to an expiring counter allocates nothing
	}
	k := sl.x.k
	*sl.x = extra{fp: e.FP, fn: e.FN, t: e.T, e: e.E, g: e.G, fg: e.FG, shadow: shadow}
	if keyed {
		if k == nil {
			k = new(keyExtra)
		}
		*k = keyExtra{o: e.O, a: e.A, rp: e.RP, rn: e.RN, x: e.X}
		sl.x.k = k
	}
}

// live returns what the entry adds to ΣP and ΣN.
func (e Entry) live() (p, n uint64) { return e.P - e.FP, e.N - e.FN }

// account adds (sign +1) or removes (−1) what entry e, a shadow or not,
// contributes to the counter's sums. A retired key entry counts
// (P−FP−RP)−(N−FN−RN): its RP and RN subtract, as a shadow's floor does.
func (c *counter) account(e Entry, shadow bool, remove bool) {
	op := u128.add
	if remove {
		op = u128.subU
	}
	if e.isKey() && !e.Retired() {
		if remove {
			c.liveKeys--
		} else {
			c.liveKeys++
		}
	}
	if e.RP|e.RN != 0 {
		if c.shadows == nil {
			c.shadows = new([2]u128)
		}
		c.shadows[0], c.shadows[1] = op(c.shadows[0], e.RP), op(c.shadows[1], e.RN)
	}
	if shadow {
		if c.shadows == nil {
			c.shadows = new([2]u128)
		}
		c.shadows[0], c.shadows[1] = op(c.shadows[0], e.FP), op(c.shadows[1], e.FN)
		return
	}
	p, n := e.live()
	c.p, c.n = op(c.p, p), op(c.n, n)
}

// slot returns the entry of replica, or nil.
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
	if isKeyID(replica) {
		c.keyed++
	}
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
		c.indexSlots()
	}
	return &c.slots[i]
}

// indexSlots builds the index of a counter with more than indexFrom slots.
func (c *counter) indexSlots() {
	if len(c.slots) <= indexFrom {
		return
	}
	c.index = make(map[string]int32, 2*len(c.slots))
	for j := range c.slots {
		c.index[c.slots[j].replica] = int32(j)
	}
}

// drop removes the slot of replica (which must exist) and its share of
// the cached sums.
func (c *counter) drop(replica string) {
	i := 0
	if c.index != nil {
		i = int(c.index[replica])
		delete(c.index, replica)
	} else {
		for c.slots[i].replica != replica {
			i++
		}
	}
	c.account(c.slots[i].entry(""), c.slots[i].shadow(), true)
	if isKeyID(replica) {
		c.keyed--
	}
	last := len(c.slots) - 1
	if i != last {
		c.slots[i] = c.slots[last]
		if c.index != nil {
			c.index[c.slots[i].replica] = int32(i)
		}
	}
	c.slots[last] = slot{}
	c.slots = c.slots[:last]
	// Give memory back once a counter holds a quarter of the entries it
	// once did (idempotency keys forgotten after their window): a slice
	// keeps its backing array, and a map never shrinks.
	if cap(c.slots) > indexFrom && len(c.slots) < cap(c.slots)/4 {
		c.slots = fresh(c.slots)
		if c.index != nil {
			c.index = nil
			c.indexSlots()
		}
	}
	if c.index != nil && len(c.slots) <= indexFrom {
		c.index = nil
	}
}

// dead reports whether every entry stands at its floor: the counter is
// absent to readers.
func (c *counter) dead() bool {
	p, n := c.live()
	return p.isZero() && n.isZero()
}

// live returns ΣP and ΣN net of every floor.
func (c *counter) live() (p, n u128) {
	if c.shadows == nil {
		return c.p, c.n
	}
	return c.p.subSat(c.shadows[0]), c.n.subSat(c.shadows[1])
}

// net returns the value of sums (p, n) of counter c (nil: none) net of
// its shadows and retired key entries, as value computes it, and false if
// it is outside int64.
func (c *counter) net(p, n u128) (int64, bool) {
	if c != nil && c.shadows != nil {
		p, n = p.subSat(c.shadows[0]), n.subSat(c.shadows[1])
	}
	return p.sub(n)
}

// latest returns the version of the counter's last change.
func (c *counter) latest() uint64 {
	var v uint64
	for i := range c.slots {
		v = max(v, c.slots[i].ver)
	}
	return v
}

type logItem struct {
	ver     uint64
	counter string
	replica string
}

// New returns an empty state that writes as the given replica.
// It panics if replica is not a valid replica id: that is a programming error.
func New(replica string) *State {
	if !ValidReplica(replica) || Incarnation(replica) == 0 {
		panic(fmt.Sprintf("crdt: invalid replica id %q", replica))
	}
	return &State{replica: replica, counters: make(map[string]*counter)}
}

// Replica returns the id this state writes its own entries under.
func (s *State) Replica() string { return s.replica }

// Version returns the version of the latest change; 0 for an empty state.
func (s *State) Version() uint64 { return s.version }

// Len returns the number of live counters: those a reader sees, expired
// or not.
func (s *State) Len() int { return s.live }

// Held returns the number of counters held, dead ones (tombstones) too.
func (s *State) Held() int { return len(s.counters) }

// Entries returns the number of entries held.
func (s *State) Entries() int { return s.entries }

// SetLimits bounds what later changes and merges may add. It refuses
// nothing already held.
func (s *State) SetLimits(l Limits) { s.limits = l }

// Limits returns the bounds set by SetLimits.
func (s *State) Limits() Limits { return s.limits }

// High returns the high-water mark of dropped own and fold entries (see
// SetHigh).
func (s *State) High() uint64 { return s.high }

// SetHigh raises the high-water mark: an own or fold entry made anew
// starts from it. A state loaded from a store that dropped fold entries is
// given the store's mark (store.DB keeps it).
func (s *State) SetHigh(h uint64) { s.high = max(s.high, h) }

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
	if c == nil || c.dead() || sl == nil { // a new entry or a new counter: off the common path
		if err := s.roomForChange(name, c, sl == nil); err != nil {
			return 0, err
		}
		if c != nil && c.dead() && c.e != 0 {
			// The counter starts again here: without the expiry of the
			// window it was deleted in. Stamped just above that setting,
			// not at now, so that a new window set elsewhere by a node
			// that saw this one end wins (TestLateSweepKeepsTheNextWindowsExpiry).
			s.writeExpiry(name, c, c.t+1, 0)
			c, sl = s.find(name, s.replica)
		}
	}
	e := s.ownEntry(name, sl)
	var cp, cn u128
	if c != nil {
		cp, cn = c.p, c.n
	}
	var carry uint64
	if neg {
		e.N, carry = addOverflows(e.N, by)
		cn = cn.add(by)
	} else {
		e.P, carry = addOverflows(e.P, by)
		cp = cp.add(by)
	}
	v, ok := c.net(cp, cn)
	if carry != 0 || !ok {
		return 0, fmt.Errorf("%w: counter %q", ErrOverflow, name)
	}
	s.set(name, c, sl, e)
	return v, nil
}

// ownEntry returns this replica's entry of counter name (sl as find
// returned it); one made anew starts at the high-water mark.
func (s *State) ownEntry(name string, sl *slot) Entry {
	if sl != nil {
		return sl.entry(name)
	}
	h := s.high
	return Entry{Counter: name, Replica: s.replica, P: h, N: h, FP: h, FN: h}
}

// Value returns the value of counter name (0 if unknown or dead). Merged
// replicas can in principle hold a sum outside int64 (each side of a
// partition staying in range on its own); such a value is clamped to the
// int64 range. Value does not look at the expiry: see Lookup.
func (s *State) Value(name string) int64 {
	c := s.counters[name]
	if c == nil {
		return 0
	}
	return c.value()
}

// Lookup returns the value of counter name and when it expires (unix
// milliseconds, 0: never); ok is false if the counter is unknown or dead.
// The caller compares expires with its clock: an expired counter is as
// good as deleted, though Delete has not run on it yet.
func (s *State) Lookup(name string) (value int64, expires uint64, ok bool) {
	c := s.counters[name]
	if c == nil || c.dead() {
		return 0, 0, false
	}
	return c.value(), c.e, true
}

// Counter is one counter as a reader sees it.
type Counter struct {
	Value   int64
	Expires uint64 // unix milliseconds; 0: never
}

// Values returns every counter that is live and not expired at now (unix
// milliseconds).
func (s *State) Values(now uint64) map[string]Counter {
	out := make(map[string]Counter, s.live)
	for name, c := range s.counters {
		if !c.dead() && !Expired(c.e, now) {
			out[name] = Counter{Value: c.value(), Expires: c.e}
		}
	}
	return out
}

// Names returns the names of the counters Values returns, in no order:
// a reader that walks them in chunks (Lookup) copies no values up front.
func (s *State) Names(now uint64) []string {
	out := make([]string, 0, s.live)
	for name, c := range s.counters {
		if !c.dead() && !Expired(c.e, now) {
			out = append(out, name)
		}
	}
	return out
}

// Expired reports whether an expiry at e (unix milliseconds, 0: none) has
// passed at now.
func Expired(e, now uint64) bool { return e != 0 && e <= now }

// Get returns the entry of counter name for replica, and whether it exists.
func (s *State) Get(name, replica string) (Entry, bool) {
	_, sl := s.find(name, replica)
	if sl == nil {
		return Entry{}, false
	}
	return sl.entry(name), true
}

// Merge folds entries into the state, taking the per-field maximum of each
// entry, and returns the entries that changed (with their new fields).
//
// A fold entry (State.Fold) covers incarnations 1 to G of its lineage: their
// totals are in its own. An entry of a covered incarnation is therefore not
// counted. It is dropped, handing its expiry register to the fold entry,
// unless it carries a floor the fold entry's does not: a delete that saw it
// (and not the fold entry) reset that much of it, and the fold entry's
// totals hold that much too. Such an entry is kept as a shadow, which
// counts only its floor, subtracted; merged like any entry, it keeps
// deletes exact whichever way the fold and the floors travel. A delete that
// sees the fold entry resets all it covers (FG = G) and drops its shadows.
//
// Invalid input changes nothing and returns an error wrapping ErrInvalid;
// entries that would give a counter more than Limits.MaxEntries change
// nothing and return an error wrapping ErrLimit.
func (s *State) Merge(entries []Entry) ([]Entry, error) {
	m := merging{record: true}
	if err := s.merge(entries, &m); err != nil {
		return nil, err
	}
	return m.changed, nil
}

// Load merges entries as Merge does, without gathering the entries that
// changed: for loading a store or copying a state, where nobody reads them
// and gathering them would hold a second copy of every entry (and a map of
// them) until the load ends.
func (s *State) Load(entries []Entry) error {
	return s.merge(entries, &merging{})
}

// merge is Merge, telling m of the entries that changed.
func (s *State) merge(entries []Entry, m *merging) error {
	if err := Validate(entries); err != nil {
		return err
	}
	if err := s.notCoveringSelf(entries); err != nil {
		return err
	}
	if err := s.room(entries); err != nil {
		return err
	}
	skip := s.deadNew(entries)
	// Fold entries first, so that fewer covered entries are kept a while
	// for nothing.
	for _, e := range entries {
		if e.G > 0 && !skip[e.Counter] {
			m.add(s.mergeOne(e)...)
		}
	}
	// Then key entries, before the replica entries: a retirement moves a
	// key entry's totals into its owner's entry, and a peer that got the
	// owner's entry without the retired key entry would count the change
	// twice (a delete there would then take it away twice). Merged first,
	// the retired key entry takes the lower version here, so a delta cut
	// short between the two carries it first (keys.go).
	for _, e := range entries {
		if e.G == 0 && e.isKey() && !skip[e.Counter] {
			m.add(s.mergeOne(e)...)
		}
	}
	for _, e := range entries {
		if e.G == 0 && !e.isKey() && !skip[e.Counter] {
			m.add(s.mergeOne(e)...)
		}
	}
	return nil
}

// deadNew returns, with SkipDeadNew on, the counters of entries that this
// state does not hold and that every one of their entries leaves dead.
func (s *State) deadNew(entries []Entry) map[string]bool {
	if !s.skipDead {
		return nil
	}
	var skip, folded map[string]bool
	for _, e := range entries {
		if s.counters[e.Counter] != nil {
			continue
		}
		dead := e.countsZero()
		if !dead && e.G > 0 {
			// A fold entry counts what its shadows' floors take away:
			// the batch decides, below.
			if folded == nil {
				folded = make(map[string]bool)
			}
			folded[e.Counter], dead = true, true
		}
		if d, seen := skip[e.Counter]; !seen || d && !dead {
			if skip == nil {
				skip = make(map[string]bool)
			}
			skip[e.Counter] = dead && (!seen || d)
		}
	}
	var batches map[string][]Entry
	for _, e := range entries {
		if folded[e.Counter] && skip[e.Counter] {
			if batches == nil {
				batches = make(map[string][]Entry)
			}
			batches[e.Counter] = append(batches[e.Counter], e)
		}
	}
	for name, batch := range batches {
		skip[name] = s.leavesDead(name, batch)
	}
	return skip
}

// leavesDead reports whether batch, the entries of counter name, merged
// into a state that holds none of it, leave it dead.
func (s *State) leavesDead(name string, batch []Entry) bool {
	scratch := New(s.replica)
	if _, err := scratch.Merge(batch); err != nil {
		return false // the merge itself refuses the batch
	}
	c := scratch.counters[name]
	return c == nil || c.dead()
}

// merging gathers the changes of one Merge (if record; Load gathers none).
type merging struct {
	record  bool
	changed []Entry
	at      map[Entry]int // key (other fields zero) -> index in changed
}

// add notes changed entries; a key changed twice is reported once, with
// its last fields.
func (m *merging) add(es ...Entry) {
	if !m.record {
		return
	}
	for _, e := range es {
		k := Entry{Counter: e.Counter, Replica: e.Replica}
		if i, ok := m.at[k]; ok {
			m.changed[i] = e
			continue
		}
		if m.at == nil {
			m.at = make(map[Entry]int)
		}
		m.at[k] = len(m.changed)
		m.changed = append(m.changed, e)
	}
}

// SkipDeadNew makes later merges ignore the entries of a counter this
// state does not hold when every one of them in the batch stands at its
// floor: a tombstone this node forgot (Forget), or never needed. Without it, a tombstone a
// peer sends after this node forgot it would be kept again, and sent on,
// and forgotten again, round the cluster. A state loaded from the store
// merges without it, so that it keeps the tombstones it must still
// collect.
func (s *State) SkipDeadNew(on bool) { s.skipDead = on }

// mergeOne merges one entry and returns the entries that changed.
func (s *State) mergeOne(e Entry) []Entry {
	c, sl := s.find(e.Counter, e.Replica)
	cur := Entry{Counter: e.Counter, Replica: e.Replica} // an absent entry counts as zeros
	if sl != nil {
		cur = sl.entry(e.Counter)
	}
	next := join(cur, e)
	if f := s.coveredBy(c, e.Replica); f != nil {
		return s.cover(e.Counter, c, f, next)
	}
	if next == cur {
		return nil // nothing new
	}
	c = s.set(e.Counter, c, sl, next)
	changed := []Entry{next}
	if next.G > cur.G || next.FG > cur.FG {
		changed = append(changed, s.reclassify(e.Counter, c, e.Replica)...)
	}
	return changed
}

// cover merges e, of an incarnation that fold entry f covers, into its
// shadow, or into f alone if it carries no floor f lacks, and returns the
// entries that changed.
func (s *State) cover(name string, c *counter, f *slot, e Entry) []Entry {
	if int(f.x.fg) < Incarnation(e.Replica) && e.FP|e.FN != 0 {
		sl := c.slot(e.Replica)
		if sl != nil && sl.shadow() && sl.entry(name) == e {
			return nil
		}
		s.setAs(name, c, sl, e, true)
		return []Entry{e}
	}
	if c.slot(e.Replica) != nil {
		s.dropSlot(name, c, e.Replica)
	}
	return s.raiseExpiry(name, c, f.replica, e)
}

// raiseExpiry gives the fold entry foldID the expiry register of e if it
// is later than its own, and returns the fold entry if it changed.
func (s *State) raiseExpiry(name string, c *counter, foldID string, e Entry) []Entry {
	f := c.slot(foldID)
	cur := f.entry(name)
	if !pairLess(cur.T, cur.E, e.T, e.E) {
		return nil
	}
	cur.T, cur.E = e.T, e.E
	s.set(name, c, f, cur)
	return []Entry{cur}
}

// reclassify applies fold entry foldID, whose coverage or floor rose, to
// the entries of its lineage that c holds: an entry it covers becomes a
// shadow or is dropped (cover). It returns the entries that changed.
func (s *State) reclassify(name string, c *counter, foldID string) []Entry {
	f := c.slot(foldID)
	g, lineage := int(f.x.g), Lineage(foldID)
	var held []Entry
	for i := range c.slots {
		r := c.slots[i].replica
		if k := Incarnation(r); k >= 1 && k <= g && Lineage(r) == lineage {
			held = append(held, c.slots[i].entry(name))
		}
	}
	var changed []Entry
	for _, e := range held {
		sl := c.slot(e.Replica)
		if int(f.x.fg) < Incarnation(e.Replica) && e.FP|e.FN != 0 {
			if !sl.shadow() { // counted until now: from here it only subtracts
				wasDead := c.dead()
				c.account(e, false, true)
				sl.x.shadow = true // not a shared extra: those have no floor
				c.account(e, true, false)
				s.liveChanged(name, c, wasDead)
			}
			continue
		}
		s.dropSlot(name, c, e.Replica)
		changed = append(changed, s.raiseExpiry(name, c, foldID, e)...)
		f = c.slot(foldID) // dropSlot moves slots
	}
	return changed
}

// coveredBy returns the fold entry of c that covers replica's incarnation,
// or nil.
func (s *State) coveredBy(c *counter, replica string) *slot {
	if c == nil || isKeyID(replica) {
		return nil
	}
	k := Incarnation(replica)
	if k == 0 {
		return nil
	}
	f := c.slot(FoldID(replica))
	if f == nil || f.x == nil || int(f.x.g) < k {
		return nil
	}
	return f
}

// notCoveringSelf refuses a fold entry of this replica's own lineage that
// covers its own incarnation: only a second process writing from a copy of
// this node's data file could have made it, and merging it would erase
// this replica's changes.
func (s *State) notCoveringSelf(entries []Entry) error {
	own, k := FoldID(s.replica), Incarnation(s.replica)
	for i, e := range entries {
		if e.Replica == own && int(e.G) >= k {
			return fmt.Errorf("%w: entry %d: a fold of this node's lineage covers its running incarnation %d: another process runs from a copy of this node's data file",
				ErrInvalid, i, k)
		}
	}
	return nil
}

// roomForChange checks that a local change may make counter name live
// again or create it (c nil, or dead), or add this replica's entry to it
// (newEntry), within the limits.
func (s *State) roomForChange(name string, c *counter, newEntry bool) error {
	switch lim := s.limits; {
	case (c == nil || c.dead()) && lim.MaxCounters > 0 && s.live >= lim.MaxCounters:
		return fmt.Errorf("%w: counter %q would be a new counter, and there are %d, the most a change may create",
			ErrLimit, name, s.live)
	case c != nil && newEntry && lim.MaxEntries > 0 && len(c.slots)-int(c.keyed) >= lim.MaxEntries:
		return fmt.Errorf("%w: counter %q holds %d replica entries, the most a counter may hold, and this change would add one",
			ErrLimit, name, len(c.slots)-int(c.keyed))
	}
	return nil
}

// room checks that merging entries leaves every counter within
// Limits.MaxEntries. Only entries that would be added count, once each: a
// merge that updates entries already held always fits, and so does an
// entry a fold covers.
func (s *State) room(entries []Entry) error {
	limit := s.limits.MaxEntries
	if limit <= 0 {
		return nil
	}
	var added map[Entry]struct{} // new keys, other fields zeroed
	var per map[string]int       // new entries per counter
	for _, e := range entries {
		if e == (Entry{Counter: e.Counter, Replica: e.Replica}) || e.isKey() {
			continue // merges as nothing new, or a key entry (Limits.MaxKeys)
		}
		c, sl := s.find(e.Counter, e.Replica)
		if sl != nil || s.coveredBy(c, e.Replica) != nil {
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
			held = len(c.slots) - int(c.keyed)
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
// upTo is left out: its fields at upTo are no longer known, and it will be
// in a later delta. DeltaSince(0, s.Version()) is the full state.
func (s *State) DeltaSince(since, upTo uint64) []Entry {
	entries, _ := s.DeltaLimit(since, upTo, 0)
	return entries
}

// DeltaLimit is DeltaSince returning at most limit entries (no limit if
// limit <= 0, or if the first fold entry and its shadows pass it), and the
// version through which the delta is complete: upTo if nothing was cut,
// else the version of the last entry returned. A peer that merges the
// entries holds every change up to through.
//
// A fold entry goes out with the shadows it covers, whatever their
// versions, and a shadow whose fold entry is in the delta goes out with it
// only: alone, a fold entry counts the changes its shadows' floors took
// away, so a peer that forgot the dead counter (SkipDeadNew) would take it
// back alive with them (TestFoldWithoutItsShadowAfterForget).
func (s *State) DeltaLimit(since, upTo uint64, limit int) (entries []Entry, through uint64) {
	i := sort.Search(len(s.log), func(i int) bool { return s.log[i].ver > since })
	for ; i < len(s.log) && s.log[i].ver <= upTo; i++ {
		it := s.log[i]
		sl := s.current(it)
		if sl == nil {
			continue // changed again later, or dropped
		}
		c := s.counters[it.counter]
		if sl.shadow() {
			if f := c.slot(FoldID(sl.replica)); f != nil && since < f.ver && f.ver <= upTo {
				continue // it goes out with its fold entry
			}
		}
		if limit > 0 && len(entries) >= limit {
			return entries, s.log[i-1].ver
		}
		start := len(entries)
		entries = append(entries, sl.entry(it.counter))
		if sl.x != nil && sl.x.g > 0 && c.shadows != nil { // nil: it never held a shadow
			entries = c.appendShadows(entries, it.counter, sl.replica)
			if limit > 0 && start > 0 && len(entries) > limit {
				return entries[:start], s.log[i-1].ver // they go together in the next
			}
		}
	}
	return entries, max(upTo, since)
}

// appendShadows appends to entries the shadows in c (counter name) that
// fold entry foldID covers.
func (c *counter) appendShadows(entries []Entry, name, foldID string) []Entry {
	for j := range c.slots {
		if sh := &c.slots[j]; sh.shadow() && FoldID(sh.replica) == foldID {
			entries = append(entries, sh.entry(name))
		}
	}
	return entries
}

// current returns the entry a log item names if its latest change is the
// one the item records, else nil.
func (s *State) current(it logItem) *slot {
	c := s.counters[it.counter]
	if c == nil {
		return nil
	}
	if sl := c.slot(it.replica); sl != nil && sl.ver == it.ver {
		return sl
	}
	return nil
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

// set stores entry e (c and sl as find returned them, nil when absent),
// stamps it with the next version and keeps the cached sums, the live
// count, the change log and the expiry and tombstone queues in step. It
// returns the counter.
func (s *State) set(name string, c *counter, sl *slot, e Entry) *counter {
	return s.setAs(name, c, sl, e, sl != nil && sl.shadow())
}

// setAs is set that also says whether the entry is a shadow.
func (s *State) setAs(name string, c *counter, sl *slot, e Entry, shadow bool) *counter {
	if c == nil {
		c = &counter{}
		s.counters[name] = c
	}
	wasDead := c.dead()
	if sl == nil {
		sl = c.add(s.replicaID(e.Replica), e.Replica == s.replica)
		s.entries++
		if e.isKey() {
			s.addKey(name, e.Replica)
		}
	} else {
		c.account(sl.entry(name), sl.shadow(), true)
	}
	c.account(e, shadow, false)
	s.version++
	sl.store(e, shadow)
	sl.ver = s.version
	if pairLess(c.t, c.e, e.T, e.E) {
		c.t, c.e = e.T, e.E
		if c.e != 0 {
			s.queueExpiry(name, c.e)
		}
	}
	switch dead := c.dead(); {
	case dead:
		s.queueDead(name, s.version)
		if !wasDead {
			s.live--
		}
	case wasDead:
		s.live++
	}
	s.log = append(s.log, logItem{ver: s.version, counter: name, replica: sl.replica})
	if len(s.log) > 2*s.entries+64 {
		s.compact()
	}
	if e.isKey() {
		s.keyChanged(name, e)
	}
	return c
}

// replicaID returns the copy of replica id that slots share (key ids are
// returned as they are: each names one entry).
func (s *State) replicaID(id string) string {
	switch {
	case id == s.replica:
		return s.replica
	case isKeyID(id):
		return id
	}
	if held, ok := s.ids[id]; ok {
		return held
	}
	if s.ids == nil {
		s.ids = make(map[string]string)
	}
	s.ids[id] = id
	return id
}

// dropSlot removes one entry from counter name (which keeps at least one
// other), keeping the live count in step.
func (s *State) dropSlot(name string, c *counter, replica string) {
	wasDead := c.dead()
	s.removing(c.slot(replica).entry(name))
	c.drop(replica)
	s.liveChanged(name, c, wasDead)
}

// liveChanged keeps the live count and the tombstone queue in step after
// a change to c that did not take a version.
func (s *State) liveChanged(name string, c *counter, wasDead bool) {
	switch dead := c.dead(); {
	case dead && !wasDead:
		s.live--
		s.queueDead(name, c.latest())
	case !dead && wasDead:
		s.live++
	}
}

// removing records an entry the state drops, for TakeRemoved and the
// high-water mark.
func (s *State) removing(e Entry) {
	s.entries--
	if e.isKey() {
		s.dropKey(e.Counter, e.Replica)
	}
	if e.Replica == s.replica || e.Replica == FoldID(s.replica) {
		s.high = max(s.high, e.P, e.N)
	}
	s.removed = append(s.removed, e)
}

// TakeRemoved returns the entries the state dropped since the last call
// (a fold covered them, or Forget dropped their counter), for the caller
// to delete from its store.
func (s *State) TakeRemoved() []Entry {
	r := s.removed
	s.removed = nil
	return r
}

// compact drops stale log items in place, keeping version order.
func (s *State) compact() { s.log = s.dropStale(s.log) }

// dropStale drops, in place and keeping their order, the items of a log
// whose entry changed again or was dropped since.
func (s *State) dropStale(items []logItem) []logItem {
	return slices.DeleteFunc(items, func(it logItem) bool { return s.current(it) == nil })
}

func (c *counter) value() int64 {
	p, n := c.live()
	v, ok := p.sub(n)
	if ok {
		return v
	}
	if p.less(n) {
		return math.MinInt64
	}
	return math.MaxInt64
}

// NameRule is the counter name rule in words, for error messages: what
// ValidName accepts. (As a pattern: [A-Za-z0-9._:-]{1,128}.)
const NameRule = "1 to 128 characters, each a letter A-Z or a-z, a digit, '.', '_', '-' or ':'"

// ValidName reports whether name is a valid counter name: 1 to 128
// characters from [A-Za-z0-9._:-]. ':' is there for Redis's key convention
// (rate:user:42); nothing in countd gives it a meaning of its own.
func ValidName(name string) bool {
	if len(name) == 0 || len(name) > MaxNameLen {
		return false
	}
	for i := 0; i < len(name); i++ {
		switch b := name[i]; {
		case b >= 'a' && b <= 'z', b >= 'A' && b <= 'Z', b >= '0' && b <= '9',
			b == '.', b == '_', b == '-', b == ':':
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

// Validate checks every entry: its counter name, its replica id, floors
// no higher than the totals, and a fold count only on a fold entry.
func Validate(entries []Entry) error {
	for i, e := range entries {
		switch {
		case !ValidName(e.Counter):
			return fmt.Errorf("%w: entry %d: counter name %q", ErrInvalid, i, e.Counter)
		case e.isKey():
			if err := validKeyEntry(e); err != nil {
				return fmt.Errorf("%w: entry %d: %v", ErrInvalid, i, err)
			}
		case !ValidReplica(e.Replica):
			return fmt.Errorf("%w: entry %d: replica id %q", ErrInvalid, i, e.Replica)
		case e.O != "" || e.A|e.RP|e.RN != 0 || e.X:
			return fmt.Errorf("%w: entry %d: key entry fields on replica %s", ErrInvalid, i, e.Replica)
		case e.FP > e.P || e.FN > e.N:
			return fmt.Errorf("%w: entry %d: floor (%d, %d) above the totals (%d, %d)", ErrInvalid, i, e.FP, e.FN, e.P, e.N)
		case e.G > 0 && Incarnation(e.Replica) != 0:
			return fmt.Errorf("%w: entry %d: fold count %d on replica %s, which is not a fold id", ErrInvalid, i, e.G, e.Replica)
		case e.G > maxIncarnate:
			return fmt.Errorf("%w: entry %d: fold count %d past the last incarnation", ErrInvalid, i, e.G)
		case e.FG > e.G:
			return fmt.Errorf("%w: entry %d: floor count %d above the fold count %d", ErrInvalid, i, e.FG, e.G)
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
