package main

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"time"
)

// agreeBefore waits until the nodes agree before a run, so that the run's
// own agreement time and counted total start from a quiet cluster. A
// failure becomes a note: the run goes on without a counted total.
func (b *bench) agreeBefore(ctx context.Context, cl *cluster, res *Result) *agreement {
	ag, err := waitAgreement(ctx, cl.http, cl.auth.bases(cl.addrs), time.Now(), b.cfg.AgreeTimeout)
	if err != nil {
		if ctx.Err() == nil {
			res.Notes = append(res.Notes, "before the run: "+err.Error())
		}
		return nil
	}
	return &ag
}

// agreeAfter waits until the nodes agree after the load that ended at end,
// and sets on res the time that took and, if the nodes agreed before the
// run (ag0), how much the sum of the counters grew. If they do not agree in
// time, that becomes a note beginning with when, and the agreement is nil;
// the only error is ctx's.
func (b *bench) agreeAfter(ctx context.Context, cl *cluster, res *Result, ag0 *agreement, end time.Time, when string) (*agreement, error) {
	ag, err := waitAgreement(ctx, cl.http, cl.auth.bases(cl.addrs), end, b.cfg.AgreeTimeout)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		res.Notes = append(res.Notes, when+": "+err.Error())
		return nil, nil
	}
	res.AgreementMS = ptr(ms(ag.After))
	if ag0 != nil {
		res.Counted = ptr(counterSum(ag.Counters) - counterSum(ag0.Counters))
	}
	return &ag, nil
}

// runLoad is the load mode: -duration of load on countd and as long on each
// yardstick server, alternating in -chunk slices of the same length, then
// the time until the nodes agree. Every round drives bare, then the fsync
// yardstick, then countd, so that the run ends on countd and agreement is
// timed from its last request.
func (b *bench) runLoad(ctx context.Context, cl *cluster, clients int) (*Result, error) {
	res := b.newResult(modeLoad, cl, clients)
	countd := b.newLeg("countd", cl.auth, clients, incrementURLs(cl.auth.bases(targets(cl.addrs, b.cfg.Target)), b.cfg.Counters))
	countd.token = cl.auth.token
	for _, p := range cl.procs {
		countd.pids = append(countd.pids, p.PID())
	}
	var bare, fsync, bareTLS *leg
	var err error
	if b.cfg.Bare {
		if bare, err = b.yardstickLeg(ctx, "bare", &b.bare, startBare, clientAuth{}, clients); err != nil {
			return nil, err
		}
		if cl.sec.TLS {
			if bareTLS, err = b.yardstickLeg(ctx, "bare-tls", &b.bareTLS, startBareTLS(b.ca),
				clientAuth{roots: cl.auth.roots}, clients); err != nil {
				return nil, err
			}
		}
	}
	if b.cfg.measureFsync() {
		if fsync, err = b.yardstickLeg(ctx, "fsync", &b.fsync, startFsync, clientAuth{}, clients); err != nil {
			return nil, err
		}
	}
	legs := slices.DeleteFunc([]*leg{bare, fsync, bareTLS, countd}, func(l *leg) bool { return l == nil })
	for _, l := range legs {
		defer l.close()
		drive(ctx, l.spec(clients, limited(l.url, 2*clients))) // warm up: open the connections
	}
	ag0 := b.agreeBefore(ctx, cl, res)
	before := b.snapshot(ctx, cl, res, false)

	chunks := max(1, int(math.Ceil(float64(b.cfg.Duration)/float64(b.cfg.Chunk))))
	slice := b.cfg.Duration / time.Duration(chunks)
	var wrk *wrkLeg
	if bare != nil && b.cfg.Wrk {
		wrk = &wrkLeg{addr: bare.addr}
	}
	prog := b.progress(cl, clients)
	for range chunks {
		if wrk != nil {
			prog.setPhase("wrk")
			wrk.slice(ctx, clients, slice)
		}
		for _, l := range legs {
			m := &prog.yardsticks
			if l == countd {
				m = &prog.countd
			}
			prog.setPhase(l.phase)
			spec := l.spec(clients, l.url)
			spec.until, spec.meter = time.Now().Add(slice), m
			cpu0 := l.readCPU()
			st := drive(ctx, spec)
			l.addCPU(cpu0)
			l.stats.add(&st)
		}
		if ctx.Err() != nil {
			prog.stop()
			return nil, ctx.Err()
		}
	}
	loadEnd := time.Now()
	prog.setPhase("agree")
	_, err = b.agreeAfter(ctx, cl, res, ag0, loadEnd, "after the load")
	prog.stop()
	if err != nil {
		return nil, err
	}
	after := b.snapshot(ctx, cl, res, true)

	res.Countd = countd.side()
	if bare != nil {
		res.Bare = ptr(bare.side())
		if wrk != nil {
			wrk.record(res)
		}
		res.Ratio = ratio(&res.Countd, res.Bare)
		if fsync != nil {
			res.Fsync = ptr(fsync.side())
			res.FsyncRatioToBare = ratio(res.Fsync, res.Bare)
			res.RatioToFsync = ratio(&res.Countd, res.Fsync)
		}
		if bareTLS != nil {
			res.BareTLS = ptr(bareTLS.side())
			res.RatioToBareTLS = ratio(&res.Countd, res.BareTLS)
		}
	}
	b.fillStats(res, cl, before, after)
	if b.cfg.Redis {
		prog := b.progress(cl, clients)
		prog.setPhase("redis")
		// About as many INCRs as the bare server took in the run.
		n := int64(100_000)
		if res.Bare != nil {
			n = max(10_000, res.Bare.Requests)
		}
		b.runRedis(ctx, res, clients, n)
		prog.stop()
	}
	return res, ctx.Err()
}

// leg is one server a load run drives in turn, and what it measured there.
type leg struct {
	phase  string // its name on the progress line
	client *http.Client
	raw    []*rawConn // with -client=raw, one per client; else nil
	token  string     // bearer token each request carries, if not ""
	url    urlFunc
	stats  loadStats
	// pids are the server's processes (none for an external cluster), and
	// cpu the CPU time each used while this leg was driven; cpuErr is the
	// first failure to read it.
	pids   []int
	cpu    []time.Duration
	cpuErr error
	addr   string // a yardstick's host:port; "" for countd
}

// newLeg returns a leg that reaches its server with auth, with the load
// generator of -client.
func (b *bench) newLeg(phase string, auth clientAuth, clients int, url urlFunc) *leg {
	l := &leg{phase: phase, client: newLoadClient(clients, auth), url: url}
	if b.cfg.Client == clientRaw {
		for range clients {
			l.raw = append(l.raw, newRawConn(auth, b.cfg.Pipeline))
		}
	}
	return l
}

// spec is the drive of url by the leg's clients.
func (l *leg) spec(clients int, url urlFunc) driveSpec {
	return driveSpec{client: l.client, token: l.token, clients: clients, url: url, raw: l.raw}
}

// close closes the leg's connections.
func (l *leg) close() {
	l.client.CloseIdleConnections()
	for _, c := range l.raw {
		c.close()
	}
}

// readCPU returns the CPU time each of the leg's processes has used so
// far, or nil (noting the error) if one cannot be read.
func (l *leg) readCPU() []time.Duration {
	if len(l.pids) == 0 || l.cpuErr != nil {
		return nil
	}
	out := make([]time.Duration, len(l.pids))
	for i, pid := range l.pids {
		var err error
		if out[i], err = readCPU(pid); err != nil {
			l.cpuErr = err
			return nil
		}
	}
	return out
}

// addCPU adds the CPU time used since before (readCPU's) to the leg's.
func (l *leg) addCPU(before []time.Duration) {
	after := l.readCPU()
	if before == nil || after == nil {
		return
	}
	if l.cpu == nil {
		l.cpu = make([]time.Duration, len(l.pids))
	}
	for i := range l.cpu {
		l.cpu[i] += after[i] - before[i]
	}
}

// side summarises what the leg measured, with its server's CPU time per
// change (2xx answer) if every slice's was read.
func (l *leg) side() Side {
	s := newSide(&l.stats)
	if l.cpu == nil || l.cpuErr != nil || l.stats.Outcomes.OK == 0 {
		return s
	}
	changes := float64(l.stats.Outcomes.OK)
	var sum time.Duration
	for _, c := range l.cpu {
		sum += c
		if len(l.cpu) > 1 {
			s.NodeCPUUSPerChange = append(s.NodeCPUUSPerChange, us(c)/changes)
		}
	}
	s.CPUUSPerChange = ptr(us(sum) / changes)
	return s
}

// us converts a duration to microseconds.
func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// yardstickLeg is the leg of a yardstick server: the same requests as
// countd's, on its one address, reached with auth (TLS or not; no token).
// It starts the server into *y on first use; bench.close stops it. The
// bare TLS server trusts the CA of the first TLS run, which is every TLS
// run's.
func (b *bench) yardstickLeg(ctx context.Context, phase string, y **yardstickProc,
	start func(context.Context, time.Duration) (*yardstickProc, error), auth clientAuth, clients int) (*leg, error) {
	if *y == nil {
		p, err := start(ctx, b.cfg.StopTimeout)
		if err != nil {
			return nil, err
		}
		*y = p
	}
	l := b.newLeg(phase, auth, clients, incrementURLs([]string{auth.base((*y).addr)}, b.cfg.Counters))
	l.pids = []int{(*y).PID()}
	l.addr = (*y).addr
	return l, nil
}

// runRounds is the rounds mode: -rounds bursts of -burst, each followed by
// the time until every node reports the same counters. Between rounds it
// waits a random 0-50 ms so that bursts do not fall in step with the
// nodes' own timers (flush delay, heartbeats).
func (b *bench) runRounds(ctx context.Context, cl *cluster, clients int) (*Result, error) {
	res := b.newResult(modeRounds, cl, clients)
	client := newLoadClient(clients, cl.auth)
	defer client.CloseIdleConnections()
	url := incrementURLs(cl.auth.bases(targets(cl.addrs, b.cfg.Target)), b.cfg.Counters)
	warmUp(ctx, client, cl.auth.token, clients, url)
	ag0 := b.agreeBefore(ctx, cl, res)
	before := b.snapshot(ctx, cl, res, false)

	prog := b.progress(cl, clients)
	var cs loadStats
	var samples []time.Duration
	var last agreement
	for r := range b.cfg.Rounds {
		prog.setPhase(fmt.Sprintf("r%d", r+1))
		st := drive(ctx, driveSpec{client: client, token: cl.auth.token, clients: clients, url: url,
			until: time.Now().Add(b.cfg.Burst), meter: &prog.countd})
		cs.add(&st)
		end := time.Now()
		ag, err := waitAgreement(ctx, cl.http, cl.auth.bases(cl.addrs), end, b.cfg.AgreeTimeout)
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
	if cl.peer != "" {
		res.Peer, res.Memory = cl.peer+" "+memberlistVersion()+", DefaultLANConfig", false
	}
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
	id := &IdleResult{SettleSeconds: b.cfg.Settle.Seconds(), Seconds: elapsed.Seconds(), ReadySeconds: cl.readyAfter.Seconds()}
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
	if b.cfg.Detect {
		prog.setPhase("detect")
		d, err := measureDetection(ctx, cl, b.cfg.ReadyTimeout)
		if err != nil {
			return nil, err
		}
		id.DetectSeconds = ptr(d.Seconds())
	}
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
	client := newLoadClient(clients, cl.auth)
	defer client.CloseIdleConnections()
	ag0 := b.agreeBefore(ctx, cl, res)
	before := b.snapshot(ctx, cl, res, false)

	prog := b.progress(cl, clients)
	prog.setPhase("create")
	st := drive(ctx, driveSpec{client: client, token: cl.auth.token, clients: clients,
		url: createURLs(cl.auth.base(cl.addrs[0]), prefix, k), meter: &prog.countd})
	end := time.Now()
	if ctx.Err() != nil {
		prog.stop()
		return nil, ctx.Err()
	}
	prog.setPhase("agree")
	ag, err := b.agreeAfter(ctx, cl, res, ag0, end, "after creating")
	prog.stop()
	if err != nil {
		return nil, err
	}
	cr := &CreateResult{Counters: k, Seconds: st.Elapsed.Seconds()}
	if ag != nil {
		for name := range ag.Counters {
			if strings.HasPrefix(name, prefix+"-") {
				cr.AgreedCounters++
			}
		}
	}
	after := b.snapshot(ctx, cl, res, true)
	res.Countd = newSide(&st)
	res.Create = cr
	b.fillStats(res, cl, before, after)
	if b.cfg.RestartNode {
		if err := b.measureRestart(ctx, cl, res); err != nil {
			return nil, err
		}
	}
	return res, nil
}
