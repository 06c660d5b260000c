package chaos

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"
)

// Kind is one kind of fault.
type Kind int

// The kinds of fault a schedule holds. The first group changes links
// between nodes (faultnet rules); the second changes clients' links; the
// last changes the nodes themselves.
const (
	Partition  Kind = iota // two groups, cut both ways
	OneWay                 // the first group cannot reach the second; replies still flow
	Isolate                // one node cut off both ways
	Bridge                 // Nodes[0] sees Nodes[1] and Nodes[2], which do not see each other
	Lossy                  // every link loses requests and replies at random
	Duplicate              // every link delivers requests twice at random
	Delay                  // every link delays requests, with jitter that reorders them
	ClientLoss             // clients lose requests and replies at random: unknown outcomes
	Crash                  // node's sends lost for half the hold, then it stops; restart on its data dir
	Wipe                   // node restarts on an empty data dir (after the cluster agrees)
	Join                   // a new node starts, knowing one live node
	Remove                 // DELETE /peers/{node} on every other node, then the node stops
	numKinds
)

var kindNames = [...]string{"partition", "one-way", "isolate", "bridge", "lossy", "duplicate", "delay",
	"client-loss", "crash", "wipe", "join", "remove"}

func (k Kind) String() string {
	if k < 0 || k >= numKinds {
		return fmt.Sprintf("kind(%d)", int(k))
	}
	return kindNames[k]
}

// Fault is one fault of a step. Which fields matter depends on Kind.
type Fault struct {
	Kind   Kind
	Groups [][]string    // Partition, OneWay: node names; Bridge: {{a}, {b, c}}
	Node   string        // Isolate, Crash, Wipe, Remove: the node; Join: the new node
	Via    string        // Join: the one node the new node knows
	P      float64       // Lossy, Duplicate, ClientLoss: the chance per request
	Delay  time.Duration // Delay: added to every request
	Jitter time.Duration // Delay: a random extra up to this
}

func (f Fault) String() string {
	switch f.Kind {
	case Partition:
		return fmt.Sprintf("partition %s | %s", set(f.Groups[0]), set(f.Groups[1]))
	case OneWay:
		return fmt.Sprintf("one-way %s -x-> %s", set(f.Groups[0]), set(f.Groups[1]))
	case Isolate:
		return "isolate " + f.Node
	case Bridge:
		return fmt.Sprintf("bridge %s sees %s and %s, which are cut from each other",
			f.Groups[0][0], f.Groups[1][0], f.Groups[1][1])
	case Lossy:
		return fmt.Sprintf("lossy: %.0f%% of requests and %.0f%% of replies lost", 100*f.P, 50*f.P)
	case Duplicate:
		return fmt.Sprintf("duplicate %.0f%% of requests", 100*f.P)
	case Delay:
		return fmt.Sprintf("delay %v + jitter up to %v", f.Delay, f.Jitter)
	case ClientLoss:
		return fmt.Sprintf("clients lose %.0f%% of requests and replies", 100*f.P)
	case Crash:
		return "crash " + f.Node + " (its sends lost first), restart on its data dir"
	case Wipe:
		return "restart " + f.Node + " on a wiped data dir"
	case Join:
		return "join " + f.Node + " knowing only " + f.Via
	case Remove:
		return "remove " + f.Node + " (DELETE /peers on every other node)"
	}
	return f.Kind.String()
}

func set(names []string) string { return "{" + strings.Join(names, ",") + "}" }

// Step holds its faults for Hold while clients make up to Ops changes, then
// ends them. Faults of the links are set first; then Crash holds half of
// Hold with the node's sends lost and half with it stopped, and restarts
// it; Wipe and Remove first heal everything and wait for agreement (see the
// package comment); Join starts its node at once.
type Step struct {
	Faults []Fault
	Hold   time.Duration
	Ops    int
	Target string // if set, every change of this step goes to this node
}

func (s Step) String() string {
	parts := make([]string, len(s.Faults))
	for i, f := range s.Faults {
		parts[i] = f.String()
	}
	if len(parts) == 0 {
		parts = append(parts, "no fault")
	}
	out := fmt.Sprintf("%s; hold %v, up to %d ops", strings.Join(parts, " + "), s.Hold, s.Ops)
	if s.Target != "" {
		out += " on " + s.Target
	}
	return out
}

// Schedule is everything one seed does.
type Schedule struct {
	Seed     uint64
	Nodes    int      // nodes at the start, named A, B, C, ...
	Clients  int      // concurrent clients
	Counters []string // the counters clients change
	MaxDelta int64    // each change is 1 to MaxDelta, up or down
	Steps    []Step
	Life     Lifecycle // deletes and expiries, on counters of their own
}

// Lifecycle says which counters of a schedule are deleted and expire, and
// how often. Its counters are apart from Counters, whose checks stay as
// they are: each is checked by the bounds of docs/invariants.md.
type Lifecycle struct {
	// Share is the chance that a client's operation goes to a lifecycle
	// counter; 0 turns lifecycle operations off.
	Share float64
	// Deleted are changed and deleted (DELETE /counters/{name}), never
	// given an expiry.
	Deleted []string
	// Expiring are changed with ?ttl= and given expiries (POST
	// .../expire); each must be gone on every node once its last expiry
	// has passed.
	Expiring []string
	// DeleteExpiring deletes Expiring counters too (on in generated
	// schedules: a change a delete did not see survives it and still
	// expires with its window, docs/invariants.md).
	DeleteExpiring bool
	// ExpiringSteps is how many of the first steps change Expiring; the
	// later ones leave them alone, so the last expiry fires about when the
	// run ends and the check does not wait for it long.
	ExpiringSteps int
	// TTLs are the expiries (whole seconds) drawn from, one per operation.
	TTLs []int64
}

func (l Lifecycle) on() bool { return l.Share > 0 && len(l.Deleted)+len(l.Expiring) > 0 }

func (l Lifecycle) String() string {
	if !l.on() {
		return "no deletes or expiries"
	}
	del := ""
	if l.DeleteExpiring {
		del = ", deleted too"
	}
	return fmt.Sprintf("%.0f%% of operations delete %v or expire %v (ttl %vs, in the first %d steps%s)",
		100*l.Share, l.Deleted, l.Expiring, l.TTLs, l.ExpiringSteps, del)
}

// expiringCounter reports whether name is one of l's expiring counters.
func (l Lifecycle) expiringCounter(name string) bool { return slices.Contains(l.Expiring, name) }

// String renders the schedule, one step a line.
func (s *Schedule) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "seed %d: %d nodes %s, %d clients, counters %v, changes of 1 to %d; %s\n",
		s.Seed, s.Nodes, set(nodeNames(s.Nodes)), s.Clients, s.Counters, s.MaxDelta, s.Life)
	for i, st := range s.Steps {
		fmt.Fprintf(&b, "  %2d. %s\n", i+1, st)
	}
	return b.String()
}

// Kinds returns which kinds of fault the schedule holds.
func (s *Schedule) Kinds() map[Kind]bool {
	out := map[Kind]bool{}
	for _, st := range s.Steps {
		for _, f := range st.Faults {
			out[f.Kind] = true
		}
	}
	return out
}

// nodeName returns the name of the i-th node ever started: A, B, ...
func nodeName(i int) string { return string(rune('A' + i)) }

func nodeNames(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = nodeName(i)
	}
	return out
}

// Limits of generated schedules.
const (
	MinNodes = 3 // never fewer live nodes
	MaxNodes = 7 // never more live nodes
)

// Generate returns the schedule of a seed: 3 to 7 nodes and 5 to 8 steps
// of 100 to 400 ms each. The same seed always gives the same schedule.
func Generate(seed uint64) *Schedule {
	rng := rand.New(rand.NewPCG(seed, 0x636f756e7464)) // "countd"
	s := &Schedule{
		Seed:     seed,
		Nodes:    MinNodes + rng.IntN(MaxNodes-MinNodes+1),
		Clients:  2 + rng.IntN(3),
		Counters: []string{"default", "c1", "c2"}[:1+rng.IntN(3)],
		MaxDelta: []int64{1, 10, 1000}[rng.IntN(3)],
	}
	g := &gen{rng: rng, live: nodeNames(s.Nodes), next: s.Nodes}
	for range 5 + rng.IntN(4) {
		s.Steps = append(s.Steps, g.step())
	}
	s.Life = generateLifecycle(seed, len(s.Steps))
	return s
}

// generateLifecycle draws a schedule's Lifecycle from a stream of its own,
// so that the faults and counters of a seed stay what they were before
// schedules held deletes and expiries.
func generateLifecycle(seed uint64, steps int) Lifecycle {
	rng := rand.New(rand.NewPCG(seed, 0x6c696665)) // "life"
	return Lifecycle{
		Share:         0.15 + 0.2*rng.Float64(),
		Deleted:       []string{"gone"},
		Expiring:      []string{"brief"},
		ExpiringSteps: max(1, steps/3+rng.IntN(2)),
		TTLs:          []int64{1, 1, 1, 2, 3},
	}
}

// gen tracks which nodes are live while it generates, so every step names
// nodes that will be running when it starts.
type gen struct {
	rng  *rand.Rand
	live []string
	next int // index of the next new node's name
}

func (g *gen) step() Step {
	st := Step{Hold: time.Duration(100+g.rng.IntN(301)) * time.Millisecond, Ops: 5 + g.rng.IntN(26)}
	roll := g.rng.IntN(100)
	switch {
	case roll < 12:
		n := g.pick()
		st.Faults = []Fault{{Kind: Crash, Node: n}}
		if g.rng.IntN(2) == 0 {
			st.Target = n // the crashed node acknowledges changes it cannot push
		}
		g.maybeLinks(&st)
		return st
	case roll < 18:
		st.Faults = []Fault{{Kind: Wipe, Node: g.pick()}}
		return st
	case roll < 24 && len(g.live) < MaxNodes:
		n := nodeName(g.next)
		g.next++
		st.Faults = []Fault{{Kind: Join, Node: n, Via: g.pick()}}
		g.maybeLinks(&st) // among the nodes already running
		g.live = append(g.live, n)
		return st
	case roll < 30 && len(g.live) > MinNodes:
		n := g.pick()
		st.Faults = []Fault{{Kind: Remove, Node: n}}
		g.live = without(g.live, n)
		return st
	case roll < 38:
		st.Faults = []Fault{{Kind: ClientLoss, P: 0.05 + 0.2*g.rng.Float64()}}
	}
	// A change to the links: a topology, a link quality, or both.
	top, qual := g.rng.IntN(3) > 0, g.rng.IntN(2) == 0
	if !top && !qual {
		top = true
	}
	if top {
		st.Faults = append(st.Faults, g.topology())
	}
	if qual {
		st.Faults = append(st.Faults, g.quality())
	}
	return st
}

// maybeLinks adds, half the time, a fault of the links to a crash or a
// join, so those happen while the network misbehaves too.
func (g *gen) maybeLinks(st *Step) {
	if g.rng.IntN(2) == 0 {
		return
	}
	if g.rng.IntN(2) == 0 {
		st.Faults = append(st.Faults, g.topology())
	} else {
		st.Faults = append(st.Faults, g.quality())
	}
}

func (g *gen) topology() Fault {
	nodes := g.shuffled()
	switch g.rng.IntN(4) {
	case 0:
		k := 1 + g.rng.IntN(len(nodes)-1)
		return Fault{Kind: Partition, Groups: [][]string{sorted(nodes[:k]), sorted(nodes[k:])}}
	case 1:
		k := 1 + g.rng.IntN(len(nodes)-1)
		return Fault{Kind: OneWay, Groups: [][]string{sorted(nodes[:k]), sorted(nodes[k:])}}
	case 2:
		return Fault{Kind: Isolate, Node: nodes[0]}
	default:
		return Fault{Kind: Bridge, Groups: [][]string{{nodes[0]}, sorted(nodes[1:3])}}
	}
}

func (g *gen) quality() Fault {
	switch g.rng.IntN(3) {
	case 0:
		return Fault{Kind: Lossy, P: 0.1 + 0.4*g.rng.Float64()}
	case 1:
		return Fault{Kind: Duplicate, P: 0.2 + 0.6*g.rng.Float64()}
	default:
		return Fault{Kind: Delay, Delay: time.Duration(g.rng.IntN(20)) * time.Millisecond,
			Jitter: time.Duration(5+g.rng.IntN(60)) * time.Millisecond}
	}
}

func (g *gen) pick() string { return g.live[g.rng.IntN(len(g.live))] }

func (g *gen) shuffled() []string {
	out := slices.Clone(g.live)
	g.rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

func sorted(names []string) []string { return slices.Sorted(slices.Values(names)) }

func without(names []string, drop string) []string {
	var out []string
	for _, n := range names {
		if n != drop {
			out = append(out, n)
		}
	}
	return out
}
