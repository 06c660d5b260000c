package main

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"strings"
	"time"
)

// agreeBefore waits until the nodes agree before a run, so that the run's
// own agreement time and counted total start from a quiet cluster. A
// failure becomes a note: the run goes on without a counted total.
func (b *bench) agreeBefore(ctx context.Context, cl *cluster, res *Result) *agreement {
	ag, err := waitAgreement(ctx, b.http, cl.addrs, time.Now(), b.cfg.AgreeTimeout)
	if err != nil {
		if ctx.Err() == nil {
			res.Notes = append(res.Notes, "before the run: "+err.Error())
		}
		return nil
	}
	return &ag
}

// runLoad is the load mode: -duration of load on countd and as long on the
// bare server, alternating in -chunk slices (bare first, so the run ends on
// countd and agreement is timed from its last request), then the time until
// the nodes agree.
func (b *bench) runLoad(ctx context.Context, cl *cluster, clients int) (*Result, error) {
	res := b.newResult(modeLoad, cl, clients)
	client := newLoadClient(clients)
	defer client.CloseIdleConnections()
	nodeURL := incrementURLs(targets(cl.addrs, b.cfg.Target), b.cfg.Counters)
	var bareClient *http.Client
	var bareURL urlFunc
	if b.cfg.Bare {
		bp, err := b.bareServer(ctx)
		if err != nil {
			return nil, err
		}
		bareClient = newLoadClient(clients)
		defer bareClient.CloseIdleConnections()
		bareURL = incrementURLs([]string{bp.addr}, b.cfg.Counters)
		warmUp(ctx, bareClient, clients, bareURL)
	}
	warmUp(ctx, client, clients, nodeURL)
	ag0 := b.agreeBefore(ctx, cl, res)
	before := b.snapshot(ctx, cl, res, false)

	chunks := max(1, int(math.Ceil(float64(b.cfg.Duration)/float64(b.cfg.Chunk))))
	slice := b.cfg.Duration / time.Duration(chunks)
	prog := b.progress(cl, clients)
	var cs, bs loadStats
	for range chunks {
		if bareClient != nil {
			prog.setPhase("bare")
			st := drive(ctx, driveSpec{client: bareClient, clients: clients, url: bareURL,
				until: time.Now().Add(slice), meter: &prog.bare})
			bs.add(&st)
		}
		prog.setPhase("countd")
		st := drive(ctx, driveSpec{client: client, clients: clients, url: nodeURL,
			until: time.Now().Add(slice), meter: &prog.countd})
		cs.add(&st)
		if ctx.Err() != nil {
			prog.stop()
			return nil, ctx.Err()
		}
	}
	loadEnd := time.Now()
	prog.setPhase("agree")
	ag, err := waitAgreement(ctx, b.http, cl.addrs, loadEnd, b.cfg.AgreeTimeout)
	prog.stop()
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		res.Notes = append(res.Notes, "after the load: "+err.Error())
	} else {
		res.AgreementMS = ptr(ms(ag.After))
		if ag0 != nil {
			res.Counted = ptr(counterSum(ag.Counters) - counterSum(ag0.Counters))
		}
	}
	after := b.snapshot(ctx, cl, res, true)

	res.Countd = newSide(&cs)
	if bareClient != nil {
		res.Bare = ptr(newSide(&bs))
		if res.Bare.Throughput > 0 {
			res.Ratio = ptr(res.Countd.Throughput / res.Bare.Throughput)
		}
	}
	b.fillStats(res, cl, before, after)
	return res, nil
}

// runRounds is the rounds mode: -rounds bursts of -burst, each followed by
// the time until every node reports the same counters. Between rounds it
// waits a random 0-50 ms so that bursts do not fall in step with the
// nodes' own timers (flush delay, heartbeats).
func (b *bench) runRounds(ctx context.Context, cl *cluster, clients int) (*Result, error) {
	res := b.newResult(modeRounds, cl, clients)
	client := newLoadClient(clients)
	defer client.CloseIdleConnections()
	url := incrementURLs(targets(cl.addrs, b.cfg.Target), b.cfg.Counters)
	warmUp(ctx, client, clients, url)
	ag0 := b.agreeBefore(ctx, cl, res)
	before := b.snapshot(ctx, cl, res, false)

	prog := b.progress(cl, clients)
	var cs loadStats
	var samples []time.Duration
	var last agreement
	for r := range b.cfg.Rounds {
		prog.setPhase(fmt.Sprintf("r%d", r+1))
		st := drive(ctx, driveSpec{client: client, clients: clients, url: url,
			until: time.Now().Add(b.cfg.Burst), meter: &prog.countd})
		cs.add(&st)
		end := time.Now()
		ag, err := waitAgreement(ctx, b.http, cl.addrs, end, b.cfg.AgreeTimeout)
		if err != nil {
			if ctx.Err() != nil {
				prog.stop()
				return nil, ctx.Err()
			}
			res.Notes = append(res.Notes, fmt.Sprintf("round %d: %v; rounds stopped", r+1, err))
			break
		}
		samples = append(samples, ag.After)
		last = ag
		sleepCtx(ctx, rand.N(50*time.Millisecond))
	}
	prog.stop()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	after := b.snapshot(ctx, cl, res, true)

	res.Countd = newSide(&cs)
	rr := &RoundsResult{Rounds: len(samples), BurstMS: ms(b.cfg.Burst)}
	for _, s := range samples {
		rr.AgreementMS = append(rr.AgreementMS, ms(s))
	}
	if len(samples) > 0 {
		rr.P50MS = ms(percentile(samples, 0.50))
		rr.P99MS = ms(percentile(samples, 0.99))
		rr.MaxMS = ms(percentile(samples, 1))
		res.AgreementMS = ptr(rr.P99MS)
		if ag0 != nil {
			res.Counted = ptr(counterSum(last.Counters) - counterSum(ag0.Counters))
		}
	}
	res.Rounds = rr
	b.fillStats(res, cl, before, after)
	return res, nil
}

// runIdle is the idle mode: the CPU all nodes use over -idle with no load,
// as a share of one core, and each node's memory at the end.
func (b *bench) runIdle(ctx context.Context, cl *cluster) (*Result, error) {
	res := b.newResult(modeIdle, cl, 0)
	res.Target = ""
	prog := b.progress(cl, 0)
	prog.setPhase("settle")
	sleepCtx(ctx, b.cfg.Settle)
	before := b.snapshot(ctx, cl, res, false)
	prog.setPhase("idle")
	sleepCtx(ctx, b.cfg.Idle)
	prog.stop()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	after := b.snapshot(ctx, cl, res, true)
	b.fillStats(res, cl, before, after)

	elapsed := after.at.Sub(before.at)
	id := &IdleResult{SettleSeconds: b.cfg.Settle.Seconds(), Seconds: elapsed.Seconds()}
	var total float64
	have := len(res.NodeStats) > 0
	for _, s := range res.NodeStats {
		if s.CPUSeconds == nil {
			have = false
			break
		}
		total += *s.CPUSeconds
	}
	if have && elapsed > 0 {
		id.CPUSeconds = ptr(total)
		id.CPUPercentOfCore = ptr(100 * total / elapsed.Seconds())
	}
	res.Idle = id
	return res, nil
}

// runCreate is the create mode: -create-counters distinct named counters,
// each incremented once on the first node by the clients, then the time
// until every node has them all, and each node's memory.
func (b *bench) runCreate(ctx context.Context, cl *cluster, clients int) (*Result, error) {
	res := b.newResult(modeCreate, cl, clients)
	res.Target, res.Counters = "one", 0
	k := b.cfg.CreateCounters
	// A name prefix per run, so that a cluster reused for the next client
	// count creates new counters rather than incrementing these.
	prefix := fmt.Sprintf("create%d", b.runs.Load())
	client := newLoadClient(clients)
	defer client.CloseIdleConnections()
	ag0 := b.agreeBefore(ctx, cl, res)
	before := b.snapshot(ctx, cl, res, false)

	prog := b.progress(cl, clients)
	prog.setPhase("create")
	st := drive(ctx, driveSpec{client: client, clients: clients, url: createURLs(cl.addrs[0], prefix, k), meter: &prog.countd})
	end := time.Now()
	if ctx.Err() != nil {
		prog.stop()
		return nil, ctx.Err()
	}
	prog.setPhase("agree")
	ag, err := waitAgreement(ctx, b.http, cl.addrs, end, b.cfg.AgreeTimeout)
	prog.stop()
	cr := &CreateResult{Counters: k, Seconds: st.Elapsed.Seconds()}
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		res.Notes = append(res.Notes, "after creating: "+err.Error())
	} else {
		res.AgreementMS = ptr(ms(ag.After))
		for name := range ag.Counters {
			if strings.HasPrefix(name, prefix+"-") {
				cr.AgreedCounters++
			}
		}
		if ag0 != nil {
			res.Counted = ptr(counterSum(ag.Counters) - counterSum(ag0.Counters))
		}
	}
	after := b.snapshot(ctx, cl, res, true)
	res.Countd = newSide(&st)
	res.Create = cr
	b.fillStats(res, cl, before, after)
	return res, nil
}
