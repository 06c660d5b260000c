package main

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"countd/node"
)

// TestRunBadSecurityFiles checks a client token or TLS file that cannot be
// used stops countd with exit 2 and one line that says what is wrong.
func TestRunBadSecurityFiles(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n  \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing")
	safe := []string{"-memory", "-port=0"}
	for _, tt := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"token file missing", []string{"-client-token-file=" + missing}, nil, "client token file " + missing},
		{"token file empty", []string{"-client-token-file=" + empty}, nil, "no token"},
		{"env token file empty", nil, map[string]string{"COUNTD_CLIENT_TOKEN_FILE": empty}, "no token"},
		{"cert without key", []string{"-tls-cert-file=" + empty}, nil, "-tls-key-file"},
		{"cert not PEM", []string{"-tls-cert-file=" + empty, "-tls-key-file=" + empty}, nil, "-tls-cert-file"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, out := runBounded(t, append(append([]string{}, safe...), tt.args...), tt.env)
			if code != 2 {
				t.Errorf("run = %d, want 2", code)
			}
			if strings.Count(out, "\n") != 1 || !strings.HasPrefix(out, "countd: ") || !strings.Contains(out, tt.want) {
				t.Errorf("stderr = %q, want one line \"countd: ...\" with %q", out, tt.want)
			}
		})
	}
}

// TestClientTokenFlag checks -client-token-file reaches the node: the
// client API then answers 401 without the token and 200 with it.
func TestClientTokenFlag(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(path, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := parseConfig([]string{"-memory", "-port=0", "-client-token-file=" + path}, envOf(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	n, err := node.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	get := func(auth string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, n.URL()+"/counters", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get(""); code != http.StatusUnauthorized {
		t.Errorf("without a token: %d, want 401", code)
	}
	if code := get("Bearer s3cret"); code != http.StatusOK {
		t.Errorf("with the token: %d, want 200", code)
	}
}
