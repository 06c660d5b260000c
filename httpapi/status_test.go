package httpapi

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"maps"
	"math"
	"mime"
	"net/http"
	"net/http/httptest"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"countd/actors"
	"countd/wire"
)

// peerTable is a Cluster that lists fixed peers, or fails with err.
type peerTable struct {
	peers []actors.PeerInfo
	err   error
}

var _ Cluster = peerTable{}

func (c peerTable) Peers(context.Context) ([]actors.PeerInfo, error) { return c.peers, c.err }
func (peerTable) AddPeer(context.Context, string) (bool, error)      { return false, errors.New("unused") }
func (peerTable) RemovePeer(context.Context, string) error           { return errors.New("unused") }
func (peerTable) Leave(context.Context, *wire.LeaveRequest) error    { return errors.New("unused") }
func (peerTable) Replicate(context.Context, *wire.ReplicateRequest) (int, error) {
	return 0, errors.New("unused")
}

// noHistory is /status's history of a server never opened: nothing sampled.
const noHistory = `"history":{"step_seconds":1,"changes_per_second":[],"behind":{}}`

// TestStatusHistoryOnlyWhenAsked: the charts' history comes with
// ?history=1 only, and any other value of history is refused.
func TestStatusHistoryOnlyWhenAsked(t *testing.T) {
	acceptInvalidRequests(t) // tests of bad input
	s := NewServer(Config{Counters: newFake(), Cluster: peerTable{}, Node: testNode, Replica: testReplica})
	want := `{"node":"` + testNode + `","replica":"` + testReplica + `","uptime_seconds":0,"peers":[],"counters":{},` + noHistory + `}`
	rec := do(t, s, http.MethodGet, "/status?history=1", nil)
	if rec.Code != http.StatusOK || rec.Body.String() != want+"\n" && rec.Body.String() != want {
		t.Fatalf("GET /status?history=1: %d %s, want 200 %s", rec.Code, rec.Body, want)
	}
	if rec := do(t, s, http.MethodGet, "/status", nil); strings.Contains(rec.Body.String(), "history") {
		t.Fatalf("GET /status carries the history: %s", rec.Body)
	}
	for _, q := range []string{"history=0", "history=yes", "history=1&history=1", "history="} {
		if rec := do(t, s, http.MethodGet, "/status?"+q, nil); rec.Code != http.StatusBadRequest {
			t.Errorf("GET /status?%s: %d %s, want 400", q, rec.Code, rec.Body)
		}
	}
}

func TestStatus(t *testing.T) {
	seen := time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("CET", 3600))
	started := time.Now().Add(-90 * time.Second)
	startedText := started.UTC().Format(time.RFC3339)
	loaded := func() *fakeCounters {
		f := newFake()
		f.preload(t, other("apples", 7, 2), other("pears", 1, 4))
		return f
	}
	tests := []struct {
		name     string
		counters *fakeCounters
		cluster  Cluster // nil: a node without a cluster
		started  time.Time
		want     string // uptime_seconds is checked apart, and left out here
	}{
		{
			name:     "peers and counters",
			counters: loaded(),
			cluster: peerTable{peers: []actors.PeerInfo{
				{Addr: "127.0.0.1:9001", State: actors.StateAlive, LastSeen: seen, Behind: 0},
				{Addr: "127.0.0.1:9002", State: actors.StateSuspect, LastSeen: seen, Behind: 12},
				{Addr: "127.0.0.1:9003", State: actors.StateDown, Behind: 40},
			}},
			started: started,
			want: `{"node":"` + testNode + `","replica":"` + testReplica + `","started":"` + startedText + `",
				"peers":[
					{"addr":"127.0.0.1:9001","state":"alive","last_seen":"2026-01-02T02:04:05Z","behind":0},
					{"addr":"127.0.0.1:9002","state":"suspect","last_seen":"2026-01-02T02:04:05Z","behind":12},
					{"addr":"127.0.0.1:9003","state":"down","behind":40}],
				"counters":{"apples":5,"pears":-3}}`,
		},
		{
			name:     "no cluster: peers is an empty list",
			counters: loaded(),
			started:  started,
			want: `{"node":"` + testNode + `","replica":"` + testReplica + `","started":"` + startedText + `",
				"peers":[],"counters":{"apples":5,"pears":-3}}`,
		},
		{
			name:     "no peers and no counters: empty list and object",
			counters: newFake(),
			cluster:  peerTable{},
			started:  started,
			want: `{"node":"` + testNode + `","replica":"` + testReplica + `","started":"` + startedText + `",
				"peers":[],"counters":{}}`,
		},
		{
			name:     "start time unknown",
			counters: newFake(),
			want:     `{"node":"` + testNode + `","replica":"` + testReplica + `","peers":[],"counters":{}}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewServer(Config{Counters: tt.counters, Cluster: tt.cluster, Node: testNode, Replica: testReplica, Started: tt.started})
			before := time.Now()
			rec := do(t, s, http.MethodGet, "/status", nil)
			if rec.Code != http.StatusOK {
				t.Fatalf("status %d: %s", rec.Code, rec.Body)
			}
			assertJSONType(t, rec.Header())
			if cc := rec.Header().Get("Cache-Control"); cc != "no-store" {
				t.Errorf("Cache-Control = %q, want no-store", cc)
			}
			got := decodeJSON(t, rec.Body.Bytes()).(map[string]any)
			n, _ := got["uptime_seconds"].(json.Number)
			uptime, err := n.Int64()
			if err != nil {
				t.Fatalf("uptime_seconds missing or not a whole number: %s", rec.Body)
			}
			delete(got, "uptime_seconds")
			if tt.started.IsZero() {
				if uptime != 0 {
					t.Errorf("uptime_seconds = %d with no start time, want 0", uptime)
				}
			} else if lo, hi := int64(before.Sub(tt.started)/time.Second), int64(time.Since(tt.started)/time.Second); uptime < lo || uptime > hi {
				t.Errorf("uptime_seconds = %d, want %d to %d", uptime, lo, hi)
			}
			if want := decodeJSON(t, []byte(tt.want)); !reflect.DeepEqual(got, want) {
				t.Errorf("body = %s\nwant  %s (uptime_seconds aside)", rec.Body, tt.want)
			}
		})
	}
}

// TestStatusExpiresIn checks /status gives the seconds left of each
// counter that expires, for the page to show, and leaves out a counter
// whose expiry passed.
func TestStatusExpiresIn(t *testing.T) {
	sent := time.Now()
	soon, later := uint64(sent.Add(1200*time.Millisecond).UnixMilli()), uint64(sent.Add(90*time.Second).UnixMilli())
	past := uint64(sent.Add(-time.Millisecond).UnixMilli())
	f := newFake()
	f.preload(t, expiring("a", 5, soon), expiring("b", 1, later), other("c", 3, 0), expiring("gone", 2, past))
	s := NewServer(Config{Counters: f, Cluster: peerTable{}, Node: testNode, Replica: testReplica})
	for _, target := range []string{"/status", "/status?history=1"} {
		rec := do(t, s, http.MethodGet, target, nil)
		if rec.Code != http.StatusOK {
			t.Fatalf("GET %s: %d %s", target, rec.Code, rec.Body)
		}
		assertCountersExpiresIn(t, rec.Body.Bytes(), map[string]uint64{"a": soon, "b": later}, sent)
		var r struct{ Counters map[string]int64 }
		if err := json.Unmarshal(rec.Body.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		if want := map[string]int64{"a": 5, "b": 1, "c": 3}; !maps.Equal(r.Counters, want) {
			t.Errorf("GET %s: counters = %v, want %v", target, r.Counters, want)
		}
	}
}

func TestStatusErrors(t *testing.T) {
	for _, tt := range []struct {
		name     string
		counters error
		cluster  error
		status   int
	}{
		{"counters time out", actors.ErrTimeout, nil, http.StatusServiceUnavailable},
		{"membership times out", nil, actors.ErrTimeout, http.StatusServiceUnavailable},
		{"counters fail", errors.New("boom"), nil, http.StatusInternalServerError},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake()
			f.err = tt.counters
			s := NewServer(Config{Counters: f, Cluster: peerTable{err: tt.cluster}, Node: testNode, Replica: testReplica,
				Logger: slog.New(slog.DiscardHandler)})
			assertError(t, do(t, s, http.MethodGet, "/status", nil), tt.status)
		})
	}
}

// inline matches the page's inline <style> and <script> elements.
var inline = regexp.MustCompile(`(?s)<(style|script)>(.*?)</(?:style|script)>`)

func TestStatusPage(t *testing.T) {
	s := newTestServer(newFake())
	rec := do(t, s, http.MethodGet, "/", nil)
	if rec.Code != http.StatusOK {
		t.Fatalf("GET / = %d: %s", rec.Code, rec.Body)
	}
	h := rec.Header()
	if mt, params, err := mime.ParseMediaType(h.Get("Content-Type")); err != nil || mt != "text/html" || params["charset"] != "utf-8" {
		t.Errorf("Content-Type = %q, want text/html; charset=utf-8", h.Get("Content-Type"))
	}
	if cc := h.Get("Cache-Control"); !regexp.MustCompile(`^max-age=\d{1,3}$`).MatchString(cc) {
		t.Errorf("Cache-Control = %q, want a short max-age", cc)
	}
	if h.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("X-Content-Type-Options = %q, want nosniff", h.Get("X-Content-Type-Options"))
	}
	body := rec.Body.String()
	for _, want := range []string{
		`<meta name="viewport"`, `id="banner"`, `id="peers"`, `id="counters"`, `id="node"`, `id="replica"`, `id="uptime"`,
		`fetch("status?history=1"`, `setTimeout(refresh, REFRESH_MS)`, `dataset[attr] = key`, `e.dataset.state = p.state`,
		// The charts, each an image with a text alternative.
		`<svg id="rate-chart" role="img" aria-labelledby="rate-title rate-text"`, `id="rate-text"`,
		`<figure class="spark">`, `svg.setAttribute("aria-label"`, `history.behind[p.addr]`,
		// Each counter's expiry, from /status's expires_in, beside its value.
		`st.expires_in`, `node("td", { class: "expires" })`, `"in " + duration(left)`, `<th scope="col" class="expires">expires</th>`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(body, "{{") {
		t.Error("page holds a placeholder that was not filled")
	}
	for _, bad := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "http://", "https://", "//cdn"} {
		if strings.Contains(body, bad) {
			t.Errorf("page holds %q: data must reach the DOM as text, and the page loads nothing from elsewhere", bad)
		}
	}

	// The policy allows exactly the page's own style and script: a change
	// to either that misses the hash would leave the page blank.
	csp := h.Get("Content-Security-Policy")
	found := inline.FindAllStringSubmatch(body, -1)
	if len(found) != 2 {
		t.Fatalf("page has %d inline style/script elements, want one of each", len(found))
	}
	for _, m := range found {
		sum := sha256.Sum256([]byte(m[2]))
		want := m[1] + "-src 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
		if !strings.Contains(csp, want) {
			t.Errorf("Content-Security-Policy %q lacks %q", csp, want)
		}
	}
	for _, want := range []string{"default-src 'none'", "connect-src 'self'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("Content-Security-Policy %q lacks %q", csp, want)
		}
	}

	t.Run("revalidation", func(t *testing.T) {
		etag := h.Get("ETag")
		if etag == "" {
			t.Fatal("no ETag")
		}
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.Header.Set("If-None-Match", etag)
		rec := serve(t, s, req)
		if rec.Code != http.StatusNotModified || rec.Body.Len() != 0 {
			t.Errorf("GET / with If-None-Match: %d, %d bytes; want 304 and no body", rec.Code, rec.Body.Len())
		}
	})
}

func TestStatusWrongMethod(t *testing.T) {
	acceptInvalidRequests(t) // tests of bad input
	s := newClusterServer(newFakeCluster())
	for _, tt := range []struct{ method, path string }{
		{http.MethodPost, "/"},
		{http.MethodDelete, "/"},
		{http.MethodPost, "/status"},
		{http.MethodPut, "/status"},
	} {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			assertError(t, do(t, s, tt.method, tt.path, strings.NewReader("{}")), http.StatusMethodNotAllowed)
		})
	}
	assertError(t, do(t, s, http.MethodGet, "/index.html", nil), http.StatusNotFound)
}

// TestStatusMatchesPeers checks that /status lists peers exactly as /peers does.
func TestStatusMatchesPeers(t *testing.T) {
	c := peerTable{peers: []actors.PeerInfo{
		{Addr: "127.0.0.1:9001", State: actors.StateAlive, LastSeen: time.Unix(1700000000, 0), Behind: 3},
		{Addr: "127.0.0.1:9002", State: actors.StateDown},
	}}
	s := NewServer(Config{Counters: newFake(), Cluster: c, Node: testNode, Replica: testReplica})
	var peers, status struct {
		Peers json.RawMessage `json:"peers"`
	}
	for path, out := range map[string]any{"/peers": &peers, "/status": &status} {
		rec := do(t, s, http.MethodGet, path, nil)
		if rec.Code != http.StatusOK {
			t.Fatalf("GET %s = %d: %s", path, rec.Code, rec.Body)
		}
		if err := json.Unmarshal(rec.Body.Bytes(), out); err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
	}
	if string(peers.Peers) != string(status.Peers) {
		t.Errorf("/status peers %s, /peers peers %s", status.Peers, peers.Peers)
	}
}

// TestStatusPageGzip: the page is served gzip-compressed to a client that
// accepts it, as the same bytes, and as is to one that does not; either way
// caches are told the answer depends on Accept-Encoding.
func TestStatusPageGzip(t *testing.T) {
	s := newTestServer(newFake())
	plain := do(t, s, http.MethodGet, "/", nil)
	if plain.Code != http.StatusOK {
		t.Fatalf("GET / = %d", plain.Code)
	}
	for _, tt := range []struct {
		accept string
		gzip   bool
	}{
		{"", false},
		{"gzip", true},
		{"gzip, deflate, br, zstd", true},
		{"br;q=1.0, GZIP;q=0.5", true},
		{"x-gzip", true},
		{"*", true},
		{"identity", false},
		{"br", false},
		{"gzip;q=0", false},
		{"gzip;q=0.000, *;q=1", false},
		{"*;q=0", false},
		{"gzip;q=bogus", false},
	} {
		t.Run(tt.accept, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, "/", nil)
			if tt.accept != "" {
				req.Header.Set("Accept-Encoding", tt.accept)
			}
			rec := serve(t, s, req)
			h := rec.Header()
			if rec.Code != http.StatusOK {
				t.Fatalf("status %d", rec.Code)
			}
			if !slices.Contains(h.Values("Vary"), "Accept-Encoding") {
				t.Errorf("Vary = %q, want Accept-Encoding", h.Values("Vary"))
			}
			body := rec.Body.Bytes()
			if got := h.Get("Content-Encoding") == "gzip"; got != tt.gzip {
				t.Fatalf("Content-Encoding = %q, want gzip: %v", h.Get("Content-Encoding"), tt.gzip)
			}
			if tt.gzip {
				zr, err := gzip.NewReader(bytes.NewReader(body))
				if err != nil {
					t.Fatal(err)
				}
				if body, err = io.ReadAll(zr); err != nil {
					t.Fatal(err)
				}
				if rec.Body.Len() > plain.Body.Len()/2 {
					t.Errorf("compressed %d bytes of %d: want at most half", rec.Body.Len(), plain.Body.Len())
				}
				if h.Get("ETag") == plain.Header().Get("ETag") {
					t.Errorf("ETag %s for both encodings: a cache would mix them up", h.Get("ETag"))
				}
			}
			if !bytes.Equal(body, plain.Body.Bytes()) {
				t.Error("the page differs from the uncompressed one")
			}
			if cl := h.Get("Content-Length"); cl != strconv.Itoa(rec.Body.Len()) {
				t.Errorf("Content-Length = %q, body %d bytes", cl, rec.Body.Len())
			}

			// Revalidation answers 304 for the representation the client holds.
			req.Header.Set("If-None-Match", h.Get("ETag"))
			again := serve(t, s, req)
			if again.Code != http.StatusNotModified {
				t.Errorf("GET / with If-None-Match %s = %d, want 304", h.Get("ETag"), again.Code)
			}
		})
	}
}

// TestStatusPageContrast checks the page's colours in both schemes against
// WCAG 2.2: text at least 4.5:1 against what it sits on (1.4.3), chart lines
// and state borders at least 3:1 (1.4.11). The colours are read from
// status.css, the light ones from its first :root and the dark ones from
// the :root under prefers-color-scheme: dark.
func TestStatusPageContrast(t *testing.T) {
	css, err := ui.ReadFile("ui/status.css")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile(`(?s):root\s*\{(.*?)\}`).FindAllSubmatch(css, -1)
	dark := regexp.MustCompile(`(?s)@media\s*\(prefers-color-scheme:\s*dark\)\s*\{\s*:root`).Find(css)
	if len(blocks) != 2 || dark == nil {
		t.Fatalf("status.css: want a light :root and a dark one under prefers-color-scheme: dark; found %d :root blocks", len(blocks))
	}
	decl := regexp.MustCompile(`--([a-z-]+):\s*#([0-9a-fA-F]{3}|[0-9a-fA-F]{6})\s*;`)
	light := map[string]string{}
	for _, m := range decl.FindAllSubmatch(blocks[0][1], -1) {
		light[string(m[1])] = string(m[2])
	}
	darkVars := maps.Clone(light)
	for _, m := range decl.FindAllSubmatch(blocks[1][1], -1) {
		darkVars[string(m[1])] = string(m[2])
	}

	type pair struct {
		fg, bg string
		min    float64
	}
	var pairs []pair
	for _, bg := range []string{"bg", "card"} {
		pairs = append(pairs, pair{"fg", bg, 4.5}, pair{"muted", bg, 4.5})
	}
	pairs = append(pairs, pair{"fg", "banner", 4.5})
	for _, state := range []string{"alive", "suspect", "down", "unauthorized", "muted"} { // muted: a state the page does not know
		pairs = append(pairs, pair{"badge-fg", state, 4.5}, pair{state, "card", 3}, pair{state, "bg", 3})
	}
	pairs = append(pairs, pair{"accent", "card", 3}, pair{"down", "banner", 3})
	for _, scheme := range []struct {
		name string
		vars map[string]string
	}{{"light", light}, {"dark", darkVars}} {
		for _, p := range pairs {
			fg, bg := scheme.vars[p.fg], scheme.vars[p.bg]
			if fg == "" || bg == "" {
				t.Errorf("%s: --%s or --%s not set", scheme.name, p.fg, p.bg)
				continue
			}
			if r := contrast(fg, bg); r < p.min {
				t.Errorf("%s: --%s #%s on --%s #%s: contrast %.2f:1, want at least %.1f:1", scheme.name, p.fg, fg, p.bg, bg, r, p.min)
			}
		}
	}
}

// contrast is the WCAG contrast ratio of two colours given as 3 or 6 hex digits.
func contrast(a, b string) float64 {
	lum := func(hex string) float64 {
		if len(hex) == 3 {
			hex = string([]byte{hex[0], hex[0], hex[1], hex[1], hex[2], hex[2]})
		}
		var l float64
		for i, w := range []float64{0.2126, 0.7152, 0.0722} {
			v, _ := strconv.ParseUint(hex[2*i:2*i+2], 16, 8)
			c := float64(v) / 255
			if c <= 0.04045 {
				c /= 12.92
			} else {
				c = math.Pow((c+0.055)/1.055, 2.4)
			}
			l += w * c
		}
		return l
	}
	hi, lo := lum(a), lum(b)
	if lo > hi {
		hi, lo = lo, hi
	}
	return (hi + 0.05) / (lo + 0.05)
}

func TestContrast(t *testing.T) {
	for _, tt := range []struct {
		a, b string
		want float64
	}{
		{"fff", "000", 21},
		{"ffffff", "ffffff", 1},
		{"ffffff", "3fb950", 2.54}, // the dark scheme's old badges, as issue 10 measured them
		{"ffffff", "f85149", 3.35},
		{"767676", "ffffff", 4.54},
	} {
		if got := contrast(tt.a, tt.b); math.Abs(got-tt.want) > 0.01 {
			t.Errorf("contrast(%s, %s) = %.3f, want %.2f", tt.a, tt.b, got, tt.want)
		}
	}
}
