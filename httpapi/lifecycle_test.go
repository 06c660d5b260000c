package httpapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"testing"
	"time"

	"countd/crdt"
)

// The lifecycle routes (issue 12): DELETE /counters/{name}, ?ttl= on the
// changes, POST /counters/{name}/expire?ttl=, and expires_in in the reads.

// expiring returns an entry of otherReplica for counter, worth p, that
// makes the counter expire at (unix milliseconds).
func expiring(counter string, p, at uint64) crdt.Entry {
	e := other(counter, p, 0)
	e.T, e.E = 1, at
	return e
}

// valueReply is a single-counter reply, read strictly.
type valueReply struct {
	Counter   string `json:"counter"`
	Value     int64  `json:"value"`
	ExpiresIn *int64 `json:"expires_in"`
	Node      string `json:"node"`
}

// readValue decodes a 200 single-counter reply, refusing unknown fields.
func readValue(t *testing.T, status int, body []byte) valueReply {
	t.Helper()
	if status != http.StatusOK {
		t.Fatalf("status = %d, want 200 (body %q)", status, body)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var r valueReply
	if err := dec.Decode(&r); err != nil {
		t.Fatalf("body %q: %v", body, err)
	}
	return r
}

// expiryOf returns the expiry (unix milliseconds, 0: none) the fake holds
// for counter.
func (f *fakeCounters) expiryOf(counter string) uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, exp, _ := f.state.Lookup(counter)
	return exp
}

// assertExpiresIn fails unless r says counter's expiry, at (unix ms), is
// that many seconds away, rounded up, as read at some time from sent (when
// the request was sent) to now.
func assertExpiresIn(t *testing.T, r valueReply, at uint64, sent time.Time) {
	t.Helper()
	if r.ExpiresIn == nil {
		t.Fatalf("reply for %s has no expires_in; want the seconds left until %d", r.Counter, at)
	}
	lo, hi := secondsLeft(at, time.Now()), secondsLeft(at, sent)
	if got := *r.ExpiresIn; got < lo || got > hi {
		t.Errorf("expires_in = %d, want %d to %d (expiry %d ms)", got, lo, hi, at)
	}
}

// assertExpiryNear fails unless at is ttl after some time from sent to now.
func assertExpiryNear(t *testing.T, at uint64, ttl time.Duration, sent time.Time) {
	t.Helper()
	lo, hi := uint64(sent.Add(ttl).UnixMilli()), uint64(time.Now().Add(ttl).UnixMilli())
	if at < lo || at > hi {
		t.Errorf("expiry = %d ms, want %d to %d (ttl %v after the request)", at, lo, hi, ttl)
	}
}

func TestDeleteCounter(t *testing.T) {
	soon := uint64(time.Now().Add(time.Hour).UnixMilli())
	tests := []struct {
		name    string
		preload []crdt.Entry
		known   bool // whether the first DELETE changes the state
	}{
		{"live counter", []crdt.Entry{other("c", 5, 2), other("d", 1, 0)}, true},
		{"live counter with an expiry", []crdt.Entry{expiring("c", 5, soon), other("d", 1, 0)}, true},
		{"unknown counter", []crdt.Entry{other("d", 1, 0)}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake()
			f.preload(t, tt.preload...)
			s := newTestServer(f)
			deleteC := func(what string) {
				t.Helper()
				rec := do(t, s, "DELETE", "/counters/c", nil)
				if rec.Code != http.StatusNoContent || rec.Body.Len() != 0 {
					t.Fatalf("%s: status %d, body %q; want 204 and no body", what, rec.Code, rec.Body)
				}
			}
			before := f.snapshot()
			deleteC("DELETE")
			if !tt.known {
				f.assertUnchanged(t, before)
			}
			before = f.snapshot()
			deleteC("a second DELETE") // a no-op that answers the same
			f.assertUnchanged(t, before)

			rec := do(t, s, "GET", "/counters/c", nil)
			assertBody(t, rec.Body.Bytes(), valueBody("c", 0)) // no expires_in
			rec = do(t, s, "GET", "/counters", nil)
			assertBody(t, rec.Body.Bytes(), `{"counters":{"d":1},"node":"n1:1"}`)
			// A change after the delete starts from 0, with no expiry.
			rec = do(t, s, "POST", "/counters/c/increment", nil)
			assertBody(t, rec.Body.Bytes(), valueBody("c", 1))
		})
	}
}

func TestDeleteBadName(t *testing.T) {
	acceptInvalidRequests(t) // tests of bad input
	for _, target := range []string{
		"/counters/a%2Fb", "/counters/a%20b", "/counters/%2e%2e%2Fx", "/counters/" + name129, "/counters/a%00",
	} {
		t.Run(target, func(t *testing.T) {
			f := newFake()
			f.preload(t, other("c", 1, 0))
			before := f.snapshot()
			rec := do(t, newTestServer(f), "DELETE", target, nil)
			assertError(t, rec, http.StatusBadRequest)
			assertMentions(t, rec.Body.Bytes(), "counter name", "is not valid")
			f.assertUnchanged(t, before)
			if n := f.callCount(); n != 0 {
				t.Errorf("the counters were asked %d times, want 0", n)
			}
		})
	}
}

// TestChangeTTL checks ?ttl= on a change sets an expiry only if the
// counter has none (NX): a later change with a ttl does not move it.
func TestChangeTTL(t *testing.T) {
	tests := []struct {
		first, again, counter string
		ttl                   time.Duration
		value                 int64 // after first
	}{
		{"/increment?ttl=60", "/increment?ttl=600", "default", time.Minute, 1},
		{"/decrement?ttl=1", "/increment?ttl=600", "default", time.Second, -1},
		{"/counters/c/increment?by=3&ttl=60", "/counters/c/decrement?ttl=5", "c", time.Minute, 3},
		{"/counters/c/decrement?ttl=315576000&by=2", "/counters/c/increment?by=2&ttl=1", "c", maxTTL * time.Second, -2},
		{"/counters/c/increment?ttl=0060", "/counters/c/increment?ttl=30", "c", time.Minute, 1},
	}
	for _, tt := range tests {
		t.Run(tt.first, func(t *testing.T) {
			f := newFake()
			s := newTestServer(f)
			sent := time.Now()
			rec := do(t, s, "POST", tt.first, nil)
			r := readValue(t, rec.Code, rec.Body.Bytes())
			at := f.expiryOf(tt.counter)
			assertExpiryNear(t, at, tt.ttl, sent)
			if r.Counter != tt.counter || r.Value != tt.value || r.Node != testNode {
				t.Errorf("reply %+v, want counter %s value %d", r, tt.counter, tt.value)
			}
			assertExpiresIn(t, r, at, sent)

			// NX: a second change with another ttl leaves the expiry.
			sent = time.Now()
			rec = do(t, s, "POST", tt.again, nil)
			r = readValue(t, rec.Code, rec.Body.Bytes())
			if got := f.expiryOf(tt.counter); got != at {
				t.Errorf("second change with a ttl moved the expiry from %d to %d ms", at, got)
			}
			assertExpiresIn(t, r, at, sent)

			// A change with no ttl keeps it too, and reads show it.
			for _, req := range []struct{ method, target string }{
				{"POST", "/counters/" + tt.counter + "/increment"},
				{"GET", "/counters/" + tt.counter},
			} {
				sent = time.Now()
				rec = do(t, s, req.method, req.target, nil)
				assertExpiresIn(t, readValue(t, rec.Code, rec.Body.Bytes()), at, sent)
			}
			if got := f.expiryOf(tt.counter); got != at {
				t.Errorf("expiry moved from %d to %d ms", at, got)
			}
			sent = time.Now()
			rec = do(t, s, "GET", "/counters", nil)
			assertCountersExpiresIn(t, rec.Body.Bytes(), map[string]uint64{tt.counter: at}, sent)
		})
	}
}

// assertCountersExpiresIn fails unless a GET /counters or GET /status body
// has expires_in for exactly the counters of want (their expiries, unix
// ms), each the seconds left as read from sent to now; none at all when
// want is empty.
func assertCountersExpiresIn(t *testing.T, body []byte, want map[string]uint64, sent time.Time) {
	t.Helper()
	var r struct {
		ExpiresIn map[string]int64 `json:"expires_in"`
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil {
		t.Fatalf("body %q: %v", body, err)
	}
	if _, ok := raw["expires_in"]; ok && len(want) == 0 {
		t.Fatalf("body %s has expires_in; want none", body)
	}
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("body %q: %v", body, err)
	}
	if len(r.ExpiresIn) != len(want) {
		t.Fatalf("expires_in = %v, want one for each of %v", r.ExpiresIn, want)
	}
	for name, at := range want {
		got, ok := r.ExpiresIn[name]
		lo, hi := secondsLeft(at, time.Now()), secondsLeft(at, sent)
		if !ok || got < lo || got > hi {
			t.Errorf("expires_in[%s] = %d (present %v), want %d to %d", name, got, ok, lo, hi)
		}
	}
}

// TestExpireRoute checks POST /counters/{name}/expire?ttl= sets an expiry,
// and replaces one, longer or shorter.
func TestExpireRoute(t *testing.T) {
	f := newFake()
	f.preload(t, other("c", 5, 0), other("d", 1, 0))
	s := newTestServer(f)
	for _, ttl := range []int{30, 600, 10, maxTTL} {
		sent := time.Now()
		rec := do(t, s, "POST", fmt.Sprintf("/counters/c/expire?ttl=%d", ttl), nil)
		assertJSONType(t, rec.Header())
		r := readValue(t, rec.Code, rec.Body.Bytes())
		if r.Counter != "c" || r.Value != 5 || r.Node != testNode {
			t.Errorf("ttl=%d: reply %+v, want counter c value 5 node %s", ttl, r, testNode)
		}
		at := f.expiryOf("c")
		assertExpiryNear(t, at, time.Duration(ttl)*time.Second, sent)
		assertExpiresIn(t, r, at, sent)
	}
	// Only c expires.
	rec := do(t, s, "GET", "/counters/d", nil)
	assertBody(t, rec.Body.Bytes(), valueBody("d", 1))
}

// TestExpireNoSuchCounter checks expire answers 404 for a counter that does
// not exist, however it came not to, and changes nothing.
func TestExpireNoSuchCounter(t *testing.T) {
	const msg = "no such counter: it was never created, or it was deleted or expired; nothing was changed"
	past := uint64(time.Now().Add(-time.Second).UnixMilli())
	tests := []struct {
		name    string
		preload []crdt.Entry
		setup   string // a DELETE target to run first
	}{
		{name: "never created", preload: []crdt.Entry{other("d", 1, 0)}},
		{name: "deleted", preload: []crdt.Entry{other("c", 5, 0)}, setup: "/counters/c"},
		{name: "expired", preload: []crdt.Entry{expiring("c", 5, past)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake()
			f.preload(t, tt.preload...)
			s := newTestServer(f)
			if tt.setup != "" {
				if rec := do(t, s, "DELETE", tt.setup, nil); rec.Code != http.StatusNoContent {
					t.Fatalf("DELETE: status %d", rec.Code)
				}
			}
			before := f.snapshot()
			rec := do(t, s, "POST", "/counters/c/expire?ttl=60", nil)
			assertError(t, rec, http.StatusNotFound)
			if got := errorMessage(t, rec.Body.Bytes()); got != msg {
				t.Errorf("message = %q, want %q", got, msg)
			}
			if tt.name != "expired" { // the expired one is deleted on the way, as the actor does
				f.assertUnchanged(t, before)
			}
			if at := f.expiryOf("c"); at != 0 && at > uint64(time.Now().UnixMilli()) {
				t.Errorf("a 404 set an expiry: %d ms", at)
			}
			rec = do(t, s, "GET", "/counters/c", nil)
			assertBody(t, rec.Body.Bytes(), valueBody("c", 0))
		})
	}
}

func TestExpireNeedsTTL(t *testing.T) {
	acceptInvalidRequests(t) // tests of bad input
	const msg = "ttl is required: the seconds from now until the counter expires, from 1 to 315576000 (10 years)"
	for _, counter := range []string{"c", "nope"} {
		t.Run(counter, func(t *testing.T) {
			f := newFake()
			f.preload(t, other("c", 5, 0))
			before := f.snapshot()
			rec := do(t, newTestServer(f), "POST", "/counters/"+counter+"/expire", nil)
			assertError(t, rec, http.StatusBadRequest)
			if got := errorMessage(t, rec.Body.Bytes()); got != msg {
				t.Errorf("message = %q, want %q", got, msg)
			}
			f.assertUnchanged(t, before)
		})
	}
}

// TestBadTTL checks every route that takes ttl refuses a bad one with 400
// and the exact message, and changes nothing.
func TestBadTTL(t *testing.T) {
	acceptInvalidRequests(t) // tests of bad input
	valueMsg := func(v string) string {
		return fmt.Sprintf("ttl must be a whole number of seconds from 1 to 315576000 (10 years), written in digits only; got %q", v)
	}
	type bad struct{ query, msg string }
	var bads []bad
	for _, v := range []string{"0", "00", "-1", "1.5", "abc", "315576001", "18446744073709551616", "", "+5", " 5", "1e3", "0x10", "١"} {
		bads = append(bads, bad{url.Values{"ttl": {v}}.Encode(), valueMsg(v)})
	}
	bads = append(bads,
		bad{"ttl=5&ttl=6", "ttl is given 2 times in the query; give it once"},
		bad{"ttl=5&ttl=5&ttl=7", "ttl is given 3 times in the query; give it once"},
		bad{"ttl", valueMsg("")},
	)
	soon := uint64(time.Now().Add(time.Hour).UnixMilli())
	for _, path := range []string{
		"/increment", "/decrement", "/counters/c/increment", "/counters/c/decrement",
		"/counters/c/expire", "/counters/e/expire", "/counters/e/increment",
	} {
		for _, b := range bads {
			t.Run(path+"?"+b.query, func(t *testing.T) {
				f := newFake()
				f.preload(t, other("default", 1, 0), other("c", 5, 0), expiring("e", 2, soon))
				before := f.snapshot()
				rec := do(t, newTestServer(f), "POST", path+"?"+b.query, nil)
				assertError(t, rec, http.StatusBadRequest)
				if got := errorMessage(t, rec.Body.Bytes()); got != b.msg {
					t.Errorf("message = %q, want %q", got, b.msg)
				}
				f.assertUnchanged(t, before)
				if at := f.expiryOf("e"); at != soon {
					t.Errorf("e's expiry moved from %d to %d ms", soon, at)
				}
			})
		}
	}
}

// TestSecondsLeft checks expires_in rounds up: a counter that still exists
// has at least 1 second left, never 0.
func TestSecondsLeft(t *testing.T) {
	now := time.UnixMilli(1_700_000_000_000)
	for _, tt := range []struct {
		left time.Duration
		want int64
	}{
		{1200 * time.Millisecond, 2},
		{1999 * time.Millisecond, 2},
		{2000 * time.Millisecond, 2},
		{2001 * time.Millisecond, 3},
		{time.Second, 1},
		{1001 * time.Millisecond, 2},
		{time.Millisecond, 1},
		{0, 1},
		{-5 * time.Second, 1},
		{time.Minute, 60},
		{maxTTL * time.Second, maxTTL},
	} {
		at := uint64(now.Add(tt.left).UnixMilli())
		if got := secondsLeft(at, now); got != tt.want {
			t.Errorf("secondsLeft(%v left) = %d, want %d", tt.left, got, tt.want)
		}
		if got := expiresIn(map[string]uint64{"c": at}, now); !maps.Equal(got, map[string]int64{"c": tt.want}) {
			t.Errorf("expiresIn(%v left) = %v, want c: %d", tt.left, got, tt.want)
		}
	}
	if got := expiresIn(nil, now); got != nil {
		t.Errorf("expiresIn(nil) = %v, want nil (no expires_in field)", got)
	}
}

// TestExpiresInRoundsUp checks the replies round the seconds left up: a
// counter with 1.2 s left shows 2 (never 0, nor 1 while over 1 s is left).
func TestExpiresInRoundsUp(t *testing.T) {
	f := newFake()
	s := newTestServer(f)
	sent := time.Now()
	at := uint64(sent.Add(1200 * time.Millisecond).UnixMilli())
	f.preload(t, expiring("c", 5, at), other("d", 1, 0))
	rec := do(t, s, "GET", "/counters/c", nil)
	r := readValue(t, rec.Code, rec.Body.Bytes())
	assertExpiresIn(t, r, at, sent)
	if *r.ExpiresIn == 0 {
		t.Errorf("expires_in = 0 for a counter that exists")
	}
	rec = do(t, s, "GET", "/counters", nil)
	assertCountersExpiresIn(t, rec.Body.Bytes(), map[string]uint64{"c": at}, sent)
}

// TestExpiredReadsAsAbsent checks a counter whose expiry passed reads as
// one never created, at once (before any sweep deletes it), and that a
// change to it starts anew.
func TestExpiredReadsAsAbsent(t *testing.T) {
	past := uint64(time.Now().Add(-time.Millisecond).UnixMilli())
	f := newFake()
	f.preload(t, expiring("c", 5, past), expiring("default", 3, past), other("d", 1, 0))
	s := newTestServer(f)
	rec := do(t, s, "GET", "/counters/c", nil)
	assertBody(t, rec.Body.Bytes(), valueBody("c", 0))
	rec = do(t, s, "GET", "/counter", nil)
	assertBody(t, rec.Body.Bytes(), valueBody("default", 0))
	rec = do(t, s, "GET", "/counters", nil)
	assertBody(t, rec.Body.Bytes(), `{"counters":{"d":1},"node":"n1:1"}`)
	// A change deletes the expired counter first: it starts from 0, with
	// no expiry, or with the one its ttl sets.
	rec = do(t, s, "POST", "/counters/c/increment", nil)
	assertBody(t, rec.Body.Bytes(), valueBody("c", 1))
	sent := time.Now()
	rec = do(t, s, "POST", "/decrement?ttl=60", nil)
	r := readValue(t, rec.Code, rec.Body.Bytes())
	if r.Value != -1 {
		t.Errorf("decrement of an expired counter = %d, want -1", r.Value)
	}
	at := f.expiryOf("default")
	assertExpiryNear(t, at, time.Minute, sent)
	assertExpiresIn(t, r, at, sent)
}
