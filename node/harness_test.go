package node_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"countd/internal/apiclient"
	"countd/internal/poll"
	"countd/internal/testcluster"
)

// The cluster tests run on internal/testcluster, whose methods return
// errors; the thin wrappers here turn them into t.Fatal. No test here puts
// a fault on the clients' network, so every client change must be
// acknowledged and every expected value is exact.

// convergeTimeout bounds every wait for agreement.
const convergeTimeout = 10 * time.Second

// cluster is a testcluster.Cluster that fails its test on any error.
type cluster struct {
	*testcluster.Cluster
	t testing.TB
}

// startCluster starts n durable nodes named A, B, C, ..., each registering
// all the others as peers, and returns once each lists every other as alive.
// If the test fails, the nodes' logs are logged after they close.
func startCluster(t testing.TB, n int, opts ...clusterOption) *cluster {
	t.Helper()
	var o clusterOptions
	for _, opt := range opts {
		opt(&o)
	}
	c := &cluster{t: t}
	// Registered before New's clean-up, so it runs after the nodes close.
	t.Cleanup(func() {
		if t.Failed() && c.Cluster != nil {
			dumpLogs(t, c.Cluster, 400)
		}
	})
	c.Cluster = testcluster.New(t, testcluster.Options{Seed: o.seed})
	if err := c.Start(n, o.memory...); err != nil {
		t.Fatal(err)
	}
	return c
}

type clusterOptions struct {
	seed   uint64
	memory []string
}

type clusterOption func(*clusterOptions)

// withMemory runs the named nodes in memory mode.
func withMemory(names ...string) clusterOption {
	return func(o *clusterOptions) { o.memory = append(o.memory, names...) }
}

// withSeed seeds the network's random choices.
func withSeed(seed uint64) clusterOption {
	return func(o *clusterOptions) { o.seed = seed }
}

// reserve reserves addresses for the named nodes.
func (c *cluster) reserve(names ...string) {
	c.t.Helper()
	if err := c.Reserve(names...); err != nil {
		c.t.Fatal(err)
	}
}

// start opens the reserved node name with the given peers (addresses),
// durable in a temp dir unless memory is set.
func (c *cluster) start(name string, peers []string, memory bool) {
	c.t.Helper()
	if err := c.Open(name, peers, memory); err != nil {
		c.t.Fatal(err)
	}
}

// stop closes the node gracefully and returns what Close returned and how
// long it took. A Close error is logged, not failed on:
// TestGracefulCloseNotHeldByIdleConnection covers it, and it must not make
// the tests of other things flaky.
func (c *cluster) stop(name string) (time.Duration, error) {
	c.t.Helper()
	took, err := c.Stop(name)
	if errors.Is(err, testcluster.ErrNotRunning) {
		c.t.Fatal(err)
	}
	return took, err
}

// stopSilently closes the node with all its outgoing traffic lost (see
// testcluster.Cluster.Crash).
func (c *cluster) stopSilently(name string) {
	c.t.Helper()
	if err := c.Crash(name); err != nil {
		c.t.Fatal(err)
	}
}

// restart starts a stopped node again on the same address, with its peers,
// from the state mode says.
func (c *cluster) restart(name string, mode testcluster.RestartMode) {
	c.t.Helper()
	if err := c.Restart(name, mode); err != nil {
		c.t.Fatal(err)
	}
}

// heartbeat is the heartbeat interval every node runs with.
func (c *cluster) heartbeat() time.Duration { return c.Config("A").HeartbeatInterval }

// waitConverged waits until each named node (every running node if none are
// named) reports exactly want, and returns how long that took.
func (c *cluster) waitConverged(want map[string]int64, names ...string) time.Duration {
	c.t.Helper()
	d, err := c.WaitConverged(convergeTimeout, want, names...)
	if err != nil {
		c.t.Fatal(err)
	}
	return d
}

// waitPeers waits until the named node's peer table, as a map from node
// name to state, satisfies cond.
func (c *cluster) waitPeers(name, what string, cond func(map[string]string) bool) time.Duration {
	c.t.Helper()
	d, err := c.WaitPeers(convergeTimeout, name, what, cond)
	if err != nil {
		c.t.Fatal(err)
	}
	return d
}

// waitMesh waits until each named node lists every other one as alive.
func (c *cluster) waitMesh(names ...string) {
	c.t.Helper()
	if err := c.WaitMesh(convergeTimeout*time.Duration(len(names)), names...); err != nil {
		c.t.Fatal(err)
	}
}

// --- what clients were told ---

// ledger is an apiclient.Ledger whose exact sums fail the test unless every
// change was acknowledged.
type ledger struct{ apiclient.Ledger }

func newLedger() *ledger { return &ledger{} }

// exact returns the acknowledged sums, failing the test unless every change
// was acknowledged.
func (l *ledger) exact(t testing.TB) map[string]int64 {
	t.Helper()
	m, err := l.Exact()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// load runs clients goroutines, each making ops random changes (seeded from
// seed and its index) of 1 to 100 up or down to random counters on random
// nodes among names, and records every outcome in l. It returns when all are
// done.
func (c *cluster) load(l *ledger, seed uint64, clients, ops int, names, counters []string) {
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(seed, uint64(i)))
			for range ops {
				name := names[rng.IntN(len(names))]
				counter := counters[rng.IntN(len(counters))]
				delta := rng.Int64N(100) + 1
				if rng.IntN(3) == 0 {
					delta = -delta
				}
				l.Record(name, counter, delta, c.Change(name, counter, delta))
			}
		})
	}
	wg.Wait()
}

// --- waiting ---

// waitFor polls cond until it holds or timeout passes; then it fails the
// test with what and cond's last description of the state it saw.
func waitFor(t testing.TB, timeout time.Duration, what string, cond poll.Cond) time.Duration {
	t.Helper()
	d, err := poll.Until(context.Background(), timeout, testcluster.PollEvery, what, cond)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// holdFor polls cond for the whole of d and fails the test the first time
// it does not hold.
func holdFor(t testing.TB, d time.Duration, what string, cond poll.Cond) {
	t.Helper()
	if err := poll.While(context.Background(), d, testcluster.PollEvery, what, cond); err != nil {
		t.Fatal(err)
	}
}

// --- logs ---

// dumpLogs logs the nodes' last n lines (all of them if COUNTD_TEST_LOGS=all).
func dumpLogs(t testing.TB, c *testcluster.Cluster, n int) {
	if os.Getenv("COUNTD_TEST_LOGS") == "all" {
		n = 0
	}
	lines, kept := c.Logs(n)
	if len(lines) < kept {
		t.Logf("node logs: last %d of %d lines (COUNTD_TEST_LOGS=all for every line):", len(lines), kept)
	}
	t.Log("\n" + strings.Join(lines, "\n"))
}

// sumOf returns the per-counter sum of maps.
func sumOf(ms ...map[string]int64) map[string]int64 {
	out := map[string]int64{}
	for _, m := range ms {
		for k, v := range m {
			out[k] += v
		}
	}
	return out
}
