package crdt

import (
	"container/heap"
	"fmt"
	"maps"
	"slices"
)

// Delete resets counter name to what this replica has not seen: it raises
// every entry's floor to its totals. It returns
// false, changing nothing, if the counter is unknown or dead already. now
// is the time in unix milliseconds (the expiry register's stamp).
func (s *State) Delete(name string, now uint64) bool {
	c := s.counters[name]
	if c == nil || c.dead() {
		return false
	}
	var folds []string
	for i := 0; i < len(c.slots); i++ {
		sl := &c.slots[i]
		if sl.shadow() {
			continue // the fold entry's reset covers it
		}
		e := sl.entry(name)
		if e.Retired() {
			// Its change lives in its owner's entry now, reset there. Only
			// what it holds beyond what moved out (none, unless two
			// changes were accepted under its key on both sides of a
			// partition) is reset here.
			fp, fn := max(e.FP, e.P-e.RP), max(e.FN, e.N-e.RN)
			if fp != e.FP || fn != e.FN {
				e.FP, e.FN = fp, fn
				s.set(name, c, sl, e)
			}
			continue
		}
		if e.G > 0 {
			folds = append(folds, e.Replica)
		}
		if e.FP == e.P && e.FN == e.N && e.FG == e.G {
			continue
		}
		e.FP, e.FN, e.FG = e.P, e.N, e.G
		s.set(name, c, sl, e)
	}
	for _, f := range folds {
		s.reclassify(name, c, f) // drops the shadows
	}
	// The expiry stays: a change this delete did not see survives it, and
	// must still expire with the window it was made in. A change that
	// brings the dead counter back here starts without it (change).
	return true
}

// Expire sets when counter name expires: at, in unix milliseconds (0: never,
// which removes an expiry). With nx it sets one only if the counter has
// none, and reports whether it did. It returns ErrNotFound, changing
// nothing, if the counter is unknown or dead. now is the time in unix
// milliseconds.
func (s *State) Expire(name string, at uint64, nx bool, now uint64) (bool, error) {
	if !ValidName(name) {
		return false, fmt.Errorf("%w: counter name %q", ErrInvalid, name)
	}
	c := s.counters[name]
	if c == nil || c.dead() {
		return false, fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	if nx && c.e != 0 || c.e == at {
		return false, nil
	}
	if err := s.roomForChange(name, c, c.slot(s.replica) == nil); err != nil {
		return false, err
	}
	s.setExpiry(name, c, at, now)
	return true, nil
}

// setExpiry writes the expiry register into this replica's entry, stamped
// above every stamp the counter holds so that it wins.
func (s *State) setExpiry(name string, c *counter, at, now uint64) {
	s.writeExpiry(name, c, max(now, c.t+1), at)
}

// writeExpiry writes the register (t, at) into this replica's entry.
func (s *State) writeExpiry(name string, c *counter, t, at uint64) {
	sl := c.slot(s.replica)
	e := s.ownEntry(name, sl)
	e.T, e.E = t, at
	s.set(name, c, sl, e)
}

// Due returns the live counters whose expiry is at or before now (unix
// milliseconds), each once: the caller deletes them. A counter whose
// expiry changed since it was queued is left to its new time.
func (s *State) Due(now uint64) []string {
	var out []string
	for len(s.expiring) > 0 && s.expiring[0].at <= now {
		it := heap.Pop(&s.expiring).(expiryItem)
		if c := s.counters[it.counter]; c != nil && c.e == it.at && !c.dead() {
			out = append(out, it.counter)
		}
	}
	return out
}

// NextDue returns the earliest expiry queued for Due (unix milliseconds),
// and false if none is: the time a caller need next call Due. It may be
// the time of a counter whose expiry changed since, which Due then skips.
func (s *State) NextDue() (uint64, bool) {
	if len(s.expiring) == 0 {
		return 0, false
	}
	return s.expiring[0].at, true
}

// Collectable returns the dead counters every entry of which changed at or
// before version through, and that hold no unretired key entry (its key
// must stay known for the window): once every replica holds this state up to through
// (so holds these tombstones), they can be forgotten. It returns each such
// counter once; a counter that changes again is a candidate again once it
// is dead.
func (s *State) Collectable(through uint64) []string {
	var out []string
	i := 0
	for ; i < len(s.dead) && s.dead[i].ver <= through; i++ {
		it := s.dead[i]
		if c := s.counters[it.counter]; c != nil && c.dead() && c.latest() == it.ver && c.liveKeys == 0 {
			out = append(out, it.counter)
		}
	}
	s.dead = fresh(s.dead[i:])
	return out
}

// Forget drops counter name and every entry it holds (TakeRemoved returns
// them). Only a dead counter that every replica holds should be forgotten:
// an entry forgotten here and still held elsewhere would come back with
// its floor, harmlessly, but one held elsewhere without its floor would
// come back alive.
func (s *State) Forget(name string) {
	c := s.counters[name]
	if c == nil {
		return
	}
	if !c.dead() {
		s.live--
	}
	for i := range c.slots {
		s.removing(c.slots[i].entry(name))
	}
	delete(s.counters, name)
	s.shrink()
}

// shrink gives memory back after many counters were forgotten (a wave of
// expiries): a Go map never shrinks, and slices keep their backing arrays,
// so each is copied to one of its present size once it holds a quarter of
// what it once held. Each copy is paid for by the forgets since the last.
func (s *State) shrink() {
	const small = 4096
	if s.peak = max(s.peak, len(s.counters)); s.peak > small && len(s.counters) < s.peak/4 {
		m := make(map[string]*counter, len(s.counters))
		maps.Copy(m, s.counters)
		s.counters, s.peak = m, len(m)
	}
	if len(s.log) > small && 4*s.entries < len(s.log) {
		s.compact() // items of forgotten entries hold their names
	}
	if cap(s.log) > small && len(s.log) < cap(s.log)/4 {
		s.log = fresh(s.log)
	}
	if cap(s.expiring) > small && len(s.expiring) < cap(s.expiring)/4 {
		s.expiring = fresh(s.expiring)
	}
	if len(s.dead) > small && len(s.dead) > 4*len(s.counters) {
		s.compactDead() // items of forgotten counters hold their names
	}
	if cap(s.dead) > small && len(s.dead) < cap(s.dead)/4 {
		s.dead = fresh(s.dead)
	}
	if s.peakKeys > small && s.keys < s.peakKeys/4 {
		m := make(map[string]string, len(s.keyIndex))
		maps.Copy(m, s.keyIndex)
		s.keyIndex, s.peakKeys = m, s.keys
	}
	if cap(s.owned) > small && len(s.owned) < cap(s.owned)/4 {
		s.owned = fresh(s.owned)
	}
	if cap(s.retired) > small && len(s.retired) < cap(s.retired)/4 {
		s.retired = fresh(s.retired)
	}
}

// Fold folds the entries of this replica's earlier incarnations into the
// fold entry of its lineage, one per counter, covering incarnations 1 to
// Incarnation(Replica())−1: their totals are added to the fold entry's,
// and they are dropped (TakeRemoved returns them), or kept as shadows for
// the floors they carry (see Merge). It returns the fold entries it wrote.
//
// Call it once, on a state just loaded from the store that this lineage's
// earlier incarnations wrote: there their entries hold their final totals
// (a process sends peers only what it made durable first), so the fold
// entry's totals are at least what any replica holds for them. A fold
// entry that is new for a counter starts from the high-water mark, reset
// (a fold entry of that counter forgotten before may still be held
// elsewhere, with a floor up to that mark). A counter whose fold would pass
// the uint64 range is left unfolded.
func (s *State) Fold() []Entry {
	fid, k := FoldID(s.replica), Incarnation(s.replica)
	if k <= 1 {
		return nil
	}
	lineage := Lineage(s.replica)
	var folded []Entry
	for name, c := range s.counters {
		var raws []Entry
		first := k
		for i := range c.slots {
			r := c.slots[i].replica
			if j := Incarnation(r); j >= 1 && j < k && Lineage(r) == lineage && !c.slots[i].shadow() {
				raws = append(raws, c.slots[i].entry(name))
				first = min(first, j)
			}
		}
		if len(raws) == 0 {
			continue
		}
		var e Entry
		if f := c.slot(fid); f != nil {
			e = f.entry(name)
		} else {
			h := s.high
			e = Entry{Counter: name, Replica: fid, P: h, N: h, FP: h, FN: h, FG: uint32(first - 1)}
		}
		var ok bool
		if e, ok = addTotals(e, raws); !ok {
			continue
		}
		e.G = uint32(k - 1)
		c = s.set(name, c, c.slot(fid), e)
		s.reclassify(name, c, fid)
		folded = append(folded, c.slot(fid).entry(name))
		// A counter's first fold adds a slot and drops the one it covers:
		// without this, it keeps room for two (48 bytes) for good.
		if cap(c.slots) > len(c.slots) {
			c.slots = fresh(c.slots)
		}
	}
	if len(folded) > 0 {
		// Each fold left a stale log item; a large fold would keep them
		// (and the room the log grew by) until the next compaction.
		s.log = fresh(s.dropStale(s.log))
	}
	return folded
}

// addTotals adds the totals of raws to e; false if a sum would pass the
// uint64 range.
func addTotals(e Entry, raws []Entry) (Entry, bool) {
	for _, r := range raws {
		var c1, c2 uint64
		e.P, c1 = addOverflows(e.P, r.P)
		e.N, c2 = addOverflows(e.N, r.N)
		if c1|c2 != 0 {
			return Entry{}, false
		}
	}
	return e, true
}

// queueDead records that counter name was dead after its change at
// version ver, for Collectable. Items made stale by later changes are
// dropped once they outnumber the counters, so the queue stays in
// proportion to the state even where Collectable is never called.
func (s *State) queueDead(name string, ver uint64) {
	s.dead = append(s.dead, logItem{ver: ver, counter: name})
	if len(s.dead) > 2*len(s.counters)+64 {
		s.compactDead()
	}
}

// compactDead drops the items of queueDead that a later change made stale.
func (s *State) compactDead() {
	s.dead = slices.DeleteFunc(s.dead, func(it logItem) bool {
		c := s.counters[it.counter]
		return c == nil || !c.dead() || c.latest() != it.ver
	})
}

// queueExpiry records that counter name expires at at, for Due; stale
// items are dropped as in queueDead.
func (s *State) queueExpiry(name string, at uint64) {
	heap.Push(&s.expiring, expiryItem{at: at, counter: name})
	if len(s.expiring) <= 2*len(s.counters)+64 {
		return
	}
	keep := s.expiring[:0]
	for _, it := range s.expiring {
		if c := s.counters[it.counter]; c != nil && c.e == it.at && !c.dead() {
			keep = append(keep, it)
		}
	}
	clear(s.expiring[len(keep):])
	s.expiring = keep
	heap.Init(&s.expiring)
}

type expiryItem struct {
	at      uint64
	counter string
}

// expiryHeap is a min-heap of expiry times (container/heap).
type expiryHeap []expiryItem

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].at < h[j].at }
func (h expiryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *expiryHeap) Push(x any)        { *h = append(*h, x.(expiryItem)) }
func (h *expiryHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	old[len(old)-1] = expiryItem{}
	*h = old[:len(old)-1]
	return it
}

// fresh returns a copy of s in an array of its own length, so that the
// array s is in can be freed.
func fresh[T any](s []T) []T {
	if len(s) == 0 {
		return nil
	}
	return append(make([]T, 0, len(s)), s...)
}
