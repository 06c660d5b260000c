package main

import (
	"context"
	"countd/node"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"
)

// Metrics the churn mode samples besides memory and disk.
const (
	mCounters  = "countd_counters"
	mEntries   = "countd_crdt_entries"
	mDeleted   = "countd_counters_deleted_total"
	mCollected = "countd_tombstones_collected_total"
	mHeapInuse = "go_memstats_heap_inuse_bytes"
)

// ChurnResult is the churn mode's work and what the nodes held over it.
type ChurnResult struct {
	// Counters is how many distinct counters were to be created, evenly
	// over Seconds, each with ?ttl=TTLSeconds (0: none); the samples go on
	// for TailSeconds after the last one.
	Counters    int     `json:"counters"`
	TTLSeconds  int     `json:"ttl_seconds"`
	Seconds     float64 `json:"seconds"`
	TailSeconds float64 `json:"tail_seconds"`
	// Created is how many creates were acknowledged, and CreateSeconds how
	// long creating took (more than Seconds when the clients fell behind).
	Created       int64   `json:"created"`
	CreateSeconds float64 `json:"create_seconds"`
	// Samples are taken every -sample from the first create to the end of
	// the tail; Peak and Final hold, per node, the largest and the last
	// value of each figure.
	Samples []ChurnSample  `json:"samples"`
	Peak    []ChurnFigures `json:"peak"`
	Final   []ChurnFigures `json:"final"`
}

// ChurnSample is one look at every node.
type ChurnSample struct {
	// Seconds is the time since the first create; Created the creates
	// acknowledged by then.
	Seconds float64        `json:"seconds"`
	Created int64          `json:"created"`
	Nodes   []ChurnFigures `json:"nodes"`
}

// ChurnFigures is what one node held at one moment; a figure that could
// not be read is null. RSS is from /proc (VmRSS); HeapInuse and the
// counts from the node's /metrics; File is the data file's size, and
// BoltInUse the part of it the current bbolt tree uses (null when every
// walk raced a commit; see boltInUse).
type ChurnFigures struct {
	RSSBytes       *float64 `json:"rss_bytes"`
	HeapInuseBytes *float64 `json:"heap_inuse_bytes"`
	FileBytes      *float64 `json:"file_bytes"`
	BoltInUseBytes *float64 `json:"bolt_in_use_bytes"`
	Counters       *float64 `json:"counters"`
	Entries        *float64 `json:"crdt_entries"`
	Expired        *float64 `json:"expired"`
	Collected      *float64 `json:"tombstones_collected"`
}

// fields lists the figures, for the peak and the table.
func (f *ChurnFigures) fields() []**float64 {
	return []**float64{&f.RSSBytes, &f.HeapInuseBytes, &f.FileBytes, &f.BoltInUseBytes,
		&f.Counters, &f.Entries, &f.Expired, &f.Collected}
}

// churnTail returns how long the churn mode samples after the last create:
// -tail, or by default the largest -ttl plus churnAfterTTL, so that every
// counter has expired and been swept, and the node has been through a
// forced GC since (the no-ttl run of the same command is as long).
func (c *Config) churnTail() time.Duration {
	if c.Tail > 0 {
		return c.Tail
	}
	longest := 0
	for _, t := range c.TTLs {
		longest = max(longest, t)
	}
	return time.Duration(longest)*time.Second + churnAfterTTL
}

// churnAfterTTL is how long the default tail goes on after the largest ttl.
// A node that has stopped allocating collects garbage only when Go's
// runtime forces a GC, every 2 minutes; the memory its collected counters
// held shows as free only after that, so the tail must be longer.
const churnAfterTTL = 3 * time.Minute

// runChurn is the churn mode: -churn-counters distinct counters, each
// incremented once with ?ttl= (none for ttl 0), created at an even rate
// over -duration by the clients (as fast as they can when they fall
// behind), then -tail more, while every -sample it records each node's
// memory, data file and counter figures.
func (b *bench) runChurn(ctx context.Context, cl *cluster, clients, ttl int) (*Result, error) {
	res := b.newResult(modeChurn, cl, clients)
	res.Counters = 0
	k := b.cfg.ChurnCounters
	prefix := fmt.Sprintf("churn%d", b.runs.Load())
	client := newLoadClient(clients, cl.auth)
	defer client.CloseIdleConnections()
	bases := cl.auth.bases(targets(cl.addrs, b.cfg.Target))
	before := b.snapshot(ctx, cl, res, false)

	prog := b.progress(cl, clients)
	prog.setPhase("create")
	start := time.Now()
	smp := b.startSampler(ctx, cl, start, &prog.countd)
	st := drive(ctx, driveSpec{client: client, token: cl.auth.token, clients: clients,
		url: churnURLs(ctx, bases, prefix, k, ttl, start, b.cfg.Duration), meter: &prog.countd})
	prog.setPhase("tail")
	sleepCtx(ctx, b.cfg.churnTail())
	samples := smp.stop(ctx)
	prog.stop()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	after := b.snapshot(ctx, cl, res, true)
	res.Countd = newSide(&st)
	res.Churn = newChurnResult(b.cfg, k, ttl, st, samples)
	b.fillStats(res, cl, before, after)
	return res, nil
}

// newChurnResult gathers a churn run's figures.
func newChurnResult(cfg *Config, k, ttl int, st loadStats, samples []ChurnSample) *ChurnResult {
	cr := &ChurnResult{Counters: k, TTLSeconds: ttl, Seconds: cfg.Duration.Seconds(),
		TailSeconds: cfg.churnTail().Seconds(), Created: st.Outcomes.OK,
		CreateSeconds: st.Elapsed.Seconds(), Samples: samples}
	if len(samples) == 0 {
		return cr
	}
	n := len(samples[0].Nodes)
	cr.Peak = make([]ChurnFigures, n)
	cr.Final = samples[len(samples)-1].Nodes
	for _, s := range samples {
		for i := range min(n, len(s.Nodes)) {
			peak, f := cr.Peak[i].fields(), s.Nodes[i].fields()
			for j := range peak {
				if v := *f[j]; v != nil && (*peak[j] == nil || *v > **peak[j]) {
					*peak[j] = ptr(*v)
				}
			}
		}
	}
	return cr
}

// churnURLs returns the URL function of the churn mode: counter i of k,
// named prefix-i, is due at start + i×over/k and sent to bases[i mod
// len(bases)] with ?ttl=ttl (none for 0). A client that asks early waits
// until its counter is due; clients that fall behind send at once.
func churnURLs(ctx context.Context, bases []string, prefix string, k, ttl int, start time.Time, over time.Duration) urlFunc {
	query := ""
	if ttl > 0 {
		query = "?ttl=" + strconv.Itoa(ttl)
	}
	var next atomic.Int64
	return func(int, uint64) (string, bool) {
		i := next.Add(1) - 1
		if i >= int64(k) {
			return "", false
		}
		sleepCtx(ctx, time.Until(start.Add(time.Duration(float64(over)*float64(i)/float64(k)))))
		if ctx.Err() != nil {
			return "", false
		}
		return bases[i%int64(len(bases))] + "/counters/" + prefix + "-" + strconv.FormatInt(i, 10) + "/increment" + query, true
	}
}

// sampler samples every node every -sample until stopped.
type sampler struct {
	b       *bench
	cl      *cluster
	start   time.Time
	created *meter
	stopc   chan struct{}
	done    chan struct{}
	mu      sync.Mutex
	samples []ChurnSample
}

// startSampler takes a first sample at once and then one every -sample.
func (b *bench) startSampler(ctx context.Context, cl *cluster, start time.Time, created *meter) *sampler {
	s := &sampler{b: b, cl: cl, start: start, created: created, stopc: make(chan struct{}), done: make(chan struct{})}
	s.take(ctx)
	go func() {
		defer close(s.done)
		t := time.NewTicker(b.cfg.Sample)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-s.stopc:
				return
			case <-t.C:
				s.take(ctx)
			}
		}
	}()
	return s
}

// stop takes a last sample (unless ctx has ended) and returns them all.
func (s *sampler) stop(ctx context.Context) []ChurnSample {
	close(s.stopc)
	<-s.done
	if ctx.Err() == nil {
		s.take(ctx)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.samples
}

// take records one sample of every node.
func (s *sampler) take(ctx context.Context) {
	sm := ChurnSample{Seconds: time.Since(s.start).Seconds(),
		Created: s.created.reqs.Load() - s.created.errs.Load(), Nodes: make([]ChurnFigures, len(s.cl.addrs))}
	for i, addr := range s.cl.addrs {
		f := &sm.Nodes[i]
		if s.cl.procs != nil {
			if ps, err := readProc(s.cl.procs[i].PID()); err == nil {
				f.RSSBytes = ptr(float64(ps.RSS))
			}
		}
		if s.cl.dataDirs != nil {
			path := filepath.Join(s.cl.dataDirs[i], node.StoreFile)
			if fi, err := os.Stat(path); err == nil {
				f.FileBytes = ptr(float64(fi.Size()))
			}
			if n, err := boltInUse(path); err == nil {
				f.BoltInUseBytes = ptr(float64(n))
			} else if !errors.Is(err, errBoltBusy) {
				s.b.logf("bbolt in-use size of %s: %v", path, err)
			}
		}
		mctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		m, err := fetchMetrics(mctx, s.cl.http, s.cl.auth.base(addr))
		cancel()
		if err != nil {
			continue
		}
		opt := func(name string, match ...string) *float64 {
			if v, ok := m.Sum(name, match...); ok {
				return ptr(v)
			}
			return nil
		}
		f.HeapInuseBytes = opt(mHeapInuse)
		f.Counters = opt(mCounters)
		f.Entries = opt(mEntries)
		f.Expired = opt(mDeleted, "reason", "expire")
		f.Collected = opt(mCollected)
		if f.RSSBytes == nil {
			f.RSSBytes = opt(mProcessRSS)
		}
	}
	s.mu.Lock()
	s.samples = append(s.samples, sm)
	s.mu.Unlock()
}

// describeChurn is the churn part of a run's heading.
func describeChurn(cr *ChurnResult) string {
	ttl := "no ttl"
	if cr.TTLSeconds > 0 {
		ttl = fmt.Sprintf("ttl=%d", cr.TTLSeconds)
	}
	return fmt.Sprintf("%s counters with %s over %gs, then %gs more", group(float64(cr.Counters)), ttl, cr.Seconds, cr.TailSeconds)
}

// printChurn prints a churn run's samples, one row per node per sample,
// then each node's peak and final figures.
func printChurn(w io.Writer, cr *ChurnResult) {
	if cr == nil {
		return
	}
	fmt.Fprintf(w, "  created %s of %s counters in %.1fs (%s/s)\n", group(float64(cr.Created)),
		group(float64(cr.Counters)), cr.CreateSeconds, group(float64(cr.Created)/max(cr.CreateSeconds, 1e-9)))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "  t s\tcreated\tnode\tRSS MB\theap MB\tfile MB\tin use MB\tcounters\tentries\texpired\tcollected\t")
	row := func(t, created, node string, f *ChurnFigures) {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", t, created, node,
			fmtMB(f.RSSBytes), fmtMB(f.HeapInuseBytes), fmtMB(f.FileBytes), fmtMB(f.BoltInUseBytes),
			fmtCount(f.Counters), fmtCount(f.Entries), fmtCount(f.Expired), fmtCount(f.Collected))
	}
	for _, s := range cr.Samples {
		for i := range s.Nodes {
			row(fmt.Sprintf("%.0f", s.Seconds), group(float64(s.Created)), strconv.Itoa(i+1), &s.Nodes[i])
		}
	}
	for i := range cr.Peak {
		row("peak", "", strconv.Itoa(i+1), &cr.Peak[i])
	}
	for i := range cr.Final {
		row("final", "", strconv.Itoa(i+1), &cr.Final[i])
	}
	tw.Flush()
}

// fmtMB formats a byte count in MB (10^6) with one decimal, or "n/a".
func fmtMB(p *float64) string {
	if p == nil {
		return "n/a"
	}
	return fmt.Sprintf("%.1f", *p/1e6)
}

// fmtCount formats a count with thousands separators, or "n/a".
func fmtCount(p *float64) string {
	if p == nil {
		return "n/a"
	}
	return group(*p)
}
