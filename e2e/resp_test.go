package e2e

import (
	"context"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"countd/internal/apiclient"
)

// The RESP port (issue 16) driven by Debian's redis-tools, clients nobody
// here wrote: redis-cli and redis-benchmark. Each test skips, saying why,
// when the tool it needs is not on PATH (.ci/run installs redis-tools).

// redisTool returns the path of a redis-tools program, or skips the test.
func redisTool(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s is not on PATH (Debian: apt-get install redis-tools): %v", name, err)
	}
	return path
}

// respNode is a node started with a RESP port.
type respNode struct {
	*node
	respPort int
}

// startRESPNode starts a node with -resp-port on a free port (0 turns the
// port off, so it needs a number) and args.
func startRESPNode(t *testing.T, args ...string) respNode {
	t.Helper()
	port := freePorts(t, 1)[0]
	n := startNode(t, append([]string{"-port=0", "-resp-port=" + strconv.Itoa(port)}, args...)...)
	return respNode{node: n, respPort: port}
}

// cli runs redis-cli against the node's RESP port with args and returns
// its output, trimmed. redis-cli exits 0 even on an error reply, which it
// prints as the reply's text ("ERR ...") when its stdout is not a terminal.
func (n respNode) cli(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(redisTool(t, "redis-cli"), append([]string{"-h", "127.0.0.1", "-p", strconv.Itoa(n.respPort)}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// httpValue reads counter over HTTP on n; ok is false on a 404.
func httpValue(t *testing.T, n *node, counter string) (int64, bool) {
	t.Helper()
	var v struct {
		Value int64 `json:"value"`
	}
	err := apiclient.Client{HTTP: newClient(t, 1)}.GetJSON(context.Background(), n.URL(), "/counters/"+counter, &v)
	if err != nil {
		if strings.Contains(err.Error(), "404") {
			return 0, false
		}
		t.Fatalf("GET /counters/%s on %s: %v", counter, n.URL(), err)
	}
	return v.Value, true
}

func TestRedisCLI(t *testing.T) {
	redisTool(t, "redis-cli")
	n := startRESPNode(t, "-memory")
	for _, step := range []struct {
		args []string
		want string // exact output, or a prefix when it ends in "..."
	}{
		{[]string{"PING"}, "PONG"},
		{[]string{"INCR", "rate:user:42"}, "1"},
		{[]string{"INCRBY", "rate:user:42", "5"}, "6"},
		{[]string{"DECRBY", "rate:user:42", "2"}, "4"},
		{[]string{"GET", "rate:user:42"}, "4"},
		{[]string{"TTL", "rate:user:42"}, "-1"},
		{[]string{"EXPIRE", "rate:user:42", "100"}, "1"},
		{[]string{"DEL", "rate:user:42"}, "1"},
		{[]string{"GET", "rate:user:42"}, ""},
		{[]string{"TTL", "rate:user:42"}, "-2"},
		{[]string{"EXISTS", "rate:user:42"}, "0"},
		{[]string{"SET", "a", "1"}, "ERR unknown command 'SET', with args beginning with: 'a' '1'..."},
		{[]string{"INCRBY", "a", "x"}, "ERR value is not an integer or out of range"},
		{[]string{"INCR", "a b"}, "ERR invalid counter name 'a b'..."},
	} {
		got := n.cli(t, step.args...)
		want, prefix := strings.CutSuffix(step.want, "...")
		if prefix && !strings.HasPrefix(got, want) || !prefix && got != want {
			t.Fatalf("redis-cli %q: got %q, want %q", step.args, got, step.want)
		}
	}
	// TTL after EXPIRE 100: from 1 to 100 seconds left.
	n.cli(t, "INCR", "hits")
	n.cli(t, "EXPIRE", "hits", "100")
	if ttl, err := strconv.Atoi(n.cli(t, "TTL", "hits")); err != nil || ttl < 1 || ttl > 100 {
		t.Fatalf("TTL hits after EXPIRE hits 100: %d (%v), want 1 to 100", ttl, err)
	}
}

// TestRESPAndHTTPAcrossNodes: a change made over RESP on A is read over
// HTTP on B, and one made over HTTP on B is read over RESP on A.
func TestRESPAndHTTPAcrossNodes(t *testing.T) {
	redisTool(t, "redis-cli")
	ports := freePorts(t, 2)
	a := startRESPNode(t, "-memory", "-peers="+strconv.Itoa(ports[1]), "-port="+strconv.Itoa(ports[0]))
	b := startNode(t, "-memory", "-peers="+strconv.Itoa(ports[0]), "-port="+strconv.Itoa(ports[1]))

	if got := a.cli(t, "INCRBY", "rate:user:42", "7"); got != "7" {
		t.Fatalf("INCRBY on A over RESP: %q, want 7", got)
	}
	if !poll(agreeTimeout, func() bool { v, ok := httpValue(t, b, "rate:user:42"); return ok && v == 7 }) {
		v, _ := httpValue(t, b, "rate:user:42")
		t.Fatalf("B over HTTP: rate:user:42 = %d, want 7 (A's RESP change)", v)
	}

	r := apiclient.Client{HTTP: newClient(t, 1)}.Change(b.URL(), "rate:user:42", -3)
	if r.Err != nil || r.Value != 4 {
		t.Fatalf("decrement by 3 on B over HTTP: %+v", r)
	}
	if !poll(agreeTimeout, func() bool { return a.cli(t, "GET", "rate:user:42") == "4" }) {
		t.Fatalf("A over RESP: GET rate:user:42 = %q, want 4 (B's HTTP change)", a.cli(t, "GET", "rate:user:42"))
	}
}

// TestRedisBenchmarkCountsExactly: redis-benchmark's INCRs of
// counter:__rand_int__ on one node of three; every node then holds
// exactly as many.
func TestRedisBenchmarkCountsExactly(t *testing.T) {
	bench := redisTool(t, "redis-benchmark")
	const total = 20000
	ports := freePorts(t, 3)
	peersOf := func(i int) string {
		var ps []string
		for j, p := range ports {
			if j != i {
				ps = append(ps, strconv.Itoa(p))
			}
		}
		return "-peers=" + strings.Join(ps, ",")
	}
	a := startRESPNode(t, "-data-dir="+t.TempDir(), "-port="+strconv.Itoa(ports[0]), peersOf(0))
	others := []*node{
		startNode(t, "-memory", "-port="+strconv.Itoa(ports[1]), peersOf(1)),
		startNode(t, "-memory", "-port="+strconv.Itoa(ports[2]), peersOf(2)),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, bench, "-h", "127.0.0.1", "-p", strconv.Itoa(a.respPort),
		"-t", "incr", "-n", strconv.Itoa(total), "-c", "16", "-q").CombinedOutput()
	if err != nil {
		t.Fatalf("redis-benchmark: %v: %s", err, out)
	}
	t.Logf("redis-benchmark: %s", strings.TrimSpace(string(out)))
	for _, n := range append([]*node{a.node}, others...) {
		if !poll(agreeTimeout, func() bool { v, ok := httpValue(t, n, "counter:__rand_int__"); return ok && v == total }) {
			v, _ := httpValue(t, n, "counter:__rand_int__")
			t.Fatalf("%s: counter:__rand_int__ = %d, want %d", n.URL(), v, total)
		}
	}
}
