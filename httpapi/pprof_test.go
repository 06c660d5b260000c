package httpapi

import (
	"net/http"
	"strings"
	"testing"
)

// Profiles are served only when asked for: they reveal the program's
// internals and cost CPU.
func TestPprofOnlyWhenEnabled(t *testing.T) {
	off := newTestServer(newFake())
	if rec := do(t, off, http.MethodGet, "/debug/pprof/", nil); rec.Code != http.StatusNotFound {
		t.Fatalf("GET /debug/pprof/ without -pprof: %d, want 404", rec.Code)
	}
	on := NewServer(Config{Counters: newFake(), Node: testNode, Replica: testReplica, Pprof: true})
	for path, want := range map[string]string{
		"/debug/pprof/":                  "goroutine",
		"/debug/pprof/goroutine?debug=1": "goroutine profile",
		"/debug/pprof/cmdline":           "",
	} {
		rec := do(t, on, http.MethodGet, path, nil)
		if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), want) {
			t.Fatalf("GET %s with -pprof: %d %.200q", path, rec.Code, rec.Body)
		}
	}
}
