package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"countd/actors"
	"countd/crdt"
)

// TestCountersStreamSameBytes: the streamed GET /counters and GET /status
// are byte for byte what json.Marshal of their reply structs gave before
// streaming, with expiring counters, several chunks' worth of counters
// and the history.
func TestCountersStreamSameBytes(t *testing.T) {
	// Expiries half a second off a whole second, so seconds left round
	// the same way when the test and the handler read the clock.
	now := time.Now()
	at := func(s int) uint64 {
		return uint64(now.Add(time.Duration(s)*time.Second + 500*time.Millisecond).UnixMilli())
	}
	f := newFake()
	var entries []crdt.Entry
	values := map[string]int64{}
	expires := map[string]uint64{}
	for i := 1; i < 3*streamBuffer/16; i++ { // a few buffers' worth of JSON; an entry at 0 makes no counter
		name := fmt.Sprintf("c-%d", i)
		switch {
		case i%7 == 0:
			entries = append(entries, expiring(name, uint64(i), at(100+i)))
			values[name], expires[name] = int64(i), at(100+i)
		case i%3 == 0:
			entries = append(entries, other(name, 1, uint64(i)))
			values[name] = 1 - int64(i)
		default:
			entries = append(entries, other(name, uint64(i), 0))
			values[name] = int64(i)
		}
	}
	f.preload(t, entries...)
	s := NewServer(Config{Counters: f, Cluster: peerTable{}, Node: testNode, Replica: testReplica})

	// wants gives json.Marshal of the reply as of the times before and
	// after the request: the handler's seconds left are one of them.
	wants := func(target string, do func() *httptest.ResponseRecorder) (*httptest.ResponseRecorder, []string) {
		var out []string
		marshal := func(now time.Time) {
			var v any = struct {
				Counters  map[string]int64 `json:"counters"`
				ExpiresIn map[string]int64 `json:"expires_in,omitempty"`
				Node      string           `json:"node"`
			}{values, expiresIn(expires, now), testNode}
			if target != "/counters" {
				reply := statusReply{
					statusHead: statusHead{Node: testNode, Replica: testReplica, Peers: peerRows(nil)},
					Counters:   values,
					Expires:    expiresIn(expires, now),
				}
				if target != "/status" {
					h := s.hist.snapshot(now)
					reply.History = &h
				}
				v = reply
			}
			b, err := json.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, string(b)+"\n")
		}
		marshal(time.Now())
		rec := do()
		marshal(time.Now())
		return rec, out
	}
	for _, target := range []string{"/counters", "/status", "/status?history=1"} {
		rec, want := wants(target, func() *httptest.ResponseRecorder { return do(t, s, http.MethodGet, target, nil) })
		if rec.Code != http.StatusOK || rec.Body.String() != want[0] && rec.Body.String() != want[1] {
			t.Fatalf("GET %s: %d, %d bytes; want 200 and the %d bytes json.Marshal gives", target, rec.Code, rec.Body.Len(), len(want[0]))
		}
		assertJSONType(t, rec.Header())
	}
}

// failingRange serves count counters, then fails.
type failingRange struct {
	nopCounters
	count int
}

func (f failingRange) Range(_ context.Context, fn func(actors.CounterValue) error) error {
	for i := range f.count {
		if err := fn(actors.CounterValue{Counter: fmt.Sprintf("c-%07d", i), Value: 1, Exists: true}); err != nil {
			return err
		}
	}
	return actors.ErrTimeout
}

// TestCountersStreamFailure: a failure before any byte is sent is an
// error reply; one after cuts the connection, so no client takes a short
// body for a whole one.
func TestCountersStreamFailure(t *testing.T) {
	s := newTestServer(failingRange{count: 10})
	if rec := do(t, s, http.MethodGet, "/counters", nil); rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("a failure before the body: %d %s, want 503", rec.Code, rec.Body)
	}
	ts := httptest.NewServer(newTestServer(failingRange{count: 100_000}).Handler())
	defer ts.Close()
	resp, err := http.Get(ts.URL + "/counters")
	if err == nil {
		var body struct{ Counters map[string]int64 }
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
	}
	if err == nil {
		t.Fatal("a failure mid-body gave a whole reply")
	}
	if errors.Is(err, context.DeadlineExceeded) {
		t.Fatal(err)
	}
}
