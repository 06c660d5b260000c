package replication

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// model is a Peer's world, simulated: this node's durable versions, the
// peer's processes and what each holds, the change notices on their way,
// the push in flight and the push timer. It plays the shell's part by
// carrying out the Peer's decisions, and checks them as it goes.
type model struct {
	t   *testing.T
	rng *rand.Rand
	p   *Peer

	version uint64                     // this node's durable version
	procs   map[string]map[uint64]bool // what each process of the peer holds
	cur     string                     // the peer's running process
	started int                        // processes the peer ran so far

	notices []Changed // sent by the CounterActor, not yet received
	flight  *flight   // the push in flight
	armed   uint64    // Seq of the push timer, 0: none
	waiting bool      // a flush waits for its answer
	probing bool      // a probe is out: its Health event is still to come
	log     []string  // the events so far, for a failure's message
}

type flight struct {
	since, through uint64
	more           bool
	to             string // the process running when it was sent
	probe          bool   // the push is a probe: a Health event follows its end
}

func newModel(t *testing.T, seed uint64) *model {
	m := &model{t: t, rng: rand.New(rand.NewPCG(seed, 1)), p: New(testConfig), procs: map[string]map[uint64]bool{}}
	m.restartPeer(true)
	m.step(Start{})
	return m
}

func (m *model) restartPeer(wipe bool) {
	m.started++
	id := fmt.Sprintf("%016d", m.started)
	held := map[uint64]bool{}
	if !wipe {
		for v := range m.procs[m.cur] {
			held[v] = true
		}
	}
	m.procs[id], m.cur = held, id
	m.log = append(m.log, fmt.Sprintf("peer restarted as %s (wiped: %v)", id, wipe))
}

// change makes a change on this node, from a client, from the peer itself,
// or from a third node (which may have pushed it to the peer too).
func (m *model) change(origin string) {
	m.version++
	switch {
	case origin == addr:
		m.procs[m.cur][m.version] = true
	case origin == third && m.rng.IntN(2) == 0:
		m.procs[m.cur][m.version] = true
	}
	m.notices = append(m.notices, Changed{Version: m.version, Origin: origin})
	m.log = append(m.log, fmt.Sprintf("change %d from %q", m.version, origin))
}

// deliver hands the Peer the next n notices as one, the way the
// CounterActor folds the changes of one write into one notice.
func (m *model) deliver(n int) {
	n = min(n, len(m.notices))
	if n == 0 {
		return
	}
	c := m.notices[n-1]
	for _, x := range m.notices[:n-1] {
		if x.Origin != c.Origin {
			c.Origin = ""
		}
	}
	m.notices = m.notices[n:]
	m.step(c)
}

// finish ends the push in flight: it fails (perhaps after the receiver took
// it) or succeeds, answered by the process it was sent to or by the one
// running now.
func (m *model) finish(ok bool) {
	f := m.flight
	m.flight = nil
	to := f.to
	if m.rng.IntN(2) == 0 {
		to = m.cur
	}
	if ok || m.rng.IntN(2) == 0 {
		for v := f.since + 1; v <= f.through; v++ {
			m.procs[to][v] = true
		}
	}
	if !ok {
		m.step(Pushed{Version: f.through, Err: errRefused})
	} else {
		m.step(Pushed{Version: f.through, More: f.more, Replica: to})
	}
	if f.probe {
		m.probing = false
		if ok {
			m.step(Health{Replica: to})
		} else {
			m.step(Health{Err: errTimeout})
		}
	}
}

// step feeds the Peer an event, carries out its decisions and checks them.
func (m *model) step(e Event) {
	m.t.Helper()
	m.log = append(m.log, show([]Event{e}))
	for _, a := range m.p.Step(e) {
		m.log = append(m.log, "  -> "+show([]Action{a}))
		switch a := a.(type) {
		case Push:
			if m.flight != nil {
				m.fail("a second push while one is in flight")
			}
			// The cut reaches the durable version, or stops short (More).
			if a.To != "" {
				// The sync clock: with this push, To holds all this node
				// has, so it must hold everything up to Since already.
				for v := uint64(1); v <= a.Since; v++ {
					if !m.procs[a.To][v] {
						m.fail("a push from %d names %s, which lacks version %d", a.Since, a.To, v)
					}
				}
			}
			through := min(m.version, a.Since+1+m.rng.Uint64N(4))
			m.flight = &flight{since: a.Since, through: max(through, a.Since), more: through < m.version, to: m.cur,
				probe: a.Probe}
			m.probing = m.probing || a.Probe
		case Check:
			m.probing = true // the shell reports a Health event for it
		case SchedulePush:
			if a.Min > a.Max || a.Min < 0 {
				m.fail("push timer between %v and %v", a.Min, a.Max)
			}
			m.armed = a.Seq
		case AnswerFlush:
			if !m.waiting {
				m.fail("a flush answered that nobody asked for")
			}
			m.waiting = false
		}
	}
	m.check()
}

// check holds the Peer to what it must never get wrong.
func (m *model) check() {
	m.t.Helper()
	p := m.p
	if p.synced {
		// Every delta is cut from acked: the process it is meant for must
		// hold everything up to it, or that process never gets the rest.
		held := m.procs[p.replica]
		for v := uint64(1); v <= p.acked; v++ {
			if !held[v] {
				m.fail("synced with %s at %d, but it lacks version %d", p.replica, p.acked, v)
			}
		}
	}
	if p.owed != owedNothing && !p.pushing && !p.armed {
		m.fail("a push is owed, but none is in flight or armed: it would never go")
	}
	if p.flushers && !p.pushing {
		m.fail("a flush waits, but no push is in flight to answer it")
	}
}

func (m *model) fail(format string, args ...any) {
	m.t.Helper()
	tail := m.log[max(0, len(m.log)-40):]
	m.t.Fatalf("%s\nlast events:\n%s", fmt.Sprintf(format, args...), joinLines(tail))
}

func joinLines(lines []string) string {
	out := ""
	for _, l := range lines {
		out += "  " + l + "\n"
	}
	return out
}

// TestPeerInARandomWorld drives Peers through long random runs of changes,
// notices, timers, pushes that fail or are answered by another process,
// health checks and restarts of the peer (some wiping its data). Whatever
// happens, a Peer never believes the peer holds what it lacks, and never
// owes a push it has not armed; once the faults end, the peer's running
// process ends up holding every version.
func TestPeerInARandomWorld(t *testing.T) {
	for seed := uint64(1); seed <= 200; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			m := newModel(t, seed)
			for range 300 {
				m.randomEvent()
			}
			m.heal()
		})
	}
}

func (m *model) randomEvent() {
	switch r := m.rng.IntN(100); {
	case r < 15:
		m.change("")
	case r < 22:
		m.change(addr)
	case r < 30:
		m.change(third)
	case r < 45:
		m.deliver(1 + m.rng.IntN(3))
	case r < 60:
		if m.armed != 0 {
			m.step(PushDue{Seq: m.armed})
		}
	case r < 63:
		if m.armed > 1 {
			m.step(PushDue{Seq: m.armed - 1}) // a timer replaced meanwhile
		}
	case r < 78:
		if m.flight != nil {
			m.finish(m.rng.IntN(3) != 0)
		}
	case r < 82:
		if !m.probing {
			m.step(ProbeDue{})
		}
	case r < 86:
		if m.flight == nil || !m.flight.probe {
			m.probing = false // the answer to a Check, or one out of the blue
		}
		m.step(Health{Replica: m.cur})
	case r < 90:
		if m.flight == nil || !m.flight.probe {
			m.probing = false
		}
		m.step(Health{Err: errTimeout})
	case r < 93:
		m.restartPeer(m.rng.IntN(2) == 0)
	case r < 95:
		m.step(AntiEntropy{})
	case r < 97:
		m.step(MembersChanged{})
	default:
		if !m.waiting {
			m.waiting = true
			m.step(Flush{})
		}
	}
}

// heal ends the faults: every notice arrives, every push succeeds at the
// running process, health checks answer and timers fire, until the Peer
// owes nothing.
func (m *model) heal() {
	m.t.Helper()
	m.log = append(m.log, "heal")
	m.deliver(len(m.notices))
	m.step(Health{Replica: m.cur})
	for range 100 {
		switch {
		case m.flight != nil:
			m.flight.to = m.cur
			f := m.flight
			m.flight = nil
			for v := f.since + 1; v <= f.through; v++ {
				m.procs[m.cur][v] = true
			}
			m.step(Pushed{Version: f.through, More: f.more, Replica: m.cur})
		case m.p.owed != owedNothing:
			m.step(PushDue{Seq: m.armed})
		default:
			for v := uint64(1); v <= m.version; v++ {
				if !m.procs[m.cur][v] {
					m.fail("healed and quiet, but the peer's process %s lacks version %d of %d", m.cur, v, m.version)
				}
			}
			if m.waiting {
				m.fail("healed and quiet, but a flush is still waiting")
			}
			m.waiting = true
			m.step(Flush{})
			if m.waiting {
				m.fail("a flush with nothing owed was not answered at once")
			}
			return
		}
	}
	m.fail("still pushing after 100 rounds of healing")
}
