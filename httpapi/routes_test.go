package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"mime"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"countd/actors"
	"countd/crdt"
	"countd/metrics"
	"countd/wire"
)

const (
	testNode    = "n1:1"
	testReplica = "0123456789abcdef"
	// otherReplica writes the entries tests preload, as if merged from a peer.
	otherReplica = "fedcba9876543210"
)

// fakeCounters implements Counters over a real crdt.State. It can be told to
// fail every call with err, or to run block (which may wait on ctx) instead
// of touching the state. It keeps the contract of idempotency keys as a
// node does: a key seen with the same change is a replay (Replayed, the
// current value, nothing counted), with another change ErrKeyConflict, and
// a key in inFlight is ErrKeyInFlight.
type fakeCounters struct {
	mu       sync.Mutex
	state    *crdt.State
	err      error
	block    func(ctx context.Context) error
	calls    int
	changes  []actors.Change          // every change Apply was given, as given
	keys     map[string]actors.Change // the change each key was first used for
	inFlight map[string]bool          // keys whose first change is still being made
}

var _ Counters = (*fakeCounters)(nil)

func newFake() *fakeCounters {
	return &fakeCounters{state: crdt.New(testReplica)}
}

// before counts the call and returns the error it must fail with, if any.
func (f *fakeCounters) before(ctx context.Context) error {
	f.mu.Lock()
	f.calls++
	err, block := f.err, f.block
	f.mu.Unlock()
	if block != nil {
		return block(ctx)
	}
	return err
}

func (f *fakeCounters) Apply(ctx context.Context, ch actors.Change) (*actors.ChangeResult, error) {
	if err := f.before(ctx); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.changes = append(f.changes, ch)
	if ch.Key != "" {
		first, seen := f.keys[ch.Key]
		switch {
		case f.inFlight[ch.Key]:
			return nil, actors.ErrKeyInFlight
		case seen && (first.Counter != ch.Counter || first.Neg != ch.Neg || first.By != ch.By):
			return nil, fmt.Errorf("%w: %s", actors.ErrKeyConflict, describeChange(first))
		case seen:
			v, exp, _ := f.state.Lookup(ch.Counter)
			return &actors.ChangeResult{Counter: ch.Counter, Value: v, Expires: exp, Version: f.state.Version(), Replayed: true}, nil
		}
	}
	now := nowMs()
	if _, exp, ok := f.state.Lookup(ch.Counter); ok && exp != 0 && exp <= now {
		f.state.Delete(ch.Counter, now)
	}
	var v int64
	var err error
	if ch.Neg {
		v, err = f.state.Decrement(ch.Counter, ch.By)
	} else {
		v, err = f.state.Increment(ch.Counter, ch.By)
	}
	if err != nil {
		return nil, err
	}
	if ch.TTL > 0 {
		f.state.Expire(ch.Counter, now+uint64(ch.TTL.Milliseconds()), true, now)
	}
	_, exp, _ := f.state.Lookup(ch.Counter)
	f.rememberKey(ch)
	return &actors.ChangeResult{Counter: ch.Counter, Value: v, Expires: exp, Version: f.state.Version()}, nil
}

// rememberKey records, if ch has a key, the change it was first used for,
// once ch is applied (f.mu held).
func (f *fakeCounters) rememberKey(ch actors.Change) {
	if ch.Key == "" {
		return
	}
	if f.keys == nil {
		f.keys = make(map[string]actors.Change)
	}
	f.keys[ch.Key] = ch
}

// describeChange says what a change was, as a key conflict names it.
func describeChange(ch actors.Change) string {
	op := "increment"
	if ch.Neg {
		op = "decrement"
	}
	return fmt.Sprintf("%s counter %q by %d", op, ch.Counter, ch.By)
}

// lastChange returns the last change Apply was given.
func (f *fakeCounters) lastChange(t *testing.T) actors.Change {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.changes) == 0 {
		t.Fatal("Apply was never called")
	}
	return f.changes[len(f.changes)-1]
}

func (f *fakeCounters) Delete(ctx context.Context, counter string) (bool, error) {
	if err := f.before(ctx); err != nil {
		return false, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.state.Delete(counter, nowMs()), nil
}

func (f *fakeCounters) Expire(ctx context.Context, counter string, ttl time.Duration, nx bool) (*actors.ExpireResult, error) {
	if err := f.before(ctx); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	now := nowMs()
	if _, exp, ok := f.state.Lookup(counter); ok && exp != 0 && exp <= now {
		f.state.Delete(counter, now) // as the CounterActor: an expired counter is gone
	}
	set, err := f.state.Expire(counter, now+uint64(ttl.Milliseconds()), nx, now)
	if err != nil {
		return nil, err
	}
	v, exp, _ := f.state.Lookup(counter)
	return &actors.ExpireResult{Set: set, Value: v, Expires: exp}, nil
}

func (f *fakeCounters) Lookup(ctx context.Context, counter string) (*actors.CounterValue, error) {
	if err := f.before(ctx); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	v, exp, ok := f.state.Lookup(counter)
	if !ok || exp != 0 && exp <= nowMs() {
		return &actors.CounterValue{Counter: counter}, nil
	}
	return &actors.CounterValue{Counter: counter, Value: v, Expires: exp, Exists: true}, nil
}

func (f *fakeCounters) Range(ctx context.Context, fn func(actors.CounterValue) error) error {
	if err := f.before(ctx); err != nil {
		return err
	}
	f.mu.Lock()
	values := f.state.Values(nowMs())
	f.mu.Unlock()
	for _, name := range slices.Sorted(maps.Keys(values)) {
		c := values[name]
		if err := fn(actors.CounterValue{Counter: name, Value: c.Value, Expires: c.Expires, Exists: true}); err != nil {
			return err
		}
	}
	return nil
}

func nowMs() uint64 { return uint64(time.Now().UnixMilli()) }

// snapshot is the fake's state as a test compares it: every value, and the
// version, which any change at all bumps.
type snapshot struct {
	values  map[string]int64
	version uint64
}

func (f *fakeCounters) snapshot() snapshot {
	f.mu.Lock()
	defer f.mu.Unlock()
	return snapshot{valuesOf(f.state), f.state.Version()}
}

func (f *fakeCounters) callCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// preload merges entries into the fake's state, as a peer's push would.
func (f *fakeCounters) preload(t *testing.T, entries ...crdt.Entry) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, err := f.state.Merge(entries); err != nil {
		t.Fatalf("preload: %v", err)
	}
}

// assertUnchanged fails the test if the fake's state moved from before.
func (f *fakeCounters) assertUnchanged(t *testing.T, before snapshot) {
	t.Helper()
	after := f.snapshot()
	if !maps.Equal(before.values, after.values) || before.version != after.version {
		t.Errorf("state changed: before %v (version %d), after %v (version %d)",
			before.values, before.version, after.values, after.version)
	}
}

// other returns an entry of otherReplica for counter.
func other(counter string, p, n uint64) crdt.Entry {
	return crdt.Entry{Counter: counter, Replica: otherReplica, P: p, N: n}
}

func newTestServer(c Counters) *Server {
	return NewServer(Config{Counters: c, Node: testNode, Replica: testReplica})
}

// loopbackClient is the remote address of the requests do and doBody make:
// with no cluster key, the node-to-node routes take only loopback clients
// (auth_test.go tests the others).
const loopbackClient = "127.0.0.1:40000"

// do sends one request straight to the server's handler, from loopback.
func do(t *testing.T, s *Server, method, target string, body io.Reader) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, target, body)
	req.RemoteAddr = loopbackClient
	return serve(t, s, req)
}

// assertJSONType fails unless the response's media type is application/json.
func assertJSONType(t *testing.T, h http.Header) {
	t.Helper()
	ct := h.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || mt != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
}

// decodeJSON decodes exactly one JSON value, keeping numbers exact.
func decodeJSON(t *testing.T, b []byte) any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("body %q is not JSON: %v", b, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		t.Fatalf("body %q has data after the JSON value", b)
	}
	return v
}

// assertBody fails unless the body is the JSON value want (field order and
// spacing aside; numbers compared exactly; no missing or extra fields).
func assertBody(t *testing.T, got []byte, want string) {
	t.Helper()
	g, w := decodeJSON(t, got), decodeJSON(t, []byte(want))
	if !reflect.DeepEqual(g, w) {
		t.Errorf("body = %s, want %s", bytes.TrimSpace(got), want)
	}
}

// assertError fails unless rec is status with a JSON body {"error": "..."},
// the message non-empty and no other field.
func assertError(t *testing.T, rec *httptest.ResponseRecorder, status int) {
	t.Helper()
	assertErrorResponse(t, rec.Code, rec.Header(), rec.Body.Bytes(), status)
}

func assertErrorResponse(t *testing.T, code int, h http.Header, body []byte, status int) {
	t.Helper()
	if code != status {
		t.Errorf("status = %d, want %d (body %q, Location %q)", code, status, body, h.Get("Location"))
	}
	assertJSONType(t, h)
	var e map[string]any
	if err := json.Unmarshal(body, &e); err != nil {
		t.Errorf("error body %q is not a JSON object: %v", body, err)
		return
	}
	msg, ok := e["error"].(string)
	if !ok || msg == "" || len(e) != 1 {
		t.Errorf(`error body = %q, want {"error": "<non-empty>"} alone`, body)
	}
	assertPlain(t, msg)
}

// internalWords mark an error message that speaks Go rather than English:
// package prefixes and encoding/json's own wording.
var internalWords = []string{
	"httpapi:", "actors:", "crdt:", "wire:", "store:", "json:", "bad request:",
	"invalid character", "Go value", "Go struct", "unmarshal", "literal null",
}

// assertPlain fails if msg, an error message meant for a client, carries
// a Go package prefix or a decoder's internals.
func assertPlain(t *testing.T, msg string) {
	t.Helper()
	for _, w := range internalWords {
		if strings.Contains(msg, w) {
			t.Errorf("error message %q speaks Go (%q), not to the user", msg, w)
		}
	}
}

// errorMessage returns the message of a JSON error body.
func errorMessage(t *testing.T, body []byte) string {
	t.Helper()
	var e struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("error body %q: %v", body, err)
	}
	return e.Error
}

// assertMentions fails unless the error body's message holds every one of
// words.
func assertMentions(t *testing.T, body []byte, words ...string) {
	t.Helper()
	msg := errorMessage(t, body)
	for _, w := range words {
		if !strings.Contains(msg, w) {
			t.Errorf("error message %q does not mention %q", msg, w)
		}
	}
}

func valueBody(counter string, v int64) string {
	return fmt.Sprintf(`{"counter":%q,"value":%d,"node":%q}`, counter, v, testNode)
}

var (
	name128 = strings.Repeat("n", crdt.MaxNameLen)
	name129 = strings.Repeat("n", crdt.MaxNameLen+1)
)

const (
	pow53       = uint64(1) << 53
	pow53Text   = "9007199254740992"
	pow53Plus1  = "9007199254740993"
	pow64Text   = "18446744073709551616"
	maxU64Text  = "18446744073709551615"
	maxI64Plus1 = "9223372036854775808"
)

func TestRoutesSuccess(t *testing.T) {
	tests := []struct {
		name    string
		preload []crdt.Entry
		method  string
		target  string
		want    string           // exact JSON body
		after   map[string]int64 // the fake's values after the request
	}{
		{
			name: "increment default by 1", method: "POST", target: "/increment",
			want: valueBody("default", 1), after: map[string]int64{"default": 1},
		},
		{
			name: "increment default by 5", method: "POST", target: "/increment?by=5",
			preload: []crdt.Entry{other("default", 10, 0)},
			want:    valueBody("default", 15), after: map[string]int64{"default": 15},
		},
		{
			name: "increment by 2^53 is the largest step", method: "POST", target: "/increment?by=" + pow53Text,
			want: valueBody("default", 1<<53), after: map[string]int64{"default": 1 << 53},
		},
		{
			name: "increment to exactly MaxInt64", method: "POST", target: "/increment",
			preload: []crdt.Entry{other("default", math.MaxInt64-1, 0)},
			want:    valueBody("default", math.MaxInt64), after: map[string]int64{"default": math.MaxInt64},
		},
		{
			name: "decrement default by 1", method: "POST", target: "/decrement",
			want: valueBody("default", -1), after: map[string]int64{"default": -1},
		},
		{
			name: "decrement default by 7", method: "POST", target: "/decrement?by=7",
			preload: []crdt.Entry{other("default", 3, 0)},
			want:    valueBody("default", -4), after: map[string]int64{"default": -4},
		},
		{
			name: "decrement to exactly MinInt64", method: "POST", target: "/decrement",
			preload: []crdt.Entry{other("default", 0, 1<<63-1)},
			want:    valueBody("default", math.MinInt64), after: map[string]int64{"default": math.MinInt64},
		},
		{
			name: "get default when unknown is 0", method: "GET", target: "/counter",
			want: valueBody("default", 0), after: map[string]int64{},
		},
		{
			name: "get default", method: "GET", target: "/counter",
			preload: []crdt.Entry{other("default", 9, 2), other("x", 1, 0)},
			want:    valueBody("default", 7), after: map[string]int64{"default": 7, "x": 1},
		},
		{
			name: "increment named counter", method: "POST", target: "/counters/hits/increment?by=3",
			preload: []crdt.Entry{other("hits", 4, 0), other("default", 1, 0)},
			want:    valueBody("hits", 7), after: map[string]int64{"hits": 7, "default": 1},
		},
		{
			name: "decrement named counter", method: "POST", target: "/counters/hits/decrement",
			want: valueBody("hits", -1), after: map[string]int64{"hits": -1},
		},
		{
			name: "decrement named counter by 2^53", method: "POST", target: "/counters/hits/decrement?by=" + pow53Text,
			want: valueBody("hits", -(1 << 53)), after: map[string]int64{"hits": -(1 << 53)},
		},
		{
			name: "get named counter", method: "GET", target: "/counters/hits",
			preload: []crdt.Entry{other("hits", 40, 2)},
			want:    valueBody("hits", 38), after: map[string]int64{"hits": 38},
		},
		{
			name: "get unknown named counter is 0 and creates nothing", method: "GET", target: "/counters/nope",
			want: valueBody("nope", 0), after: map[string]int64{},
		},
		{
			name: "name of every allowed character", method: "POST", target: "/counters/Az09._-/increment",
			want: valueBody("Az09._-", 1), after: map[string]int64{"Az09._-": 1},
		},
		{
			name: "name of 128 characters", method: "POST", target: "/counters/" + name128 + "/increment",
			want: valueBody(name128, 1), after: map[string]int64{name128: 1},
		},
		{
			name: "name of 128 characters get", method: "GET", target: "/counters/" + name128,
			preload: []crdt.Entry{other(name128, 5, 0)},
			want:    valueBody(name128, 5), after: map[string]int64{name128: 5},
		},
		{
			name: "name of one character", method: "POST", target: "/counters/x/decrement",
			want: valueBody("x", -1), after: map[string]int64{"x": -1},
		},
		{
			name: "percent-encoded allowed characters are unescaped", method: "POST", target: "/counters/%41bc/increment",
			want: valueBody("Abc", 1), after: map[string]int64{"Abc": 1},
		},
		// ':' is allowed for Redis's key convention, raw or escaped.
		{
			name: "name with colons increment", method: "POST", target: "/counters/rate:user:42/increment?by=3",
			want: valueBody("rate:user:42", 3), after: map[string]int64{"rate:user:42": 3},
		},
		{
			name: "name with escaped colons get", method: "GET", target: "/counters/rate%3Auser%3a42",
			preload: []crdt.Entry{other("rate:user:42", 4, 0)},
			want:    valueBody("rate:user:42", 4), after: map[string]int64{"rate:user:42": 4},
		},
		{
			name: "name of colons only", method: "POST", target: "/counters/:/decrement",
			want: valueBody(":", -1), after: map[string]int64{":": -1},
		},
		// "." and ".." are valid names ([A-Za-z0-9._:-]{1,128}); they must
		// not be treated as path segments to clean away.
		{
			name: "name dot increment", method: "POST", target: "/counters/./increment",
			want: valueBody(".", 1), after: map[string]int64{".": 1},
		},
		{
			name: "name dot get", method: "GET", target: "/counters/.",
			preload: []crdt.Entry{other(".", 2, 0)},
			want:    valueBody(".", 2), after: map[string]int64{".": 2},
		},
		{
			name: "name dotdot decrement", method: "POST", target: "/counters/../decrement",
			want: valueBody("..", -1), after: map[string]int64{"..": -1},
		},
		{
			name: "list counters when none", method: "GET", target: "/counters",
			want: `{"counters":{},"node":"n1:1"}`, after: map[string]int64{},
		},
		{
			name: "list counters", method: "GET", target: "/counters",
			preload: []crdt.Entry{other("a", 1, 0), other("b", 0, 2), other("big", math.MaxInt64, 0)},
			want:    `{"counters":{"a":1,"b":-2,"big":9223372036854775807},"node":"n1:1"}`,
			after:   map[string]int64{"a": 1, "b": -2, "big": math.MaxInt64},
		},
		{
			name: "health", method: "GET", target: "/health",
			want: `{"status":"ok","node":"n1:1","replica":"0123456789abcdef"}`, after: map[string]int64{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake()
			f.preload(t, tt.preload...)
			rec := do(t, newTestServer(f), tt.method, tt.target, nil)
			if rec.Code != http.StatusOK {
				t.Fatalf("status = %d, want 200 (body %q, Location %q)", rec.Code, rec.Body, rec.Header().Get("Location"))
			}
			assertJSONType(t, rec.Header())
			assertBody(t, rec.Body.Bytes(), tt.want)
			if got := f.snapshot().values; !maps.Equal(got, tt.after) {
				t.Errorf("state after = %v, want %v", got, tt.after)
			}
		})
	}
}

// TestRoutesRepeatedIncrements checks that each 200 reports the value after
// its own change, so a client can trust the value it is given.
func TestRoutesRepeatedIncrements(t *testing.T) {
	f := newFake()
	s := newTestServer(f)
	steps := []struct {
		method, target string
		want           int64
	}{
		{"POST", "/counters/c/increment?by=10", 10},
		{"POST", "/counters/c/increment", 11},
		{"POST", "/counters/c/decrement?by=4", 7},
		{"GET", "/counters/c", 7},
		{"POST", "/counters/c/decrement?by=9", -2},
	}
	for i, st := range steps {
		rec := do(t, s, st.method, st.target, nil)
		if rec.Code != http.StatusOK {
			t.Fatalf("step %d %s %s: status %d, body %q", i, st.method, st.target, rec.Code, rec.Body)
		}
		assertBody(t, rec.Body.Bytes(), valueBody("c", st.want))
	}
}

// changeRoutes are the routes that take ?by=.
var changeRoutes = []string{
	"/increment",
	"/decrement",
	"/counters/c/increment",
	"/counters/c/decrement",
}

func TestRoutesBadBy(t *testing.T) {
	acceptInvalidRequests(t) // tests of bad input
	tests := []struct {
		name  string
		query string // raw query, appended after "?"
	}{
		{"zero", "by=0"},
		{"negative", "by=-1"},
		{"fraction", "by=1.5"},
		{"exponent", "by=1e3"},
		{"word", "by=abc"},
		{"empty", "by="},
		{"no value", "by"},
		{"2^53+1", "by=" + pow53Plus1},
		{"2^63", "by=" + maxI64Plus1},
		{"MaxUint64", "by=" + maxU64Text},
		{"2^64", "by=" + pow64Text},
		{"many digits", "by=" + strings.Repeat("9", 40)},
		{"leading space", "by=%201"},
		{"plus decodes to leading space", "by=+1"},
		{"explicit plus sign", "by=%2B1"},
		{"trailing space", "by=1%20"},
		{"hex", "by=0x10"},
		{"unicode digit", "by=%D9%A1"}, // ARABIC-INDIC DIGIT ONE
		{"nul byte", "by=1%00"},
		{"repeated", "by=1&by=2"},
		{"repeated equal", "by=1&by=1"},
		{"repeated with empty", "by=&by=1"},
	}
	for _, route := range changeRoutes {
		for _, tt := range tests {
			t.Run(route+"/"+tt.name, func(t *testing.T) {
				f := newFake()
				f.preload(t, other("default", 5, 1), other("c", 2, 0))
				before := f.snapshot()
				rec := do(t, newTestServer(f), "POST", route+"?"+tt.query, nil)
				assertError(t, rec, http.StatusBadRequest)
				f.assertUnchanged(t, before)
			})
		}
	}
}

func TestRoutesBadName(t *testing.T) {
	acceptInvalidRequests(t) // tests of bad input
	names := []struct {
		name string
		seg  string // the path segment as sent
	}{
		{"129 characters", name129},
		{"space", "a%20b"},
		{"encoded slash", "a%2Fb"},
		{"encoded dotdot slash", "%2E%2E%2Fx"},
		{"unicode raw", "café"},
		{"unicode encoded", "caf%C3%A9"},
		{"plus", "a+b"},
		{"semicolon", "a;b"},
		{"comma", "a,b"},
		{"equals", "a=b"},
		{"tilde", "a~b"},
		{"star", "a*b"},
		{"at", "a@b"},
		{"nul", "a%00b"},
		{"percent", "100%25"},
		{"129 characters encoded", "%6E" + strings.Repeat("n", crdt.MaxNameLen)},
	}
	routes := []struct {
		method string
		path   func(seg string) string
	}{
		{"GET", func(seg string) string { return "/counters/" + seg }},
		{"POST", func(seg string) string { return "/counters/" + seg + "/increment" }},
		{"POST", func(seg string) string { return "/counters/" + seg + "/decrement" }},
	}
	for _, r := range routes {
		for _, tt := range names {
			target := r.path(tt.seg)
			t.Run(r.method+" "+r.path("{"+tt.name+"}"), func(t *testing.T) {
				f := newFake()
				f.preload(t, other("a", 1, 0))
				before := f.snapshot()
				rec := do(t, newTestServer(f), r.method, target, nil)
				assertError(t, rec, http.StatusBadRequest)
				f.assertUnchanged(t, before)
				if n := f.callCount(); n != 0 {
					t.Errorf("Counters called %d times for a bad name", n)
				}
			})
		}
	}
}

// TestRoutesEmptyName checks that an empty counter name is refused with a
// JSON error, not redirected: a client following a 301 turns a POST into a
// GET of another resource.
func TestRoutesEmptyName(t *testing.T) {
	acceptInvalidRequests(t) // tests of bad input
	for _, tt := range []struct{ method, target string }{
		{"GET", "/counters/"},
		{"POST", "/counters//increment"},
		{"POST", "/counters//decrement"},
	} {
		t.Run(tt.method+" "+tt.target, func(t *testing.T) {
			f := newFake()
			before := f.snapshot()
			rec := do(t, newTestServer(f), tt.method, tt.target, nil)
			want := http.StatusNotFound
			if rec.Code == http.StatusBadRequest { // either fits: no such path, or a bad name
				want = http.StatusBadRequest
			}
			assertError(t, rec, want)
			f.assertUnchanged(t, before)
		})
	}
}

func TestRoutesOverflow(t *testing.T) {
	tests := []struct {
		name    string
		preload []crdt.Entry
		target  string
	}{
		{
			name:    "increment past MaxInt64",
			preload: []crdt.Entry{other("default", math.MaxInt64, 0)},
			target:  "/increment",
		},
		{
			name:    "increment by 2^53 one past MaxInt64",
			preload: []crdt.Entry{other("big", math.MaxInt64-pow53+1, 0)},
			target:  "/counters/big/increment?by=" + pow53Text,
		},
		{
			name:    "decrement past MinInt64",
			preload: []crdt.Entry{other("default", 0, 1<<63)},
			target:  "/decrement",
		},
		{
			name:    "decrement by 2^53 one past MinInt64",
			preload: []crdt.Entry{other("small", 0, 1<<63-pow53+1)},
			target:  "/counters/small/decrement?by=" + pow53Text,
		},
		{
			// The value is 0, but this replica's own P total would wrap.
			name:    "own increment total would wrap uint64",
			preload: []crdt.Entry{{Counter: "w", Replica: testReplica, P: math.MaxUint64, N: math.MaxUint64}},
			target:  "/counters/w/increment",
		},
		{
			name:    "own decrement total would wrap uint64",
			preload: []crdt.Entry{{Counter: "w", Replica: testReplica, P: math.MaxUint64, N: math.MaxUint64}},
			target:  "/counters/w/decrement",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake()
			f.preload(t, tt.preload...)
			before := f.snapshot()
			rec := do(t, newTestServer(f), "POST", tt.target, nil)
			assertError(t, rec, http.StatusConflict)
			f.assertUnchanged(t, before)
		})
	}
}

func TestRoutesMethodNotAllowed(t *testing.T) {
	acceptInvalidRequests(t) // tests of bad input
	tests := []struct{ method, target string }{
		{"GET", "/increment"},
		{"PUT", "/increment"},
		{"DELETE", "/increment"},
		{"GET", "/decrement"},
		{"PATCH", "/decrement"},
		{"POST", "/counter"},
		{"DELETE", "/counter"},
		{"GET", "/counters/c/increment"},
		{"PUT", "/counters/c/increment"},
		{"GET", "/counters/c/decrement"},
		{"DELETE", "/counters/c/decrement"},
		{"POST", "/counters/c"},
		{"PUT", "/counters/c"},
		{"PATCH", "/counters/c"},
		{"GET", "/counters/c/expire"},
		{"DELETE", "/counters/c/expire"},
		{"POST", "/counters"},
		{"DELETE", "/counters"},
		{"POST", "/health"},
		{"PUT", "/health"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.target, func(t *testing.T) {
			f := newFake()
			f.preload(t, other("default", 1, 0), other("c", 1, 0))
			before := f.snapshot()
			rec := do(t, newTestServer(f), tt.method, tt.target, nil)
			assertError(t, rec, http.StatusMethodNotAllowed)
			f.assertUnchanged(t, before)
		})
	}
}

func TestRoutesNotFound(t *testing.T) {
	acceptInvalidRequests(t) // tests of bad input
	tests := []struct{ method, target string }{
		{"GET", "/nope"},
		{"POST", "/nope"},
		{"POST", "/increments"},
		{"POST", "/increment/"},
		{"POST", "/increment/x"},
		{"GET", "/counter/"},
		{"GET", "/Health"},
		{"GET", "/counters/c/x"},
		{"POST", "/counters/c/reset"},
		{"POST", "/counters/c/increment/x"},
		{"POST", "/counters/a/b/increment"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.target, func(t *testing.T) {
			f := newFake()
			f.preload(t, other("default", 1, 0), other("c", 1, 0))
			before := f.snapshot()
			rec := do(t, newTestServer(f), tt.method, tt.target, nil)
			assertError(t, rec, http.StatusNotFound)
			f.assertUnchanged(t, before)
		})
	}
}

// unsizedReader hides its length, so the request is sent chunked.
type unsizedReader struct{ r io.Reader }

func (u unsizedReader) Read(p []byte) (int, error) { return u.r.Read(p) }

func TestRoutesBodyTooLarge(t *testing.T) {
	acceptInvalidRequests(t) // tests of bad input
	over := bytes.Repeat([]byte("x"), wire.MaxBody+1)
	tests := []struct {
		name    string
		method  string
		target  string
		chunked bool
	}{
		{"increment with Content-Length", "POST", "/increment", false},
		{"decrement with Content-Length", "POST", "/decrement", false},
		{"named increment with Content-Length", "POST", "/counters/c/increment", false},
		{"named decrement with Content-Length", "POST", "/counters/c/decrement", false},
		{"get with Content-Length", "GET", "/counter", false},
		{"increment chunked", "POST", "/increment", true},
		{"decrement chunked", "POST", "/decrement", true},
		{"named increment chunked", "POST", "/counters/c/increment", true},
		{"named decrement chunked", "POST", "/counters/c/decrement", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake()
			f.preload(t, other("default", 1, 0), other("c", 1, 0))
			before := f.snapshot()
			var body io.Reader = bytes.NewReader(over)
			if tt.chunked {
				body = unsizedReader{bytes.NewReader(over)}
			}
			req := httptest.NewRequest(tt.method, tt.target, body)
			if tt.chunked {
				req.TransferEncoding = []string{"chunked"}
				if req.ContentLength != -1 {
					t.Fatalf("ContentLength = %d, want -1 (unknown)", req.ContentLength)
				}
			} else if req.ContentLength != int64(len(over)) {
				t.Fatalf("ContentLength = %d, want %d", req.ContentLength, len(over))
			}
			rec := serve(t, newTestServer(f), req)
			assertError(t, rec, http.StatusRequestEntityTooLarge)
			f.assertUnchanged(t, before)
		})
	}
}

// TestRoutesBodyAtLimit checks the limit is "over 1 MiB", not "1 MiB or more".
func TestRoutesBodyAtLimit(t *testing.T) {
	for _, chunked := range []bool{false, true} {
		t.Run("chunked="+strconv.FormatBool(chunked), func(t *testing.T) {
			f := newFake()
			// {"by":1} padded with white space to exactly wire.MaxBody.
			at := append([]byte(`{"by":1}`), bytes.Repeat([]byte(" "), wire.MaxBody-8)...)
			var body io.Reader = bytes.NewReader(at)
			if chunked {
				body = unsizedReader{body}
			}
			req := httptest.NewRequest("POST", "/increment", body)
			rec := serve(t, newTestServer(f), req)
			if rec.Code != http.StatusOK {
				t.Fatalf("status = %d, want 200 (body %q)", rec.Code, rec.Body)
			}
			assertBody(t, rec.Body.Bytes(), valueBody("default", 1))
		})
	}
}

// counterRoutes are the routes whose handler asks Counters.
var counterRoutes = []struct{ method, target string }{
	{"POST", "/increment"},
	{"POST", "/decrement"},
	{"GET", "/counter"},
	{"POST", "/counters/c/increment?by=3"},
	{"POST", "/counters/c/decrement?by=3"},
	{"GET", "/counters/c"},
	{"GET", "/counters"},
}

func TestRoutesCounterErrors(t *testing.T) {
	tests := []struct {
		name    string
		err     error
		status  int
		changes bool // only a change can fail so (the contract documents it only there)
	}{
		{"timeout", actors.ErrTimeout, http.StatusServiceUnavailable, false},
		{"stopped", actors.ErrStopped, http.StatusServiceUnavailable, false},
		{"store", actors.ErrStore, http.StatusServiceUnavailable, false},
		{"wrapped timeout", fmt.Errorf("ask: %w", actors.ErrTimeout), http.StatusServiceUnavailable, false},
		{"wrapped store", fmt.Errorf("%w: disk full", actors.ErrStore), http.StatusServiceUnavailable, false},
		{"overflow from actor", fmt.Errorf("%w: counter", crdt.ErrOverflow), http.StatusConflict, true},
		{"invalid from actor", fmt.Errorf("%w: counter", crdt.ErrInvalid), http.StatusBadRequest, false},
		{"full", fmt.Errorf("%w: %w", actors.ErrFull, crdt.ErrLimit), http.StatusInsufficientStorage, true},
		{"key conflict", fmt.Errorf("%w: increment counter \"c\" by 1", actors.ErrKeyConflict), http.StatusUnprocessableEntity, true},
		{"key in flight", actors.ErrKeyInFlight, http.StatusConflict, true},
		{"unexpected", errors.New("boom"), http.StatusInternalServerError, false},
	}
	for _, r := range counterRoutes {
		for _, tt := range tests {
			if tt.changes && r.method != http.MethodPost {
				continue
			}
			t.Run(r.method+" "+r.target+"/"+tt.name, func(t *testing.T) {
				f := newFake()
				f.preload(t, other("default", 1, 0), other("c", 1, 0))
				f.err = tt.err
				before := f.snapshot()
				rec := do(t, newTestServer(f), r.method, r.target, nil)
				assertError(t, rec, tt.status)
				f.assertUnchanged(t, before)
				if n := f.callCount(); n != 1 {
					t.Errorf("Counters called %d times, want 1", n)
				}
			})
		}
	}
}

// TestHealthDoesNotAskCounters checks /health answers while the counter
// owner is failing or stuck: a busy node still reads as alive.
func TestHealthDoesNotAskCounters(t *testing.T) {
	f := newFake()
	f.err = actors.ErrTimeout
	f.block = func(ctx context.Context) error { <-ctx.Done(); return actors.ErrTimeout }
	rec := do(t, newTestServer(f), "GET", "/health", nil)
	if rec.Code != http.StatusOK {
		t.Fatalf("status = %d, want 200", rec.Code)
	}
	assertBody(t, rec.Body.Bytes(), `{"status":"ok","node":"n1:1","replica":"0123456789abcdef"}`)
	if n := f.callCount(); n != 0 {
		t.Errorf("Counters called %d times, want 0", n)
	}
}

// serveAsync runs one request through the handler in a goroutine.
func serveAsync(t *testing.T, s *Server, req *http.Request) <-chan *httptest.ResponseRecorder {
	done := make(chan *httptest.ResponseRecorder, 1)
	go func() {
		done <- serve(t, s, req)
	}()
	return done
}

// TestBlockedCountersAnswer503 checks that a handler whose Counters call
// does not come back answers 503 in bounded time: "a timeout is 503, never
// a hang". The fake blocks until its ctx ends, like a client of an actor
// that never replies.
func TestBlockedCountersAnswer503(t *testing.T) {
	const timeout = 100 * time.Millisecond
	// limit is the longest a correct server may take: RequestTimeout plus
	// slack for a loaded machine. Past it the test gives up on the handler
	// (it is not a sleep: a passing run ends after about timeout).
	const limit = timeout + 500*time.Millisecond
	tests := []struct {
		name string
		// deadline is set on the request by the caller; 0 means none, so
		// only the server's RequestTimeout can end the wait.
		deadline time.Duration
		// selfBound, if set, is how long the blocked call waits at most
		// even if its ctx never ends.
		selfBound time.Duration
		// onDone is what the blocked call returns once its ctx ends.
		onDone func(ctx context.Context) error
	}{
		{
			name:     "request deadline, counters reports ErrTimeout",
			deadline: timeout,
			onDone:   func(context.Context) error { return actors.ErrTimeout },
		},
		{
			name:     "request deadline, counters reports ctx error",
			deadline: timeout,
			onDone:   func(ctx context.Context) error { return ctx.Err() },
		},
		{
			// Counters bounds its own wait (as actors.Counters does
			// with RequestTimeout) and reports ErrTimeout.
			name:      "no request deadline, counters gives up on its own",
			selfBound: timeout,
			onDone:    func(context.Context) error { return actors.ErrTimeout },
		},
	}
	for _, r := range counterRoutes {
		for _, tt := range tests {
			t.Run(r.method+" "+r.target+"/"+tt.name, func(t *testing.T) {
				t.Parallel() // a failing case waits for limit; let them wait together
				f := newFake()
				f.block = func(ctx context.Context) error {
					var bound <-chan time.Time
					if tt.selfBound > 0 {
						bound = time.After(tt.selfBound)
					}
					select {
					case <-ctx.Done():
					case <-bound:
					}
					return tt.onDone(ctx)
				}
				before := f.snapshot()
				s := NewServer(Config{Counters: f, Node: testNode, Replica: testReplica, RequestTimeout: timeout})

				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				if tt.deadline > 0 {
					var c2 context.CancelFunc
					ctx, c2 = context.WithTimeout(ctx, tt.deadline)
					defer c2()
				}
				req := httptest.NewRequestWithContext(ctx, r.method, r.target, nil)
				done := serveAsync(t, s, req)

				var rec *httptest.ResponseRecorder
				select {
				case rec = <-done:
				case <-time.After(limit):
					cancel() // release the handler
					<-done
					t.Fatalf("no answer within %v (RequestTimeout %v): the server does not bound the wait", limit, timeout)
				}
				assertError(t, rec, http.StatusServiceUnavailable)
				if n := f.callCount(); n != 1 {
					t.Errorf("Counters called %d times, want 1", n)
				}
				f.assertUnchanged(t, before)
			})
		}
	}
}

func TestServerOpenPortClose(t *testing.T) {
	acceptInvalidRequests(t) // tests of bad input
	f := newFake()
	s := NewServer(Config{Addr: "127.0.0.1:0", Counters: f, Node: testNode, Replica: testReplica})
	if p := s.Port(); p != 0 {
		t.Errorf("Port before Open = %d, want 0", p)
	}
	if err := s.Close(context.Background()); err != nil {
		t.Errorf("Close before Open = %v, want nil", err)
	}
	if err := s.Open(); err != nil {
		t.Fatalf("Open: %v", err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			s.Close(context.Background())
		}
	})
	port := s.Port()
	if port == 0 {
		t.Fatal("Port after Open = 0")
	}
	if err := s.Open(); err == nil {
		t.Error("second Open succeeded, want an error")
	}

	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: specTransport(t, tr), Timeout: 10 * time.Second}
	base := "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(port))

	resp, err := client.Post(base+"/counters/c/increment?by=2", "", nil)
	if err != nil {
		t.Fatalf("POST: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST status = %d, body %q", resp.StatusCode, body)
	}
	assertJSONType(t, resp.Header)
	assertBody(t, body, valueBody("c", 2))

	resp, err = client.Get(base + "/nope")
	if err != nil {
		t.Fatalf("GET: %v", err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	assertErrorResponse(t, resp.StatusCode, resp.Header, body, http.StatusNotFound)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Fatalf("Close = %v, want nil", err)
	}
	closed = true
	if err := s.Close(ctx); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
	if conn, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), 5*time.Second); err == nil {
		conn.Close()
		t.Errorf("port %d still accepts connections after Close", port)
	}
}

func TestServerOpenWithListener(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(Config{Listener: ln, Counters: newFake(), Node: testNode, Replica: testReplica})
	if err := s.Open(); err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close(context.Background())
	if got, want := s.Port(), ln.Addr().(*net.TCPAddr).Port; got != want {
		t.Errorf("Port = %d, want the listener's %d", got, want)
	}
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: specTransport(t, tr), Timeout: 10 * time.Second}).Get("http://" + ln.Addr().String() + "/health")
	if err != nil {
		t.Fatalf("GET /health: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status = %d", resp.StatusCode)
	}
	assertBody(t, body, `{"status":"ok","node":"n1:1","replica":"0123456789abcdef"}`)
}

func TestServerOpenBusyPort(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	s := NewServer(Config{Addr: ln.Addr().String(), Counters: newFake(), Node: testNode, Replica: testReplica})
	if err := s.Open(); err == nil {
		s.Close(context.Background())
		t.Fatal("Open on a port in use succeeded")
	}
	if p := s.Port(); p != 0 {
		t.Errorf("Port after failed Open = %d, want 0", p)
	}
}

// TestServerCloseBoundedByContext checks Close returns once its ctx ends,
// even with a request stuck in a handler, and still stops the listener.
func TestServerCloseBoundedByContext(t *testing.T) {
	f := newFake()
	entered := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	f.block = func(ctx context.Context) error {
		once.Do(func() { close(entered) })
		select {
		case <-release:
		case <-ctx.Done():
		}
		return actors.ErrStopped
	}
	defer close(release)
	s := NewServer(Config{Addr: "127.0.0.1:0", Counters: f, Node: testNode, Replica: testReplica})
	if err := s.Open(); err != nil {
		t.Fatalf("Open: %v", err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port()))
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	reqDone := make(chan error, 1)
	go func() {
		resp, err := (&http.Client{Transport: specTransport(t, tr), Timeout: 10 * time.Second}).Post("http://"+addr+"/increment", "", nil)
		if err == nil {
			resp.Body.Close()
		}
		reqDone <- err
	}()
	<-entered

	ctx, cancel := context.WithCancel(context.Background())
	cancel() // already over: Close must not wait for the stuck request
	if err := s.Close(ctx); err == nil {
		t.Error("Close with an ended ctx and a request in flight = nil, want an error")
	}
	<-reqDone // the forced close ends the request one way or another
	if conn, err := net.DialTimeout("tcp", addr, 5*time.Second); err == nil {
		conn.Close()
		t.Errorf("%s still accepts connections after Close", addr)
	}
	if err := s.Close(context.Background()); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
}

// doBody sends one request with body and Content-Type ct ("" for none)
// straight to the server's handler.
func doBody(t *testing.T, s *Server, method, target, ct, body string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	req.RemoteAddr = loopbackClient
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	return serve(t, s, req)
}

// TestChangeBody checks that every change route honours {"by":N}, whatever
// the Content-Type (curl -d sends a form type), and takes an empty body,
// white space or {} as no step given.
func TestChangeBody(t *testing.T) {
	tests := []struct {
		name, ct, body, query string
		by                    int64 // the step the change must take
	}{
		{name: "by 5, no Content-Type", body: `{"by":5}`, by: 5},
		{name: "by 5, application/json", ct: "application/json", body: `{"by":5}`, by: 5},
		{name: "by 5, form type as curl -d sends", ct: "application/x-www-form-urlencoded", body: `{"by":5}`, by: 5},
		{name: "by 5, text/plain", ct: "text/plain", body: `{"by":5}`, by: 5},
		{name: "white space around", body: " \t\r\n{ \"by\" : 7 }\n", by: 7},
		{name: "by 2^53", body: `{"by":` + pow53Text + `}`, by: 1 << 53},
		{name: "empty object", body: `{}`, by: 1},
		{name: "empty body", body: ``, by: 1},
		{name: "white space only", body: " \n\t", by: 1},
		{name: "empty body with a query step", body: ``, query: "?by=3", by: 3},
		{name: "empty object with a query step", body: `{}`, query: "?by=4", by: 4},
	}
	for _, route := range changeRoutes {
		for _, tt := range tests {
			t.Run(route+"/"+tt.name, func(t *testing.T) {
				f := newFake()
				rec := doBody(t, newTestServer(f), "POST", route+tt.query, tt.ct, tt.body)
				if rec.Code != http.StatusOK {
					t.Fatalf("status = %d, want 200 (body %q)", rec.Code, rec.Body)
				}
				counter, want := "default", tt.by
				if strings.HasPrefix(route, "/counters/c/") {
					counter = "c"
				}
				if strings.HasSuffix(route, "decrement") {
					want = -want
				}
				assertBody(t, rec.Body.Bytes(), valueBody(counter, want))
			})
		}
	}
}

// TestChangeBodyBad checks that a body that is not {"by":N} under the
// rules of ?by= is refused with a 400 that says what is wrong and what is
// accepted, and changes nothing.
func TestChangeBodyBad(t *testing.T) {
	acceptInvalidRequests(t) // tests of bad input
	const want = `{"by":N}`
	tests := []struct {
		name, body, query string
		words             []string // the message must hold each
	}{
		{name: "zero", body: `{"by":0}`, words: []string{"by", "whole number from 1 to 9007199254740992", `"0"`}},
		{name: "negative", body: `{"by":-1}`, words: []string{"whole number from 1", `"-1"`}},
		{name: "minus zero", body: `{"by":-0}`, words: []string{"whole number from 1"}},
		{name: "fraction", body: `{"by":1.5}`, words: []string{"whole number", `"1.5"`}},
		{name: "whole fraction", body: `{"by":5.0}`, words: []string{"digits only", `"5.0"`}},
		{name: "exponent", body: `{"by":1e3}`, words: []string{"digits only", `"1e3"`}},
		{name: "2^53+1", body: `{"by":` + pow53Plus1 + `}`, words: []string{"9007199254740992"}},
		{name: "2^64", body: `{"by":` + pow64Text + `}`, words: []string{"9007199254740992"}},
		{name: "many digits", body: `{"by":` + strings.Repeat("9", 100) + `}`, words: []string{"bytes)"}},
		{name: "leading zeros are not JSON", body: `{"by":007}`, words: []string{"not valid JSON", want}},
		{name: "given twice", body: `{"by":5,"by":6}`, words: []string{`"by" is given twice`, want}},
		{name: "string", body: `{"by":"5"}`, words: []string{"must be a number, not a string", want}},
		{name: "null", body: `{"by":null}`, words: []string{"not null", want}},
		{name: "bool", body: `{"by":true}`, words: []string{"not true or false", want}},
		{name: "array", body: `{"by":[5]}`, words: []string{"not an array", want}},
		{name: "object", body: `{"by":{"n":5}}`, words: []string{"not an object", want}},
		{name: "unknown field", body: `{"by":5,"bye":1}`, words: []string{`unknown field "bye"`, want}},
		{name: "misspelt field", body: `{"By":5}`, words: []string{`unknown field "By"`, want}},
		{name: "trailing object", body: `{"by":5}{"by":5}`, words: []string{"goes on after the JSON object", want}},
		{name: "trailing word", body: `{"by":5} x`, words: []string{"goes on after", want}},
		{name: "form encoded", body: `by=5`, words: []string{"not JSON", `"b"`, want}},
		{name: "bare number", body: `5`, words: []string{"must be a JSON object, not a number", want}},
		{name: "bare string", body: `"5"`, words: []string{"not a string", want}},
		{name: "null body", body: `null`, words: []string{"not null", want}},
		{name: "array body", body: `[{"by":5}]`, words: []string{"not an array", want}},
		{name: "missing comma", body: `{"by":5 "x":1}`, words: []string{"not valid JSON", want}},
		{name: "cut after key", body: `{"by"`, words: []string{"not valid JSON", want}},
		{name: "cut short", body: `{"by":5`, words: []string{"not valid JSON", "ends in the middle", want}},
		{name: "open brace", body: `{`, words: []string{"not valid JSON", want}},
		{name: "bad literal", body: `{"by":nul}`, words: []string{"not valid JSON", "byte", want}},
		{name: "trailing comma", body: `{"by":5,}`, words: []string{"not valid JSON", `"}"`, "byte 9", want}},
		{name: "single quotes", body: `{'by':5}`, words: []string{"not valid JSON", `"'"`, want}},
		{name: "nul byte", body: "\x00", words: []string{"not JSON", want}},
		{name: "in query and body", body: `{"by":5}`, query: "?by=5", words: []string{"both in the query and in the body"}},
		{name: "bad query, good body", body: `{"by":5}`, query: "?by=0", words: []string{`"0"`}},
	}
	for _, route := range changeRoutes {
		for _, tt := range tests {
			t.Run(route+"/"+tt.name, func(t *testing.T) {
				f := newFake()
				f.preload(t, other("default", 5, 1), other("c", 2, 0))
				before := f.snapshot()
				rec := doBody(t, newTestServer(f), "POST", route+tt.query, "application/json", tt.body)
				assertError(t, rec, http.StatusBadRequest)
				assertMentions(t, rec.Body.Bytes(), tt.words...)
				f.assertUnchanged(t, before)
				if n := f.callCount(); n != 0 {
					t.Errorf("Counters called %d times for a bad body", n)
				}
			})
		}
	}
}

// allRoutes is one request per route of a server with a cluster and
// metrics, and the methods its path takes.
var allRoutes = []struct {
	method, path, body string
	allow              string // the Allow header of a 405 on path
}{
	{"POST", "/increment", "", "POST"},
	{"POST", "/decrement", "", "POST"},
	{"GET", "/counter", "", "GET"},
	{"POST", "/counters/c/increment", "", "POST"},
	{"POST", "/counters/c/decrement", "", "POST"},
	{"POST", "/counters/c/expire", "", "POST"},
	{"GET", "/counters/c", "", "DELETE, GET"},
	{"DELETE", "/counters/c", "", "DELETE, GET"},
	{"GET", "/counters", "", "GET"},
	{"GET", "/health", "", "GET"},
	{"GET", "/", "", "GET"},
	{"GET", "/status", "", "GET"},
	{"GET", "/metrics", "", "GET"},
	{"GET", "/peers", "", "GET, POST"},
	{"POST", "/peers", `{"addr":"9001"}`, "GET, POST"},
	{"DELETE", "/peers/127.0.0.1:5", "", "DELETE"},
	{"POST", "/replicate", goodPush, "POST"},
	{"POST", "/leave", goodLeave, "POST"},
}

func newFullServer(f *fakeCounters, c *fakeCluster) *Server {
	return NewServer(Config{Counters: f, Cluster: c, Node: testNode, Replica: testReplica,
		Metrics: metrics.New(metrics.Sources{})})
}

// TestUnknownQueryParameter checks that every route refuses a query
// parameter it does not take, naming it, and a query that is not URL
// encoding, and changes nothing; so a typo such as ?bye=5 is never
// silently ignored.
func TestUnknownQueryParameter(t *testing.T) {
	acceptInvalidRequests(t) // tests of bad input
	for _, r := range allRoutes {
		queries := []struct{ query, word string }{
			{"x=1", `"x"`},
			{"bye=5", `"bye"`},
			{"=5", `""`},
			{"by%zz=5", "not valid URL encoding"},
			{"by=1;x=2", "not valid URL encoding"},
		}
		if r.method != "POST" || !strings.Contains(r.path, "crement") {
			queries = append(queries, struct{ query, word string }{"by=2", `"by"`})
		}
		for _, q := range queries {
			t.Run(r.method+" "+r.path+"?"+q.query, func(t *testing.T) {
				f, c := newFake(), newFakeCluster()
				f.preload(t, other("default", 1, 0), other("c", 1, 0))
				c.peers["127.0.0.1:5"] = actors.StateAlive
				before := f.snapshot()
				rec := doBody(t, newFullServer(f, c), r.method, r.path+"?"+q.query, "", r.body)
				assertError(t, rec, http.StatusBadRequest)
				assertMentions(t, rec.Body.Bytes(), q.word)
				f.assertUnchanged(t, before)
				if len(c.peers) != 1 || len(c.replicated) != 0 {
					t.Errorf("cluster changed: peers %v, %d pushes merged", c.peers, len(c.replicated))
				}
			})
		}
	}
	// The change routes name the one parameter they take.
	rec := do(t, newTestServer(newFake()), "POST", "/increment?bye=5", nil)
	assertMentions(t, rec.Body.Bytes(), `"bye"`, "takes only by")
	rec = do(t, newTestServer(newFake()), "GET", "/counter?by=5", nil)
	assertMentions(t, rec.Body.Bytes(), "takes only wait")
}

// TestBadQueryEncodingChangesNothing checks a ?by= the URL decoder drops
// is refused, not read as no by at all (which would add 1).
func TestBadQueryEncodingChangesNothing(t *testing.T) {
	acceptInvalidRequests(t) // tests of bad input
	for _, q := range []string{"by=%zz", "by=%", "by=5%", "by=5;by=6"} {
		t.Run(q, func(t *testing.T) {
			f := newFake()
			before := f.snapshot()
			rec := do(t, newTestServer(f), "POST", "/increment?"+q, nil)
			assertError(t, rec, http.StatusBadRequest)
			f.assertUnchanged(t, before)
		})
	}
}

// TestMethodNotAllowedAllow checks a 405 lists, in Allow and in its
// message, the methods the path takes.
func TestMethodNotAllowedAllow(t *testing.T) {
	acceptInvalidRequests(t) // tests of bad input
	for _, r := range allRoutes {
		for _, m := range []string{"GET", "POST", "PUT", "DELETE", "PATCH"} {
			if strings.Contains(r.allow, m) {
				continue
			}
			t.Run(m+" "+r.path, func(t *testing.T) {
				f, c := newFake(), newFakeCluster()
				rec := doBody(t, newFullServer(f, c), m, r.path, "", r.body)
				assertError(t, rec, http.StatusMethodNotAllowed)
				if got := rec.Header().Get("Allow"); got != r.allow {
					t.Errorf("Allow = %q, want %q", got, r.allow)
				}
				assertMentions(t, rec.Body.Bytes(), m+" is not allowed on "+r.path, "use "+strings.ReplaceAll(r.allow, ", ", " or "))
			})
		}
	}
}

// TestNotFoundListsPaths checks a 404 names the path asked for and lists
// the ones there are.
func TestNotFoundListsPaths(t *testing.T) {
	acceptInvalidRequests(t) // tests of bad input
	rec := do(t, newFullServer(newFake(), newFakeCluster()), "GET", "/nope", nil)
	assertError(t, rec, http.StatusNotFound)
	assertMentions(t, rec.Body.Bytes(), "no such path /nope;", "/increment", "/counters/{name}/increment", "/counters/{name}/expire", "/peers/{addr}", "/metrics")
}

// errFull is what the CounterActor answers a change that would pass a limit.
var errFull = fmt.Errorf("%w: %w", actors.ErrFull,
	fmt.Errorf("%w: counter %q would be a new counter, and there are 5, the most a change may create", crdt.ErrLimit, "c"))

// TestErrorMessages checks what a client reads for each error the
// handlers map, by the route that meets it.
func TestErrorMessages(t *testing.T) {
	acceptInvalidRequests(t) // tests of bad input
	tests := []struct {
		name         string
		method, path string
		err          error // the fake's error
		status       int
		words        []string
	}{
		{"bad by", "POST", "/increment?by=0", nil, 400, []string{"by must be a whole number from 1 to 9007199254740992", `got "0"`}},
		{"by twice", "POST", "/increment?by=1&by=2", nil, 400, []string{"by is given 2 times", "give it once"}},
		{"bad name", "POST", "/counters/a%20b/increment", nil, 400, []string{`"a b"`, "1 to 128 characters", "'.', '_', '-' or ':'"}},
		{"long name cut", "GET", "/counters/" + strings.Repeat("x", 300) + "%20", nil, 400, []string{"… (301 bytes)"}},
		{"timeout", "POST", "/increment", actors.ErrTimeout, 503, []string{"did not answer", "-request-timeout", "may or may not"}},
		{"store", "POST", "/increment", fmt.Errorf("%w: disk full", actors.ErrStore), 503, []string{"could not write", "may or may not"}},
		{"stopped", "GET", "/counter", actors.ErrStopped, 503, []string{"shutting down"}},
		{"cancelled", "GET", "/counters", context.Canceled, 503, []string{"cancelled"}},
		{"overflow", "POST", "/increment", fmt.Errorf("%w: counter", crdt.ErrOverflow), 409, []string{"outside -9223372036854775808 to 9223372036854775807", "nothing was changed"}},
		{"full", "POST", "/counters/c/increment", errFull, 507,
			[]string{"this node is full", `counter "c" would be a new counter, and there are 5`, "nothing was changed", "-max-counters"}},
		{"unexpected", "GET", "/counter", errors.New("boom"), 500, []string{"internal error", "log"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake()
			f.err = tt.err
			s := NewServer(Config{Counters: f, Node: testNode, Replica: testReplica, Logger: slog.New(slog.DiscardHandler)})
			rec := do(t, s, tt.method, tt.path, nil)
			assertError(t, rec, tt.status)
			assertMentions(t, rec.Body.Bytes(), tt.words...)
			if msg := errorMessage(t, rec.Body.Bytes()); strings.Contains(msg, "boom") {
				t.Errorf("message %q shows the client an internal error's text", msg)
			}
		})
	}
}

// TestTooLargeMessage checks the 413 says what the limit is.
func TestTooLargeMessage(t *testing.T) {
	acceptInvalidRequests(t) // tests of bad input
	rec := doBody(t, newTestServer(newFake()), "POST", "/increment", "", strings.Repeat(" ", wire.MaxBody+1))
	assertError(t, rec, http.StatusRequestEntityTooLarge)
	assertMentions(t, rec.Body.Bytes(), "over 1 MiB", "1048576 bytes")
}

// valuesOf returns the value of every live counter of s.
func valuesOf(s *crdt.State) map[string]int64 {
	out := make(map[string]int64)
	for name, c := range s.Values(0) {
		out[name] = c.Value
	}
	return out
}
