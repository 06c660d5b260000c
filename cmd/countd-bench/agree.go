package main

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"strings"
	"sync"
	"time"

	"countd/internal/apiclient"
	"countd/internal/poll"
)

// fetchAll runs get on every node at once and returns the results in order,
// or the first error.
func fetchAll[T any](ctx context.Context, addrs []string, get func(context.Context, string) (T, error)) ([]T, error) {
	out := make([]T, len(addrs))
	errs := make([]error, len(addrs))
	var wg sync.WaitGroup
	for i, a := range addrs {
		wg.Go(func() { out[i], errs[i] = get(ctx, a) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// agreement is the outcome of waitAgreement.
type agreement struct {
	// After is the time from since until the end of the first poll round
	// in which every node reported the same counters: an upper bound, off
	// by at most one round (about a millisecond on loopback for small
	// states).
	After time.Duration
	// Counters is what they agreed on.
	Counters map[string]int64
	// Polls is how many rounds it took.
	Polls int
}

// waitAgreement polls GET /counters on every node (bases are their base
// URLs, "http://host:port"), all at once, until every
// node reports the same counters, and measures the time from since. Between
// rounds it waits as long as the last round took (at least a millisecond),
// so polling a large state does not crowd out the nodes it measures.
func waitAgreement(ctx context.Context, c *http.Client, bases []string, since time.Time, timeout time.Duration) (agreement, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var lastErr error
	var last []map[string]int64
	for polls := 1; ; polls++ {
		t0 := time.Now()
		states, err := fetchAll(ctx, bases, func(ctx context.Context, a string) (map[string]int64, error) {
			return apiclient.Client{HTTP: c}.Counters(ctx, a)
		})
		if err == nil && allEqual(states) {
			return agreement{After: time.Since(since), Counters: states[0], Polls: polls}, nil
		}
		switch {
		case err == nil:
			last, lastErr = states, nil
		case ctx.Err() == nil: // not just the deadline cutting a round short
			lastErr = err
		}
		pause := max(time.Since(t0), time.Millisecond)
		select {
		case <-ctx.Done():
			if lastErr == nil {
				lastErr = fmt.Errorf("last round: %s", describeDisagreement(bases, last))
			}
			return agreement{}, fmt.Errorf("nodes did not agree within %v: %w", timeout, lastErr)
		case <-time.After(pause):
		}
	}
}

// allEqual reports whether every map equals the first.
func allEqual(states []map[string]int64) bool {
	for _, s := range states[1:] {
		if !maps.Equal(s, states[0]) {
			return false
		}
	}
	return true
}

// describeDisagreement names, for an error message, how many counters each
// node had and the total of their values.
func describeDisagreement(addrs []string, states []map[string]int64) string {
	if len(states) != len(addrs) {
		return "no complete round"
	}
	parts := make([]string, len(addrs))
	for i, s := range states {
		parts[i] = fmt.Sprintf("%s has %d counters summing to %d", addrs[i], len(s), counterSum(s))
	}
	return strings.Join(parts, "; ")
}

// counterSum returns the sum of every counter's value.
func counterSum(m map[string]int64) int64 {
	var s int64
	for _, v := range m {
		s += v
	}
	return s
}

// waitReady polls the nodes every 50 ms until each answers GET /health and,
// for nodes the tool started, its GET /peers lists every other node alive.
// It fails early if a started node exits.
func waitReady(ctx context.Context, cl *cluster, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c := &http.Client{Timeout: 2 * time.Second, Transport: cl.auth.transport(&http.Transport{})}
	defer c.CloseIdleConnections()
	var lastErr, exited error
	_, err := poll.Until(ctx, timeout, 50*time.Millisecond, "nodes ready", func() (bool, string) {
		if exited = cl.exitedNode(); exited != nil {
			return true, "" // reported below
		}
		_, lastErr = fetchAll(ctx, cl.addrs, func(ctx context.Context, a string) (struct{}, error) {
			return struct{}{}, nodeReady(ctx, c, cl.auth.base(a), a, cl.addrs, cl.procs != nil)
		})
		return lastErr == nil, fmt.Sprint(lastErr)
	})
	switch {
	case exited != nil:
		return exited
	case err == nil:
		return nil
	}
	if exited = cl.exitedNode(); exited != nil {
		return exited
	}
	if lastErr == nil {
		lastErr = err
	}
	return fmt.Errorf("nodes not ready within %v: %w", timeout, lastErr)
}

// nodeReady checks one node, addr at base URL base: it answers /health and, if checkPeers, lists
// every other address in all alive in GET /peers.
func nodeReady(ctx context.Context, c *http.Client, base, addr string, all []string, checkPeers bool) error {
	api := apiclient.Client{HTTP: c}
	var health struct {
		Status string `json:"status"`
	}
	if err := api.GetJSON(ctx, base, "/health", &health); err != nil {
		return err
	}
	if health.Status != "ok" {
		return fmt.Errorf("%s: health status %q", addr, health.Status)
	}
	if !checkPeers {
		return nil
	}
	rows, err := api.Peers(ctx, base)
	if err != nil {
		return err
	}
	state := apiclient.PeerStates(rows, nil)
	for _, other := range all {
		if other != addr && state[other] != "alive" {
			return fmt.Errorf("%s sees %s as %q", addr, other, state[other])
		}
	}
	return nil
}
