package main

import (
	"context"
	"countd/internal/apiclient"
	"fmt"
	"net/http"
	"sync"
	"text/tabwriter"
	"time"
)

// listSample is how often the memory of a node is read while it answers
// GET /counters.
const listSample = 20 * time.Millisecond

// MemoryResult is what -restart-node measures of the first node in create
// mode: its memory after the creates, while GET /counters streams every
// counter, once ready again after a SIGTERM and a start on its data dir,
// and while GET /counters streams again.
type MemoryResult struct {
	Created      NodeMemory `json:"created"`
	Listing      NodeMemory `json:"listing"`
	Restarted    NodeMemory `json:"restarted"`
	ListingAfter NodeMemory `json:"listing_after_restart"`
	StopSeconds  float64    `json:"stop_seconds"`  // from the SIGTERM until the process ended
	ReadySeconds float64    `json:"ready_seconds"` // from the start until ready again
	Listed       int        `json:"listed"`        // counters in the last listing
}

// NodeMemory is one node's memory at one moment (for a listing, at the
// sample with the largest RSS), in bytes.
type NodeMemory struct {
	RSS  uint64 `json:"rss"`
	Anon uint64 `json:"rss_anon"`
	File uint64 `json:"rss_file"`
	// Heap is the Go heap in use (/metrics), nil if not served; not read
	// during a listing.
	Heap *float64 `json:"heap_inuse,omitempty"`
}

// nodeMemory reads node i's memory now.
func nodeMemory(ctx context.Context, cl *cluster, i int) (NodeMemory, error) {
	ps, err := readProc(cl.procs[i].PID())
	if err != nil {
		return NodeMemory{}, err
	}
	m := NodeMemory{RSS: ps.RSS, Anon: ps.Anon, File: ps.File}
	if mt, err := fetchMetrics(ctx, cl.http, cl.auth.base(cl.addrs[i])); err == nil {
		if h, ok := mt.Sum(mHeapInuse); ok {
			m.Heap = &h
		}
	}
	return m, nil
}

// listingMemory reads GET /counters of node i whole, sampling its memory
// every listSample meanwhile, and returns the sample with the largest RSS
// and how many counters were listed.
func listingMemory(ctx context.Context, cl *cluster, i int, timeout time.Duration) (NodeMemory, int, error) {
	pid := cl.procs[i].PID()
	peak, err := nodeMemory(ctx, cl, i)
	if err != nil {
		return NodeMemory{}, 0, err
	}
	peak.Heap = nil
	var mu sync.Mutex
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(listSample)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			if ps, err := readProc(pid); err == nil && ps.RSS > peak.RSS {
				mu.Lock()
				peak = NodeMemory{RSS: ps.RSS, Anon: ps.Anon, File: ps.File}
				mu.Unlock()
			}
		}
	}()
	c := &http.Client{Timeout: timeout, Transport: cl.http.Transport}
	counters, err := apiclient.Client{HTTP: c}.Counters(ctx, cl.auth.base(cl.addrs[i]))
	close(stop)
	<-done
	if err != nil {
		return NodeMemory{}, 0, fmt.Errorf("list counters of %s: %w", cl.addrs[i], err)
	}
	return peak, len(counters), nil
}

// measureRestart fills res.Restart for the first node: see MemoryResult.
func (b *bench) measureRestart(ctx context.Context, cl *cluster, res *Result) error {
	var m MemoryResult
	var err error
	if m.Created, err = nodeMemory(ctx, cl, 0); err != nil {
		return err
	}
	if m.Listing, _, err = listingMemory(ctx, cl, 0, b.cfg.AgreeTimeout); err != nil {
		return err
	}
	began := time.Now()
	stopped, stopErr, err := cl.restart(ctx, 0, b.cfg.ReadyTimeout)
	if err != nil {
		return err
	}
	if stopErr != nil {
		addNote(res, fmt.Sprintf("stopping %s for the restart: %v", cl.addrs[0], stopErr))
	}
	m.StopSeconds, m.ReadySeconds = stopped.Sub(began).Seconds(), time.Since(stopped).Seconds()
	if m.Restarted, err = nodeMemory(ctx, cl, 0); err != nil {
		return err
	}
	if m.ListingAfter, m.Listed, err = listingMemory(ctx, cl, 0, b.cfg.AgreeTimeout); err != nil {
		return err
	}
	res.Restart = &m
	return nil
}

// printMemory prints the -restart-node figures.
func printMemory(tw *tabwriter.Writer, m *MemoryResult) {
	if m == nil {
		return
	}
	row := func(what string, nm NodeMemory) {
		heap := "n/a"
		if nm.Heap != nil {
			heap = fmt.Sprintf("%.1f MB", *nm.Heap/1e6)
		}
		fmt.Fprintf(tw, "  %s\trss %.1f MB (anon %.1f, file %.1f), heap in use %s\n",
			what, float64(nm.RSS)/1e6, float64(nm.Anon)/1e6, float64(nm.File)/1e6, heap)
	}
	row("after creates", m.Created)
	row("listing (peak)", m.Listing)
	row(fmt.Sprintf("restarted (stop %.1fs, ready %.1fs)", m.StopSeconds, m.ReadySeconds), m.Restarted)
	row(fmt.Sprintf("listing %d (peak)", m.Listed), m.ListingAfter)
}
