package chaos

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"countd/internal/apiclient"
	"countd/internal/poll"
	"countd/internal/testcluster"
)

// CheckTimeout bounds how long the checks wait, after the heal, for the
// cluster to converge and for membership to agree.
const CheckTimeout = 20 * time.Second

// settledFor is how long an agreed observation must stay the same before a
// value outside its bounds is reported without waiting for CheckTimeout:
// the cluster agrees and nothing moves, so nothing will repair it.
const settledFor = 3 * time.Second

// Check verifies the invariants on a healed cluster whose clients have
// stopped, and returns each one broken, described. It waits at most
// timeout for each of convergence and membership.
func Check(c *testcluster.Cluster, l *apiclient.Ledger, timeout time.Duration) []string {
	var out []string
	if v := checkCounters(c, l.Bounds(), timeout); v != "" {
		out = append(out, v)
	}
	out = append(out, checkMembership(c, timeout)...)
	return out
}

// checkCounters waits until every live node reports the same value of
// every counter and each value lies within its bounds (invariants 1 and 2,
// and 3 across crash-restarts).
func checkCounters(c *testcluster.Cluster, bounds map[string]apiclient.Bounds, timeout time.Duration) string {
	var last observation
	var lastKey string
	var same time.Time
	poll.Until(context.Background(), timeout, testcluster.PollEvery, "convergence", func() (bool, string) {
		obs := observe(c)
		last = obs
		if obs.agreed() && len(obs.outside(bounds)) == 0 {
			return true, ""
		}
		key := obs.String()
		if key != lastKey {
			lastKey, same = key, time.Now()
		}
		// Settled: nothing will repair it, so stop waiting.
		return obs.agreed() && time.Since(same) >= settledFor, key
	})
	if last.agreed() && len(last.outside(bounds)) == 0 {
		return ""
	}
	var b strings.Builder
	if !last.agreed() {
		fmt.Fprintf(&b, "convergence: after %v the live nodes still disagree: %s", timeout, last)
	} else {
		fmt.Fprintf(&b, "every live node agrees, but:")
		for _, name := range last.outside(bounds) {
			v, bd := last.value(name), bounds[name]
			what := "acknowledged changes lost"
			if v > bd.Hi {
				what = "changes counted twice"
			}
			fmt.Fprintf(&b, " counter %s = %d, want %s (%s: off by %d);", name, v, bd, what, offBy(v, bd))
		}
	}
	fmt.Fprintf(&b, " bounds: %s", describeBounds(bounds))
	return b.String()
}

func offBy(v int64, b apiclient.Bounds) int64 {
	if v < b.Lo {
		return v - b.Lo
	}
	return v - b.Hi
}

func describeBounds(bounds map[string]apiclient.Bounds) string {
	var parts []string
	for _, name := range slices.Sorted(maps.Keys(bounds)) {
		parts = append(parts, fmt.Sprintf("%s %s", name, bounds[name]))
	}
	return strings.Join(parts, ", ")
}

// checkMembership waits until every live node lists every other one as
// alive and lists nothing else; a removed node listed at any time is a
// violation at once.
func checkMembership(c *testcluster.Cluster, timeout time.Duration) []string {
	removed := map[string]bool{}
	for _, name := range c.Removed() {
		removed[c.Addr(name)] = true
	}
	var out []string
	_, err := poll.Until(context.Background(), timeout, testcluster.PollEvery, "every live node lists exactly the other live nodes, all alive", func() (bool, string) {
		ok, desc := meshed(c, func(name string, rows []apiclient.PeerRow) {
			for _, r := range rows {
				if removed[r.Addr] {
					v := fmt.Sprintf("membership: removed node %s is listed again by %s: %s",
						c.NameOf(r.Addr), name, c.DescribePeers(rows))
					if !slices.Contains(out, v) {
						out = append(out, v)
					}
				}
			}
		})
		return ok && len(out) == 0, desc
	})
	if err != nil && len(out) == 0 {
		out = append(out, "membership: "+err.Error())
	}
	return out
}

// meshed reports whether every live node lists exactly the other live
// nodes, all alive, and describes the tables that do not. It hands each
// table it reads to seen, if set.
func meshed(c *testcluster.Cluster, seen func(name string, rows []apiclient.PeerRow)) (bool, string) {
	live := c.Live()
	var bad []string
	for _, name := range live {
		rows, err := c.Peers(name)
		if err != nil {
			bad = append(bad, fmt.Sprintf("%s: %v", name, err))
			continue
		}
		if seen != nil {
			seen(name, rows)
		}
		want := map[string]string{}
		for _, other := range live {
			if other != name {
				want[other] = "alive"
			}
		}
		if !maps.Equal(apiclient.PeerStates(rows, c.NameOf), want) {
			bad = append(bad, fmt.Sprintf("%s lists %s", name, c.DescribePeers(rows)))
		}
	}
	return len(bad) == 0, strings.Join(bad, "; ")
}

// observation is every live node's GET /counters at one moment.
type observation struct {
	nodes  []string
	values []map[string]int64 // nil where the read failed
	errs   []error
}

func observe(c *testcluster.Cluster) observation {
	var o observation
	for _, name := range c.Live() {
		v, err := c.Counters(name)
		o.nodes = append(o.nodes, name)
		o.values = append(o.values, v)
		o.errs = append(o.errs, err)
	}
	return o
}

// agreed reports whether every node answered with the same value of every
// counter (a counter a node does not list counts as 0).
func (o observation) agreed() bool {
	for i := range o.nodes {
		if o.errs[i] != nil {
			return false
		}
	}
	for _, name := range o.counters() {
		for i := range o.nodes {
			if o.values[i][name] != o.values[0][name] {
				return false
			}
		}
	}
	return true
}

// counters returns every counter any node lists, sorted.
func (o observation) counters() []string {
	var out []string
	for _, v := range o.values {
		out = slices.AppendSeq(out, maps.Keys(v))
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// value returns the first node's value of a counter.
func (o observation) value(name string) int64 {
	if len(o.values) == 0 {
		return 0
	}
	return o.values[0][name]
}

// outside returns the counters whose value (on the first node) is outside
// their bounds; a counter no client changed must be 0.
func (o observation) outside(bounds map[string]apiclient.Bounds) []string {
	names := o.counters()
	for name := range bounds {
		names = append(names, name)
	}
	slices.Sort(names)
	names = slices.Compact(names)
	var out []string
	for _, name := range names {
		v, b := o.value(name), bounds[name]
		if v < b.Lo || v > b.Hi {
			out = append(out, name)
		}
	}
	return out
}

func (o observation) String() string {
	parts := make([]string, len(o.nodes))
	for i, n := range o.nodes {
		if o.errs[i] != nil {
			parts[i] = fmt.Sprintf("%s: %v", n, o.errs[i])
			continue
		}
		var kv []string
		for _, name := range slices.Sorted(maps.Keys(o.values[i])) {
			kv = append(kv, fmt.Sprintf("%s=%d", name, o.values[i][name]))
		}
		parts[i] = n + "{" + strings.Join(kv, " ") + "}"
	}
	return strings.Join(parts, " ")
}
