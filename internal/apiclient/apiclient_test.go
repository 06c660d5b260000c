package apiclient

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// raw is a handler that answers with reply written straight onto the
// connection, then closes it, so a test can send a truncated reply or none.
func raw(t *testing.T, reply string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		conn, buf, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		defer conn.Close()
		buf.WriteString(reply)
		buf.Flush()
	}
}

// reset is a handler that reads the request and then resets the
// connection (SO_LINGER 0), so the client sees ECONNRESET with no reply.
func reset(t *testing.T) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		conn.(*net.TCPConn).SetLinger(0)
		conn.Close()
	}
}

// refusedURL returns the base URL of a port that was just ours and is now
// closed, so a connection to it is refused.
func refusedURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr
}

func TestChange(t *testing.T) {
	for _, tc := range []struct {
		name    string
		delta   int64
		handler http.HandlerFunc // nil: nothing listens
		want    Outcome
		status  int
		value   int64
		hasErr  bool
	}{
		{name: "ok increment", delta: 3, want: OK, status: 200, value: 7, handler: func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodPost || r.URL.Path != "/counters/a b/increment" || r.URL.Query().Get("by") != "3" {
				t.Errorf("got %s %s", r.Method, r.URL)
			}
			fmt.Fprint(w, `{"counter":"a b","value":7,"node":"x"}`)
		}},
		{name: "ok decrement", delta: -2, want: OK, status: 200, value: -2, handler: func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/counters/a b/decrement" || r.URL.Query().Get("by") != "2" {
				t.Errorf("got %s %s", r.Method, r.URL)
			}
			fmt.Fprint(w, `{"value":-2}`)
		}},
		// The status line came, so the node applied the change; only the
		// value is unknown.
		{name: "2xx with a truncated body", delta: 1, want: OK, status: 200, hasErr: true,
			handler: raw(t, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"value\":")},
		{name: "2xx with a body that is not JSON", delta: 1, want: OK, status: 200, hasErr: true,
			handler: func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "hello") }},
		{name: "4xx", delta: 1, want: Failed, status: 409, hasErr: true, handler: func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, `{"error":"overflow"}`, http.StatusConflict)
		}},
		{name: "4xx with a truncated body", delta: 1, want: Failed, status: 400, hasErr: true,
			handler: raw(t, "HTTP/1.1 400 Bad Request\r\nContent-Length: 100\r\n\r\n{\"err")},
		{name: "5xx", delta: 1, want: Unknown, status: 503, hasErr: true, handler: func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, `{"error":"timeout"}`, http.StatusServiceUnavailable)
		}},
		{name: "5xx with a truncated body", delta: 1, want: Unknown, status: 503, hasErr: true,
			handler: raw(t, "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 100\r\n\r\n{\"err")},
		{name: "2xx other than 200", delta: 1, want: OK, status: 201, value: 1, handler: func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusCreated)
			fmt.Fprint(w, `{"value":1}`)
		}},
		{name: "500", delta: 1, want: Unknown, status: 500, hasErr: true, handler: func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, `{"error":"boom"}`, http.StatusInternalServerError)
		}},
		{name: "transport error after the request was sent", delta: 1, want: Unknown, hasErr: true,
			handler: raw(t, "")},
		{name: "reset after the request was sent", delta: 1, want: Unknown, hasErr: true,
			handler: reset(t)},
		{name: "client timeout after the request was sent", delta: 1, want: Unknown, hasErr: true,
			handler: func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }},
		{name: "connection refused", delta: 1, want: Failed, hasErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := refusedURL(t)
			if tc.handler != nil {
				srv := httptest.NewServer(tc.handler)
				defer srv.Close()
				base = srv.URL
			}
			c := Client{HTTP: &http.Client{Timeout: 200 * time.Millisecond}}
			defer c.HTTP.CloseIdleConnections()
			r := c.Change(base, "a b", tc.delta)
			if r.Outcome != tc.want || r.Status != tc.status || r.Value != tc.value || (r.Err != nil) != tc.hasErr {
				t.Fatalf("got %v, status %d, value %d, err %v; want %v, status %d, value %d, error %t",
					r.Outcome, r.Status, r.Value, r.Err, tc.want, tc.status, tc.value, tc.hasErr)
			}
		})
	}
}

func TestGetters(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/counters":
			fmt.Fprint(w, `{"counters":{"a":1,"b":-2},"node":"x"}`)
		case "/peers":
			fmt.Fprint(w, `{"peers":[{"addr":"h:2","state":"down","last_seen":"2024-01-01T00:00:00Z","behind":5},{"addr":"h:1","state":"alive"}]}`)
		case "/health":
			fmt.Fprint(w, `{"status":"ok","node":"x","replica":"r1"}`)
		case "/bad":
			fmt.Fprint(w, `{"counters":`)
		default:
			http.Error(w, `{"error":"not found"}`, http.StatusNotFound)
		}
	}))
	defer srv.Close()
	c := Client{HTTP: srv.Client()}

	counters, err := c.Counters(t.Context(), srv.URL)
	if err != nil || len(counters) != 2 || counters["a"] != 1 || counters["b"] != -2 {
		t.Errorf("Counters: %v, %v", counters, err)
	}
	rows, err := c.Peers(t.Context(), srv.URL)
	want := []PeerRow{{Addr: "h:2", State: "down", LastSeen: "2024-01-01T00:00:00Z", Behind: 5}, {Addr: "h:1", State: "alive"}}
	if err != nil || len(rows) != 2 || rows[0] != want[0] || rows[1] != want[1] {
		t.Errorf("Peers: %+v, %v", rows, err)
	}
	if got := DescribePeers(rows, func(addr string) string {
		if addr == "h:1" {
			return "A"
		}
		return addr
	}); got != "[A=alive h:2=down]" {
		t.Errorf("DescribePeers: %s", got)
	}
	if got := DescribePeers(rows, nil); got != "[h:1=alive h:2=down]" {
		t.Errorf("DescribePeers without names: %s", got)
	}
	if got := PeerStates(rows, nil); len(got) != 2 || got["h:1"] != "alive" || got["h:2"] != "down" {
		t.Errorf("PeerStates: %v", got)
	}
	if r, err := c.Replica(t.Context(), srv.URL); err != nil || r != "r1" {
		t.Errorf("Replica: %q, %v", r, err)
	}

	var out any
	if err := c.GetJSON(t.Context(), srv.URL, "/nope", &out); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("GetJSON of a 404: %v, want an error naming the status", err)
	}
	if err := c.GetJSON(t.Context(), srv.URL, "/bad", &out); err == nil {
		t.Error("GetJSON of a bad body: no error")
	}
	if err := c.GetJSON(t.Context(), refusedURL(t), "/counters", &out); err == nil {
		t.Error("GetJSON with nobody listening: no error")
	}
}

func TestPostSendsToTheURLAndReadsTheReply(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/increment" {
			t.Errorf("got %s %s", r.Method, r.URL)
		}
		fmt.Fprint(w, `{"counter":"default","value":4,"node":"n1"}`)
	}))
	defer srv.Close()
	r := Client{HTTP: srv.Client()}.Post(t.Context(), srv.URL+"/increment")
	if r.Outcome != OK || r.Counter != "default" || r.Value != 4 || r.Node != "n1" || r.Err != nil {
		t.Fatalf("got %+v", r)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if r := (Client{HTTP: srv.Client()}).Post(ctx, srv.URL+"/increment"); r.Outcome != Unknown || r.Err == nil {
		t.Fatalf("a cancelled request: %+v, want unknown", r)
	}
}

func TestOutcomeString(t *testing.T) {
	for o, want := range map[Outcome]string{OK: "ok", Failed: "failed", Unknown: "unknown", 7: "Outcome(7)"} {
		if got := o.String(); got != want {
			t.Errorf("%d: %q, want %q", int(o), got, want)
		}
	}
}

func TestRemovePeer(t *testing.T) {
	status := http.StatusNoContent
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodDelete || r.URL.EscapedPath() != "/peers/10.0.0.1:80%2Fx" {
			t.Errorf("got %s %s", r.Method, r.URL.EscapedPath())
		}
		w.WriteHeader(status)
	}))
	defer srv.Close()
	var c Client
	if err := c.RemovePeer(t.Context(), srv.URL, "10.0.0.1:80/x"); err != nil {
		t.Fatalf("204: %v", err)
	}
	status = http.StatusOK
	if err := c.RemovePeer(t.Context(), srv.URL, "10.0.0.1:80/x"); err == nil || !strings.Contains(err.Error(), "200") {
		t.Fatalf("200 answered %v, want an error naming the status", err)
	}
	if err := c.RemovePeer(t.Context(), refusedURL(t), "10.0.0.1:80"); err == nil {
		t.Fatal("refused connection answered no error")
	}
}
