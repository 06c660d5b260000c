package e2e

// Helpers for the counter lifecycle tests (issue 12): scraping /metrics,
// reading one counter, sending one change per counter from concurrent
// clients, polling every node for a condition, and measuring a stopped
// node's bbolt data file.

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	bolt "go.etcd.io/bbolt"

	"countd/internal/apiclient"
	pollpkg "countd/internal/poll"
)

// The lifecycle metrics (README, "Metrics").
const (
	mCounters  = "countd_counters"                   // live counters
	mEntries   = "countd_crdt_entries"               // entries held, tombstones and shadows included
	mDeleted   = "countd_counters_deleted_total"     // by reason: delete, expire
	mCollected = "countd_tombstones_collected_total" // dead counters forgotten
)

// storeFile is the node's bbolt file in its data dir (docs/design.md,
// "Storage"; node.StoreFile, which this package does not import).
const storeFile = "countd.db"

// lifecyclePoll is how often the lifecycle tests poll the nodes: each poll
// reads every counter of every node, so it is slower than pollInterval.
const lifecyclePoll = 50 * time.Millisecond

// scrape returns the samples of n's GET /metrics as "name" or
// `name{label="value"}` -> value (counters, gauges and untyped only).
func scrape(c *http.Client, n *clusterNode) (map[string]float64, error) {
	resp, err := c.Get(n.url() + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("GET /metrics: %w", err)
	}
	out := make(map[string]float64)
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			key := name
			for _, l := range m.GetLabel() {
				key += fmt.Sprintf("{%s=%q}", l.GetName(), l.GetValue())
			}
			switch {
			case m.Counter != nil:
				out[key] = m.GetCounter().GetValue()
			case m.Gauge != nil:
				out[key] = m.GetGauge().GetValue()
			case m.Untyped != nil:
				out[key] = m.GetUntyped().GetValue()
			}
		}
	}
	return out, nil
}

// counterReply is GET /counters/{name}.
type counterReply struct {
	Counter   string `json:"counter"`
	Value     int64  `json:"value"`
	ExpiresIn int64  `json:"expires_in"`
}

// getOne returns n's GET /counters/{name}, which must answer 200.
func getOne(c *http.Client, n *clusterNode, name string) (counterReply, error) {
	var r counterReply
	err := apiclient.Client{HTTP: c}.GetJSON(context.Background(), n.url(), "/counters/"+url.PathEscape(name), &r)
	if err == nil && r.Counter != name {
		err = fmt.Errorf("GET /counters/%s names counter %q", name, r.Counter)
	}
	return r, err
}

// awaitNodes polls every node until cond holds for each, and fails the test
// at agreeTimeout with what cond last said of each node. It fails at once
// if a node's process exits.
func awaitNodes(t *testing.T, what string, nodes []*clusterNode, cond func(c *http.Client, n *clusterNode) (bool, string)) time.Duration {
	t.Helper()
	c := newClient(t, len(nodes))
	c.Timeout = pollTimeout
	took, err := pollpkg.Until(context.Background(), agreeTimeout, lifecyclePoll, what, func() (bool, string) {
		ok := true
		var b strings.Builder
		for _, n := range nodes {
			if n.proc.exited() {
				return true, "" // reported below
			}
			good, saw := cond(c, n)
			ok = ok && good
			fmt.Fprintf(&b, "\n  %s: %s", n.name, saw)
		}
		return ok, b.String()
	})
	for _, n := range nodes {
		if n.proc.exited() {
			t.Fatalf("%s: %s (pid %d) exited: %v", what, n.name, n.proc.PID(), n.proc.Err())
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: after %v", what, took.Round(time.Millisecond))
	return took
}

// valuesAre is a condition for awaitNodes: the node's GET /counters is
// exactly want (a counter absent from want must be absent from the reply).
func valuesAre(want map[string]int64) func(c *http.Client, n *clusterNode) (bool, string) {
	return func(c *http.Client, n *clusterNode) (bool, string) {
		got, err := apiclient.Client{HTTP: c}.Counters(context.Background(), n.url())
		if err != nil {
			return false, err.Error()
		}
		return diffValues(got, want)
	}
}

// diffValues reports whether got equals want and, if not, the first few
// differences.
func diffValues(got, want map[string]int64) (bool, string) {
	var diffs []string
	for name, w := range want {
		if g, ok := got[name]; !ok || g != w {
			diffs = append(diffs, fmt.Sprintf("%s=%s want %d", name, orAbsent(g, ok), w))
		}
	}
	for name, g := range got {
		if _, ok := want[name]; !ok {
			diffs = append(diffs, fmt.Sprintf("%s=%d want absent", name, g))
		}
	}
	if len(diffs) == 0 {
		return true, fmt.Sprintf("all %d counters as wanted", len(want))
	}
	n := len(diffs)
	if n > 5 {
		diffs = diffs[:5]
	}
	return false, fmt.Sprintf("%d counters differ: %s", n, strings.Join(diffs, ", "))
}

func orAbsent(v int64, ok bool) string {
	if !ok {
		return "absent"
	}
	return fmt.Sprint(v)
}

// metricsAre is a condition for awaitNodes: every named sample of the
// node's /metrics passes its test.
func metricsAre(want map[string]func(float64) bool) func(c *http.Client, n *clusterNode) (bool, string) {
	return func(c *http.Client, n *clusterNode) (bool, string) {
		m, err := scrape(c, n)
		if err != nil {
			return false, err.Error()
		}
		ok := true
		var b strings.Builder
		for name, test := range want {
			v, found := m[name]
			ok = ok && found && test(v)
			fmt.Fprintf(&b, "%s=%v ", name, orMissing(v, found))
		}
		return ok, b.String()
	}
}

func orMissing(v float64, ok bool) string {
	if !ok {
		return "missing"
	}
	return fmt.Sprint(v)
}

// equals and atLeast are tests for metricsAre.
func equals(want float64) func(float64) bool  { return func(v float64) bool { return v == want } }
func atLeast(want float64) func(float64) bool { return func(v float64) bool { return v >= want } }

// counterNames returns n counter names: prefix0000, prefix0001, ...
func counterNames(prefix string, n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("%s%04d", prefix, i)
	}
	return names
}

// changeEach sends one change to each counter in names, of delta(name), to
// the node at n from workers concurrent clients, with ?ttl=ttl if ttl > 0,
// and records every result in ledger under n's name. It returns the
// results by counter.
func changeEach(t *testing.T, n *clusterNode, names []string, delta func(string) int64, ttl int64, workers int, ledger *apiclient.Ledger) map[string]apiclient.Result {
	t.Helper()
	c := newClient(t, workers)
	c.Timeout = requestTimeout
	defer c.CloseIdleConnections()
	api := apiclient.Client{HTTP: c}
	work := make(chan string)
	var mu sync.Mutex
	results := make(map[string]apiclient.Result, len(names))
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for name := range work {
				d := delta(name)
				r := api.ChangeTTL(context.Background(), n.url(), name, d, ttl)
				ledger.Record(n.name, name, d, r)
				mu.Lock()
				results[name] = r
				mu.Unlock()
			}
		})
	}
	for _, name := range names {
		work <- name
	}
	close(work)
	wg.Wait()
	return results
}

// dataFile is n's bbolt file.
func (n *clusterNode) dataFile(t *testing.T) string {
	t.Helper()
	for _, a := range n.args {
		if dir, ok := strings.CutPrefix(a, "-data-dir="); ok {
			return filepath.Join(dir, storeFile)
		}
	}
	t.Fatalf("%s has no -data-dir", n.name)
	return ""
}

// fileUse is what a stopped node's bbolt file holds. bbolt never shrinks
// its file: pages a transaction frees go on its freelist and later writes
// reuse them. So the file's size only says how much the file ever needed;
// the pages in use (the high-water mark less the free and pending pages)
// say how much it needs now.
type fileUse struct {
	bytes    int64 // the file's size on disk
	pageSize int
	pages    int      // the high-water mark: pages the file has ever used
	inUse    int      // pages less the free and pending ones
	entries  int      // keys in the entries bucket
	sample   []string // the first few entries, for messages
}

func (u fileUse) String() string {
	s := fmt.Sprintf("%d bytes on disk, %d pages of %d bytes ever used, %d in use (%d KiB), %d entries",
		u.bytes, u.pages, u.pageSize, u.inUse, u.inUse*u.pageSize/1024, u.entries)
	if len(u.sample) > 0 {
		s += fmt.Sprintf(" (first: %s)", strings.Join(u.sample, ", "))
	}
	return s
}

// measure opens n's data file read-only, which its process must have
// closed, and measures it.
func measure(t *testing.T, n *clusterNode) fileUse {
	t.Helper()
	path := n.dataFile(t)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: exitTimeout, PreLoadFreelist: true})
	if err != nil {
		t.Fatalf("open %s of %s: %v", path, n.name, err)
	}
	defer db.Close()
	u := fileUse{bytes: fi.Size(), pageSize: db.Info().PageSize}
	err = db.View(func(tx *bolt.Tx) error {
		u.pages = int(tx.Size()) / u.pageSize
		if b := tx.Bucket([]byte("entries")); b != nil {
			u.entries = b.Stats().KeyN
			cur := b.Cursor()
			for k, v := cur.First(); k != nil && len(u.sample) < 4; k, v = cur.Next() {
				u.sample = append(u.sample, fmt.Sprintf("%q=%x", k, v))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	st := db.Stats()
	u.inUse = u.pages - st.FreePageN - st.PendingPageN
	return u
}
