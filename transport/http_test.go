package transport

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"countd/actors"
	"countd/auth"
	"countd/wire"
)

// peer is a fake node that checks every request's signature with keys and
// records the verdicts.
func peer(t *testing.T, keys *auth.Keyring) (addr string, verdicts chan error) {
	t.Helper()
	verdicts = make(chan error, 8)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		verdicts <- keys.Verify(r, body, time.Now())
		switch r.URL.Path {
		case "/health":
			io.WriteString(w, `{"status":"ok","node":"n","replica":"0123456789abcdef"}`)
		case "/replicate":
			io.WriteString(w, `{"node":"n","replica":"0123456789abcdef","changed":0}`)
		}
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://"), verdicts
}

func TestSignsEveryRequest(t *testing.T) {
	keys, err := auth.New([]byte(strings.Repeat("k", 32)))
	if err != nil {
		t.Fatal(err)
	}
	addr, verdicts := peer(t, keys)
	ctx := context.Background()

	signed := New(nil, nil).SignWith(keys)
	defer signed.CloseIdleConnections()
	if _, err := signed.Health(ctx, addr); err != nil {
		t.Fatal(err)
	}
	if err := <-verdicts; err != nil {
		t.Fatalf("health check: %v", err)
	}
	if _, err := signed.Replicate(ctx, addr, &wire.ReplicateRequest{From: "127.0.0.1:1", Replica: "0123456789abcdef"}); err != nil {
		t.Fatal(err)
	}
	if err := <-verdicts; err != nil {
		t.Fatalf("push: %v", err)
	}

	plain := New(nil, nil)
	defer plain.CloseIdleConnections()
	if _, err := plain.Health(ctx, addr); err != nil {
		t.Fatal(err)
	}
	if err := <-verdicts; !errors.Is(err, auth.ErrUnsigned) {
		t.Fatalf("transport without a keyring: verdict %v, want unsigned", err)
	}
}

// A 401 from the peer comes back as actors.ErrUnauthorized, so the caller
// can tell a node with another key from one that is down; other failures
// do not.
func TestUnauthorizedIsNamed(t *testing.T) {
	status := map[string]int{"/health": http.StatusUnauthorized, "/replicate": http.StatusServiceUnavailable}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(status[r.URL.Path])
		io.WriteString(w, `{"error":"no"}`)
	}))
	t.Cleanup(srv.Close)
	addr := strings.TrimPrefix(srv.URL, "http://")
	c := New(nil, nil)
	defer c.CloseIdleConnections()
	if _, err := c.Health(context.Background(), addr); !errors.Is(err, actors.ErrUnauthorized) {
		t.Errorf("Health on a 401: %v, want ErrUnauthorized", err)
	}
	if _, err := c.Replicate(context.Background(), addr, &wire.ReplicateRequest{}); err == nil || errors.Is(err, actors.ErrUnauthorized) {
		t.Errorf("Replicate on a 503: %v, want an error that is not ErrUnauthorized", err)
	}
}
