package chaos

import (
	"context"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"
	"time"

	"countd/actors"
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
// stopped, and returns each one broken, described. l holds the changes of
// the schedule's plain counters, h the operations on its lifecycle
// counters (life); their bounds are those of docs/invariants.md. The
// counters named in exact were changed with Idempotency-Keys, each sent
// until its outcome was known: each must end at exactly its acknowledged
// sum, and a change whose outcome stayed unknown is a violation of its
// own. It waits
// at most timeout for each of convergence and membership, counted for
// convergence from the last expiry the clients set (plus a sweep).
func Check(c *testcluster.Cluster, l *apiclient.Ledger, h *History, life Lifecycle, exact []string, timeout time.Duration) []string {
	var out []string
	bounds := l.Bounds()
	for _, name := range exact {
		b := bounds[name]
		if b.Unknowns > 0 {
			out = append(out, fmt.Sprintf("keyed changes: %d changes of counter %s stayed unknown, sent again for %v (errors seen: %s)",
				b.Unknowns, name, resendTimeout, l.Errors()))
		}
		bounds[name] = apiclient.Bounds{Acked: b.Acked, Lo: b.Acked, Hi: b.Acked}
	}
	want := expect{
		bounds:   bounds,
		deleted:  h.DeleteBounds(life.Deleted),
		expiring: life.Expiring,
		maxTTL:   time.Duration(slices.Max(append([]int64{0}, life.TTLs...))) * time.Second,
	}
	if last := h.ExpiryDeadline(life.Expiring); !last.IsZero() {
		want.quiet = last.Add(actors.DefaultSweep + replicated)
	}
	if v := checkCounters(c, want, timeout); v != "" {
		out = append(out, v)
	}
	out = append(out, checkMembership(c, timeout)...)
	return out
}

// replicated bounds how long a healed cluster takes to pass a sweep's
// delete on to every node.
const replicated = 500 * time.Millisecond

// expect is what the counters of a healed cluster must show.
type expect struct {
	bounds   map[string]apiclient.Bounds // plain counters: the ledger's bounds
	deleted  map[string]DeleteBounds     // counters deleted, never expiring
	expiring []string                    // counters that must be gone everywhere
	quiet    time.Time                   // after this, every expiry the clients set was swept everywhere
	maxTTL   time.Duration               // the longest ttl the clients set
}

// all returns the bounds of every counter: a counter that expires must
// read 0 (it is gone), one nobody changed too.
func (e expect) all() map[string]apiclient.Bounds {
	out := maps.Clone(e.bounds)
	if out == nil {
		out = map[string]apiclient.Bounds{}
	}
	for name, b := range e.deleted {
		out[name] = b.Bounds
	}
	for _, name := range e.expiring {
		out[name] = apiclient.Bounds{}
	}
	return out
}

// holds reports whether obs, made at the time it was made, meets every
// expectation: the nodes agree, every value lies within its bounds, and
// no expiring counter is listed once every node has swept its expiry. A
// read omits an expired counter at once, but a counter can come back after
// the sweeps (docs/invariants.md, "Expiries"), so the check waits for them.
func (e expect) holds(obs observation) bool {
	return obs.agreed() && len(obs.outside(e.all())) == 0 && len(obs.listed(e.expiring)) == 0 && obs.at.After(e.quiet)
}

// checkCounters waits until every live node lists the same counters with
// the same values and each value lies within its bounds (invariants 1 and
// 2, and 3 across crash-restarts; docs/invariants.md for deletes and
// expiries), then reads each expiring counter on every node.
func checkCounters(c *testcluster.Cluster, want expect, timeout time.Duration) string {
	var last observation
	var lastKey string
	var same time.Time
	if wait := time.Until(want.quiet); wait > 0 {
		timeout += wait
	}
	poll.Until(context.Background(), timeout, testcluster.PollEvery, "convergence", func() (bool, string) {
		obs := observe(c)
		last = obs
		if want.holds(obs) {
			return true, ""
		}
		key := obs.String()
		if key != lastKey {
			lastKey, same = key, obs.at
		}
		// Settled since the last expiry was swept: nothing will repair
		// it, so stop waiting. A listed expiring counter may be a window
		// an Unknown operation opened late: give it its longest ttl.
		settled := settledFor
		if len(obs.listed(want.expiring)) > 0 {
			settled += want.maxTTL + actors.DefaultSweep
		}
		// An observation begun before quiet proves nothing of the sweeps
		// (a loaded node can take seconds to answer).
		return obs.agreed() && obs.at.After(want.quiet) && time.Since(later(same, want.quiet)) >= settled, key
	})
	if want.holds(last) {
		return readsGone(c, want.expiring)
	}
	bounds := want.all()
	var b strings.Builder
	if !last.agreed() {
		fmt.Fprintf(&b, "convergence: after %v the live nodes still disagree: %s", timeout, last)
	} else {
		fmt.Fprintf(&b, "every live node agrees, but:")
		for _, name := range last.outside(bounds) {
			if slices.Contains(want.expiring, name) {
				continue // said below
			}
			v, bd := last.value(name), bounds[name]
			what := "acknowledged changes lost"
			if v > bd.Hi {
				what = "changes counted twice"
			}
			if db, ok := want.deleted[name]; ok {
				what = "changes that must survive the deletes lost"
				if v > bd.Hi {
					what = "changes reset by a delete (or failed) counted"
				}
				fmt.Fprintf(&b, " counter %s = %d, want %s (%s: off by %d);", name, v, db, what, offBy(v, bd))
				continue
			}
			fmt.Fprintf(&b, " counter %s = %d, want %s (%s: off by %d);", name, v, bd, what, offBy(v, bd))
		}
		if len(last.listed(want.expiring)) == 0 && !last.at.After(want.quiet) {
			fmt.Fprintf(&b, " the check gave up before the expiries were swept;")
		}
		for _, name := range last.listed(want.expiring) {
			fmt.Fprintf(&b, " counter %s = %d is still listed %v after its last expiry was due and swept, with no change since (%s);",
				name, last.value(name), time.Since(want.quiet).Round(time.Millisecond), expiresIn(c, last.nodes[0], name))
		}
	}
	fmt.Fprintf(&b, " bounds: %s", describeBounds(want.bounds))
	if len(want.deleted) > 0 {
		fmt.Fprintf(&b, "; deleted counters: %s", describeDeleteBounds(want.deleted))
	}
	return b.String()
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// expiresIn describes what node says of counter's expiry, for a message.
func expiresIn(c *testcluster.Cluster, node, counter string) string {
	var r struct {
		Value     int64 `json:"value"`
		ExpiresIn int64 `json:"expires_in"`
	}
	cl := apiclient.Client{HTTP: c.HTTP()}
	if err := cl.GetJSON(context.Background(), c.URL(node), "/counters/"+url.PathEscape(counter), &r); err != nil {
		return err.Error()
	}
	if r.ExpiresIn == 0 {
		return fmt.Sprintf("%s reads it as %d with no expiry", node, r.Value)
	}
	return fmt.Sprintf("%s reads it as %d, expiring in %ds", node, r.Value, r.ExpiresIn)
}

// readsGone reads each expiring counter on every live node with GET
// /counters/{name}, which must answer 0 as for a counter never created.
func readsGone(c *testcluster.Cluster, expiring []string) string {
	var bad []string
	for _, name := range c.Live() {
		for _, counter := range expiring {
			v, err := c.Get(name, counter)
			if err != nil || v != 0 {
				bad = append(bad, fmt.Sprintf("%s reads %s = %d (%v)", name, counter, v, err))
			}
		}
	}
	if len(bad) == 0 {
		return ""
	}
	return "expiry: GET /counters omits the expired counters, but " + strings.Join(bad, ", ")
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
	at     time.Time // when the first read began
	nodes  []string
	values []map[string]int64 // nil where the read failed
	errs   []error
}

func observe(c *testcluster.Cluster) observation {
	o := observation{at: time.Now()}
	for _, name := range c.Live() {
		v, err := c.Counters(name)
		o.nodes = append(o.nodes, name)
		o.values = append(o.values, v)
		o.errs = append(o.errs, err)
	}
	return o
}

// agreed reports whether every node answered with the same counters and
// the same value of each: a counter deleted on one node and live at 0 on
// another is a disagreement.
func (o observation) agreed() bool {
	for i := range o.nodes {
		if o.errs[i] != nil {
			return false
		}
	}
	for i := range o.nodes {
		if !maps.Equal(o.values[i], o.values[0]) {
			return false
		}
	}
	return true
}

// listed returns those of names that some node lists.
func (o observation) listed(names []string) []string {
	var out []string
	for _, name := range names {
		for _, v := range o.values {
			if _, ok := v[name]; ok {
				out = append(out, name)
				break
			}
		}
	}
	return out
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
