package crdt

import (
	"container/heap"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
)

// Keyed changes (docs/design.md §3, "Keyed changes").
//
// A change made with a client's idempotency key is recorded not in this
// replica's entry but in a key entry of the counter, whose id is derived
// from the key (KeyID). Every node that accepts the same keyed change
// writes the same totals into the same entry, and merges take the
// per-field maximum, so the change counts once however many nodes
// accepted it and in whatever order their states meet.
//
// A key entry is kept for the idempotency window, then retired by its
// owner (the least replica id that accepted it, of this lineage): its
// totals net of floors move into the owner's own entry (P +=, N +=) and
// are recorded in RP, RN, so that the key entry counts zero. Once every
// member holds the retired entry, it is forgotten (ForgettableKeys).

// ErrKeyConflict means a keyed change's key was first used for another
// change (another counter, operation or amount). Nothing was changed. The
// error ChangeKeyed returns is a *KeyConflict that wraps it.
var ErrKeyConflict = errors.New("crdt: idempotency key used for another change")

// KeyConflict is the error of a keyed change whose key was first used for
// another change: First.
type KeyConflict struct{ First KeyUse }

func (e *KeyConflict) Error() string {
	return fmt.Sprintf("%v: it was first used to %s", ErrKeyConflict, e.First)
}

// Unwrap returns ErrKeyConflict.
func (e *KeyConflict) Unwrap() error { return ErrKeyConflict }

// KeyIDLen is the length of a key entry's id: "k" and 31 hex digits.
const KeyIDLen = 32

// KeyID returns the id of the entries that record changes made with key:
// "k" and the first 31 hex digits of SHA-256(key). A replica id has 16
// digits, so the two never collide.
func KeyID(key string) string {
	sum := sha256.Sum256([]byte(key))
	return "k" + hex.EncodeToString(sum[:16])[:KeyIDLen-1]
}

// isKeyID tells a key entry's id from a replica id (which Validate checks
// in full). It is on the path of every entry lookup, so it looks at the
// length and first byte only.
func isKeyID(id string) bool { return len(id) == KeyIDLen && id[0] == 'k' }

func (e Entry) isKey() bool { return isKeyID(e.Replica) }

// Retired reports whether e is a retired key entry.
func (e Entry) Retired() bool { return e.X || e.RP|e.RN != 0 }

// countsZero reports whether e adds nothing to its counter: at its floor,
// and, for a retired key entry, with nothing left beyond what moved out.
func (e Entry) countsZero() bool {
	return e.P-e.FP == e.RP && e.N-e.FN == e.RN
}

func validKeyEntry(e Entry) error {
	for i := 1; i < len(e.Replica); i++ {
		if b := e.Replica[i]; !(b >= '0' && b <= '9' || b >= 'a' && b <= 'f') {
			return fmt.Errorf("key entry id %q", e.Replica)
		}
	}
	switch {
	case e.FP > e.P || e.FN > e.N:
		return fmt.Errorf("floor (%d, %d) above the totals (%d, %d)", e.FP, e.FN, e.P, e.N)
	case e.T|e.E|uint64(e.G)|uint64(e.FG) != 0:
		return fmt.Errorf("key entry %s with an expiry or a fold count", e.Replica)
	case !ValidReplica(e.O) || Incarnation(e.O) == 0:
		return fmt.Errorf("key entry %s owned by %q, not a replica id", e.Replica, e.O)
	case e.A == 0:
		return fmt.Errorf("key entry %s with no acceptance time", e.Replica)
	case e.RP > e.P || e.RN > e.N:
		return fmt.Errorf("key entry %s retired (%d, %d) beyond its totals (%d, %d)", e.Replica, e.RP, e.RN, e.P, e.N)
	}
	return nil
}

// KeyUse is the change a key entry records: a key is used for one change.
type KeyUse struct {
	Counter string
	By      uint64
	Neg     bool // a decrement
}

func (u KeyUse) String() string {
	if u.By == 0 {
		return fmt.Sprintf("change counter %q in two different ways (on both sides of a partition)", u.Counter)
	}
	op := "increment"
	if u.Neg {
		op = "decrement"
	}
	return fmt.Sprintf("%s counter %q by %d", op, u.Counter, u.By)
}

// use returns the change key entry e records. An entry with both totals
// (two different changes accepted on both sides of a partition) records no
// change a request can match.
func (e Entry) use() KeyUse {
	if e.N != 0 && e.P == 0 {
		return KeyUse{Counter: e.Counter, By: e.N, Neg: true}
	}
	if e.N == 0 {
		return KeyUse{Counter: e.Counter, By: e.P}
	}
	return KeyUse{Counter: e.Counter}
}

// Keys returns the number of key entries held.
func (s *State) Keys() int { return s.keys }

// ChangeKeyed makes the change Increment (neg false) or Decrement would,
// recorded under key: the first time, in the key entry of counter name
// (owner this replica, accepted at now, unix milliseconds); replayed true
// if the key already recorded this very change (counter, operation,
// amount), which changes nothing; a *KeyConflict if it recorded another (on this counter or, as far as this state knows,
// another). v is the counter's value after the change, or its current
// value on a replay. Errors as for Increment; a new key entry past
// Limits.MaxKeys returns ErrLimit.
func (s *State) ChangeKeyed(name, key string, by uint64, neg bool, now uint64) (v int64, replayed bool, err error) {
	switch {
	case !ValidName(name):
		return 0, false, fmt.Errorf("%w: counter name %q", ErrInvalid, name)
	case by == 0:
		return 0, false, fmt.Errorf("%w: change by 0", ErrInvalid)
	case key == "":
		return 0, false, fmt.Errorf("%w: empty idempotency key", ErrInvalid)
	}
	id := KeyID(key)
	c, sl := s.find(name, id)
	at := name
	if other, ok := s.keyIndex[id]; sl == nil && ok {
		at = other
		c, sl = s.find(other, id)
	}
	if sl != nil {
		if got := sl.entry(at).use(); got != (KeyUse{Counter: name, By: by, Neg: neg}) {
			return 0, false, &KeyConflict{First: got}
		}
		return c.value(), true, nil
	}
	c = s.counters[name]
	if err := s.roomForKey(name, c); err != nil {
		return 0, false, err
	}
	e := Entry{Counter: name, Replica: id, O: s.replica, A: max(now, 1)}
	var cp, cn u128
	if c != nil {
		cp, cn = c.p, c.n
	}
	if neg {
		e.N, cn = by, cn.add(by)
	} else {
		e.P, cp = by, cp.add(by)
	}
	v, ok := c.net(cp, cn)
	if !ok {
		return 0, false, fmt.Errorf("%w: counter %q", ErrOverflow, name)
	}
	if c != nil && c.dead() && c.e != 0 {
		// As in change: the counter starts again without the expiry of the
		// window it was deleted in.
		s.writeExpiry(name, c, c.t+1, 0)
		c = s.counters[name]
	}
	s.set(name, c, nil, e)
	return v, false, nil
}

// roomForKey checks that a keyed change may add a key entry to counter
// name (c nil: a new counter) within the limits.
func (s *State) roomForKey(name string, c *counter) error {
	switch lim := s.limits; {
	case (c == nil || c.dead()) && lim.MaxCounters > 0 && s.live >= lim.MaxCounters:
		return fmt.Errorf("%w: counter %q would be a new counter, and there are %d, the most a change may create",
			ErrLimit, name, s.live)
	case lim.MaxKeys > 0 && s.keys >= lim.MaxKeys:
		return fmt.Errorf("%w: %d idempotency keys are held, the most there may be (-idempotency-max-keys)",
			ErrLimit, s.keys)
	case c != nil && c.dead() && c.e != 0 && c.slot(s.replica) == nil && lim.MaxEntries > 0 && len(c.slots)-int(c.keyed) >= lim.MaxEntries:
		return fmt.Errorf("%w: counter %q holds %d replica entries, the most a counter may hold, and this change would add one",
			ErrLimit, name, len(c.slots)-int(c.keyed))
	}
	return nil
}

// KeyVersion returns the version of the key entry of key on counter name,
// and whether it is held.
func (s *State) KeyVersion(name, key string) (uint64, bool) {
	_, sl := s.find(name, KeyID(key))
	if sl == nil {
		return 0, false
	}
	return sl.ver, true
}

// Retire retires the key entries this replica's lineage owns that were
// accepted at least window ago (now and window in milliseconds) and before
// synced − window − RetireMargin(window), where synced is the time as of which
// every member has sent this replica everything it held: every other
// acceptance of their keys has reached this state then, so this lineage is
// their least acceptor, and no other retires them. Each one's totals net
// of floors move into this replica's entry, and are recorded in the key
// entry's RP and RN (key entry first, then the replica's entry: see
// Merge). It returns the key entries it retired.
func (s *State) Retire(window, synced, now uint64) []Entry {
	var out []Entry
	lineage := Lineage(s.replica)
	for len(s.owned) > 0 {
		it := s.owned[0]
		if !due(it.a, window, 0, now) || !due(it.a, window, RetireMargin(window), synced) {
			break
		}
		heap.Pop(&s.owned)
		c, sl := s.find(it.counter, it.id)
		if sl == nil {
			continue
		}
		e := sl.entry(it.counter)
		if e.Retired() || e.A != it.a || Lineage(e.O) != lineage {
			continue // stale
		}
		dp, dn := e.P-e.FP, e.N-e.FN
		own := c.slot(s.replica)
		oe := s.ownEntry(it.counter, own)
		var c1, c2 uint64
		oe.P, c1 = addOverflows(oe.P, dp)
		oe.N, c2 = addOverflows(oe.N, dn)
		if c1|c2 != 0 {
			continue // kept unretired: the owner's entry cannot hold it
		}
		e.RP, e.RN, e.X = dp, dn, true
		s.set(it.counter, c, sl, e)
		if dp|dn != 0 {
			s.set(it.counter, c, c.slot(s.replica), oe)
		}
		out = append(out, e)
	}
	s.shrink()
	return out
}

// NextRetire returns the time (unix milliseconds) from which Retire(window,
// synced, now) retires a key entry, and false if it retires none whatever
// the time: nothing is owned unretired, or synced must first advance (a
// later sync time can make one due sooner). The time may be that of a
// stale entry, which Retire then skips.
func (s *State) NextRetire(window, synced uint64) (uint64, bool) {
	if len(s.owned) == 0 {
		return 0, false
	}
	a := s.owned[0].a
	if !due(a, window, RetireMargin(window), synced) {
		return 0, false
	}
	return a + window, true // due above: no overflow
}

// RetireMargin is how much later than the window (in milliseconds) the
// sync time must be for a retirement: the skew allowed between members'
// clocks, a minute, or a tenth of the window when that is shorter (a
// window of seconds is for tests, on one machine's clock).
func RetireMargin(window uint64) uint64 { return min(60_000, window/10) }

// due reports whether at+window+margin ≤ now, without overflow.
func due(at, window, margin, now uint64) bool {
	t := at + window
	if t < at {
		return false
	}
	if t+margin < t {
		return false
	}
	return t+margin <= now
}

// ForgettableKeys returns the retired key entries that count zero and did
// not change after version through: once every replica holds this state up
// to through (so holds them retired), they can be forgotten (ForgetKey).
// Each is returned once; one that changes again is a candidate again.
func (s *State) ForgettableKeys(through uint64) []Entry {
	var out []Entry
	i := 0
	for ; i < len(s.retired) && s.retired[i].ver <= through; i++ {
		if sl := s.current(s.retired[i]); sl != nil {
			if e := sl.entry(s.retired[i].counter); e.Retired() && e.countsZero() {
				out = append(out, e)
			}
		}
	}
	s.retired = fresh(s.retired[i:])
	return out
}

// ForgetKey drops the key entry id of counter name if it is retired and
// counts zero (TakeRemoved returns it), and reports whether it did. A
// counter left with no entry is forgotten.
func (s *State) ForgetKey(name, id string) bool {
	c, sl := s.find(name, id)
	if sl == nil {
		return false
	}
	if e := sl.entry(name); !e.Retired() || !e.countsZero() {
		return false
	}
	if len(c.slots) == 1 {
		s.Forget(name)
		return true
	}
	s.dropSlot(name, c, id)
	s.shrink()
	return true
}

// addKey records a key entry new to the state.
func (s *State) addKey(name, id string) {
	s.keys++
	s.peakKeys = max(s.peakKeys, s.keys)
	if _, ok := s.keyIndex[id]; !ok {
		if s.keyIndex == nil {
			s.keyIndex = make(map[string]string)
		}
		s.keyIndex[id] = name
	}
}

// dropKey records that a key entry was dropped.
func (s *State) dropKey(name, id string) {
	s.keys--
	if s.keyIndex[id] == name {
		delete(s.keyIndex, id)
	}
}

// keyChanged queues a key entry that set just wrote: for Retire if this
// lineage owns it unretired, for ForgettableKeys if it is retired at zero.
func (s *State) keyChanged(name string, e Entry) {
	switch {
	case !e.Retired() && Lineage(e.O) == Lineage(s.replica):
		heap.Push(&s.owned, keyItem{a: e.A, counter: name, id: e.Replica})
		if len(s.owned) > 2*s.keys+64 {
			s.compactOwned()
		}
	case e.Retired() && e.countsZero():
		s.retired = append(s.retired, logItem{ver: s.version, counter: name, replica: e.Replica})
		if len(s.retired) > 2*s.keys+64 {
			s.retired = s.dropStale(s.retired)
		}
	}
}

// compactOwned drops the stale items of the owned heap.
func (s *State) compactOwned() {
	lineage := Lineage(s.replica)
	s.owned = slices.DeleteFunc(s.owned, func(it keyItem) bool {
		_, sl := s.find(it.counter, it.id)
		if sl == nil {
			return true
		}
		e := sl.entry(it.counter)
		return e.Retired() || e.A != it.a || Lineage(e.O) != lineage
	})
	heap.Init(&s.owned)
}

type keyItem struct {
	a           uint64
	counter, id string
}

// keyHeap is a min-heap of acceptance times (container/heap).
type keyHeap []keyItem

func (h keyHeap) Len() int           { return len(h) }
func (h keyHeap) Less(i, j int) bool { return h[i].a < h[j].a }
func (h keyHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *keyHeap) Push(x any)        { *h = append(*h, x.(keyItem)) }
func (h *keyHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	old[len(old)-1] = keyItem{}
	*h = old[:len(old)-1]
	return it
}
