package e2e

import (
	"context"
	"flag"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	pollpkg "countd/internal/poll"
	"countd/internal/proc"
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
// the dir whatever the tests did. E2E_RACE_NODE builds it with -race: the
// node then exits 66 if it saw a data race, which fails Stop.
func buildAndRun(m *testing.M) int {
	dir, err := os.MkdirTemp("", "countd-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	if binPath, err = proc.Build(context.Background(), dir, os.Getenv("E2E_RACE_NODE") != ""); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
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
	root, err := proc.ModuleRoot(context.Background())
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

// node is one countd process that a test started, through internal/proc:
// everything done to it goes through its own PID, never by name. Its
// methods fail the test.
type node struct {
	t *testing.T
	*proc.Proc

	url  string // http://127.0.0.1:PORT, once "node started" is seen
	addr string // the listen field of "node started"
}

// startNode starts countd with args (plus -log-format=json, which args may
// override), finds the port it listens on from its "node started" log line,
// and waits until GET /health answers 200. The process is killed and reaped
// when the test ends, and its stderr is logged if the test failed.
func startNode(t *testing.T, args ...string) *node {
	t.Helper()
	p := spawn(t, args...)
	p.waitStarted()
	p.waitHealthy()
	return p
}

// spawn starts the process and registers its cleanup, without waiting for it.
func spawn(t *testing.T, args ...string) *node {
	t.Helper()
	return spawnVia(t, nil, args...)
}

// spawnVia is spawn with the binary run through a wrapper command that execs
// it in place, such as `ip netns exec NAME`: the wrapper's PID becomes the
// node's, so signals and the cleanup's SIGKILL still reach the node itself.
func spawnVia(t *testing.T, wrapper []string, args ...string) *node {
	t.Helper()
	p, err := proc.Start(proc.Spec{Name: "countd", Path: binary(t), Wrapper: wrapper,
		Args: append([]string{"-log-format=json"}, args...)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(exitTimeout); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			t.Logf("stderr of countd %q (pid %d):\n%s", p.Args, p.PID(), p.Output)
		}
	})
	return &node{t: t, Proc: p}
}

// waitStarted waits for the JSON "node started" line and reads its listen field.
func (p *node) waitStarted() {
	p.t.Helper()
	addr, err := p.WaitListening(startTimeout)
	if err != nil {
		p.t.Fatal(err)
	}
	p.addr, p.url = addr, "http://"+addr
}

// waitHealthy polls GET /health until it answers 200.
func (p *node) waitHealthy() {
	p.t.Helper()
	c := newClient(p.t, 1)
	c.Timeout = time.Second
	defer c.CloseIdleConnections()
	if err := p.WaitHealthy(context.Background(), c, p.url, startTimeout); err != nil {
		p.t.Fatal(err)
	}
}

// poll calls cond every pollInterval until it returns true or timeout
// passes; it reports whether cond came true.
func poll(timeout time.Duration, cond func() bool) bool {
	_, err := pollpkg.Until(context.Background(), timeout, pollInterval, "", func() (bool, string) { return cond(), "" })
	return err == nil
}

// URL is the base URL of the node's HTTP API, http://127.0.0.1:PORT.
func (p *node) URL() string { return p.url }

func (p *node) exited() bool { return p.Exited() }

// Kill sends SIGKILL to the node and waits until it is reaped. It fails the
// test if the node had already died on its own.
func (p *node) Kill() {
	p.t.Helper()
	if err := p.Proc.Kill(exitTimeout); err != nil {
		p.t.Fatal(err)
	}
}

// Stop sends SIGTERM, waits for the node to exit, and asserts exit status 0:
// a graceful shutdown.
func (p *node) Stop() {
	p.t.Helper()
	if err := p.Proc.Stop(exitTimeout); err != nil {
		p.t.Fatal(err)
	}
}

// await waits until the node is reaped after sig.
func (p *node) await(sig string) {
	p.t.Helper()
	if err := p.Wait(exitTimeout); err != nil {
		p.t.Fatalf("%v after %s", err, sig)
	}
}

// freePorts returns n distinct ports that were free a moment ago. Another
// process may take one meanwhile; tests use it only where a flag needs a
// number.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	ports, err := proc.FreePorts(n)
	if err != nil {
		t.Fatal(err)
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
