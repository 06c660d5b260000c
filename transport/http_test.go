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
