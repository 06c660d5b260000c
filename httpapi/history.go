package httpapi

import (
	"context"
	"math"
	"sync"
	"time"
)

// The status page draws the last minutes of this node's changes per second
// and of each peer's behind. A page opened now must show them at once, so
// the server samples them while it is open, whether or not anyone looks,
// and GET /status returns what it kept.
const (
	historyStep = time.Second
	historyLen  = 300 // samples kept: five minutes at historyStep
)

// reading is what the sampler saw at one moment.
type reading struct {
	at      time.Time
	applied uint64            // client changes applied since start (metrics.Applied)
	counted bool              // applied is known: the server has metrics
	behind  map[string]uint64 // each peer's behind; nil when membership did not answer
}

// sample is one reading placed in its slot, with the rate since the one
// before.
type sample struct {
	slot    int64 // steps since the history's first reading
	at      time.Time
	applied uint64
	counted bool
	rate    float64 // changes per second since the sample before; NaN if unknown
	behind  map[string]uint64
}

// history keeps the last samples for the status page. record and snapshot
// take the time from their caller, so tests drive it without a clock; run
// is the sampler that feeds it in a server that is open.
type history struct {
	step time.Duration // between samples; zero means historyStep
	size int           // samples kept; zero means historyLen

	mu      sync.Mutex
	origin  time.Time // the first reading's time: slot 0
	samples []sample  // oldest first, at most size, slots increasing
	stopFn  func()    // stops the sampler; nil when none runs
}

func (h *history) params() (time.Duration, int) {
	step, size := h.step, h.size
	if step <= 0 {
		step = historyStep
	}
	if size <= 0 {
		size = historyLen
	}
	return step, size
}

// slotOf numbers t's step counting from origin. Rounding to the nearest
// step keeps a ticker's jitter of a few milliseconds from skipping a slot
// or hitting one twice.
func slotOf(t, origin time.Time, step time.Duration) int64 {
	return int64(math.Round(float64(t.Sub(origin)) / float64(step)))
}

// record adds r. A reading for a slot already filled is dropped.
func (h *history) record(r reading) {
	step, size := h.params()
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.origin.IsZero() {
		h.origin = r.at
	}
	s := sample{slot: slotOf(r.at, h.origin, step), at: r.at, applied: r.applied, counted: r.counted,
		rate: math.NaN(), behind: r.behind}
	if n := len(h.samples); n > 0 {
		prev := h.samples[n-1]
		if s.slot <= prev.slot {
			return
		}
		if dt := s.at.Sub(prev.at).Seconds(); prev.counted && s.counted && s.applied >= prev.applied && dt > 0 {
			s.rate = math.Round(float64(s.applied-prev.applied)/dt*10) / 10
		}
	}
	if len(h.samples) == size {
		copy(h.samples, h.samples[1:])
		h.samples = h.samples[:size-1]
	}
	h.samples = append(h.samples, s)
}

// historyReply is the history in GET /status. Each series holds one value
// per step for the last historyLen steps, oldest first, the last for the
// step of the reply; null where nothing is known (before the first sample,
// a sample missed, a peer not listed then). Before the first sample the
// series are empty.
type historyReply struct {
	StepSeconds float64 `json:"step_seconds"`
	// ChangesPerSecond is the rate of client changes (increments and
	// decrements, whatever their by) this node applied.
	ChangesPerSecond []*float64 `json:"changes_per_second"`
	// Behind is, per peer address, its behind as GET /peers reports it.
	Behind map[string][]*uint64 `json:"behind"`
}

// snapshot returns the window of size steps that ends at now's step, null
// where nothing was sampled; no values at all before the first sample.
func (h *history) snapshot(now time.Time) historyReply {
	step, size := h.params()
	h.mu.Lock()
	defer h.mu.Unlock()
	out := historyReply{StepSeconds: step.Seconds(), ChangesPerSecond: []*float64{}, Behind: map[string][]*uint64{}}
	if len(h.samples) == 0 {
		return out
	}
	last := max(slotOf(now, h.origin, step), h.samples[len(h.samples)-1].slot)
	first, n := last-int64(size)+1, size
	out.ChangesPerSecond = make([]*float64, n)
	for _, s := range h.samples {
		i := int(s.slot - first)
		if i < 0 {
			continue
		}
		if !math.IsNaN(s.rate) {
			out.ChangesPerSecond[i] = &s.rate
		}
		for addr, b := range s.behind {
			series := out.Behind[addr]
			if series == nil {
				series = make([]*uint64, n)
				out.Behind[addr] = series
			}
			series[i] = &b
		}
	}
	return out
}

// start runs the sampler until stop: a reading now and then one every
// step, each taken by read.
func (h *history) start(read func(ctx context.Context, at time.Time) reading) {
	step, _ := h.params()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	h.mu.Lock()
	h.stopFn = func() { cancel(); <-done }
	h.mu.Unlock()
	go func() {
		defer close(done)
		tick := time.NewTicker(step)
		defer tick.Stop()
		h.record(read(ctx, time.Now()))
		for {
			select {
			case <-ctx.Done():
				return
			case at := <-tick.C:
				h.record(read(ctx, at))
			}
		}
	}()
}

// stop stops the sampler and waits for it; it is safe to call twice, or
// without start.
func (h *history) stop() {
	h.mu.Lock()
	stop := h.stopFn
	h.stopFn = nil
	h.mu.Unlock()
	if stop != nil {
		stop()
	}
}

// read takes the reading the history records: the changes applied so far,
// and each peer's behind.
func (s *Server) read(ctx context.Context, at time.Time) reading {
	r := reading{at: at, applied: s.cfg.Metrics.Applied(), counted: s.cfg.Metrics != nil}
	if s.cfg.Cluster == nil {
		r.behind = map[string]uint64{}
		return r
	}
	peers, err := s.cfg.Cluster.Peers(ctx)
	if err != nil {
		return r
	}
	r.behind = make(map[string]uint64, len(peers))
	for _, p := range peers {
		r.behind[p.Addr] = p.Behind
	}
	return r
}
