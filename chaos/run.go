package chaos

import (
	"context"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"countd/auth"
	"countd/internal/apiclient"
	"countd/internal/faultnet"
	"countd/internal/poll"
	"countd/internal/testcluster"
)

// agreeTimeout bounds the wait for agreement before a wipe or a removal.
const agreeTimeout = 20 * time.Second

// Result is what one run of a schedule did and found.
type Result struct {
	Schedule   *Schedule
	Ledger     *apiclient.Ledger // every client change of Schedule.Counters, classified
	History    *History          // every operation on a lifecycle counter, with its times
	Events     int               // faults applied
	Resends    int64             // keyed changes sent again, their outcome unknown
	Replays    int64             // keyed changes whose outcome came as a replay
	Violations []string          // broken invariants; empty when all held
	Err        error             // the harness itself failed (not an invariant)
	Timeline   []string          // what happened when, for a failure report

	cluster *testcluster.Cluster
	start   time.Time
}

// Logs returns the last n lines the run's nodes logged.
func (r *Result) Logs(n int) string {
	lines, _ := r.cluster.Logs(n)
	return strings.Join(lines, "\n")
}

// Failed reports whether the run broke an invariant or could not finish.
func (r *Result) Failed() bool { return len(r.Violations) > 0 || r.Err != nil }

// Report renders everything a person needs to understand a failed seed.
func (r *Result) Report() string {
	var b strings.Builder
	if r.Err != nil {
		fmt.Fprintf(&b, "harness error: %v\n", r.Err)
	}
	for _, v := range r.Violations {
		fmt.Fprintf(&b, "VIOLATION: %s\n", v)
	}
	b.WriteString("schedule:\n")
	b.WriteString(r.Schedule.String())
	b.WriteString("timeline:\n")
	for _, line := range r.Timeline {
		b.WriteString("  " + line + "\n")
	}
	fmt.Fprintf(&b, "client changes: %s\n", r.Ledger)
	if l := r.Schedule.Life; l.on() {
		fmt.Fprintf(&b, "lifecycle operations: %s\n", r.History)
		for _, counter := range append(slices.Clone(l.Deleted), l.Expiring...) {
			if strings.Contains(strings.Join(r.Violations, "\n"), "counter "+counter+" ") {
				fmt.Fprintf(&b, "operations on %s:\n", counter)
				for _, line := range r.History.Describe(counter, r.start) {
					b.WriteString("  " + line + "\n")
				}
			}
		}
	}
	return b.String()
}

// Run starts a cluster, plays the schedule against it with clients
// changing counters all along, heals everything, stops the clients and
// checks every invariant. The cluster runs with opts, but its networks are
// seeded from the schedule, and unless opts names a cluster key every node
// gets one made from the seed, so that every node-to-node request is signed
// and checked as in production; it is closed when t's test ends.
func Run(t testing.TB, s *Schedule, opts testcluster.Options) *Result {
	t.Helper()
	return run(t, s, opts, nil)
}

// run is Run with the lifecycle operations' transport wrapped by wrap, if
// set: a test can break what one node does with a lifecycle operation.
func run(t testing.TB, s *Schedule, opts testcluster.Options, wrap func(*testcluster.Cluster, http.RoundTripper) http.RoundTripper) *Result {
	t.Helper()
	opts.Seed = s.Seed
	if opts.LogLines == 0 {
		opts.LogLines = logLines
	}
	if opts.ClusterKeys == nil {
		keys, err := auth.New(clusterKey(s.Seed))
		if err != nil {
			t.Fatal(err) // cannot happen: clusterKey is long enough
		}
		opts.ClusterKeys = keys
	}
	c := testcluster.New(t, opts)
	r := &runner{
		c:     c,
		s:     s,
		res:   &Result{Schedule: s, Ledger: &apiclient.Ledger{}, History: &History{}, cluster: c, start: time.Now()},
		start: time.Now(),
		lives: map[string]int{},
	}
	// Lifecycle operations go through the clients' network too, so client
	// faults (lost replies) make their outcomes unknown just the same.
	var rt http.RoundTripper = c.ClientNet.Transport("client",
		&http.Transport{MaxIdleConnsPerHost: 16, IdleConnTimeout: 30 * time.Second})
	if wrap != nil {
		rt = wrap(c, rt)
	}
	r.life = apiclient.Client{HTTP: &http.Client{Timeout: testcluster.ClientTimeout, Transport: rt}}
	t.Cleanup(r.life.HTTP.CloseIdleConnections)
	r.pace.cond = sync.NewCond(&r.pace.mu)
	if err := r.c.Start(s.Nodes); err != nil {
		r.res.Err = err
		return r.res
	}
	r.logf("started %d nodes", s.Nodes)

	var clients sync.WaitGroup
	for i := range s.Clients {
		clients.Go(func() { r.client(i) })
	}
	for i, st := range s.Steps {
		r.logf("step %d: %s", i+1, st)
		r.pace.set(st.Ops, st.Target, i)
		err := r.step(st)
		r.pace.set(0, "", i)
		r.c.Net.Heal()
		r.c.ClientNet.Heal()
		if err != nil {
			r.res.Err = fmt.Errorf("step %d: %w", i+1, err)
			break
		}
		if len(r.res.Violations) > 0 {
			break
		}
	}
	r.pace.stop()
	clients.Wait()
	r.res.Resends, r.res.Replays = r.resends.Load(), r.replays.Load()
	r.logf("healed; clients stopped after %s changes (%d resends of keyed changes, %d answered as replays)",
		r.res.Ledger.Counts(), r.res.Resends, r.res.Replays)
	if s.Life.on() {
		r.logf("lifecycle operations: %s", r.res.History)
	}
	if r.res.Err == nil && len(r.res.Violations) == 0 {
		r.res.Violations = Check(r.c, r.res.Ledger, r.res.History, s.Life, s.Counters, CheckTimeout)
	}
	r.logf("checked: %d violations", len(r.res.Violations))
	return r.res
}

// clusterKey returns the cluster key of a run: auth.MinKeyLen random bytes
// drawn from the seed, written in hex.
func clusterKey(seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, 0xc4a05))
	raw := make([]byte, auth.MinKeyLen)
	for i := range raw {
		raw[i] = byte(rng.Uint32())
	}
	return []byte(hex.EncodeToString(raw))
}

// logLines is how many of the nodes' log lines a run keeps, for a failure
// report.
const logLines = 3000

type runner struct {
	c     *testcluster.Cluster
	s     *Schedule
	res   *Result
	start time.Time
	gate  sync.RWMutex // clients hold it shared per change; Lock pauses them
	pace  pacer
	life  apiclient.Client // lifecycle operations, through ClientNet
	lives map[string]int   // per node, how often it was wiped; written under gate.Lock

	mu sync.Mutex // guards res.Timeline

	resends, replays atomic.Int64 // keyed changes sent again; answered as replays
}

func (r *runner) logf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.res.Timeline = append(r.res.Timeline,
		fmt.Sprintf("%7.3fs ", time.Since(r.start).Seconds())+fmt.Sprintf(format, args...))
}

// client makes changes while the pacer allows, each drawn from its own
// seeded stream, and records every outcome. A share of its operations
// (Schedule.Life) go to the lifecycle counters instead, and one operation
// in bareShare, if it is a plain change, to the Bare counter, without a key; every other change carries
// a key of its own and is sent until its outcome is known (resend).
func (r *runner) client(i int) {
	rng := rand.New(rand.NewPCG(r.s.Seed, uint64(i)+1))
	retry := rand.New(rand.NewPCG(r.s.Seed, uint64(i)+1<<32)) // the nodes resends go to
	for seq := 0; ; seq++ {
		target, step, ok := r.pace.take()
		if !ok {
			return
		}
		key := fmt.Sprintf("chaos-%d-%d-%d", r.s.Seed, i, seq)
		if r.s.Life.on() && rng.Float64() < r.s.Life.Share && r.lifecycleOp(rng, retry, target, step, key) {
			continue
		}
		counter := r.s.Counters[rng.IntN(len(r.s.Counters))]
		delta := r.delta(rng)
		pick := rng.IntN(1 << 20)
		if seq%bareShare == bareShare-1 { // not drawn from rng: the streams stay as they were

			r.gate.RLock()
			name := r.node(target, pick)
			res := r.c.Change(name, Bare, delta)
			r.gate.RUnlock()
			r.res.Ledger.Record(name, Bare, delta, res)
			continue
		}
		name, res := r.resend(retry, target, pick, func(url string) apiclient.Result {
			return r.life.ChangeKey(context.Background(), url, counter, delta, 0, key)
		})
		r.res.Ledger.Record(name, counter, delta, res)
	}
}

// Bare is the counter of the changes clients send without an
// Idempotency-Key: their unknown outcomes stay unknown, so its value is
// checked against a range; it keeps the nodes' own entries (and their
// folds across restarts) under the faults, where keyed changes live in key
// entries.
const Bare = "bare"

// bareShare: one operation in bareShare, if a plain change, goes to Bare,
// without a key.
const bareShare = 5

// resendTimeout bounds how long a keyed change is sent again before its
// outcome is left unknown (which Check then reports): past every fault a
// step holds, with the network healed at the end of each step.
const resendTimeout = 60 * time.Second

// resend sends a keyed change by send, first to target (or the live node
// pick selects), then, while its outcome is unknown, to a live node rng
// picks, until the outcome is known (apiclient.Resend). It returns the
// node of the last attempt and the change's result. Each attempt holds
// r.gate, so a wipe or a removal never happens mid-request.
func (r *runner) resend(rng *rand.Rand, target string, pick int, send func(url string) apiclient.Result) (string, apiclient.Result) {
	ctx, cancel := context.WithTimeout(context.Background(), resendTimeout)
	defer cancel()
	var name string
	res, n := apiclient.Resend(ctx, func(n int) apiclient.Result {
		r.gate.RLock()
		defer r.gate.RUnlock()
		if n == 0 {
			name = r.node(target, pick)
		} else {
			name = r.node("", rng.IntN(1<<20))
		}
		return send(r.c.URL(name))
	})
	r.resends.Add(int64(n - 1))
	if res.Replayed {
		r.replays.Add(1)
	}
	return name, res
}

// delta draws a change: 1 to MaxDelta, a decrement one time in three.
func (r *runner) delta(rng *rand.Rand) int64 {
	d := 1 + rng.Int64N(r.s.MaxDelta)
	if rng.IntN(3) == 0 {
		d = -d
	}
	return d
}

// node returns the node a change goes to: target if it is live, else the
// live node pick selects. The caller holds r.gate.
func (r *runner) node(target string, pick int) string {
	live := r.c.Live()
	if target != "" && slices.Contains(live, target) {
		return target
	}
	return live[pick%len(live)]
}

// lifecycleOp makes one operation on a lifecycle counter in step (0-based)
// and records it in the History: a change carries key and is sent until its
// outcome is known, like the plain counters' (resend); a delete one time in five (on an
// expiring counter only with DeleteExpiring), an expiry (POST .../expire)
// one time in six on an expiring counter, else a change, with a ttl on an
// expiring counter. It returns false, doing nothing, if no
// lifecycle counter may be changed in this step.
func (r *runner) lifecycleOp(rng, retry *rand.Rand, target string, step int, key string) bool {
	l := r.s.Life
	counters := l.Deleted
	if step < l.ExpiringSteps {
		counters = append(slices.Clone(l.Deleted), l.Expiring...)
	}
	if len(counters) == 0 {
		return false
	}
	op := Op{Counter: counters[rng.IntN(len(counters))]}
	roll, delta, ttl, pick := rng.IntN(30), r.delta(rng), l.TTLs[rng.IntN(len(l.TTLs))], rng.IntN(1<<20)
	expiring := l.expiringCounter(op.Counter)
	switch {
	case roll < 6 && (!expiring || l.DeleteExpiring):
		op.Kind = OpDelete
	case expiring && roll < 11:
		op.Kind, op.TTL = OpExpire, ttl
	default:
		op.Kind, op.Delta = OpChange, delta
		if expiring {
			op.TTL = ttl
		}
	}
	ctx := context.Background()
	op.Sent = time.Now()
	var res apiclient.Result
	if op.Kind == OpChange {
		// Node and Life are those of the last attempt: that node held the
		// change (applied it, or replayed it from its key entry).
		op.Node, res = r.resend(retry, target, pick, func(url string) apiclient.Result {
			op.Life = r.lives[r.c.NameOf(strings.TrimPrefix(url, "http://"))]
			return r.life.ChangeKey(ctx, url, op.Counter, op.Delta, op.TTL, key)
		})
		op.Done = time.Now()
		op.Outcome, op.ExpiresIn = res.Outcome, res.ExpiresIn
		r.res.History.Record(op)
		return true
	}
	r.gate.RLock()
	op.Node = r.node(target, pick)
	op.Life = r.lives[op.Node]
	url := r.c.URL(op.Node)
	switch op.Kind {
	case OpDelete:
		res = r.life.Delete(ctx, url, op.Counter)
	case OpExpire:
		res = r.life.Expire(ctx, url, op.Counter, op.TTL)
	}
	op.Done = time.Now()
	r.gate.RUnlock()
	op.Outcome, op.ExpiresIn = res.Outcome, res.ExpiresIn
	r.res.History.Record(op)
	return true
}

// step applies a step's faults, holds them, and returns with the nodes
// running again (the caller heals the networks). Faults of the links go
// first, so a node fault happens while they hold.
func (r *runner) step(st Step) error {
	c := r.c
	var all faultnet.Rule // for links without a rule of their own
	var action *Fault
	for _, f := range st.Faults {
		r.res.Events++
		switch f.Kind {
		case Partition:
			c.Net.Partition(c.Addrs(f.Groups[0]...), c.Addrs(f.Groups[1]...))
		case OneWay:
			for _, a := range f.Groups[0] {
				for _, b := range f.Groups[1] {
					c.Net.Set(c.Addr(a), c.Addr(b), faultnet.Rule{Cut: true})
				}
			}
		case Isolate:
			c.Net.Partition([]string{c.Addr(f.Node)}, c.Addrs(without(c.Live(), f.Node)...))
		case Bridge:
			b, cc := c.Addr(f.Groups[1][0]), c.Addr(f.Groups[1][1])
			c.Net.Set(b, cc, faultnet.Rule{Cut: true})
			c.Net.Set(cc, b, faultnet.Rule{Cut: true})
		case Lossy:
			all.Drop, all.DropReply = f.P, f.P/2
		case Duplicate:
			all.Duplicate = f.P
		case Delay:
			all.Delay, all.Jitter = f.Delay, f.Jitter
		case ClientLoss:
			c.ClientNet.SetAll(faultnet.Rule{Drop: f.P, DropReply: f.P})
		default:
			action = &f
		}
	}
	c.Net.SetAll(all)
	if action == nil {
		hold(st.Hold)
		return nil
	}
	switch f := *action; f.Kind {
	case Crash:
		c.Mute(f.Node, true)
		hold(st.Hold / 2)
		if err := c.Crash(f.Node); err != nil {
			return err
		}
		r.logf("  %s stopped", f.Node)
		hold(st.Hold / 2)
		if err := r.restart(f.Node, testcluster.SameDir); err != nil {
			return err
		}
		r.logf("  %s restarted on its data dir", f.Node)
		return nil
	case Wipe:
		if !r.settle("wipe of " + f.Node) {
			return nil
		}
		err := c.Crash(f.Node)
		if err == nil {
			r.lives[f.Node]++ // what it acknowledged before is not on its disk
			err = r.restart(f.Node, testcluster.WipedDir)
		}
		r.gate.Unlock()
		if err != nil {
			return err
		}
		r.logf("  %s restarted on a wiped data dir", f.Node)
	case Join:
		if err := c.Reserve(f.Node); err != nil {
			return err
		}
		// It knows only Via; gossip must do the rest.
		if err := c.Open(f.Node, c.Addrs(f.Via), false); err != nil {
			return err
		}
		r.logf("  %s started", f.Node)
	case Remove:
		if !r.settle("removal of " + f.Node) {
			return nil
		}
		err := c.Remove(f.Node)
		r.gate.Unlock()
		if err != nil {
			return err
		}
		r.logf("  %s removed", f.Node)
	}
	hold(st.Hold)
	return nil
}

// settle pauses the clients, heals the networks and waits until every live
// node agrees, so a node about to lose its data or leave holds nothing the
// others lack. On success the clients stay paused (r.gate is held) for the
// caller to resume; on failure the disagreement is a violation.
func (r *runner) settle(why string) bool {
	r.gate.Lock()
	r.c.Net.Heal()
	r.c.ClientNet.Heal()
	r.logf("  clients paused, network healed; waiting for agreement before the %s", why)
	_, err := poll.Until(context.Background(), agreeTimeout, testcluster.PollEvery, "every live node agrees", func() (bool, string) {
		obs := observe(r.c)
		return obs.agreed(), obs.String()
	})
	if err != nil {
		r.gate.Unlock()
		r.res.Violations = append(r.res.Violations, fmt.Sprintf("convergence (clients paused and network healed before the %s): %v", why, err))
		return false
	}
	r.logf("  agreed")
	return true
}

// restart starts a stopped node again, knowing every node but the removed
// ones (those that joined since it started included).
func (r *runner) restart(name string, mode testcluster.RestartMode) error {
	if err := r.c.SetPeers(name, r.c.Others(name)); err != nil {
		return err
	}
	return r.c.Restart(name, mode)
}

// hold keeps a fault in place for d. It is the fault's duration, not a wait
// for anything to settle.
func hold(d time.Duration) {
	if d > 0 {
		<-time.After(d)
	}
}

// pacer hands out the changes a step allows to the clients.
type pacer struct {
	mu     sync.Mutex
	cond   *sync.Cond
	budget int
	target string
	step   int
	done   bool
}

// take blocks until a change is allowed and returns the node it must go to
// ("" for any) and the step (0-based) it belongs to, or false once the run
// is over.
func (p *pacer) take() (string, int, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.budget == 0 && !p.done {
		p.cond.Wait()
	}
	if p.done {
		return "", 0, false
	}
	p.budget--
	return p.target, p.step, true
}

func (p *pacer) set(budget int, target string, step int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.budget, p.target, p.step = budget, target, step
	p.cond.Broadcast()
}

func (p *pacer) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done = true
	p.cond.Broadcast()
}
