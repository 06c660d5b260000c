package crdt

// EntriesOf returns every entry of counter name (nil if the state holds
// none), a dead counter's included: merging them gives a peer all this
// state knows of the counter, floors and all. A read at a level
// (docs/design.md, section 6, "Write and read levels") asks peers for them.
func (s *State) EntriesOf(name string) []Entry {
	c := s.counters[name]
	if c == nil {
		return nil
	}
	out := make([]Entry, 0, len(c.slots))
	for i := range c.slots {
		out = append(out, c.slots[i].entry(name))
	}
	return out
}
