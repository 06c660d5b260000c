package httpapi

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"countd/actors"
	"countd/crdt"
)

// fakeLevels answers the levels with what the test sets, and records what
// it is asked.
type fakeLevels struct {
	mu      sync.Mutex
	waited  []actors.Level
	read    []actors.Level
	waitErr error
	readErr error
	value   int64
}

var _ Levels = (*fakeLevels)(nil)

func (f *fakeLevels) WaitHeld(ctx context.Context, version uint64, l actors.Level) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := ctx.Deadline(); !ok {
		panic("WaitHeld without a deadline")
	}
	f.waited = append(f.waited, l)
	return f.waitErr
}

func (f *fakeLevels) ReadCounter(ctx context.Context, counter string, l actors.Level) (*actors.CounterValue, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.read = append(f.read, l)
	if f.readErr != nil {
		return nil, f.readErr
	}
	return &actors.CounterValue{Counter: counter, Value: f.value, Exists: true}, nil
}

func (f *fakeLevels) Entries(ctx context.Context, counter string) (*actors.CounterEntries, error) {
	return &actors.CounterEntries{Replica: testReplica, Entries: []crdt.Entry{{Counter: counter, Replica: testReplica, P: 3}}}, nil
}

func newLevelsServer(f *fakeCounters, l *fakeLevels) *Server {
	return NewServer(Config{Counters: f, Levels: l, Node: testNode, Replica: testReplica})
}

var notReached = &actors.LevelError{Level: actors.All, Reached: 1, Need: 3, Members: 3}

func TestWriteLevels(t *testing.T) {
	routes := []string{"/increment", "/decrement", "/counters/c/increment", "/counters/c/decrement"}
	for _, route := range routes {
		t.Run(route, func(t *testing.T) {
			for _, tt := range []struct {
				query string
				want  []actors.Level // what Levels is asked
			}{
				{"", nil},
				{"?wait=local", nil},
				{"?wait=quorum", []actors.Level{actors.Quorum}},
				{"?by=2&wait=all", []actors.Level{actors.All}},
			} {
				f, l := newFake(), &fakeLevels{}
				rec := do(t, newLevelsServer(f, l), "POST", route+tt.query, nil)
				if rec.Code != http.StatusOK {
					t.Fatalf("%s: status %d, body %s", tt.query, rec.Code, rec.Body)
				}
				if len(l.waited) != len(tt.want) || len(tt.want) > 0 && l.waited[0] != tt.want[0] {
					t.Errorf("%s: waited for %v, want %v", tt.query, l.waited, tt.want)
				}
			}
		})
	}
}

func TestBadWaitChangesNothing(t *testing.T) {
	acceptInvalidRequests(t) // tests of bad input
	for _, q := range []string{"wait=majority", "wait=", "wait=ALL", "wait=all&wait=all"} {
		t.Run(q, func(t *testing.T) {
			f, l := newFake(), &fakeLevels{}
			before := f.snapshot()
			rec := do(t, newLevelsServer(f, l), "POST", "/counters/c/increment?"+q, nil)
			assertError(t, rec, http.StatusBadRequest)
			if strings.Contains(q, "&") {
				assertMentions(t, rec.Body.Bytes(), "give it once")
			} else {
				assertMentions(t, rec.Body.Bytes(), "local", "quorum", "all")
			}
			f.assertUnchanged(t, before)
			rec = do(t, newLevelsServer(f, l), "GET", "/counters/c?"+q, nil)
			assertError(t, rec, http.StatusBadRequest)
			if len(l.waited)+len(l.read) != 0 {
				t.Errorf("Levels asked: waits %v, reads %v", l.waited, l.read)
			}
		})
	}
}

// TestWriteLevelNotReached: 504 with the usual error body, saying the
// change is applied here and will still reach the others; it is applied.
func TestWriteLevelNotReached(t *testing.T) {
	f, l := newFake(), &fakeLevels{waitErr: notReached}
	rec := do(t, newLevelsServer(f, l), "POST", "/counters/c/increment?by=4&wait=all", nil)
	assertError(t, rec, http.StatusGatewayTimeout)
	assertMentions(t, rec.Body.Bytes(), "applied and durable on this node", "wait=all", "1 of 3 members", "3 needed",
		"will still reach the others", "-request-timeout")
	if v := f.state.Value("c"); v != 4 {
		t.Fatalf("c = %d after a 504 at a level, want 4 (applied)", v)
	}
}

func TestReadLevels(t *testing.T) {
	f, l := newFake(), &fakeLevels{value: 42}
	f.preload(t, other("c", 7, 0))
	s := newLevelsServer(f, l)
	rec := do(t, s, "GET", "/counters/c?wait=local", nil)
	assertBody(t, rec.Body.Bytes(), `{"counter":"c","value":7,"node":"`+testNode+`"}`)
	rec = do(t, s, "GET", "/counters/c?wait=quorum", nil)
	assertBody(t, rec.Body.Bytes(), `{"counter":"c","value":42,"node":"`+testNode+`"}`)
	rec = do(t, s, "GET", "/counter?wait=all", nil)
	assertBody(t, rec.Body.Bytes(), `{"counter":"default","value":42,"node":"`+testNode+`"}`)
	if want := []actors.Level{actors.Quorum, actors.All}; len(l.read) != 2 || l.read[0] != want[0] || l.read[1] != want[1] {
		t.Fatalf("reads at %v, want %v", l.read, want)
	}

	// Not reached: 504 and just the error, no value.
	l.readErr = notReached
	rec = do(t, s, "GET", "/counters/c?wait=all", nil)
	assertError(t, rec, http.StatusGatewayTimeout) // the error field alone
	assertMentions(t, rec.Body.Bytes(), "wait=all", "1 of 3 members answered", "nothing was read")
}

func TestEntriesRoute(t *testing.T) {
	acceptInvalidRequests(t) // tests of bad input
	s := newLevelsServer(newFake(), &fakeLevels{})
	rec := do(t, s, "GET", "/entries/c", nil)
	assertBody(t, rec.Body.Bytes(), `{"node":"`+testNode+`","replica":"`+testReplica+`","entries":[{"counter":"c","replica":"`+testReplica+`","p":3,"n":0}]}`)
	rec = do(t, s, "GET", "/entries/bad%2Fname", nil)
	assertError(t, rec, http.StatusBadRequest)
	// A node-to-node route: not from loopback and unsigned, refused.
	req := httptest.NewRequest("GET", "/entries/c", nil)
	req.RemoteAddr = "192.0.2.1:40000"
	rec = serve(t, s, req)
	if rec.Code != http.StatusForbidden {
		t.Fatalf("GET /entries/c from another host, unsigned: %d, want 403", rec.Code)
	}
}
