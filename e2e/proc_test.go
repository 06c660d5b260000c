package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// binPath is the countd binary TestMain built for this run; tests take it
// from binary.
var binPath string

// Deadlines for process life-cycle steps. They are generous because a loaded
// CI machine running -race is slow; a healthy node takes milliseconds.
const (
	startTimeout = 15 * time.Second // from exec to "node started" and /health 200
	exitTimeout  = 20 * time.Second // from a signal to the process being reaped
	pollInterval = 10 * time.Millisecond
)

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		fmt.Println("e2e: skipped under -short: these tests build the countd binary and run it as processes")
		os.Exit(0)
	}
	os.Exit(buildAndRun(m))
}

// buildAndRun builds the binary into a temp dir, runs the tests, and removes
// the dir whatever the tests did.
func buildAndRun(m *testing.M) int {
	dir, err := os.MkdirTemp("", "countd-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)

	root, err := moduleRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: finding the module root:", err)
		return 1
	}
	binPath = filepath.Join(dir, "countd")
	args := []string{"build", "-o", binPath}
	if os.Getenv("E2E_RACE_NODE") != "" {
		// The node exits 66 at the end if it saw a data race, which fails Stop.
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, "countd")...)
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: go build countd in %s: %v\n%s", root, err, out)
		return 1
	}
	return m.Run()
}

// trackSources makes go test's cache see the sources the binary is built
// from. This package imports none of them, so without it a cached PASS would
// outlive a change to the node. The cache keys a test on the files it opens
// while running (not in TestMain), so the first test to ask for the binary
// reads them all.
var trackSources sync.Once

// binary returns the countd binary TestMain built. Every test that runs it
// gets it here, so that go test's cache sees its sources (trackSources).
func binary(t *testing.T) string {
	t.Helper()
	trackSources.Do(readSources)
	if binPath == "" {
		t.Fatal("e2e: no binary; TestMain did not build countd")
	}
	return binPath
}

func readSources() {
	root, err := moduleRoot()
	if err != nil {
		return
	}
	filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		switch {
		case err != nil:
			return nil
		case d.IsDir() && (d.Name() == ".git" || d.Name() == "data" || d.Name() == "testdata"):
			return filepath.SkipDir
		case !d.IsDir() && (strings.HasSuffix(path, ".go") || d.Name() == "go.mod" || d.Name() == "go.sum"):
			os.ReadFile(path)
		}
		return nil
	})
}

// moduleRoot is the directory holding countd's go.mod: what `go env GOMOD`
// says, or the parent of this package when go cannot tell.
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err == nil {
		if gomod := strings.TrimSpace(string(out)); gomod != "" && gomod != os.DevNull {
			return filepath.Dir(gomod), nil
		}
	}
	root, aerr := filepath.Abs("..")
	if aerr != nil {
		return "", errors.Join(err, aerr)
	}
	if _, serr := os.Stat(filepath.Join(root, "go.mod")); serr != nil {
		return "", errors.Join(err, serr)
	}
	return root, nil
}

// logBuffer collects a process's stderr. It is safe for the copying goroutine
// of os/exec and the test to use at once, and lets a waiter block until more
// output arrives instead of polling.
type logBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{} // closed and replaced on every write
}

func newLogBuffer() *logBuffer { return &logBuffer{changed: make(chan struct{})} }

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n, err := b.buf.Write(p)
	close(b.changed)
	b.changed = make(chan struct{})
	return n, err
}

// snapshot returns the output so far and a channel closed at the next write.
func (b *logBuffer) snapshot() (string, <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String(), b.changed
}

func (b *logBuffer) String() string {
	s, _ := b.snapshot()
	return s
}

// lines returns the complete lines written so far.
func (b *logBuffer) lines() []string {
	s := b.String()
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return strings.Split(s[:i], "\n")
	}
	return nil
}

// proc is one countd process that a test started. Everything it does to the
// process goes through its own handle (its PID), never by name.
type proc struct {
	t       *testing.T
	args    []string
	cmd     *exec.Cmd
	stderr  *logBuffer
	started time.Time

	done    chan struct{} // closed once the process is reaped
	waitErr error         // cmd.Wait's result; read only after done

	url  string // http://127.0.0.1:PORT, once "node started" is seen
	addr string // the listen field of "node started"
}

// startNode starts countd with args (plus -log-format=json, which args may
// override), finds the port it listens on from its "node started" log line,
// and waits until GET /health answers 200. The process is killed and reaped
// when the test ends, and its stderr is logged if the test failed.
func startNode(t *testing.T, args ...string) *proc {
	t.Helper()
	p := spawn(t, args...)
	p.waitStarted()
	p.waitHealthy()
	return p
}

// spawn starts the process and registers its cleanup, without waiting for it.
func spawn(t *testing.T, args ...string) *proc {
	t.Helper()
	return spawnVia(t, nil, args...)
}

// spawnVia is spawn with the binary run through a wrapper command that execs
// it in place, such as `ip netns exec NAME`: the wrapper's PID becomes the
// node's, so signals and the cleanup's SIGKILL still reach the node itself.
func spawnVia(t *testing.T, wrapper []string, args ...string) *proc {
	t.Helper()
	bin := binary(t)
	p := &proc{
		t:      t,
		args:   append([]string{"-log-format=json"}, args...),
		stderr: newLogBuffer(),
		done:   make(chan struct{}),
	}
	argv := append(append(slices.Clone(wrapper), bin), p.args...)
	p.cmd = exec.Command(argv[0], argv[1:]...)
	p.cmd.Stderr = p.stderr
	p.cmd.Env = cleanEnv()
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting %s %q: %v", bin, p.args, err)
	}
	p.started = time.Now()
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		if !p.exited() {
			_ = p.cmd.Process.Kill()
			select {
			case <-p.done:
			case <-time.After(exitTimeout):
				t.Errorf("pid %d not reaped %v after SIGKILL", p.PID(), exitTimeout)
			}
		}
		if t.Failed() {
			t.Logf("stderr of countd %q (pid %d):\n%s", p.args, p.PID(), p.stderr.String())
		}
	})
	return p
}

// cleanEnv is the test's environment without COUNTD_* variables, so a
// developer's shell cannot change what a test starts.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "COUNTD_") {
			env = append(env, kv)
		}
	}
	return env
}

// waitStarted waits for the JSON "node started" line and reads its listen field.
func (p *proc) waitStarted() {
	p.t.Helper()
	deadline := time.NewTimer(startTimeout)
	defer deadline.Stop()
	for {
		out, more := p.stderr.snapshot()
		if addr, ok := listenAddr(out); ok {
			p.addr = addr
			p.url = "http://" + addr
			return
		}
		select {
		case <-more:
		case <-p.done:
			// The last output may have landed just before the exit.
			if addr, ok := listenAddr(p.stderr.String()); ok {
				p.t.Fatalf("pid %d exited (%v) right after starting on %s", p.PID(), p.waitErr, addr)
			}
			p.t.Fatalf("pid %d exited before \"node started\": %v", p.PID(), p.waitErr)
		case <-deadline.C:
			p.t.Fatalf("pid %d: no \"node started\" log line within %v", p.PID(), startTimeout)
		}
	}
}

// listenAddr finds the listen field of the first complete "node started"
// line in JSON log output.
func listenAddr(out string) (string, bool) {
	for line := range strings.Lines(out) {
		if !strings.HasSuffix(line, "\n") {
			break // still being written
		}
		var rec struct {
			Msg    string `json:"msg"`
			Listen string `json:"listen"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "node started" && rec.Listen != "" {
			return rec.Listen, true
		}
	}
	return "", false
}

// waitHealthy polls GET /health until it answers 200.
func (p *proc) waitHealthy() {
	p.t.Helper()
	c := newClient(p.t, 1)
	c.Timeout = time.Second
	defer c.CloseIdleConnections()
	var last string
	ok := poll(startTimeout, func() bool {
		if p.exited() {
			return true // reported below
		}
		resp, err := c.Get(p.url + "/health")
		if err != nil {
			last = err.Error()
			return false
		}
		resp.Body.Close()
		last = resp.Status
		return resp.StatusCode == http.StatusOK
	})
	if p.exited() {
		p.t.Fatalf("pid %d exited while waiting for /health: %v", p.PID(), p.waitErr)
	}
	if !ok {
		p.t.Fatalf("pid %d: GET %s/health not 200 within %v; last: %s", p.PID(), p.url, startTimeout, last)
	}
}

// poll calls cond every pollInterval until it returns true or timeout
// passes; it reports whether cond came true.
func poll(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(pollInterval)
	}
}

// URL is the base URL of the node's HTTP API, http://127.0.0.1:PORT.
func (p *proc) URL() string { return p.url }

// PID is the process id of the node.
func (p *proc) PID() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Kill sends SIGKILL to the node and waits until it is reaped. It fails the
// test if the node had already died on its own.
func (p *proc) Kill() {
	p.t.Helper()
	if p.exited() {
		p.t.Fatalf("pid %d exited on its own before SIGKILL: %v", p.PID(), p.waitErr)
	}
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		p.t.Fatalf("SIGKILL pid %d: %v", p.PID(), err)
	}
	p.await("SIGKILL")
}

// Stop sends SIGTERM, waits for the node to exit, and asserts exit status 0:
// a graceful shutdown.
func (p *proc) Stop() {
	p.t.Helper()
	if p.exited() {
		p.t.Fatalf("pid %d exited on its own before SIGTERM: %v", p.PID(), p.waitErr)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		p.t.Fatalf("SIGTERM pid %d: %v", p.PID(), err)
	}
	p.await("SIGTERM")
	if st := p.cmd.ProcessState; !st.Exited() || st.ExitCode() != 0 {
		p.t.Fatalf("pid %d after SIGTERM: %v, want exit status 0", p.PID(), st)
	}
}

func (p *proc) await(sig string) {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(exitTimeout):
		_ = p.cmd.Process.Kill()
		p.t.Fatalf("pid %d still running %v after %s", p.PID(), exitTimeout, sig)
	}
}

// freePorts returns n distinct ports that were free a moment ago: it listens
// on port 0 n times at once and closes the listeners. Another process may
// take one meanwhile; tests use it only where a flag needs a number.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	ports := make([]int, n)
	for i := range ports {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("finding a free port: %v", err)
		}
		defer ln.Close()
		ports[i] = ln.Addr().(*net.TCPAddr).Port
	}
	return ports
}

// nodeDialers holds, for nodes a test started inside a network namespace
// (netns_test.go), a dial function that reaches the node's address from
// inside that namespace; the test adds and removes the entries. Every test
// client dials through dialNode, so cluster helpers work unchanged on such
// nodes.
var nodeDialers sync.Map // "host:port" -> func(ctx context.Context, network, addr string) (net.Conn, error)

// dialNode dials addr with the dialer registered for it in nodeDialers, or
// as http.Transport does by default when none is.
func dialNode(ctx context.Context, network, addr string) (net.Conn, error) {
	if d, ok := nodeDialers.Load(addr); ok {
		return d.(func(context.Context, string, string) (net.Conn, error))(ctx, network, addr)
	}
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}
