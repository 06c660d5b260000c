package httpapi

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"countd/metrics"
)

// doKey sends a change to target with the Idempotency-Key header set to
// each of keys (none if keys is empty).
func doKey(t *testing.T, s *Server, target string, keys ...string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, target, nil)
	for _, k := range keys {
		req.Header.Add(keyHeader, k)
	}
	return serve(t, s, req)
}

func TestIdempotencyKeyReachesCounters(t *testing.T) {
	key255 := strings.Repeat("k", 255)
	tests := []struct {
		name   string
		header []string // the header's values; none: no header
		want   string   // the key Apply must get
	}{
		{"no header", nil, ""},
		{"bare", []string{"order-42"}, "order-42"},
		{"bare with inner spaces and punctuation", []string{`a b!#$%&'()*+,-./:;<=>?@[\]^_{|}~`}, `a b!#$%&'()*+,-./:;<=>?@[\]^_{|}~`},
		{"bare holding a quote after the first character", []string{`a"b`}, `a"b`},
		{"sf-string", []string{`"order-42"`}, "order-42"},
		{"sf-string with escapes", []string{`"a\"b\\c"`}, `a"b\c`},
		{"sf-string holding a space", []string{`" x "`}, " x "},
		{"one character", []string{"x"}, "x"},
		{"255 characters bare", []string{key255}, key255},
		{"255 characters quoted", []string{`"` + key255 + `"`}, key255},
		{"255 characters once unescaped", []string{`"` + strings.Repeat(`\\`, 255) + `"`}, strings.Repeat(`\`, 255)},
	}
	for _, route := range []string{"/increment", "/decrement", "/counters/c/increment", "/counters/c/decrement"} {
		for _, tt := range tests {
			t.Run(route+"/"+tt.name, func(t *testing.T) {
				f := newFake()
				rec := doKey(t, newTestServer(f), route, tt.header...)
				if rec.Code != http.StatusOK {
					t.Fatalf("status = %d, want 200 (body %s)", rec.Code, rec.Body)
				}
				if got := f.lastChange(t).Key; got != tt.want {
					t.Errorf("Change.Key = %q, want %q", got, tt.want)
				}
				if got := rec.Header().Get(replayedHeader); got != "" {
					t.Errorf("%s = %q on a first change, want none", replayedHeader, got)
				}
			})
		}
	}
}

func TestIdempotencyKeyBad(t *testing.T) {
	acceptInvalidRequests(t) // tests of bad input
	tests := []struct {
		name   string
		header []string
		says   string // what the message must name beyond the header
	}{
		{"empty", []string{""}, "got 0 characters"},
		{"empty quoted", []string{`""`}, "got 0 characters"},
		{"256 characters", []string{strings.Repeat("k", 256)}, "got 256 characters"},
		{"256 characters once unescaped", []string{`"` + strings.Repeat(`\"`, 256) + `"`}, "got 256 characters"},
		{"a tab", []string{"a\tb"}, "character 2"},
		{"a control character", []string{"a\x01"}, "character 2"},
		{"DEL", []string{"a\x7f"}, "0x7f"},
		{"not ASCII", []string{"clé"}, "character 3"},
		{"not ASCII quoted", []string{`"clé"`}, "character 3"},
		{"no closing quote", []string{`"abc`}, "no closing quote"},
		{"a lone quote", []string{`"`}, "no closing quote"},
		{"a bad escape", []string{`"a\b"`}, `\"`},
		{"a backslash at the end", []string{`"a\`}, `\"`},
		{"parameters after the string", []string{`"abc";p=1`}, "after its closing quote"},
		{"given twice", []string{"a", "b"}, "given 2 times"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake()
			s := newTestServer(f)
			before := f.snapshot()
			rec := doKey(t, s, "/counters/c/increment", tt.header...)
			assertError(t, rec, http.StatusBadRequest)
			assertMentions(t, rec.Body.Bytes(), "Idempotency-Key", "1 to 255 characters", "printable ASCII", tt.says)
			f.assertUnchanged(t, before)
			if n := f.callCount(); n != 0 {
				t.Errorf("Counters called %d times for a bad key, want 0", n)
			}
		})
	}
}

// FuzzParseIdempotencyKey checks that the header parser never panics, takes
// exactly the keys of 1 to 255 printable ASCII characters, and that a key
// it takes, sent again in either form, reads back as itself.
func FuzzParseIdempotencyKey(f *testing.F) {
	for _, s := range []string{"", "a", `"a"`, `"a\"b"`, `"a\\"`, `"a\b"`, `"abc`, `"a";p`, "clé", "a\x00", strings.Repeat("x", 256), `""`, `"`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		key, err := ParseIdempotencyKey(v)
		if err != nil {
			if statusOf(err) != http.StatusBadRequest {
				t.Fatalf("ParseIdempotencyKey(%q): status %d, want 400", v, statusOf(err))
			}
			assertPlain(t, messageOf(err))
			return
		}
		if key == "" || len(key) > maxKeyLen {
			t.Fatalf("ParseIdempotencyKey(%q) = %q: %d characters, want 1 to %d", v, key, len(key), maxKeyLen)
		}
		for i := 0; i < len(key); i++ {
			if key[i] < 0x20 || key[i] > 0x7e {
				t.Fatalf("ParseIdempotencyKey(%q) = %q, which holds byte 0x%02x", v, key, key[i])
			}
		}
		quoted := `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(key) + `"`
		if again, err := ParseIdempotencyKey(quoted); err != nil || again != key {
			t.Fatalf("key %q quoted as %s reads back as %q, %v", key, quoted, again, err)
		}
		if key[0] != '"' {
			if again, err := ParseIdempotencyKey(key); err != nil || again != key {
				t.Fatalf("key %q sent bare reads back as %q, %v", key, again, err)
			}
		}
	})
}

func TestIdempotentReplay(t *testing.T) {
	f := newFake()
	s := newTestServer(f)
	first := doKey(t, s, "/counters/c/increment?by=5", "k1")
	if first.Code != http.StatusOK || first.Header().Get(replayedHeader) != "" {
		t.Fatalf("first: status %d, %s %q; want 200 and no %s", first.Code, replayedHeader, first.Header().Get(replayedHeader), replayedHeader)
	}
	assertBody(t, first.Body.Bytes(), valueBody("c", 5))
	doKey(t, s, "/counters/c/increment?by=2") // another change, without a key

	// The same change again, in either form of the key and with a ttl
	// (not part of the change's identity): answered with the current value.
	for _, target := range []string{"/counters/c/increment?by=5", "/counters/c/increment?by=5&ttl=60"} {
		for _, key := range []string{"k1", `"k1"`} {
			rec := doKey(t, s, target, key)
			if rec.Code != http.StatusOK {
				t.Fatalf("replay %s with key %s: status %d, want 200 (body %s)", target, key, rec.Code, rec.Body)
			}
			if got := rec.Header().Get(replayedHeader); got != "true" {
				t.Errorf("replay %s with key %s: %s = %q, want true", target, key, replayedHeader, got)
			}
			assertBody(t, rec.Body.Bytes(), valueBody("c", 7))
		}
	}
	if got := valuesOf(f.state)["c"]; got != 7 {
		t.Errorf("c = %d after 5 (sent 5 times with one key) and 2, want 7", got)
	}

	// The default counter under both of its paths is one counter.
	doKey(t, s, "/increment", "k2")
	rec := doKey(t, s, "/counters/default/increment", "k2")
	if rec.Code != http.StatusOK || rec.Header().Get(replayedHeader) != "true" {
		t.Errorf("POST /counters/default/increment with the key of a POST /increment: status %d, %s %q; want 200, true",
			rec.Code, replayedHeader, rec.Header().Get(replayedHeader))
	}
}

func TestIdempotencyKeyConflict(t *testing.T) {
	tests := []struct {
		name, target string
	}{
		{"another amount", "/counters/c/increment?by=6"},
		{"another operation", "/counters/c/decrement?by=5"},
		{"another counter", "/counters/d/increment?by=5"},
		{"the default counter", "/increment?by=5"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake()
			s := newTestServer(f)
			if rec := doKey(t, s, "/counters/c/increment?by=5", "k"); rec.Code != http.StatusOK {
				t.Fatalf("first: status %d, want 200", rec.Code)
			}
			before := f.snapshot()
			rec := doKey(t, s, tt.target, "k")
			assertError(t, rec, http.StatusUnprocessableEntity)
			assertMentions(t, rec.Body.Bytes(), "Idempotency-Key", `first used to increment counter "c" by 5`, "nothing was changed")
			if got := rec.Header().Get(replayedHeader); got != "" {
				t.Errorf("%s = %q on a conflict, want none", replayedHeader, got)
			}
			f.assertUnchanged(t, before)
		})
	}
}

func TestIdempotencyKeyInFlight(t *testing.T) {
	f := newFake()
	f.inFlight = map[string]bool{"k": true}
	s := newTestServer(f)
	before := f.snapshot()
	rec := doKey(t, s, "/counters/c/increment", "k")
	assertError(t, rec, http.StatusConflict)
	assertMentions(t, rec.Body.Bytes(), "Idempotency-Key", "still being made", "nothing was changed")
	f.assertUnchanged(t, before)
}

// TestIdempotencyOutcomeMetrics checks the outcome each answer to a keyed
// change is counted under: a replay is ok (the change is applied and
// durable), a conflict, a change in flight and a bad key are rejected
// (nothing changed).
func TestIdempotencyOutcomeMetrics(t *testing.T) {
	f := newFake()
	f.inFlight = map[string]bool{"busy": true}
	m := metrics.New(metrics.Sources{})
	s := NewServer(Config{Counters: f, Node: testNode, Replica: testReplica, Metrics: m})
	steps := []struct {
		target, key string
		status      int
	}{
		{"/counters/c/increment", "k", http.StatusOK},
		{"/counters/c/increment", "k", http.StatusOK},            // replay
		{"/counters/c/increment?by=2", "k", 422},                 // conflict
		{"/counters/c/increment", "busy", 409},                   // in flight
		{"/counters/c/increment", strings.Repeat("x", 300), 400}, // bad key
	}
	for _, st := range steps {
		if st.status == http.StatusBadRequest {
			acceptInvalidRequests(t)
		}
		if rec := doKey(t, s, st.target, st.key); rec.Code != st.status {
			t.Fatalf("POST %s with key %.10q: status %d, want %d", st.target, st.key, rec.Code, st.status)
		}
	}
	rec := serve(t, s, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	for _, want := range []string{
		`countd_changes_total{op="increment",outcome="ok"} 2`,
		`countd_changes_total{op="increment",outcome="rejected"} 3`,
		`countd_changes_total{op="increment",outcome="unavailable"} 0`,
	} {
		if !strings.Contains(rec.Body.String(), want+"\n") {
			t.Errorf("GET /metrics lacks %s; it has:\n%s", want, grepLines(rec.Body.String(), "countd_changes_total"))
		}
	}
}

// grepLines returns the lines of text that hold word.
func grepLines(text, word string) string {
	var out []string
	for l := range strings.Lines(text) {
		if strings.Contains(l, word) {
			out = append(out, l)
		}
	}
	return fmt.Sprint(out)
}
