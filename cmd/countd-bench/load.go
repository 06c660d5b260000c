package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"countd/internal/apiclient"
)

// requestTimeout bounds one client request; countd answers 503 itself after
// its -request-timeout (5s by default), so this only catches a hung node.
const requestTimeout = 10 * time.Second

// newLoadClient returns an HTTP client whose pool keeps one keep-alive
// connection per client goroutine to every host, over TLS if auth says so
// (the token is drive's to send).
func newLoadClient(clients int, auth clientAuth) *http.Client {
	var tc *tls.Config
	if auth.roots != nil {
		tc = auth.tlsConfig()
	}
	return &http.Client{
		Timeout: requestTimeout,
		Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        0, // no limit across hosts
			MaxIdleConnsPerHost: clients,
			MaxConnsPerHost:     clients,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
			TLSClientConfig:     tc,
		},
	}
}

// meter counts requests and errors as they happen, for the progress line.
type meter struct {
	reqs, errs atomic.Int64
}

// loadStats is what one or more load slices measured.
type loadStats struct {
	// Outcomes counts every request sent and answered or failed, by what
	// it did to the counter (apiclient.Classify): applied (a 2xx), not
	// applied (a 4xx, or no connection), or unknown (a 5xx, or no answer).
	Outcomes apiclient.Counts
	// Errors counts the requests not applied or unknown by status code
	// ("503") or, when no answer came, "timeout" or "transport".
	Errors map[string]int64
	// FirstError is the text of the first failure, for the report.
	FirstError string
	// Hist holds every request's latency.
	Hist Histogram
	// Elapsed is the wall time the slices took, from the first request
	// sent to the last answer.
	Elapsed time.Duration
}

// add folds o into s.
func (s *loadStats) add(o *loadStats) {
	s.Outcomes = s.Outcomes.Plus(o.Outcomes)
	if len(o.Errors) > 0 && s.Errors == nil {
		s.Errors = make(map[string]int64)
	}
	for k, v := range o.Errors {
		s.Errors[k] += v
	}
	if s.FirstError == "" {
		s.FirstError = o.FirstError
	}
	s.Hist.Merge(&o.Hist)
	s.Elapsed += o.Elapsed
}

// rate returns requests per second over the elapsed time, or 0.
func (s *loadStats) rate() float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(s.Outcomes.Total()) / s.Elapsed.Seconds()
}

// urlFunc returns the URL of a client's seq-th request, or false when there
// is no more work.
type urlFunc func(client int, seq uint64) (string, bool)

// keyedFunc is a urlFunc that also returns the request's Idempotency-Key.
type keyedFunc func(client int, seq uint64) (url, key string, ok bool)

// driveSpec is one slice of load.
type driveSpec struct {
	client  *http.Client
	token   string // bearer token each request carries, if not ""
	clients int
	url     urlFunc
	// keyed, if not nil, is used instead of url: it also gives the
	// Idempotency-Key each request carries (the keys mode).
	keyed keyedFunc
	// until, if not zero, is when clients stop starting requests.
	until time.Time
	// meter, if not nil, is told of every request as it ends.
	meter *meter
	// raw, if not nil, selects the cheap load generator (rawclient.go)
	// instead of client and token: raw[i] is client i's connection, kept
	// open across calls (its owner closes it).
	raw []*rawConn
}

// drive runs clients goroutines, each sending one POST at a time (or, with
// the raw client, up to its pipeline depth at a time), until the deadline
// passes, the URL function runs out, or ctx ends; requests in flight at the
// deadline finish and count. Requests cut off by ctx do not count. Each
// request of a pipelined batch is given the batch's latency.
func drive(ctx context.Context, s driveSpec) loadStats {
	var (
		mu    sync.Mutex
		total loadStats
		wg    sync.WaitGroup
	)
	start := time.Now()
	for i := range s.clients {
		wg.Go(func() {
			var st loadStats
			var rc *rawConn
			depth := 1
			if s.raw != nil {
				rc = s.raw[i]
				depth = rc.depth
			}
			urls := make([]string, 0, depth)
			keys := make([]string, 0, depth)
			codes := make([]int, depth)
			errs := make([]error, depth)
			seq := uint64(0)
			for {
				if ctx.Err() != nil || (!s.until.IsZero() && !time.Now().Before(s.until)) {
					break
				}
				urls, keys = urls[:0], keys[:0]
				for range depth {
					var url, key string
					var ok bool
					if s.keyed != nil {
						url, key, ok = s.keyed(i, seq)
					} else {
						url, ok = s.url(i, seq)
					}
					if !ok {
						break
					}
					seq++
					urls, keys = append(urls, url), append(keys, key)
				}
				if len(urls) == 0 {
					break
				}
				t0 := time.Now()
				var err error
				if rc != nil {
					var n int
					n, err = rc.postBatch(ctx, urls, keys, codes)
					for j := range urls {
						if j < n {
							errs[j] = nil
						} else {
							codes[j], errs[j] = 0, err
						}
					}
				} else {
					codes[0], err = post(ctx, s.client, s.token, keys[0], urls[0])
					errs[0] = err
				}
				lat := time.Since(t0)
				if err != nil && ctx.Err() != nil {
					break // interrupted, not a failure of the server
				}
				failed := false
				for j, url := range urls {
					outcome := apiclient.Classify(codes[j], errs[j])
					st.Outcomes.Add(outcome)
					st.Hist.Record(lat)
					if s.meter != nil {
						s.meter.reqs.Add(1)
					}
					if outcome == apiclient.OK {
						continue
					}
					if s.meter != nil {
						s.meter.errs.Add(1)
					}
					st.recordFailure(codes[j], errs[j], url)
					failed = failed || errs[j] != nil
				}
				if failed {
					// No answer at all: a node may be gone. Do not spin on
					// refused connections.
					sleepCtx(ctx, 10*time.Millisecond)
				}
			}
			mu.Lock()
			total.add(&st)
			mu.Unlock()
		})
	}
	wg.Wait()
	total.Elapsed = time.Since(start)
	return total
}

// recordFailure counts one request not applied or of unknown outcome by
// its status code, or by the kind of transport error when there was no
// answer.
func (s *loadStats) recordFailure(code int, err error, url string) {
	if s.Errors == nil {
		s.Errors = make(map[string]int64)
	}
	key := strconv.Itoa(code)
	if code == 0 {
		key = "transport"
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			key = "timeout"
		}
	}
	s.Errors[key]++
	if s.FirstError == "" {
		if code == 0 {
			s.FirstError = fmt.Sprintf("POST %s: %v", url, err)
		} else {
			s.FirstError = fmt.Sprintf("POST %s: status %d", url, code)
		}
	}
}

// post sends one POST with no body (and the bearer token and the
// Idempotency-Key, each if not "") and reads the whole reply, so that the
// connection goes back to the pool. It returns the status (0 if none came)
// and what went wrong, if anything: apiclient.Classify's arguments.
func post(ctx context.Context, c *http.Client, token, key, url string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, nil)
	if err != nil {
		return 0, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, err
}

// incrementURLs returns the URL function of the load mode: client i sends
// to bases[i mod len(bases)] (base URLs, "http://host:port"); with counters > 0 each client walks the
// counter names bench-0 ... bench-(counters-1) from its own offset, else
// every request is POST /increment.
func incrementURLs(bases []string, counters int) urlFunc {
	if counters == 0 {
		urls := make([]string, len(bases))
		for i, b := range bases {
			urls[i] = b + "/increment"
		}
		return func(client int, _ uint64) (string, bool) {
			return urls[client%len(urls)], true
		}
	}
	paths := make([]string, counters)
	for i := range paths {
		paths[i] = "/counters/bench-" + strconv.Itoa(i) + "/increment"
	}
	return func(client int, seq uint64) (string, bool) {
		return bases[client%len(bases)] + paths[(uint64(client)+seq)%uint64(counters)], true
	}
}

// createURLs returns the URL function of the create mode: k distinct
// counters named prefix-0 ... prefix-(k-1), each incremented once on base
// (a base URL),
// shared out among the clients as they ask.
func createURLs(base, prefix string, k int) urlFunc {
	var next atomic.Int64
	return func(int, uint64) (string, bool) {
		i := next.Add(1) - 1
		if i >= int64(k) {
			return "", false
		}
		return base + "/counters/" + prefix + "-" + strconv.FormatInt(i, 10) + "/increment", true
	}
}

// targets returns the nodes the clients load: the first, or all.
func targets(addrs []string, target string) []string {
	if target == "all" {
		return addrs
	}
	return addrs[:1]
}

// progress prints one line a second on w while a run goes on: elapsed
// time, the phase, countd's requests and errors so far, and the request
// rate over the last second, on countd or a yardstick server.
type progress struct {
	countd, yardsticks meter
	phase              atomic.Pointer[string]
	stopOnce           sync.Once
	stopc, done        chan struct{}
}

// startProgress starts the progress line; with w nil it only counts.
func startProgress(w io.Writer, label string) *progress {
	p := &progress{stopc: make(chan struct{}), done: make(chan struct{})}
	p.setPhase("start")
	if w == nil {
		close(p.done)
		return p
	}
	go func() {
		defer close(p.done)
		start := time.Now()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		var last int64
		lastT := start
		for {
			select {
			case <-p.stopc:
				return
			case now := <-t.C:
				reqs := p.countd.reqs.Load()
				all := reqs + p.yardsticks.reqs.Load()
				rate := float64(all-last) / now.Sub(lastT).Seconds()
				last, lastT = all, now
				fmt.Fprintf(w, "  %s %5.0fs  %-7s countd %s req, %s err  now %s req/s\n",
					label, now.Sub(start).Seconds(), *p.phase.Load(),
					group(float64(reqs)), group(float64(p.countd.errs.Load())), group(rate))
			}
		}
	}()
	return p
}

// setPhase names what is running now ("countd", "bare", "fsync", "agree", ...).
func (p *progress) setPhase(s string) { p.phase.Store(&s) }

// stop ends the progress line; safe to call twice.
func (p *progress) stop() {
	p.stopOnce.Do(func() { close(p.stopc) })
	<-p.done
}

// copyErrors returns a copy of m, never nil.
func copyErrors(m map[string]int64) map[string]int64 {
	out := make(map[string]int64, len(m))
	maps.Copy(out, m)
	return out
}
