package httpapi

import (
	"context"
	"math"
	"sync"
	"time"
)

// The status page draws the last minutes of this node's changes per second
// and of each peer's behind. The server samples them only while someone
// looks: a request for the history (GET /status?history=1, which the page
// polls every second) runs the sampler, which stops once no such request
// has come for historyWatch. An idle node nobody watches wakes for nothing
// (issue 15); a page opened afresh charts from the moment it opened, with
// nulls for the time nobody watched.
const (
	historyStep  = time.Second
	historyLen   = 300 // samples kept: five minutes at historyStep
	historyWatch = time.Minute
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
// take the time from their caller, so tests drive it without a clock; the
// sampler that feeds it runs between open and close, while watched.
type history struct {
	step  time.Duration // between samples; zero means historyStep
	size  int           // samples kept; zero means historyLen
	watch time.Duration // the sampler runs this long after the last look; zero means historyWatch

	mu      sync.Mutex
	origin  time.Time                                       // the first reading's time: slot 0
	samples []sample                                        // oldest first, at most size, slots increasing
	read    func(ctx context.Context, at time.Time) reading // takes a reading; nil: not open
	looked  time.Time                                       // the last request for the history
	cancel  func()                                          // stops the sampler; nil when none runs
	done    chan struct{}                                   // closed when the sampler has stopped
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

func (h *history) watchFor() time.Duration {
	if h.watch <= 0 {
		return historyWatch
	}
	return h.watch
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

// open lets looks run the sampler, each reading taken by read. Nothing
// runs until the first look.
func (h *history) open(read func(ctx context.Context, at time.Time) reading) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.read = read
}

// look notes that someone asks for the history at now. If the sampler is
// not running (and the history is open), it takes a reading at once, with
// ctx, so that the answer has one, and starts the sampler.
func (h *history) look(ctx context.Context, now time.Time) {
	h.mu.Lock()
	h.looked = now
	read := h.read
	if read == nil || h.cancel != nil {
		h.mu.Unlock()
		return
	}
	run, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	h.cancel, h.done = cancel, done
	h.mu.Unlock()
	h.record(read(ctx, now))
	go h.sample(run, cancel, read, done)
}

// sample takes a reading every step until ctx ends or nobody has looked
// for the watch time.
func (h *history) sample(ctx context.Context, cancel func(), read func(context.Context, time.Time) reading, done chan struct{}) {
	defer close(done)
	step, _ := h.params()
	tick := time.NewTicker(step)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case at := <-tick.C:
			h.mu.Lock()
			unwatched := at.Sub(h.looked) > h.watchFor()
			if unwatched {
				h.cancel, h.done = nil, nil
			}
			h.mu.Unlock()
			if unwatched {
				cancel()
				return
			}
			h.record(read(ctx, at))
		}
	}
}

// sampling reports whether the sampler runs.
func (h *history) sampling() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.cancel != nil
}

// close stops the sampler, waits for it, and keeps looks from starting it
// again; it is safe to call twice, or without open.
func (h *history) close() {
	h.mu.Lock()
	cancel, done := h.cancel, h.done
	h.read, h.cancel, h.done = nil, nil, nil
	h.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
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
