package main

import (
	"context"
	"countd/crdt"
	"countd/node"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync/atomic"
	"text/tabwriter"
	"time"
)

// The keys mode measures what idempotency keys cost a node (docs/design.md
// §3, "Keyed changes"): N changes each with its own Idempotency-Key, over
// a realistic number of counters, against N unkeyed changes of the same
// counters on a fresh cluster of as many nodes. It reads each node's
// memory and data file with the N keys held, then waits until the window
// (and, with peers, crdt.RetireMargin and the sync clock) has passed and
// every node holds no key (countd_idempotency_keys 0: retired, and
// forgotten once Stable), and reads them again.

const (
	// keysCounters is how many counters the keyed changes spread over
	// when -counters is not given.
	keysCounters = 1000
	// mKeys is the key entries a node holds, retired ones not yet
	// forgotten included.
	mKeys = "countd_idempotency_keys"
	// mRetired counts the key entries a node retired.
	mRetired = "countd_idempotency_keys_retired_total"
	// keysPoll is how often the tool asks the nodes how many keys they
	// hold while it waits for them to go.
	keysPoll = 2 * time.Second
	// keysDrainSlack is how much longer than the window and
	// crdt.RetireMargin after the last keyed change the tool waits for
	// the keys to go: time for the sync clock to pass the margin, for
	// every member to hold the retirement (Stable), and for the 1 s sweep.
	keysDrainSlack = 3 * time.Minute
)

// KeysResult is a keys-mode run: the unkeyed baseline and the keyed
// changes, each on a fresh cluster of the same size, and what every node
// held after each (figures in the cluster's order).
type KeysResult struct {
	// Keys is how many changes were made each way, over Counters
	// counters; WindowSeconds is the nodes' -idempotency-window.
	Keys          int     `json:"keys"`
	Counters      int     `json:"counters"`
	WindowSeconds float64 `json:"window_seconds"`
	// Unkeyed is the baseline's load, Baseline what the nodes held after
	// it; Held is what they held after the keyed load (Countd of the
	// Result), and Retired once no node held a key, RetiredAfterSeconds
	// after the last keyed change (null if they never got there).
	Unkeyed             Side         `json:"unkeyed"`
	Baseline            []KeyFigures `json:"baseline"`
	Held                []KeyFigures `json:"held"`
	Retired             []KeyFigures `json:"retired,omitempty"`
	RetiredAfterSeconds *float64     `json:"retired_after_seconds"`
	CountedUnkeyed      *int64       `json:"counted_unkeyed"`
	CountedHeld         *int64       `json:"counted_held"`
	CountedRetired      *int64       `json:"counted_retired"`
	PerKey              []KeyPerKey  `json:"per_key"`
}

// KeyFigures is what one node held at one moment, read right after a
// forced GC (GCForced; the node serves -pprof for it): VmRSS, the Go heap
// in use, the data file's size and the part of it bbolt's current tree
// uses (what a compaction would leave, about), and its key entries held
// and retired so far. A figure that could not be read is null.
type KeyFigures struct {
	GCForced       bool     `json:"gc_forced"`
	RSSBytes       *float64 `json:"rss_bytes"`
	HeapInuseBytes *float64 `json:"heap_inuse_bytes"`
	FileBytes      *float64 `json:"file_bytes"`
	BoltInUseBytes *float64 `json:"bolt_in_use_bytes"`
	Keys           *float64 `json:"keys"`
	KeysRetired    *float64 `json:"keys_retired"`
}

// KeyPerKey is one node's cost of a key: (keyed − unkeyed) / N, with the
// keys held and once they are gone, of each figure.
type KeyPerKey struct {
	HeldRSS      *float64 `json:"held_rss"`
	HeldHeap     *float64 `json:"held_heap_inuse"`
	HeldFile     *float64 `json:"held_file"`
	HeldInUse    *float64 `json:"held_bolt_in_use"`
	RetiredRSS   *float64 `json:"retired_rss"`
	RetiredHeap  *float64 `json:"retired_heap_inuse"`
	RetiredFile  *float64 `json:"retired_file"`
	RetiredInUse *float64 `json:"retired_bolt_in_use"`
}

// runKeysAll runs the keys mode for every client count on fresh clusters
// of n nodes with sec: the baseline on one, the keyed changes on another.
func (b *bench) runKeysAll(ctx context.Context, rep *Report, sec security, n int, clients []int) error {
	return b.runEach(rep, clients, func(c int) (*Result, error) {
		b.runs.Add(1)
		return b.runKeys(ctx, sec, n, c)
	})
}

// runKeys is one keys-mode run on n nodes with clients clients.
func (b *bench) runKeys(ctx context.Context, sec security, n, clients int) (*Result, error) {
	counters := b.cfg.Counters
	if counters == 0 {
		counters = keysCounters
	}
	kr := &KeysResult{Keys: b.cfg.Keys, Counters: counters, WindowSeconds: b.cfg.Window.Seconds()}
	prefix := "keys" + strconv.FormatInt(b.runs.Load(), 10)

	// The baseline: N unkeyed changes of the same counters.
	cl, err := b.cluster(ctx, n, sec)
	if err != nil {
		return nil, err
	}
	res := b.newResult(modeKeys, cl, clients)
	res.Counters = counters
	res.Keys = kr
	st, counted, err := b.keysLoad(ctx, cl, res, clients, keysURLs(cl.auth.bases(targets(cl.addrs, b.cfg.Target)), prefix, "", counters, b.cfg.Keys), "unkeyed")
	if err == nil {
		kr.Unkeyed, kr.CountedUnkeyed = newSide(&st), counted
		kr.Baseline = b.keyFigures(ctx, cl, res)
	}
	if cerr := cl.Close(); cerr != nil {
		fmt.Fprintln(b.stderr, "countd-bench: warning:", cerr)
	}
	if err != nil {
		return nil, err
	}

	// The keyed changes, on a fresh cluster.
	if cl, err = b.cluster(ctx, n, sec); err != nil {
		return res, err
	}
	defer func() {
		if cerr := cl.Close(); cerr != nil {
			fmt.Fprintln(b.stderr, "countd-bench: warning:", cerr)
		}
	}()
	before := b.snapshot(ctx, cl, res, false)
	st, counted, err = b.keysLoad(ctx, cl, res, clients, keysURLs(cl.auth.bases(targets(cl.addrs, b.cfg.Target)), prefix, prefix, counters, b.cfg.Keys), "keyed")
	if err != nil {
		return res, err
	}
	end := time.Now()
	res.Countd, kr.CountedHeld = newSide(&st), counted
	kr.Held = b.keyFigures(ctx, cl, res)
	for i, f := range kr.Held {
		if f.Keys != nil && *f.Keys < float64(st.Outcomes.OK) {
			addNote(res, fmt.Sprintf("node %d held %s keys for %s keyed changes: the window (%v) is shorter than the changes took, so some had retired",
				i+1, group(*f.Keys), group(float64(st.Outcomes.OK)), b.cfg.Window))
		}
	}

	prog := b.progress(cl, clients)
	prog.setPhase("retire")
	margin := time.Duration(crdt.RetireMargin(uint64(b.cfg.Window.Milliseconds()))) * time.Millisecond
	after, err := b.waitNoKeys(ctx, cl, end.Add(b.cfg.Window+margin+keysDrainSlack))
	prog.stop()
	switch {
	case ctx.Err() != nil:
		return res, ctx.Err()
	case err != nil:
		addNote(res, err.Error())
	default:
		kr.RetiredAfterSeconds = ptr(after.Sub(end).Seconds())
		if ag, err := waitAgreement(ctx, cl.http, cl.auth.bases(cl.addrs), after, b.cfg.AgreeTimeout); err == nil {
			kr.CountedRetired = ptr(counterSum(ag.Counters))
		} else if ctx.Err() == nil {
			addNote(res, "after the keys retired: "+err.Error())
		}
		kr.Retired = b.keyFigures(ctx, cl, res)
	}
	kr.PerKey = perKey(kr)
	b.fillStats(res, cl, before, b.snapshot(ctx, cl, res, true))
	return res, nil
}

// keysLoad drives one phase of the keys mode (every request once, by
// clients clients) on cl, then waits until the nodes agree, and returns
// the load and the sum of the counters they agree on (nil if they did
// not agree in time: a note on res).
func (b *bench) keysLoad(ctx context.Context, cl *cluster, res *Result, clients int, reqs keyedFunc, phase string) (loadStats, *int64, error) {
	client := newLoadClient(clients, cl.auth)
	defer client.CloseIdleConnections()
	prog := b.progress(cl, clients)
	prog.setPhase(phase)
	st := drive(ctx, driveSpec{client: client, token: cl.auth.token, clients: clients, keyed: reqs, meter: &prog.countd})
	end := time.Now()
	prog.setPhase("agree")
	ag, err := waitAgreement(ctx, cl.http, cl.auth.bases(cl.addrs), end, b.cfg.AgreeTimeout)
	prog.stop()
	if ctx.Err() != nil {
		return st, nil, ctx.Err()
	}
	if err != nil {
		addNote(res, "after the "+phase+" changes: "+err.Error())
		return st, nil, nil
	}
	return st, ptr(counterSum(ag.Counters)), nil
}

// keysURLs returns the requests of a keys-mode phase: change i of k
// increments counter prefix-(i mod counters) on bases[i mod len(bases)],
// with the Idempotency-Key keyPrefix-i (none if keyPrefix is ""); the
// clients share them out as they ask.
func keysURLs(bases []string, prefix, keyPrefix string, counters, k int) keyedFunc {
	paths := make([]string, counters)
	for i := range paths {
		paths[i] = "/counters/" + prefix + "-" + strconv.Itoa(i) + "/increment"
	}
	var next atomic.Int64
	return func(int, uint64) (string, string, bool) {
		i := next.Add(1) - 1
		if i >= int64(k) {
			return "", "", false
		}
		key := ""
		if keyPrefix != "" {
			key = keyPrefix + "-" + strconv.FormatInt(i, 10)
		}
		return bases[i%int64(len(bases))] + paths[i%int64(counters)], key, true
	}
}

// keyFigures forces a GC on every node, then reads what each holds. A
// figure it cannot read is null; a failed GC is a note on res.
func (b *bench) keyFigures(ctx context.Context, cl *cluster, res *Result) []KeyFigures {
	out := make([]KeyFigures, len(cl.addrs))
	for i, addr := range cl.addrs {
		f := &out[i]
		base := cl.auth.base(addr)
		if err := forceGC(ctx, cl.http, base); err != nil {
			addNote(res, "no forced GC, memory read as it was: "+err.Error())
		} else {
			f.GCForced = true
		}
		if cl.procs != nil {
			if ps, err := readProc(cl.procs[i].PID()); err == nil {
				f.RSSBytes = ptr(float64(ps.RSS))
			}
		}
		if cl.dataDirs != nil {
			path := filepath.Join(cl.dataDirs[i], node.StoreFile)
			if fi, err := os.Stat(path); err == nil {
				f.FileBytes = ptr(float64(fi.Size()))
			}
			if n, err := boltInUse(path); err == nil {
				f.BoltInUseBytes = ptr(float64(n))
			}
		}
		mctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		m, err := fetchMetrics(mctx, cl.http, base)
		cancel()
		if err != nil {
			addNote(res, err.Error())
			continue
		}
		opt := func(name string) *float64 {
			if v, ok := m.Sum(name); ok {
				return ptr(v)
			}
			return nil
		}
		f.HeapInuseBytes, f.Keys, f.KeysRetired = opt(mHeapInuse), opt(mKeys), opt(mRetired)
	}
	return out
}

// forceGC asks the node at base for a heap profile after a GC
// (/debug/pprof/heap?gc=1, served with -pprof), which runs runtime.GC.
func forceGC(ctx context.Context, c *http.Client, base string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/debug/pprof/heap?gc=1", nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("GC of %s: %w", base, err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GC of %s: status %d", base, resp.StatusCode)
	}
	return nil
}

// waitNoKeys polls every node's countd_idempotency_keys until all are 0,
// and returns when that was seen; an error if deadline passes first.
func (b *bench) waitNoKeys(ctx context.Context, cl *cluster, deadline time.Time) (time.Time, error) {
	var last []float64
	for {
		ms, err := fetchAll(ctx, cl.addrs, func(ctx context.Context, a string) (Metrics, error) {
			return fetchMetrics(ctx, cl.http, cl.auth.base(a))
		})
		if err == nil {
			last = last[:0]
			for _, m := range ms {
				v, _ := m.Sum(mKeys)
				last = append(last, v)
			}
			if !slices.ContainsFunc(last, func(v float64) bool { return v != 0 }) {
				return time.Now(), nil
			}
		}
		if ctx.Err() != nil {
			return time.Time{}, ctx.Err()
		}
		if time.Now().After(deadline) {
			return time.Time{}, errors.Join(fmt.Errorf("the nodes still held %v keys at the deadline", last), err)
		}
		sleepCtx(ctx, keysPoll)
	}
}

// perKey returns each node's (keyed − unkeyed) / N of every figure.
func perKey(kr *KeysResult) []KeyPerKey {
	if kr.Keys == 0 {
		return nil
	}
	diff := func(a, base *float64) *float64 {
		if a == nil || base == nil {
			return nil
		}
		return ptr((*a - *base) / float64(kr.Keys))
	}
	out := make([]KeyPerKey, len(kr.Held))
	for i := range out {
		if i >= len(kr.Baseline) {
			break
		}
		base, held := kr.Baseline[i], kr.Held[i]
		p := &out[i]
		p.HeldRSS, p.HeldHeap = diff(held.RSSBytes, base.RSSBytes), diff(held.HeapInuseBytes, base.HeapInuseBytes)
		p.HeldFile, p.HeldInUse = diff(held.FileBytes, base.FileBytes), diff(held.BoltInUseBytes, base.BoltInUseBytes)
		if i < len(kr.Retired) {
			r := kr.Retired[i]
			p.RetiredRSS, p.RetiredHeap = diff(r.RSSBytes, base.RSSBytes), diff(r.HeapInuseBytes, base.HeapInuseBytes)
			p.RetiredFile, p.RetiredInUse = diff(r.FileBytes, base.FileBytes), diff(r.BoltInUseBytes, base.BoltInUseBytes)
		}
	}
	return out
}

// describeKeys is the keys part of a run's heading.
func describeKeys(kr *KeysResult) string {
	return fmt.Sprintf("%s changes keyed and as many unkeyed over %d counters, -idempotency-window=%gs",
		group(float64(kr.Keys)), kr.Counters, kr.WindowSeconds)
}

// printKeys prints a keys-mode run's table: each node's figures after the
// unkeyed changes, with the keys held, and once they retired, then the
// cost per key.
func printKeys(w io.Writer, kr *KeysResult) {
	if kr == nil {
		return
	}
	fmt.Fprintf(w, "  unkeyed: %s req/s (%s ok in %.1fs); counted %s unkeyed, %s keyed with the keys held, %s once retired; retired %s s after the last keyed change\n",
		group(kr.Unkeyed.Throughput), group(float64(kr.Unkeyed.OK)), kr.Unkeyed.Seconds,
		fmtInt(kr.CountedUnkeyed), fmtInt(kr.CountedHeld), fmtInt(kr.CountedRetired), fmtFloat(kr.RetiredAfterSeconds, "%.0f"))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "  \tstate\tnode\tRSS MB\theap MB\tfile MB\tin use MB\tkeys\tretired\tGC\t")
	rows := func(state string, fs []KeyFigures) {
		for i := range fs {
			f := &fs[i]
			fmt.Fprintf(tw, "  \t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%v\t\n", state, i+1, fmtMB(f.RSSBytes), fmtMB(f.HeapInuseBytes),
				fmtMB(f.FileBytes), fmtMB(f.BoltInUseBytes), fmtCount(f.Keys), fmtCount(f.KeysRetired), f.GCForced)
		}
	}
	rows("unkeyed", kr.Baseline)
	rows("keys held", kr.Held)
	rows("retired", kr.Retired)
	tw.Flush()
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "  \tbytes per key\tnode\tRSS\theap\tfile\tin use\t")
	for i, p := range kr.PerKey {
		fmt.Fprintf(tw, "  \theld\t%d\t%s\t%s\t%s\t%s\t\n", i+1, fmtFloat(p.HeldRSS, "%.0f"), fmtFloat(p.HeldHeap, "%.0f"),
			fmtFloat(p.HeldFile, "%.0f"), fmtFloat(p.HeldInUse, "%.0f"))
	}
	for i, p := range kr.PerKey {
		if kr.Retired != nil {
			fmt.Fprintf(tw, "  \tretired\t%d\t%s\t%s\t%s\t%s\t\n", i+1, fmtFloat(p.RetiredRSS, "%.0f"), fmtFloat(p.RetiredHeap, "%.0f"),
				fmtFloat(p.RetiredFile, "%.0f"), fmtFloat(p.RetiredInUse, "%.0f"))
		}
	}
	tw.Flush()
}

// fmtInt formats a count, or "n/a".
func fmtInt(p *int64) string {
	if p == nil {
		return "n/a"
	}
	return group(float64(*p))
}
