package e2e

// Idempotency keys (issue 14, docs/design.md §3 "Keyed changes", §9) with
// real processes: a key used for another change is 422 on any node that
// holds it, a key whose change is still being made is 409, and a key
// retired after a short -idempotency-window is forgotten on every node
// (countd_idempotency_keys back to 0, values unchanged) and counts again
// when sent later, as the design says. keys_netns_test.go sends keyed
// changes across a partition and under kill -9.

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"countd/internal/apiclient"
	pollpkg "countd/internal/poll"
)

// The idempotency metrics (README, "Metrics").
const (
	mKeys    = "countd_idempotency_keys"         // key entries held, retired ones not yet forgotten included
	mReplays = "countd_idempotent_replays_total" // keyed changes answered as replays
	mRetired = "countd_idempotency_keys_retired_total"
)

// keyedSend sends one keyed change of counter by delta to n and fails the
// test unless its status is want; it returns the result.
func keyedSend(t *testing.T, api apiclient.Client, n *clusterNode, counter string, delta int64, key string, want int) apiclient.Result {
	t.Helper()
	r := api.ChangeKey(context.Background(), n.url(), counter, delta, 0, key)
	if r.Status != want {
		t.Fatalf("%s: %+d on %s with key %q: status %d (%v), want %d", n.name, delta, counter, key, r.Status, r.Err, want)
	}
	return r
}

// TestKeyConflictAndInFlightProcesses: the same key with another counter,
// operation or amount is 422 on the node that took it and, once it has
// the key entry, on another node, and changes nothing; the same key sent
// many times at once to one node is counted once, every copy that came
// while the first was being made answered 409 and every later one as a
// replay.
func TestKeyConflictAndInFlightProcesses(t *testing.T) {
	nodes := meshNodes(t, freePorts(t, 3))
	startAll(t, nodes...)
	a, b := nodes[0], nodes[1]
	api := apiclient.Client{HTTP: newClient(t, 32)}

	first := keyedSend(t, api, a, "fruit", 3, "order-1", http.StatusOK)
	if first.Replayed || first.Value != 3 {
		t.Fatalf("first use of the key: %+v, want value 3, not replayed", first)
	}
	awaitNodes(t, "the keyed change on every node", nodes, valuesAre(map[string]int64{"fruit": 3}))
	for _, tc := range []struct {
		name    string
		node    *clusterNode
		counter string
		delta   int64
	}{
		{"another amount", a, "fruit", 4},
		{"another operation", a, "fruit", -3},
		{"another counter", a, "veg", 3},
		{"another amount, on another node", b, "fruit", 4},
		{"another counter, on another node", b, "veg", 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			keyedSend(t, api, tc.node, tc.counter, tc.delta, "order-1", http.StatusUnprocessableEntity)
		})
	}
	if r := keyedSend(t, api, b, "fruit", 3, "order-1", http.StatusOK); !r.Replayed || r.Value != 3 {
		t.Fatalf("the same change on another node: %+v, want a replay at 3", r)
	}
	awaitNodes(t, "nothing changed by the refused and replayed uses", nodes, valuesAre(map[string]int64{"fruit": 3}))

	// 409: copies of one keyed change sent at once to one node. The first
	// taken waits for its commit (an fsync); a copy that comes meanwhile
	// is 409, one after it a replay. Which copies land in the window is up
	// to the scheduler, so rounds go on (each with a key of its own) until
	// one has shown a 409.
	const copies, maxRounds = 16, 40
	var conflicts, rounds int
	for rounds = 1; rounds <= maxRounds && conflicts == 0; rounds++ {
		key := fmt.Sprintf("burst-%d", rounds)
		results := make([]apiclient.Result, copies)
		var wg sync.WaitGroup
		for i := range copies {
			wg.Go(func() { results[i] = api.ChangeKey(context.Background(), a.url(), "burst", 1, 0, key) })
		}
		wg.Wait()
		var fresh, replays int
		for _, r := range results {
			switch {
			case r.Status == http.StatusConflict:
				conflicts++
			case r.Status == http.StatusOK && r.Replayed:
				replays++
			case r.Status == http.StatusOK:
				fresh++
			default:
				t.Fatalf("round %d: a copy got %d (%v), want 200 or 409", rounds, r.Status, r.Err)
			}
		}
		if fresh != 1 {
			t.Fatalf("round %d: %d copies counted (%d replays), want exactly 1", rounds, fresh, replays)
		}
		// Sent again once the first has answered, a 409's change is a
		// replay, as the 409 says.
		if r := keyedSend(t, api, a, "burst", 1, key, http.StatusOK); !r.Replayed {
			t.Fatalf("round %d: the key sent again after the burst was not a replay: %+v", rounds, r)
		}
	}
	rounds--
	if conflicts == 0 {
		t.Fatalf("no copy of %d rounds of %d was answered 409: the in-flight check was never seen", rounds, copies)
	}
	t.Logf("%d copies answered 409 in %d rounds of %d", conflicts, rounds, copies)
	awaitNodes(t, "each burst counted once", nodes, valuesAre(map[string]int64{"fruit": 3, "burst": int64(rounds)}))
	for _, n := range nodes {
		n.proc.Stop()
	}
}

// retireWindow is the -idempotency-window of TestKeysRetireAfterTheWindow.
const retireWindow = 2 * time.Second

// retireMargin is crdt.RetireMargin(retireWindow): retirement waits for a
// sync time this much past the window (clock skew between members), a
// tenth of a window this short.
const retireMargin = retireWindow / 10

// TestKeysRetireAfterTheWindow runs three nodes with a 2 s window and a
// 1 s anti-entropy interval: keyed changes on each node are retired by
// their owner once the window and the skew margin have passed and every
// member has synced, then forgotten everywhere (countd_idempotency_keys 0
// on every node), and the values stay what they were. A key sent again
// after that is counted again: the design's rule that a client must not
// retry a change later than the window (docs/design.md §3).
func TestKeysRetireAfterTheWindow(t *testing.T) {
	nodes := meshNodes(t, freePorts(t, 3))
	for _, n := range nodes {
		n.args = append(n.args, "-idempotency-window="+retireWindow.String(), "-anti-entropy-interval=1s")
	}
	startAll(t, nodes...)
	api := apiclient.Client{HTTP: newClient(t, 4)}

	want := map[string]int64{}
	var lastSent time.Time // the last key's acceptance is after it
	for i, n := range nodes {
		for j := range 3 {
			lastSent = time.Now()
			counter := fmt.Sprintf("r%d", j)
			keyedSend(t, api, n, counter, int64(i+1), fmt.Sprintf("retire-%d-%d", i, j), http.StatusOK)
			want[counter] += int64(i + 1)
		}
	}
	awaitNodes(t, "every keyed change on every node", nodes, valuesAre(want))
	awaitNodes(t, "9 keys held on every node", nodes, metricsAre(map[string]func(float64) bool{mKeys: equals(9)}))
	// A replay within the window, on a node that did not take the key.
	if r := keyedSend(t, api, nodes[1], "r0", 1, "retire-0-0", http.StatusOK); !r.Replayed {
		t.Fatalf("a retry within the window was not a replay: %+v", r)
	}

	// Retirement is due at the window plus the margin; agreeTimeout past
	// that bounds the sync, the retirement's push and the forgetting.
	due := lastSent.Add(retireWindow + retireMargin)
	c := newClient(t, len(nodes))
	c.Timeout = pollTimeout
	if err := pollUntil(time.Until(due)+agreeTimeout, func() (bool, string) {
		var b []string
		ok := true
		for _, n := range nodes {
			m, err := scrape(c, n)
			if err != nil {
				return false, err.Error()
			}
			ok = ok && m[mKeys] == 0
			b = append(b, fmt.Sprintf("%s: %s=%v %s=%v", n.name, mKeys, m[mKeys], mRetired, m[mRetired]))
		}
		return ok, fmt.Sprint(b)
	}); err != nil {
		t.Fatalf("keys not forgotten %v after the window and margin: %v", agreeTimeout, err)
	}
	t.Logf("every key forgotten %v after the last change (window %v, margin %v)", time.Since(lastSent).Round(time.Millisecond), retireWindow, retireMargin)
	if time.Now().Before(due) {
		t.Fatalf("keys forgotten before the window and margin had passed (%v early)", time.Until(due))
	}
	var retired float64
	for _, n := range nodes {
		m, err := scrape(c, n)
		if err != nil {
			t.Fatal(err)
		}
		retired += m[mRetired]
	}
	if retired != 9 {
		t.Errorf("%s adds up to %v over the nodes, want 9: each key retired once, by its owner", mRetired, retired)
	}
	awaitNodes(t, "values unchanged by the retirement", nodes, valuesAre(want))

	// After the window the key is forgotten: the same change counts again.
	r := keyedSend(t, api, nodes[2], "r0", 1, "retire-0-0", http.StatusOK)
	if r.Replayed {
		t.Fatalf("a retry after the key was forgotten was a replay: %+v", r)
	}
	want["r0"]++
	awaitNodes(t, "the late retry counted again", nodes, valuesAre(want))
	for _, n := range nodes {
		n.proc.Stop()
	}
}

// pollUntil polls cond every lifecyclePoll until it holds or timeout
// passes, and returns an error with cond's last description if it never did.
func pollUntil(timeout time.Duration, cond func() (bool, string)) error {
	_, err := pollpkg.Until(context.Background(), timeout, lifecyclePoll, "condition", cond)
	return err
}
