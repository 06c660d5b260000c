package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// requestTimeout bounds one client request. It is above the node's own
// 5s request timeout, so an overloaded node answers 503 before we give up.
const requestTimeout = 10 * time.Second

// TestKill9UnderLoadLosesNothing kills a node with SIGKILL while 16 clients
// increment, restarts it on the same data dir, and checks invariants 2 and 3:
// every acknowledged increment survived, and nothing was counted that no
// client could have sent.
func TestKill9UnderLoadLosesNothing(t *testing.T) {
	const (
		total   = 2000
		clients = 16
		killAt  = 700 // acks before the kill: well into the run, before its end
	)
	dir := t.TempDir()
	node := startNode(t, "-port=0", "-data-dir="+dir)

	l := startLoad(t, node.URL(), total, clients, killAt)
	select {
	case <-l.reached:
	case <-l.done:
		t.Fatalf("load ended before %d acks: %s", killAt, l)
	case <-time.After(time.Minute):
		t.Fatalf("no %d acks within a minute: %s", killAt, l)
	}
	inFlight, ackedAtKill := l.inFlight.Load(), l.acked.Load()
	node.Kill()
	l.wait()

	acked, unknown, refused := l.acked.Load(), l.unknown.Load(), l.refused.Load()
	maybe := unknown - refused // sent, outcome unknown: may have applied
	t.Logf("at SIGKILL: %d acked, %d requests in flight; after: %s", ackedAtKill, inFlight, l)
	if n := acked + l.failed.Load() + unknown; n != total {
		t.Fatalf("outcomes add up to %d, want %d: %s", n, total, l)
	}
	if acked == 0 {
		t.Fatal("no increment was acknowledged")
	}
	if inFlight == 0 {
		t.Fatal("no request was in flight at the kill; the test did not kill under load")
	}
	if l.bad.Load() > 0 {
		t.Errorf("%d replies with status 200 but a bad body: %s", l.bad.Load(), l)
	}

	restarted := startNode(t, "-port=0", "-data-dir="+dir)
	got := getCounter(t, restarted.URL())
	t.Logf("after restart: value %d; bounds [%d acked, %d = acked + %d sent with unknown outcome]; highest value in an ack: %d",
		got, acked, acked+maybe, maybe, l.maxValue.Load())
	if got < acked {
		t.Errorf("value %d after SIGKILL and restart < %d acknowledged increments: acknowledged writes were lost", got, acked)
	}
	if got > acked+maybe {
		t.Errorf("value %d after SIGKILL and restart > %d acked + %d that may have applied: something was counted twice",
			got, acked, maybe)
	}
	restarted.Stop()
}

// TestGracefulShutdownKeepsEverything checks that SIGTERM exits 0 and loses
// nothing: every increment is there after a restart on the same data dir.
func TestGracefulShutdownKeepsEverything(t *testing.T) {
	const total, clients = 500, 8
	dir := t.TempDir()
	node := startNode(t, "-port=0", "-data-dir="+dir)

	l := startLoad(t, node.URL(), total, clients, 0)
	l.wait()
	if l.acked.Load() != total {
		t.Fatalf("want all %d increments acknowledged: %s", total, l)
	}
	if got := getCounter(t, node.URL()); got != total {
		t.Fatalf("value before shutdown = %d, want %d", got, total)
	}
	node.Stop()

	restarted := startNode(t, "-port=0", "-data-dir="+dir)
	if got := getCounter(t, restarted.URL()); got != total {
		t.Fatalf("value after SIGTERM and restart = %d, want %d", got, total)
	}
	restarted.Stop()
}

// TestExactCount is the done-means check: 10,000 increments from 32
// concurrent clients on one node count exactly 10,000, on disk and in memory.
func TestExactCount(t *testing.T) {
	const total, clients = 10000, 32
	for _, tc := range []struct {
		name string
		args func(t *testing.T) []string
	}{
		{"durable", func(t *testing.T) []string { return []string{"-port=0", "-data-dir=" + t.TempDir()} }},
		{"memory", func(t *testing.T) []string { return []string{"-port=0", "-memory"} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			node := startNode(t, tc.args(t)...)
			start := time.Now()
			l := startLoad(t, node.URL(), total, clients, 0)
			l.wait()
			elapsed := time.Since(start)
			t.Logf("%d increments from %d clients in %v (%.0f/s)", total, clients,
				elapsed.Round(time.Millisecond), total/elapsed.Seconds())
			if l.acked.Load() != total || l.bad.Load() != 0 {
				t.Fatalf("want all %d increments acknowledged with a good body: %s", total, l)
			}
			if got := l.maxValue.Load(); got != total {
				t.Errorf("highest value in an increment reply = %d, want %d", got, total)
			}
			if got := getCounter(t, node.URL()); got != total {
				t.Errorf("GET /counter = %d, want %d", got, total)
			}
			node.Stop()
		})
	}
}

// TestSeedCommandStartsAlone runs the command line of the original brief with
// peers that do not exist: the node must serve on its own and not flood its
// log. Peers are unreachable ports, so whatever the node does with them
// (today it only parses them) must not block it or change its counts.
func TestSeedCommandStartsAlone(t *testing.T) {
	const (
		window   = 2 * time.Second
		maxLines = 10
	)
	ports := freePorts(t, 4)
	self := "127.0.0.1:" + strconv.Itoa(ports[0])
	node := startNode(t,
		"-port="+strconv.Itoa(ports[0]),
		"-peers="+strconv.Itoa(ports[1])+","+strconv.Itoa(ports[2]),
		"-newnode="+strconv.Itoa(ports[3]),
		"-data-dir="+t.TempDir(),
	)
	if node.URL() != "http://"+self {
		t.Fatalf("node listens on %s, want %s", node.URL(), self)
	}

	resp, err := newClient(t, 1).Post(node.URL()+"/increment", "", nil)
	if err != nil {
		t.Fatalf("POST /increment: %v", err)
	}
	r, err := readReply(resp)
	if err != nil {
		t.Fatalf("POST /increment: %v", err)
	}
	if r.Value != 1 || r.Node != self {
		t.Fatalf("POST /increment = value %d from %q, want 1 from %q", r.Value, r.Node, self)
	}

	// Watch stderr until the window since exec ends, failing as soon as it
	// holds too many lines.
	end := time.NewTimer(window - time.Since(node.started))
	defer end.Stop()
	for watching := true; watching; {
		out, more := node.stderr.snapshot()
		if n := strings.Count(out, "\n"); n >= maxLines {
			t.Fatalf("%d log lines within %v of start, want fewer than %d (log flood?):\n%s", n, window, maxLines, out)
		}
		select {
		case <-more:
		case <-end.C:
			watching = false
		}
	}
	if n := strings.Count(node.stderr.String(), "\n"); n >= maxLines {
		t.Fatalf("%d log lines within %v of start, want fewer than %d", n, window, maxLines)
	}
	if node.exited() {
		t.Fatalf("node exited within %v of start: %v", window, node.waitErr)
	}
	if got := getCounter(t, node.URL()); got != 1 {
		t.Errorf("GET /counter after %v = %d, want 1", window, got)
	}
	node.Stop()
}

// TestBadFlagExits2 checks that a bad flag value stops the node before it
// starts: exit status 2 and one line on stderr naming the flag.
func TestBadFlagExits2(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		env  []string
		flag string // the flag the line must name
	}{
		{"port not a number", []string{"-port=abc"}, nil, "-port"},
		{"port out of range", []string{"-port=70000"}, nil, "-port"},
		{"bad peer", []string{"-port=0", "-peers=8081,not a port"}, nil, "-peers"},
		{"bad duration", []string{"-port=0", "-request-timeout=soon"}, nil, "-request-timeout"},
		{"bad env port", nil, []string{"COUNTD_PORT=abc"}, "-port"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
			defer cancel()
			// A data dir of its own, so a node that wrongly starts writes
			// nothing into the source tree before the context kills it.
			args := append([]string{"-data-dir=" + t.TempDir()}, tc.args...)
			cmd := exec.CommandContext(ctx, binary(t), args...)
			cmd.Env = append(cleanEnv(), tc.env...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 2 {
				t.Fatalf("countd %q (env %q): %v, want exit status 2; stderr:\n%s", args, tc.env, err, stderr.String())
			}
			out := stderr.String()
			if lines := strings.Count(out, "\n"); lines != 1 || !strings.HasSuffix(out, "\n") {
				t.Fatalf("stderr has %d lines, want exactly one:\n%s", lines, out)
			}
			if !strings.Contains(out, tc.flag) {
				t.Fatalf("stderr %q does not name %s", out, tc.flag)
			}
		})
	}
}

// load sends POST /increment from concurrent clients and tallies what each
// client can know about its request: the outcome categories of invariant 2.
type load struct {
	acked    atomic.Int64 // 200: applied and durable
	failed   atomic.Int64 // a definite non-2xx answer: not applied
	unknown  atomic.Int64 // transport error or timeout: may or may not have applied
	refused  atomic.Int64 // the part of unknown refused at connect: not applied (see record)
	bad      atomic.Int64 // 200 whose body is not a counter reply
	inFlight atomic.Int64 // requests sent and not yet answered
	maxValue atomic.Int64 // highest value in a 200 reply

	next    atomic.Int64       // attempts handed out
	reached chan struct{}      // closed when acked reaches the threshold, if any
	done    chan struct{}      // closed when every client has finished
	cancel  context.CancelFunc // aborts the clients' requests

	mu      sync.Mutex
	samples map[string]int // a few error texts, for failure messages
}

// startLoad starts clients goroutines that together send total increments to
// url, each attempt once, whatever the outcome of the previous ones. If
// threshold > 0, l.reached closes when that many are acknowledged.
func startLoad(t *testing.T, url string, total, clients int, threshold int64) *load {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	l := &load{reached: make(chan struct{}), done: make(chan struct{}), cancel: cancel, samples: make(map[string]int)}
	c := newClient(t, clients)
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for ctx.Err() == nil && l.next.Add(1) <= int64(total) {
				req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/increment", nil)
				if err != nil {
					panic(err) // url is the node's own http://127.0.0.1:PORT
				}
				l.inFlight.Add(1)
				resp, err := c.Do(req)
				l.inFlight.Add(-1)
				l.record(resp, err, threshold)
			}
		})
	}
	go func() {
		wg.Wait()
		// Hang up, as finished clients do. A node's graceful shutdown
		// (net/http Server.Shutdown) waits for connections that were dialed
		// but never carried a request until they are 5s old, and a pooled
		// transport leaves a few of those behind under load.
		c.CloseIdleConnections()
		close(l.done)
	}()
	// A test that fails before waiting must not leave clients running: stop
	// them first (cleanups run last-in first-out, so before the node dies).
	t.Cleanup(func() {
		cancel()
		l.wait()
	})
	return l
}

func (l *load) record(resp *http.Response, err error, threshold int64) {
	switch {
	case err != nil:
		l.unknown.Add(1)
		// A refused connect means this request reached no node. net/http
		// retries a POST on a new connection only if nothing of it was
		// written on the old one, so no earlier attempt reached one either.
		if errors.Is(err, syscall.ECONNREFUSED) {
			l.refused.Add(1)
		}
		l.sample(errKind(err))
	case resp.StatusCode != http.StatusOK:
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		if resp.StatusCode >= 200 && resp.StatusCode < 300 {
			l.bad.Add(1) // a 2xx other than 200 is not in the contract
		} else {
			l.failed.Add(1)
		}
		l.sample(fmt.Sprintf("%s: %s", resp.Status, bytes.TrimSpace(body)))
	default:
		r, err := readReply(resp)
		if err != nil {
			// The node answered 200 and so applied it, whatever the body.
			l.bad.Add(1)
			l.sample(err.Error())
		}
		for v := l.maxValue.Load(); r.Value > v && !l.maxValue.CompareAndSwap(v, r.Value); {
			v = l.maxValue.Load()
		}
		if n := l.acked.Add(1); n == threshold {
			close(l.reached)
		}
	}
}

// errKind is a transport error without the addresses in it, so that one
// kind of failure counts as one sample: "connection reset by peer".
func errKind(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 {
		return s[i+2:]
	}
	return s
}

// sample counts an error text, keeping at most a few distinct ones.
func (l *load) sample(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.samples[s]; ok || len(l.samples) < 5 {
		l.samples[s]++
	}
}

// wait waits until every client has finished; a client finishes within
// requestTimeout of the node dying, since each request is bounded.
func (l *load) wait() { <-l.done }

func (l *load) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return fmt.Sprintf("acked %d, failed %d, unknown %d (of which refused at connect %d), bad replies %d; errors seen: %v",
		l.acked.Load(), l.failed.Load(), l.unknown.Load(), l.refused.Load(), l.bad.Load(), l.samples)
}

// newClient returns a keep-alive client for conns concurrent requests to one
// node, each bounded by requestTimeout. Its idle connections close when the
// test ends.
func newClient(t *testing.T, conns int) *http.Client {
	tr := &http.Transport{
		Proxy:               nil, // never route loopback through an HTTP_PROXY
		DialContext:         dialNode,
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		IdleConnTimeout:     30 * time.Second,
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: requestTimeout}
}

// reply is the body of a 200 from /increment and /counter.
type reply struct {
	Counter string `json:"counter"`
	Value   int64  `json:"value"`
	Node    string `json:"node"`
}

// readReply reads and closes a 200 response's body as a reply for the
// default counter.
func readReply(resp *http.Response) (reply, error) {
	defer resp.Body.Close()
	var r reply
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return r, fmt.Errorf("reading reply: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return r, fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(body))
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return r, fmt.Errorf("reply %q: %w", body, err)
	}
	if r.Counter != "default" || r.Node == "" {
		return r, fmt.Errorf("reply %q: want counter \"default\" and a node", body)
	}
	return r, nil
}

// getCounter returns GET /counter's value, failing the test on any error.
func getCounter(t *testing.T, url string) int64 {
	t.Helper()
	resp, err := newClient(t, 1).Get(url + "/counter")
	if err != nil {
		t.Fatalf("GET /counter: %v", err)
	}
	r, err := readReply(resp)
	if err != nil {
		t.Fatalf("GET /counter: %v", err)
	}
	return r.Value
}
