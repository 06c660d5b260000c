package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"countd/internal/apiclient"
	"countd/internal/logsink"
	"countd/node"
)

// TestREADME runs every example of README.md (read by readme_parse_test.go)
// against real nodes and fails, naming the README line, when a reply's
// status, fields, value types or values no longer match what the README
// shows. Only what changes from run to run is masked: replica ids (each
// distinct id is numbered in order of appearance, so the README must show
// one id per node), times and uptime.
//
// Each section's nodes start in process from the README's own command lines
// (its ports mapped to free ones, fresh data dirs, fast timers), and the
// examples run once the nodes have settled: every running peer alive, every
// other peer down, as a reader typing the commands would find them. A GET is
// retried until it matches or a deadline passes (a change takes a moment to
// reach the other nodes); every other request is sent once.
func TestREADME(t *testing.T) {
	text, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	sections, err := parseReadme(string(text))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, s := range sections {
		n += len(s.examples)
	}
	if n < 20 {
		t.Fatalf("found %d examples in README.md, want at least 20: did the form of its examples change? (see readme_parse_test.go)", n)
	}
	for _, s := range sections {
		t.Run(fmt.Sprintf("line%d", s.starts[0].line), func(t *testing.T) {
			runSection(t, s)
		})
	}
}

// readmeFlags follow the README's flags on every node: fast timers, so that
// peers go down and come back within a fraction of a second.
var readmeFlags = []string{
	"-heartbeat-interval=50ms", "-heartbeat-timeout=250ms", "-down-probe-max=200ms",
	"-flush-delay=2ms", "-retry-min=10ms", "-retry-max=200ms", "-anti-entropy-interval=2s",
	"-log-level=debug",
}

const (
	settleTimeout = 20 * time.Second // for the nodes of a section to see each other
	getTimeout    = 10 * time.Second // for a GET to show what the README shows
)

// sectionRun is one section's nodes and what maps between them and the README.
type sectionRun struct {
	t        *testing.T
	ports    map[int]int       // README port -> real port
	running  map[string]string // README address -> base URL of the node
	toReadme *strings.Replacer // real addresses -> README addresses
	http     *http.Client
	logs     *logsink.Sink
	// The replica ids seen so far in the README and from the nodes.
	readmeIDs, nodeIDs map[string]string
}

func runSection(t *testing.T, s readmeSection) {
	r := &sectionRun{
		t:         t,
		ports:     map[int]int{},
		running:   map[string]string{},
		http:      &http.Client{Timeout: 10 * time.Second},
		logs:      &logsink.Sink{Max: 400},
		readmeIDs: map[string]string{},
		nodeIDs:   map[string]string{},
	}
	t.Cleanup(func() {
		if t.Failed() {
			lines, kept := r.logs.Last(30)
			t.Logf("the nodes' last %d of %d log lines:\n%s", len(lines), kept, strings.Join(lines, "\n"))
		}
	})
	t.Cleanup(r.http.CloseIdleConnections)
	listeners := r.reservePorts(s)
	for _, st := range s.starts {
		r.start(st, listeners)
	}
	r.settle(s)
	for _, ex := range s.examples {
		check := r.check
		if ex.cli != nil {
			check = r.checkCLI
		}
		if problem := check(ex); problem != "" {
			t.Errorf("README.md:%d drifted: $ %s\n%s", ex.line, ex.cmd, problem)
		}
	}
}

// reservePorts listens on a free port for every README port the section
// names, in the same order (so lists sorted by address keep the README's
// order), and holds them: a node that starts takes over its listener, and a
// port no node runs on stays one that answers nothing.
func (r *sectionRun) reservePorts(s readmeSection) map[int]net.Listener {
	var texts []string
	for _, st := range s.starts {
		texts = append(texts, st.args...)
	}
	for _, ex := range s.examples {
		texts = append(texts, ex.url, ex.body, strings.Join(ex.cli, " "))
		for _, w := range ex.want {
			texts = append(texts, w.text)
		}
	}
	var readme []int
	for _, p := range readmePort.FindAllString(strings.Join(texts, " "), -1) {
		n, _ := strconv.Atoi(p)
		if !slices.Contains(readme, n) {
			readme = append(readme, n)
		}
	}
	slices.Sort(readme)
	var lns []net.Listener
	for range readme {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			r.t.Fatal(err)
		}
		r.t.Cleanup(func() { ln.Close() }) // a node closes its own first; a second Close is harmless
		lns = append(lns, ln)
	}
	port := func(ln net.Listener) int { return ln.Addr().(*net.TCPAddr).Port }
	sort.Slice(lns, func(i, j int) bool { return port(lns[i]) < port(lns[j]) })
	byReadme := map[int]net.Listener{}
	var pairs []string
	for i, p := range readme {
		real := port(lns[i])
		if len(strconv.Itoa(real)) != len(strconv.Itoa(port(lns[0]))) {
			r.t.Fatalf("free ports of different lengths (%d, %d) would not sort like the README's", port(lns[0]), real)
		}
		r.ports[p], byReadme[p] = real, lns[i]
		pairs = append(pairs, fmt.Sprintf("127.0.0.1:%d", real), fmt.Sprintf("127.0.0.1:%d", p))
	}
	r.toReadme = strings.NewReplacer(pairs...)
	return byReadme
}

// mapPorts replaces the README's ports in s with the real ones.
func (r *sectionRun) mapPorts(s string) string {
	return readmePort.ReplaceAllStringFunc(s, func(p string) string {
		n, _ := strconv.Atoi(p)
		if real, ok := r.ports[n]; ok {
			return strconv.Itoa(real)
		}
		return p
	})
}

// start starts the node of one "go run main.go" line, through main's own
// flag parsing, on its reserved listener and a fresh data dir.
func (r *sectionRun) start(st readmeStart, listeners map[int]net.Listener) {
	t := r.t
	args := make([]string, 0, len(st.args)+len(readmeFlags)+1)
	for _, a := range st.args {
		args = append(args, r.mapPorts(a))
	}
	args = append(args, readmeFlags...)
	args = append(args, "-data-dir="+t.TempDir())
	var readme int
	for p, real := range r.ports {
		if slices.Contains(args, "-port="+strconv.Itoa(real)) {
			readme = p
		}
	}
	cfg, err := parseConfig(args, func(string) string { return "" }, r.logs)
	if err != nil {
		t.Fatalf("README.md:%d: go run main.go %s: %v", st.line, strings.Join(st.args, " "), err)
	}
	ln := listeners[readme]
	if ln == nil {
		t.Fatalf("README.md:%d: a node needs -port= with a README port (8080 to 8099)", st.line)
	}
	cfg.Listener = ln
	for p, real := range r.ports {
		if slices.Contains(args, "-resp-port="+strconv.Itoa(real)) {
			cfg.RESPListener = listeners[p]
		}
	}
	n, err := node.Open(cfg)
	if err != nil {
		t.Fatalf("README.md:%d: starting the node: %v", st.line, err)
	}
	t.Cleanup(func() { n.Close() })
	r.running[fmt.Sprintf("127.0.0.1:%d", readme)] = n.URL()
}

// settle waits until every running node sees every other running node alive
// and every peer that is not running down.
func (r *sectionRun) settle(s readmeSection) {
	var c apiclient.Client
	c.HTTP = r.http
	var last []string
	settled := func() bool {
		last = last[:0]
		ok := true
		for addr, url := range r.running {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			rows, err := c.Peers(ctx, url)
			cancel()
			if err != nil {
				last, ok = append(last, fmt.Sprintf("%s: %v", addr, err)), false
				continue
			}
			seen := 0
			for _, row := range rows {
				readmeAddr := r.toReadme.Replace(row.Addr)
				want := "down"
				if _, up := r.running[readmeAddr]; up {
					want = "alive"
					seen++
				}
				if row.State != want {
					ok = false
				}
			}
			if seen != len(r.running)-1 {
				ok = false
			}
			last = append(last, addr+" sees "+apiclient.DescribePeers(rows, r.toReadme.Replace))
		}
		return ok
	}
	deadline := time.Now().Add(settleTimeout)
	for !settled() {
		if time.Now().After(deadline) {
			slices.Sort(last)
			r.t.Fatalf("the nodes of README.md:%d-%d did not settle within %v (every running peer alive, every other down):\n%s",
				s.starts[0].line, s.starts[len(s.starts)-1].line, settleTimeout, strings.Join(last, "\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkCLI runs one redis-cli example with the real redis-cli and says how
// its output differs from the README's ("" if it does not, or if redis-cli
// is not on PATH: then the example is skipped, and the test says so).
func (r *sectionRun) checkCLI(ex readmeExample) string {
	path, err := exec.LookPath("redis-cli")
	if err != nil {
		r.t.Logf("README.md:%d skipped: redis-cli is not on PATH (Debian: apt-get install redis-tools)", ex.line)
		return ""
	}
	args := []string{"--no-raw", "-h", "127.0.0.1"}
	for _, a := range ex.cli {
		args = append(args, r.mapPorts(a))
	}
	ctx, cancel := context.WithTimeout(context.Background(), getTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, args...).CombinedOutput()
	if err != nil {
		return fmt.Sprintf("    redis-cli: %v: %s", err, out)
	}
	var got, want []string
	for _, l := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		got = append(got, strings.TrimRight(l, " "))
	}
	for _, w := range ex.want {
		want = append(want, w.text)
	}
	if slices.Equal(got, want) {
		return ""
	}
	return "    README:\n      " + strings.Join(want, "\n      ") + "\n    redis-cli:\n      " + strings.Join(got, "\n      ")
}

// readmeReply is what a node answered to one example, in README terms.
type readmeReply struct {
	status      int
	contentType string
	header      http.Header
	lines       []string // the body's lines, grep applied, README addresses
}

// check runs one example and says how the node's reply differs from the
// README's ("" if it does not). A GET is retried until it matches or
// getTimeout passes.
func (r *sectionRun) check(ex readmeExample) string {
	deadline := time.Now().Add(getTimeout)
	for {
		got, err := r.do(ex)
		var problem string
		if err != nil {
			problem = "    " + err.Error()
		} else {
			problem = r.compare(ex, got)
		}
		if problem == "" || ex.method != http.MethodGet || time.Now().After(deadline) {
			return problem
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// do sends the example's request as curl would.
func (r *sectionRun) do(ex readmeExample) (readmeReply, error) {
	u := r.mapPorts(ex.url)
	u = strings.Replace(u, "localhost:", "127.0.0.1:", 1) // the nodes listen on IPv4
	if !strings.Contains(u, "://") {
		u = "http://" + u
	}
	var body io.Reader
	if ex.body != "" {
		body = strings.NewReader(r.mapPorts(ex.body))
	}
	req, err := http.NewRequest(ex.method, u, body)
	if err != nil {
		return readmeReply{}, err
	}
	req.Header.Set("Accept", "*/*")
	for name, values := range ex.header {
		req.Header[name] = values
	}
	if ex.body != "" {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded") // curl -d's
	}
	resp, err := r.http.Do(req)
	if err != nil {
		return readmeReply{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return readmeReply{}, err
	}
	got := readmeReply{status: resp.StatusCode, contentType: resp.Header.Get("Content-Type"), header: resp.Header}
	if text := strings.TrimRight(r.toReadme.Replace(string(b)), "\n"); text != "" {
		for _, l := range strings.Split(text, "\n") {
			if ex.grep == nil || ex.grep.MatchString(l) {
				got.lines = append(got.lines, l)
			}
		}
	}
	return got, nil
}

// compare describes every way got differs from the example, one indented
// line each, then the README's output and the node's.
func (r *sectionRun) compare(ex readmeExample, got readmeReply) string {
	var diffs []string
	if got.status != ex.status {
		diffs = append(diffs, fmt.Sprintf("status: README %d, node %d", ex.status, got.status))
	}
	for _, name := range slices.Sorted(maps.Keys(ex.wantHeader)) {
		if v := got.header.Get(name); v != ex.wantHeader[name] {
			diffs = append(diffs, fmt.Sprintf("header %s: README %q, node %q", name, ex.wantHeader[name], v))
		}
	}
	want := make([]string, len(ex.want))
	for i, w := range ex.want {
		want[i] = w.text
	}
	switch {
	case len(want) == 1 && strings.HasPrefix(want[0], "{"):
		if !strings.HasPrefix(got.contentType, "application/json") {
			diffs = append(diffs, fmt.Sprintf("Content-Type: README JSON, node %q", got.contentType))
		}
		w, g := maskVolatile(want[0], r.readmeIDs), ""
		if len(got.lines) == 1 {
			g = maskVolatile(alignExpiresIn(want[0], got.lines[0]), r.nodeIDs)
		}
		diffs = append(diffs, jsonDiff(w, g)...)
	default:
		for i := range max(len(want), len(got.lines)) {
			switch {
			case i >= len(got.lines):
				diffs = append(diffs, fmt.Sprintf("line %d: README %q, node has no such line", i+1, want[i]))
			case i >= len(want):
				diffs = append(diffs, fmt.Sprintf("line %d: node %q, README has no such line", i+1, got.lines[i]))
			case maskVolatile(want[i], r.readmeIDs) != maskVolatile(got.lines[i], r.nodeIDs):
				diffs = append(diffs, fmt.Sprintf("line %d: README %q, node %q", i+1, want[i], got.lines[i]))
			}
		}
	}
	if len(diffs) == 0 {
		return ""
	}
	var b strings.Builder
	masked := false
	for _, d := range diffs {
		fmt.Fprintf(&b, "    %s\n", d)
		masked = masked || strings.Contains(d, "<")
	}
	if masked {
		b.WriteString("    (<replica-N> is the Nth distinct replica id of this section, so one node shows one id;\n" +
			"    <time> an RFC 3339 time in whole seconds, UTC; <seconds> a whole number)\n")
	}
	if len(want) == 0 {
		b.WriteString("    README: (no body)\n")
	}
	for _, w := range ex.want {
		fmt.Fprintf(&b, "    README.md:%d: %s\n", w.line, w.text)
	}
	if len(got.lines) == 0 {
		b.WriteString("    node: (no body)\n")
	}
	for _, l := range got.lines {
		fmt.Fprintf(&b, "    node: %s\n", l)
	}
	return strings.TrimRight(b.String(), "\n")
}

// The volatile values, masked on both sides before comparing.
var (
	replicaField = regexp.MustCompile(`"replica":"([0-9a-f]{16})"`)
	timeField    = regexp.MustCompile(`"(started|last_seen)":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"`)
	uptimeField  = regexp.MustCompile(`"uptime_seconds":\d+`)
)

// expiresInField matches an expires_in field, of one counter (a number) or
// of several (an object of numbers); expiresInValue each number in it.
var (
	expiresInField = regexp.MustCompile(`"expires_in":(\d+|\{[^{}]*\})`)
	expiresInValue = regexp.MustCompile(`:\d+`)
)

// alignExpiresIn returns got with each seconds-left value of its
// expires_in fields that is at most expiresInSlack below the README's, in
// the same place, replaced by the README's: the seconds count down while
// the examples run. Any other difference stays, so that it shows.
func alignExpiresIn(want, got string) string {
	const expiresInSlack = 3
	var wants []int
	for _, f := range expiresInField.FindAllString(want, -1) {
		for _, v := range expiresInValue.FindAllString(f[len(`"expires_in"`):], -1) {
			n, _ := strconv.Atoi(v[1:])
			wants = append(wants, n)
		}
	}
	i := 0
	return expiresInField.ReplaceAllStringFunc(got, func(f string) string {
		return `"expires_in"` + expiresInValue.ReplaceAllStringFunc(f[len(`"expires_in"`):], func(v string) string {
			defer func() { i++ }()
			n, _ := strconv.Atoi(v[1:])
			if i < len(wants) && n <= wants[i] && n >= wants[i]-expiresInSlack {
				return ":" + strconv.Itoa(wants[i])
			}
			return v
		})
	})
}

// maskVolatile replaces each time with <time>, uptime with <seconds>, and each
// replica id with <replica-N>, N counting the distinct ids in ids (which it
// extends) in order of appearance. A value in another format stays as it is,
// so that a change of format shows.
func maskVolatile(s string, ids map[string]string) string {
	s = replicaField.ReplaceAllStringFunc(s, func(f string) string {
		id := replicaField.FindStringSubmatch(f)[1]
		if _, ok := ids[id]; !ok {
			ids[id] = fmt.Sprintf("<replica-%d>", len(ids)+1)
		}
		return `"replica":"` + ids[id] + `"`
	})
	s = timeField.ReplaceAllString(s, `"$1":"<time>"`)
	return uptimeField.ReplaceAllString(s, `"uptime_seconds":"<seconds>"`)
}

// jsonDiff describes how the JSON text got differs from want: fields
// missing or extra, values or types that differ, and (if nothing else)
// the order of fields.
func jsonDiff(want, got string) []string {
	var w, g any
	if err := decodeOneJSON(want, &w); err != nil {
		return []string{"the README's output is not JSON: " + err.Error()}
	}
	if err := decodeOneJSON(got, &g); err != nil {
		return []string{"the node's reply is not one line of JSON: " + err.Error()}
	}
	diffs := jsonDiffValues("", w, g)
	if len(diffs) == 0 && want != got {
		diffs = append(diffs, "same fields and values, in another order")
	}
	return diffs
}

func decodeOneJSON(s string, v *any) error {
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("more than one value")
	}
	return nil
}

func jsonDiffValues(path string, want, got any) []string {
	at := func(p string) string {
		if p == "" {
			return "the reply"
		}
		return p
	}
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			break
		}
		var diffs []string
		for _, k := range jsonKeys(w) {
			if _, ok := g[k]; !ok {
				diffs = append(diffs, fmt.Sprintf("%s: README has field %q, node has not", at(path), k))
				continue
			}
			diffs = append(diffs, jsonDiffValues(jsonPath(path, k), w[k], g[k])...)
		}
		for _, k := range jsonKeys(g) {
			if _, ok := w[k]; !ok {
				diffs = append(diffs, fmt.Sprintf("%s: node has field %q (%s), README has not", at(path), k, brief(jsonText(g[k]))))
			}
		}
		return diffs
	case []any:
		g, ok := got.([]any)
		if !ok {
			break
		}
		var diffs []string
		for i := range min(len(w), len(g)) {
			diffs = append(diffs, jsonDiffValues(fmt.Sprintf("%s[%d]", path, i), w[i], g[i])...)
		}
		if len(w) != len(g) {
			diffs = append(diffs, fmt.Sprintf("%s: README lists %d, node %d", at(path), len(w), len(g)))
		}
		return diffs
	}
	if jsonKind(want) != jsonKind(got) || jsonText(want) != jsonText(got) {
		return []string{fmt.Sprintf("%s: README %s %s, node %s %s", at(path), jsonKind(want), brief(jsonText(want)), jsonKind(got), brief(jsonText(got)))}
	}
	return nil
}

func jsonPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func jsonKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// jsonKind names a decoded JSON value's type.
func jsonKind(v any) string {
	switch v.(type) {
	case map[string]any:
		return "object"
	case []any:
		return "array"
	case string:
		return "string"
	case json.Number:
		return "number"
	case bool:
		return "boolean"
	}
	return "null"
}

func jsonText(v any) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.Encode(v)
	return strings.TrimSpace(b.String())
}

// brief shortens a value for a one-line message; the whole reply follows it.
func brief(s string) string {
	const limit = 120
	if len(s) <= limit {
		return s
	}
	return s[:limit] + "…"
}

func TestAlignExpiresIn(t *testing.T) {
	for _, tt := range []struct{ want, got, out string }{
		{`{"expires_in":60}`, `{"expires_in":60}`, `{"expires_in":60}`},
		{`{"expires_in":60}`, `{"expires_in":58}`, `{"expires_in":60}`},
		{`{"expires_in":60}`, `{"expires_in":56}`, `{"expires_in":56}`}, // too far: shows
		{`{"expires_in":60}`, `{"expires_in":61}`, `{"expires_in":61}`}, // never counts up
		{`{"value":60}`, `{"value":59}`, `{"value":59}`},
		{`{"expires_in":{"a":60,"b":3600}}`, `{"expires_in":{"a":59,"b":3599}}`, `{"expires_in":{"a":60,"b":3600}}`},
		{`{"expires_in":{"a":60}}`, `{"expires_in":{"a":59,"b":3599}}`, `{"expires_in":{"a":60,"b":3599}}`},
		{`{"counters":{"a":1}}`, `{"counters":{"a":1},"expires_in":{"a":9}}`, `{"counters":{"a":1},"expires_in":{"a":9}}`},
	} {
		if got := alignExpiresIn(tt.want, tt.got); got != tt.out {
			t.Errorf("alignExpiresIn(%s, %s) = %s, want %s", tt.want, tt.got, got, tt.out)
		}
	}
}
