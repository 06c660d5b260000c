package main

import (
	"context"
	"errors"
	"slices"
	"time"
)

// snapshot is what the nodes said about themselves at one moment: their
// /metrics and, for nodes the tool started, /proc.
type snapshot struct {
	at time.Time
	// metrics holds one scrape per node, in the cluster's order; nil when
	// any node could not be scraped.
	metrics []Metrics
	// procs holds /proc figures per node; nil for an external cluster or
	// when any could not be read.
	procs []procStat
}

// snapshot scrapes every node. A failure becomes a note on res (once), and
// the figures that depend on it are n/a. The /proc figures are read after
// the scrape at the start of a run (end false) and before it at the end, so
// that the CPU the scrapes cost the nodes falls outside the window measured.
func (b *bench) snapshot(ctx context.Context, cl *cluster, res *Result, end bool) snapshot {
	var s snapshot
	if !end && cl.peer == "" {
		s.metrics = b.scrape(ctx, cl, res)
	}
	s.at = time.Now()
	if cl.procs != nil {
		s.procs = make([]procStat, len(cl.procs))
		for i, p := range cl.procs {
			ps, err := readProc(p.PID())
			if err != nil {
				addNote(res, err.Error())
				s.procs = nil
				break
			}
			s.procs[i] = ps
		}
	}
	if end && cl.peer == "" {
		s.metrics = b.scrape(ctx, cl, res)
	}
	return s
}

// scrape returns every node's /metrics, or nil (and a note) if any fails.
func (b *bench) scrape(ctx context.Context, cl *cluster, res *Result) []Metrics {
	m, err := fetchAll(ctx, cl.addrs, func(ctx context.Context, a string) (Metrics, error) {
		return fetchMetrics(ctx, cl.http, cl.auth.base(a))
	})
	switch {
	case errors.Is(err, errNoMetrics):
		addNote(res, "the nodes serve no /metrics: replication figures are n/a")
	case err != nil:
		addNote(res, err.Error())
	default:
		return m
	}
	return nil
}

// addNote adds a note to res unless it is there already.
func addNote(res *Result, note string) {
	if !slices.Contains(res.Notes, note) {
		res.Notes = append(res.Notes, note)
	}
}

// fillStats sets the replication figures and each node's resource use from
// two snapshots. Per-change figures divide by the 200 answers of the run.
func (b *bench) fillStats(res *Result, cl *cluster, before, after snapshot) {
	rp := &res.Replication
	optional := func(v float64, ok bool) *float64 {
		if !ok {
			return nil
		}
		return ptr(v)
	}
	rp.Changes = optional(metricDelta(before.metrics, after.metrics, mChanges, "outcome", "ok"))
	rp.Pushes = optional(metricDelta(before.metrics, after.metrics, mPushes))
	rp.PushFailures = optional(metricDelta(before.metrics, after.metrics, mPushFailures))
	rp.PushBytes = optional(metricDelta(before.metrics, after.metrics, mPushBytes))
	if ok := res.Countd.OK; ok > 0 {
		if rp.Pushes != nil {
			rp.PushesPerChange = ptr(*rp.Pushes / float64(ok))
		}
		if rp.PushBytes != nil {
			rp.BytesPerChange = ptr(*rp.PushBytes / float64(ok))
		}
	}
	if n, sum, ok := histDelta(before.metrics, after.metrics, mPushEntries); ok && n > 0 {
		rp.EntriesPerPush = ptr(sum / n)
	}

	res.NodeStats = make([]NodeStat, len(cl.addrs))
	for i, addr := range cl.addrs {
		ns := &res.NodeStats[i]
		ns.Addr = addr
		if cl.procs != nil {
			ns.PID = cl.procs[i].PID()
			ns.Source = "proc"
			if before.procs != nil && after.procs != nil {
				ns.CPUSeconds = ptr((after.procs[i].CPU - before.procs[i].CPU).Seconds())
				ns.RSSBytes = ptr(float64(after.procs[i].RSS))
				ns.PeakRSSBytes = ptr(float64(after.procs[i].PeakRSS))
			}
			continue
		}
		ns.Source = "metrics"
		if before.metrics != nil && after.metrics != nil {
			b0, ok0 := before.metrics[i].Sum(mProcessCPU)
			a0, ok1 := after.metrics[i].Sum(mProcessCPU)
			if ok0 && ok1 {
				ns.CPUSeconds = ptr(a0 - b0)
			}
			ns.RSSBytes = optional(after.metrics[i].Sum(mProcessRSS))
		}
	}
}
