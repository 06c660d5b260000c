package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"countd/auth"
)

// The header countd-sign prints is one a node with the same key accepts
// for that request, and only that request.
func TestSignedRequestVerifies(t *testing.T) {
	key := filepath.Join(t.TempDir(), "cluster.key")
	if err := os.WriteFile(key, []byte("an-operator-key-an-operator-key-00001\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ring, err := auth.Load(key)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	body := `{"addr":"127.0.0.1:8084"}`
	var out, errs bytes.Buffer
	if code := run([]string{"-cluster-key-file=" + key, "post", "/peers", body}, func(string) string { return "" }, &out, &errs, now); code != 0 {
		t.Fatalf("run = %d: %s", code, errs.String())
	}
	name, value, ok := strings.Cut(strings.TrimSpace(out.String()), ": ")
	if !ok || name != auth.Header {
		t.Fatalf("output %q, want %s: ...", out.String(), auth.Header)
	}
	req := httptest.NewRequest(http.MethodPost, "/peers", strings.NewReader(body))
	req.Header.Set(auth.Header, value)
	if err := ring.Verify(req, []byte(body), now); err != nil {
		t.Fatalf("node refuses the header: %v", err)
	}
	if err := ring.Verify(req, []byte(`{"addr":"127.0.0.1:9999"}`), now); err == nil {
		t.Fatal("header accepted for another body")
	}
}

func TestBadUse(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"-cluster-key-file=/nonexistent/key", "GET", "/debug/pprof/"},
		{"GET", "/debug/pprof/"},
		{"-cluster-key-file=x", "GET", "debug"},
	} {
		var out, errs bytes.Buffer
		if code := run(args, func(string) string { return "" }, &out, &errs, time.Now()); code != 2 || out.Len() != 0 || errs.Len() == 0 {
			t.Errorf("run(%q) = %d, stdout %q, stderr %q; want 2 and an error", args, code, out.String(), errs.String())
		}
	}
}
