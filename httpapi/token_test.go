package httpapi

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"countd/metrics"
)

// writeTokens writes a token file in the test's directory.
func writeTokens(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func newTokenServer(t *testing.T, path string) (*Server, *fakeCounters) {
	t.Helper()
	tokens, err := LoadTokens(path)
	if err != nil {
		t.Fatal(err)
	}
	c := newFake()
	return NewServer(Config{Counters: c, Cluster: newFakeCluster(), Node: testNode, Replica: testReplica,
		Metrics: metrics.New(metrics.Sources{}), Tokens: tokens}), c
}

// With a client token file, a request carrying a valid token may read the
// profiles from anywhere; without one the rules of the node routes hold
// (here: no key, so loopback only).
func TestPprofTakesClientTokens(t *testing.T) {
	tokens, err := LoadTokens(writeTokens(t, "s3cret-token-for-profiles\n"))
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(Config{Counters: newFake(), Node: testNode, Replica: testReplica, Tokens: tokens, Pprof: true})
	for _, tt := range []struct {
		name, remote, auth string
		want               int
	}{
		{"remote with token", "192.0.2.7:5000", "Bearer s3cret-token-for-profiles", http.StatusOK},
		{"remote with a wrong token", "192.0.2.7:5000", "Bearer nope", http.StatusForbidden},
		{"remote without token", "192.0.2.7:5000", "", http.StatusForbidden},
		{"loopback without token", "127.0.0.1:5000", "", http.StatusOK},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, "/debug/pprof/cmdline", nil)
			req.RemoteAddr = tt.remote
			if tt.auth != "" {
				req.Header.Set("Authorization", tt.auth)
			}
			rec := serve(t, s, req)
			if rec.Code != tt.want {
				t.Fatalf("status %d, want %d; body %.200s", rec.Code, tt.want, rec.Body)
			}
		})
	}
}

// doAuth sends one request with the Authorization header auth (none if
// empty) straight to the server's handler.
func doAuth(t *testing.T, s *Server, method, target, auth string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	return serve(t, s, req)
}

func TestTokenGuardsTheClientAPI(t *testing.T) {
	s, c := newTokenServer(t, writeTokens(t, "\n  alpha-token \n\nbeta-token\n"))
	clientRoutes := []struct{ method, target string }{
		{"POST", "/increment"}, {"POST", "/decrement"}, {"GET", "/counter"},
		{"POST", "/counters/c/increment?by=2"}, {"POST", "/counters/c/decrement"}, {"GET", "/counters/c"},
		{"GET", "/counters"}, {"GET", "/status"}, {"GET", "/peers"}, {"GET", "/metrics"},
	}
	for _, r := range clientRoutes {
		t.Run(r.method+" "+r.target, func(t *testing.T) {
			before := c.snapshot()
			for name, auth := range map[string]string{
				"none": "", "wrong": "Bearer alpha-tokeN", "prefix": "Bearer alpha", "basic": "Basic YWxwaGEtdG9rZW4=",
				"empty": "Bearer ", "no scheme": "alpha-token",
			} {
				rec := doAuth(t, s, r.method, r.target, auth)
				assertError(t, rec, http.StatusUnauthorized)
				if got := rec.Header().Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer") {
					t.Errorf("%s: WWW-Authenticate = %q, want Bearer", name, got)
				}
			}
			c.assertUnchanged(t, before)
			for _, auth := range []string{"Bearer alpha-token", "bearer beta-token"} {
				if rec := doAuth(t, s, r.method, r.target, auth); rec.Code != http.StatusOK {
					t.Errorf("with %q: status %d, want 200: %s", auth, rec.Code, rec.Body)
				}
			}
		})
	}
}

func TestTokenLeavesOpenRoutesOpen(t *testing.T) {
	acceptInvalidRequests(t) // tests of bad input
	s, _ := newTokenServer(t, writeTokens(t, "alpha-token\n"))
	for _, r := range []struct{ method, target string }{{"GET", "/health"}, {"GET", "/"}} {
		if rec := doAuth(t, s, r.method, r.target, ""); rec.Code != http.StatusOK {
			t.Errorf("%s %s without a token: status %d, want 200", r.method, r.target, rec.Code)
		}
	}
	// The node-to-node routes are not the client API: no token asked.
	// (They are authenticated as nodes, by cluster key or certificate.)
	rec := doAuth(t, s, "POST", "/replicate", "")
	if rec.Code == http.StatusUnauthorized {
		t.Errorf("POST /replicate without a client token: 401, want it left to node authentication")
	}
}

func TestTokenReload(t *testing.T) {
	path := writeTokens(t, "old-token\n")
	s, _ := newTokenServer(t, path)
	if err := os.WriteFile(path, []byte("new-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.cfg.Tokens.Reload(); err != nil {
		t.Fatal(err)
	}
	if rec := doAuth(t, s, "GET", "/counters", "Bearer old-token"); rec.Code != http.StatusUnauthorized {
		t.Errorf("old token after reload: status %d, want 401", rec.Code)
	}
	if rec := doAuth(t, s, "GET", "/counters", "Bearer new-token"); rec.Code != http.StatusOK {
		t.Errorf("new token after reload: status %d, want 200", rec.Code)
	}
	// A reload that fails keeps the tokens in force.
	if err := os.WriteFile(path, []byte("\n\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.cfg.Tokens.Reload(); !errors.Is(err, ErrTokenFile) {
		t.Errorf("reload of an empty file: %v, want ErrTokenFile", err)
	}
	if rec := doAuth(t, s, "GET", "/counters", "Bearer new-token"); rec.Code != http.StatusOK {
		t.Errorf("token after a failed reload: status %d, want 200", rec.Code)
	}
}

func TestParseTokens(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		want       []string // nil: an error
	}{
		{"one", "abc", []string{"abc"}},
		{"blank lines and spaces", "\n  abc  \r\n\n\tdef\n", []string{"abc", "def"}},
		{"empty", "", nil},
		{"only blank", "\n \n\t\n", nil},
		{"space inside", "abc def\n", nil},
		{"too long", strings.Repeat("x", maxTokenLen+1), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseTokens([]byte(tc.text))
			if tc.want == nil {
				if !errors.Is(err, ErrTokenFile) {
					t.Errorf("ParseTokens(%q) = %q, %v; want ErrTokenFile", tc.text, got, err)
				}
				return
			}
			if err != nil || !slices.Equal(got, tc.want) {
				t.Errorf("ParseTokens(%q) = %q, %v; want %q", tc.text, got, err, tc.want)
			}
		})
	}
}

func TestLoadTokensUnreadable(t *testing.T) {
	_, err := LoadTokens(filepath.Join(t.TempDir(), "missing"))
	if !errors.Is(err, ErrTokenFile) || !strings.Contains(err.Error(), "missing") {
		t.Errorf("LoadTokens of a missing file: %v, want ErrTokenFile naming the path", err)
	}
}

// FuzzParseTokens checks the token file parser: it never panics, every
// token it returns is non-empty, trimmed, free of white space and in
// bounds, and every such line of the input is returned, in order.
func FuzzParseTokens(f *testing.F) {
	for _, s := range []string{"abc", "a\nb", "\n\n", "", " a b ", "a\r\nb\r\n", "\x00", strings.Repeat("y", maxTokenLen+1)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		got, err := ParseTokens([]byte(text))
		if err != nil {
			if !errors.Is(err, ErrTokenFile) || got != nil {
				t.Fatalf("ParseTokens(%q) = %q, %v", text, got, err)
			}
			return
		}
		var want []string
		for _, line := range strings.Split(text, "\n") {
			if tok := strings.TrimSpace(line); tok != "" {
				want = append(want, tok)
			}
		}
		if !slices.Equal(got, want) {
			t.Fatalf("ParseTokens(%q) = %q, want %q", text, got, want)
		}
		for _, tok := range got {
			if tok == "" || len(tok) > maxTokenLen || strings.IndexFunc(tok, isTokenSpace) >= 0 {
				t.Fatalf("ParseTokens(%q) returned bad token %q", text, tok)
			}
		}
	})
}
