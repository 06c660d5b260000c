package apiclient

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"syscall"
	"testing"
	"time"
)

func TestClassifyKeyed(t *testing.T) {
	dial := &url.Error{Op: "Post", URL: "http://127.0.0.1:1/x",
		Err: &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}}
	if got := Classify(0, dial); got != Failed {
		t.Fatalf("Classify(dial error) = %v, want failed", got)
	}
	for _, tc := range []struct {
		name   string
		status int
		err    error
		want   Outcome
	}{
		{"200", 200, nil, OK},
		{"504", 504, nil, OK},
		{"409", 409, nil, Failed},
		{"422", 422, nil, Failed},
		{"503", 503, nil, Unknown},
		// net/http may have written a keyed request on an earlier
		// connection before the dial that failed.
		{"dial error", 0, dial, Unknown},
		{"EOF", 0, errors.New("EOF"), Unknown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ClassifyKeyed(tc.status, tc.err); got != tc.want {
				t.Fatalf("ClassifyKeyed(%d, %v) = %v, want %v", tc.status, tc.err, got, tc.want)
			}
		})
	}
}

// TestChangeKey: the key travels in the header, a replay is reported, and
// a 504 is applied with no value.
func TestChangeKey(t *testing.T) {
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.Header.Get("Idempotency-Key"))
		switch len(got) {
		case 1:
			w.Write([]byte(`{"counter":"c","value":3,"node":"n"}`))
		case 2:
			w.Header().Set("Idempotent-Replayed", "true")
			w.Write([]byte(`{"counter":"c","value":5,"node":"n"}`))
		default:
			w.WriteHeader(http.StatusGatewayTimeout)
			w.Write([]byte(`{"error":"quorum not reached","node":"n"}`))
		}
	}))
	defer srv.Close()
	var c Client
	ctx := context.Background()
	r := c.ChangeKey(ctx, srv.URL, "c", 3, 0, "k1")
	if r.Outcome != OK || r.Replayed || r.Value != 3 {
		t.Fatalf("first: %+v", r)
	}
	r = c.ChangeKey(ctx, srv.URL, "c", 3, 0, "k1")
	if r.Outcome != OK || !r.Replayed || r.Value != 5 {
		t.Fatalf("replay: %+v", r)
	}
	r = c.ChangeKey(ctx, srv.URL, "c", 3, 0, "k1")
	if r.Outcome != OK || r.Value != 0 || r.Err == nil {
		t.Fatalf("504: %+v, want OK with no value and an error that says why", r)
	}
	if got[0] != "k1" || got[1] != "k1" {
		t.Fatalf("keys sent: %q", got)
	}
}

func TestResend(t *testing.T) {
	ok, unknown, busy, bad := Result{Outcome: OK, Status: 200}, Result{Outcome: Unknown, Status: 503},
		Result{Outcome: Failed, Status: 409}, Result{Outcome: Failed, Status: 400}
	for _, tc := range []struct {
		name     string
		attempts []Result
		want     Outcome
	}{
		{"ok at once", []Result{ok}, OK},
		{"ok after unknowns and a 409", []Result{unknown, busy, unknown, ok}, OK},
		{"refused at once", []Result{bad}, Failed},
		{"refused after a 409: the first may be applied", []Result{busy, bad}, Unknown},
		{"refused after an unknown", []Result{unknown, bad}, Unknown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, n := Resend(context.Background(), func(i int) Result { return tc.attempts[i] })
			if r.Outcome != tc.want || n != len(tc.attempts) {
				t.Fatalf("Resend = %v after %d attempts, want %v after %d", r.Outcome, n, tc.want, len(tc.attempts))
			}
		})
	}
	t.Run("gives up unknown when ctx ends", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		r, n := Resend(ctx, func(int) Result { return busy })
		if r.Outcome != Unknown || n < 2 {
			t.Fatalf("Resend = %v after %d attempts, want unknown after several", r.Outcome, n)
		}
	})
}
