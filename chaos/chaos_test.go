package chaos

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"countd/actors"
	"countd/auth"
	"countd/crdt"
	"countd/internal/apiclient"
	"countd/internal/testcluster"
	"countd/node"
	"countd/wire"
)

// ciSeeds run on every go test: short schedules that together hold every
// kind of fault (TestCISeedsCoverEveryKind keeps it so).
var ciSeeds = []uint64{2, 8, 9, 12, 17, 22, 25, 27}

var (
	flagSeed     = flag.Uint64("chaos.seed", envUint("COUNTD_CHAOS_SEED", 0), "replay this one seed (env COUNTD_CHAOS_SEED)")
	flagSeeds    = flag.Int("chaos.seeds", int(envUint("COUNTD_CHAOS_SEEDS", 0)), "run this many seeds from -chaos.start (env COUNTD_CHAOS_SEEDS)")
	flagStart    = flag.Uint64("chaos.start", envUint("COUNTD_CHAOS_START", 1), "first seed of -chaos.seeds and -chaos.duration (env COUNTD_CHAOS_START)")
	flagDuration = flag.Duration("chaos.duration", envDuration("COUNTD_CHAOS_DURATION"), "run new seeds until this much time has passed (env COUNTD_CHAOS_DURATION)")
	flagParallel = flag.Bool("chaos.parallel", os.Getenv("COUNTD_CHAOS_PARALLEL") != "", "run seeds in parallel, up to go test -parallel at once (env COUNTD_CHAOS_PARALLEL)")
	flagLogs     = flag.Int("chaos.logs", int(envUint("COUNTD_CHAOS_LOGS", 0)), "on failure, print this many of the nodes' last log lines (env COUNTD_CHAOS_LOGS)")
	flagDelExp   = flag.Bool("chaos.delete-expiring", os.Getenv("COUNTD_CHAOS_DELETE_EXPIRING") != "0", "delete the expiring counters too (env COUNTD_CHAOS_DELETE_EXPIRING=0 turns it off)")
)

func envUint(name string, def uint64) uint64 {
	if v, err := strconv.ParseUint(os.Getenv(name), 10, 64); err == nil {
		return v
	}
	return def
}

func envDuration(name string) time.Duration {
	d, _ := time.ParseDuration(os.Getenv(name))
	return d
}

// replay is the one-line command that runs a seed again.
func replay(seed uint64) string {
	env := ""
	if !*flagDelExp {
		env = "COUNTD_CHAOS_DELETE_EXPIRING=0 "
	}
	return fmt.Sprintf("%sCOUNTD_CHAOS_SEED=%d go test -count=1 -run 'TestChaos$' -v ./chaos/", env, seed)
}

// totals add up what every seed did, for the summary line.
type totals struct {
	seeds, failed, events, steps atomic.Int64
	ops                          [3]atomic.Int64
	life                         [3][3]atomic.Int64 // by OpKind, then Outcome
}

func (t *totals) add(r *Result) {
	t.seeds.Add(1)
	if r.Failed() {
		t.failed.Add(1)
	}
	t.events.Add(int64(r.Events))
	t.steps.Add(int64(len(r.Schedule.Steps)))
	n := r.Ledger.Counts()
	for _, o := range []apiclient.Outcome{apiclient.OK, apiclient.Failed, apiclient.Unknown} {
		t.ops[o].Add(n.Of(o))
	}
	for k, c := range r.History.Counts() {
		for _, o := range []apiclient.Outcome{apiclient.OK, apiclient.Failed, apiclient.Unknown} {
			t.life[k][o].Add(c.Of(o))
		}
	}
}

func (t *totals) String() string {
	ok, failed, unknown := t.ops[apiclient.OK].Load(), t.ops[apiclient.Failed].Load(), t.ops[apiclient.Unknown].Load()
	out := fmt.Sprintf("%d seeds (%d failed), %d steps, %d fault events, %d client ops (%d ok, %d failed, %d unknown)",
		t.seeds.Load(), t.failed.Load(), t.steps.Load(), t.events.Load(), ok+failed+unknown, ok, failed, unknown)
	for _, k := range []OpKind{OpChange, OpDelete, OpExpire} {
		c := &t.life[k]
		out += fmt.Sprintf("; lifecycle %ss: %d ok, %d failed, %d unknown", k,
			c[apiclient.OK].Load(), c[apiclient.Failed].Load(), c[apiclient.Unknown].Load())
	}
	return out
}

// TestChaos runs each seed as a subtest seed=N: the fixed CI set by
// default, one seed with COUNTD_CHAOS_SEED, many with COUNTD_CHAOS_SEEDS,
// or as many as fit in COUNTD_CHAOS_DURATION.
func TestChaos(t *testing.T) {
	var sum totals
	t.Cleanup(func() { t.Logf("chaos: %s", &sum) })
	run := func(seed uint64) {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			if *flagParallel {
				t.Parallel()
			}
			runSeed(t, seed, &sum)
		})
	}
	switch {
	case *flagSeed != 0:
		run(*flagSeed)
	case *flagDuration > 0:
		end := time.Now().Add(*flagDuration)
		for seed := *flagStart; time.Now().Before(end); seed++ {
			run(seed)
		}
	case *flagSeeds > 0:
		for i := range *flagSeeds {
			run(*flagStart + uint64(i))
		}
	default:
		for _, seed := range ciSeeds {
			run(seed)
		}
	}
}

func runSeed(t *testing.T, seed uint64, sum *totals) {
	s := Generate(seed)
	s.Life.DeleteExpiring = *flagDelExp
	start := time.Now()
	res := Run(t, s, testcluster.Options{})
	sum.add(res)
	n := res.Ledger.Counts()
	t.Logf("seed %d: %d nodes, %d steps, %d fault events, %d ops (%s; %d resends, %d replays; lifecycle: %s) in %v",
		seed, s.Nodes, len(s.Steps), res.Events, n.Total(), n, res.Resends, res.Replays, res.History, time.Since(start).Round(time.Millisecond))
	if res.Failed() {
		logs := ""
		if *flagLogs > 0 {
			logs = "\nnode logs (last lines):\n" + res.Logs(*flagLogs)
		}
		t.Errorf("seed %d failed\n%s\nreplay: %s\n(add COUNTD_CHAOS_LOGS=500 to see the nodes' logs)%s",
			seed, res.Report(), replay(seed), logs)
	}
}

// TestCISeedsCoverEveryKind keeps the CI seed set honest: together its
// schedules must hold every kind of fault, and start clusters of both the
// smallest and a larger size.
func TestCISeedsCoverEveryKind(t *testing.T) {
	seen := map[Kind]bool{}
	sizes := map[int]bool{}
	for _, seed := range ciSeeds {
		s := Generate(seed)
		for k := range s.Kinds() {
			seen[k] = true
		}
		sizes[s.Nodes] = true
	}
	for k := range numKinds {
		if !seen[k] {
			t.Errorf("no CI seed holds a %s fault; pick other seeds", k)
		}
	}
	if !sizes[MinNodes] || len(sizes) < 3 {
		t.Errorf("CI seeds start clusters of sizes %v; want %d and at least two others", sizes, MinNodes)
	}
}

// TestGenerateIsDeterministic: a seed is a replay only if it always gives
// the same schedule.
func TestGenerateIsDeterministic(t *testing.T) {
	for seed := uint64(1); seed <= 200; seed++ {
		a, b := Generate(seed).String(), Generate(seed).String()
		if a != b {
			t.Fatalf("seed %d gives two schedules:\n%s\n%s", seed, a, b)
		}
	}
	if Generate(1).String() == Generate(2).String() {
		t.Fatal("seeds 1 and 2 give the same schedule")
	}
}

// crashSchedule crashes B after it acknowledged changes it could not push:
// only B's disk holds them when it stops.
func crashSchedule() *Schedule {
	return &Schedule{
		Seed: 1, Nodes: 3, Clients: 2, Counters: []string{"default"}, MaxDelta: 10,
		Steps: []Step{
			{Hold: 100 * time.Millisecond, Ops: 10},
			{Faults: []Fault{{Kind: Crash, Node: "B"}}, Hold: 600 * time.Millisecond, Ops: 40, Target: "B"},
			{Hold: 100 * time.Millisecond, Ops: 10},
		},
	}
}

// skipSave is a store that acknowledges every write and keeps none.
type skipSave struct{}

func (skipSave) Save(_, _ []crdt.Entry) error { return nil }

// TestChaosCatchesSkippedPersist shows the checks catch a node that
// acknowledges changes without writing them: after a crash and restart on
// its data dir they are gone, and Check must say so. The same schedule
// with the real store must pass, or the test proves nothing.
func TestChaosCatchesSkippedPersist(t *testing.T) {
	t.Run("control", func(t *testing.T) {
		res := Run(t, crashSchedule(), testcluster.Options{})
		if res.Failed() {
			t.Fatalf("the unbroken cluster fails:\n%s", res.Report())
		}
		if n := res.Ledger.Counts(); n.OK == 0 {
			t.Fatal("no change was acknowledged")
		}
	})
	t.Run("broken", func(t *testing.T) {
		res := Run(t, crashSchedule(), testcluster.Options{Config: func(name string, cfg *node.Config) {
			if name == "B" {
				cfg.WrapStore = func(actors.Store) actors.Store { return skipSave{} }
			}
		}})
		if res.Err != nil {
			t.Fatal(res.Err)
		}
		if len(res.Violations) == 0 {
			t.Fatalf("B skipped every write and crashed, yet no invariant broke (B's changes: %s)\n%s",
				res.Ledger.Node("B"), res.Report())
		}
		if !strings.Contains(strings.Join(res.Violations, "\n"), "acknowledged changes lost") {
			t.Fatalf("want a lost-change violation, got:\n%s", res.Report())
		}
		t.Logf("caught, as it should be: %s", res.Violations[0])
	})
}

// corruptOnce models a receiver whose merge adds instead of taking the
// maximum, once. It wraps the sends of one node. Its target is an entry
// that can no longer grow, so max cannot later swallow the damage: a key
// entry (an Idempotency-Key's change, written once), an entry of an
// earlier run of the same node (a replica id is never reused, so those
// are history), or the fold entry that carries their totals after a
// restart (it grows only at the next restart). The first push that carries
// one with P > 0 arrives with P doubled, and the receiver counts those
// increments twice.
// With a cluster key, the corrupted body is signed again: the double count
// stands for a bug on the sender, which would sign what it sends, not for
// tampering on the way (which the receiver's check of the signature refuses).
type corruptOnce struct {
	base  http.RoundTripper
	state *corruptState
	keys  *auth.Keyring
}

type corruptState struct {
	mu    sync.Mutex
	runs  map[string]bool // every replica id the node has sent as
	done  bool
	extra uint64 // increments counted twice
}

func (c *corruptOnce) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Path != "/replicate" || req.Body == nil {
		return c.base.RoundTrip(req)
	}
	body, err := io.ReadAll(req.Body)
	req.Body.Close()
	if err != nil {
		return nil, err
	}
	var r wire.ReplicateRequest
	if json.Unmarshal(body, &r) == nil {
		st := c.state
		st.mu.Lock()
		st.runs[r.Replica] = true
		for i, e := range r.Entries {
			if !st.done && e.Replica != r.Replica && (st.runs[e.Replica] || e.G > 0 || isKeyEntry(e)) && e.P > 0 {
				r.Entries[i].P *= 2
				st.done, st.extra = true, e.P
				body, _ = json.Marshal(&r)
			}
		}
		st.mu.Unlock()
	}
	req = req.Clone(req.Context())
	req.Body = io.NopCloser(bytes.NewReader(body))
	req.ContentLength = int64(len(body))
	if c.keys != nil {
		c.keys.Sign(req, body, time.Now())
	}
	return c.base.RoundTrip(req)
}

// isKeyEntry reports whether e is a key entry: its id is crdt.KeyID's.
func isKeyEntry(e crdt.Entry) bool {
	return len(e.Replica) == len(crdt.KeyID("")) && strings.HasPrefix(e.Replica, "k")
}

func (c *corruptOnce) CloseIdleConnections() {
	if ci, ok := c.base.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
}

// TestChaosCatchesBrokenMerge shows the checks catch a double count: A
// acknowledges increments, crashes and restarts, and its first push of
// the old run's entries is merged as if added (see corruptOnce).
func TestChaosCatchesBrokenMerge(t *testing.T) {
	sched := &Schedule{
		Seed: 2, Nodes: 3, Clients: 2, Counters: []string{"default", "c1"}, MaxDelta: 10,
		Steps: []Step{
			{Hold: 200 * time.Millisecond, Ops: 30, Target: "A"},
			{Faults: []Fault{{Kind: Crash, Node: "A"}}, Hold: 200 * time.Millisecond, Ops: 20},
			{Faults: []Fault{{Kind: Duplicate, P: 0.5}}, Hold: 200 * time.Millisecond, Ops: 30},
		},
	}
	t.Run("control", func(t *testing.T) {
		if res := Run(t, sched, testcluster.Options{}); res.Failed() {
			t.Fatalf("the unbroken cluster fails:\n%s", res.Report())
		}
	})
	t.Run("broken", func(t *testing.T) {
		st := &corruptState{runs: map[string]bool{}}
		keys, err := auth.New(clusterKey(sched.Seed))
		if err != nil {
			t.Fatal(err)
		}
		res := Run(t, sched, testcluster.Options{ClusterKeys: keys, Config: func(name string, cfg *node.Config) {
			if name == "A" {
				cfg.RoundTripper = &corruptOnce{base: cfg.RoundTripper, state: st, keys: keys}
			}
		}})
		if res.Err != nil {
			t.Fatal(res.Err)
		}
		st.mu.Lock()
		done, extra := st.done, st.extra
		st.mu.Unlock()
		if !done {
			t.Fatalf("A never pushed an entry of its earlier run: nothing was corrupted\n%s", res.Report())
		}
		if !strings.Contains(strings.Join(res.Violations, "\n"), fmt.Sprintf("changes counted twice: off by %d)", extra)) {
			t.Fatalf("A's earlier run's %d increments were merged twice, yet Check reports no double count:\n%s",
				extra, res.Report())
		}
		t.Logf("%d increments counted twice; caught, as it should be: %s", extra, res.Violations[0])
	})
}
