package e2e

import (
	"bytes"
	"context"
	"countd/internal/apiclient"
	"countd/internal/apispec"
	"countd/internal/proc"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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
	inFlight, ackedAtKill := l.inFlight.Load(), l.ledger.Counts().OK
	node.Kill()
	l.wait()

	n, b := l.ledger.Counts(), l.ledger.Bounds()["default"]
	t.Logf("at SIGKILL: %d acked, %d requests in flight; after: %s", ackedAtKill, inFlight, l)
	if n.Total() != total {
		t.Fatalf("outcomes add up to %d, want %d: %s", n.Total(), total, l)
	}
	if n.OK == 0 {
		t.Fatal("no increment was acknowledged")
	}
	if inFlight == 0 {
		t.Fatal("no request was in flight at the kill; the test did not kill under load")
	}
	if l.bad.Load() > 0 {
		t.Errorf("%d replies with status 2xx but not a 200 counter reply: %s", l.bad.Load(), l)
	}

	restarted := startNode(t, "-port=0", "-data-dir="+dir)
	got := getCounter(t, restarted.URL())
	t.Logf("after restart: value %d; bounds %s (apiclient.Classify); highest value in an ack: %d",
		got, b, l.maxValue.Load())
	if got < b.Lo {
		t.Errorf("value %d after SIGKILL and restart < %d acknowledged increments: acknowledged writes were lost", got, b.Lo)
	}
	if got > b.Hi {
		t.Errorf("value %d after SIGKILL and restart > %d acked + %d that may have applied: something was counted twice",
			got, b.Acked, b.Hi-b.Acked)
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
	if l.ledger.Counts().OK != total {
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
			if l.ledger.Counts().OK != total || l.bad.Load() != 0 {
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
	end := time.NewTimer(window - time.Since(node.Started))
	defer end.Stop()
	for watching := true; watching; {
		out, more := node.Output.Snapshot()
		if n := strings.Count(out, "\n"); n >= maxLines {
			t.Fatalf("%d log lines within %v of start, want fewer than %d (log flood?):\n%s", n, window, maxLines, out)
		}
		select {
		case <-more:
		case <-end.C:
			watching = false
		}
	}
	if n := strings.Count(node.Output.String(), "\n"); n >= maxLines {
		t.Fatalf("%d log lines within %v of start, want fewer than %d", n, window, maxLines)
	}
	if node.exited() {
		t.Fatalf("node exited within %v of start: %v", window, node.Err())
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
			// A data dir of its own, so a node that wrongly starts writes
			// nothing into the source tree before it is killed.
			args := append([]string{"-data-dir=" + t.TempDir()}, tc.args...)
			p, err := proc.Start(proc.Spec{Name: "countd", Path: binary(t), Args: args, Env: tc.env})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close(exitTimeout)
			if err := p.Wait(startTimeout); err != nil {
				t.Fatalf("countd %q (env %q): %v, want exit status 2; stderr:\n%s", args, tc.env, err, p.Output)
			}
			if code := p.State().ExitCode(); code != 2 {
				t.Fatalf("countd %q (env %q): %v, want exit status 2; stderr:\n%s", args, tc.env, p.Err(), p.Output)
			}
			out := p.Output.String()
			if lines := strings.Count(out, "\n"); lines != 1 || !strings.HasSuffix(out, "\n") {
				t.Fatalf("stderr has %d lines, want exactly one:\n%s", lines, out)
			}
			if !strings.Contains(out, tc.flag) {
				t.Fatalf("stderr %q does not name %s", out, tc.flag)
			}
		})
	}
}

// load sends POST /increment from concurrent clients and keeps what each
// client can know about its request in an apiclient.Ledger: the outcomes of
// invariant 2, by the one rule of apiclient.Classify.
type load struct {
	ledger   apiclient.Ledger
	bad      atomic.Int64 // 2xx that is not a 200 counter reply (counted acked)
	inFlight atomic.Int64 // requests sent and not yet answered
	maxValue atomic.Int64 // highest value in a 200 reply

	next    atomic.Int64       // attempts handed out
	reached chan struct{}      // closed when acked reaches the threshold, if any
	done    chan struct{}      // closed when every client has finished
	cancel  context.CancelFunc // aborts the clients' requests
}

// startLoad starts clients goroutines that together send total increments to
// url, each attempt once, whatever the outcome of the previous ones. If
// threshold > 0, l.reached closes when that many are acknowledged.
func startLoad(t *testing.T, url string, total, clients int, threshold int64) *load {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	l := &load{reached: make(chan struct{}), done: make(chan struct{}), cancel: cancel}
	c := newClient(t, clients)
	api := apiclient.Client{HTTP: c}
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for ctx.Err() == nil && l.next.Add(1) <= int64(total) {
				l.inFlight.Add(1)
				r := api.Post(ctx, url+"/increment")
				l.inFlight.Add(-1)
				l.record(r, threshold)
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

func (l *load) record(r apiclient.Result, threshold int64) {
	if r.Outcome == apiclient.OK {
		// The node answered 2xx and so applied it, whatever the body.
		if r.Status != http.StatusOK || r.Err != nil || r.Counter != "default" || r.Node == "" {
			l.bad.Add(1)
		}
		for v := l.maxValue.Load(); r.Value > v && !l.maxValue.CompareAndSwap(v, r.Value); {
			v = l.maxValue.Load()
		}
	}
	if n := l.ledger.Record("node", "default", 1, r); r.Outcome == apiclient.OK && n.OK == threshold {
		close(l.reached)
	}
}

// wait waits until every client has finished; a client finishes within
// requestTimeout of the node dying, since each request is bounded.
func (l *load) wait() { <-l.done }

func (l *load) String() string {
	return fmt.Sprintf("%s; bad replies %d", &l.ledger, l.bad.Load())
}

// newClient returns a keep-alive client for conns concurrent requests to one
// node, each bounded by requestTimeout, that checks every exchange against
// the contract (internal/apispec; a request a test means to be invalid is
// made with a context from apispec.Invalid). Its idle connections close when the
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
	// Every exchange is checked against the contract, docs/openapi.yaml.
	return &http.Client{Transport: apispec.Transport(t, tr), Timeout: requestTimeout}
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
