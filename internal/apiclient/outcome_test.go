package apiclient

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"syscall"
	"testing"
)

// TestClassify holds the rule itself, one case per class; TestChange
// shows that real replies and transport errors land in these classes.
func TestClassify(t *testing.T) {
	dial := func(err error) error {
		return &url.Error{Op: "Post", URL: "http://127.0.0.1:1/x", Err: &net.OpError{Op: "dial", Net: "tcp", Err: err}}
	}
	read := func(err error) error {
		return &url.Error{Op: "Post", URL: "http://127.0.0.1:1/x", Err: &net.OpError{Op: "read", Net: "tcp", Err: err}}
	}
	for _, tc := range []struct {
		name   string
		status int
		err    error
		want   Outcome
	}{
		{"200", 200, nil, OK},
		{"204", 204, nil, OK},
		{"200 and then a body error", 200, errors.New("unexpected EOF"), OK},
		{"400", 400, nil, Failed},
		{"409", 409, nil, Failed},
		{"413", 413, nil, Failed},
		{"503", 503, nil, Unknown},
		{"504: applied, the write level not reached", 504, nil, OK},
		{"500", 500, nil, Unknown},
		{"507: a limit refused it", 507, nil, Failed},
		{"302", 302, nil, Unknown},
		{"connection refused", 0, dial(os.NewSyscallError("connect", syscall.ECONNREFUSED)), Failed},
		{"no route to host", 0, dial(os.NewSyscallError("connect", syscall.EHOSTUNREACH)), Failed},
		{"reset after sending", 0, read(os.NewSyscallError("read", syscall.ECONNRESET)), Unknown},
		{"EOF after sending", 0, &url.Error{Op: "Post", URL: "x", Err: errors.New("EOF")}, Unknown},
		{"client timeout", 0, &url.Error{Op: "Post", URL: "x", Err: context.DeadlineExceeded}, Unknown},
		{"a reply lost by a fault injector", 0, errors.New("faultnet: dropped"), Unknown},
		{"no status and no error", 0, nil, Unknown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Classify(tc.status, tc.err); got != tc.want {
				t.Fatalf("Classify(%d, %v) = %v, want %v", tc.status, tc.err, got, tc.want)
			}
		})
	}
}

func TestCounts(t *testing.T) {
	var c Counts
	for _, o := range []Outcome{OK, OK, Failed, Unknown, Unknown, Unknown} {
		c.Add(o)
	}
	if c != (Counts{OK: 2, Failed: 1, Unknown: 3}) || c.Total() != 6 || c.Of(Unknown) != 3 {
		t.Fatalf("counts %+v", c)
	}
	if d := c.Minus(Counts{OK: 1}); d != (Counts{OK: 1, Failed: 1, Unknown: 3}) {
		t.Fatalf("minus %+v", d)
	}
	if p := c.Plus(c); p.Total() != 12 {
		t.Fatalf("plus %+v", p)
	}
	if s := c.String(); s != "2 ok, 1 failed, 3 unknown" {
		t.Fatalf("string %q", s)
	}
}

func TestLedger(t *testing.T) {
	var l Ledger
	if m, err := l.Exact(); err != nil || len(m) != 0 {
		t.Fatalf("empty ledger: %v, %v", m, err)
	}
	ok := Result{Outcome: OK, Status: 200}
	l.Record("A", "c", 5, ok)
	l.Record("B", "c", -2, ok)
	l.Record("A", "d", 1, ok)
	if m, err := l.Exact(); err != nil || m["c"] != 3 || m["d"] != 1 {
		t.Fatalf("Exact = %v, %v; want c=3 d=1", m, err)
	}

	l.Record("A", "c", 7, Result{Outcome: Unknown, Status: 503, Err: errors.New("503 Service Unavailable: {}")})
	l.Record("B", "c", -4, Result{Outcome: Unknown, Err: errors.New(`Post "http://h:1/x": read tcp 1->2: connection reset by peer`)})
	l.Record("B", "c", 100, Result{Outcome: Failed, Err: errors.New(`Post "http://h:1/x": dial tcp h:1: connect: connection refused`)})
	total := l.Record("B", "c", -100, Result{Outcome: Failed, Status: 409, Err: errors.New("409 Conflict: {}")})
	if total != (Counts{OK: 3, Failed: 2, Unknown: 2}) {
		t.Fatalf("Record returned %+v", total)
	}
	b := l.Bounds()["c"]
	// acked 5-2 = 3; an unknown +7 may raise it, an unknown -4 lower it;
	// the failed ±100 change nothing.
	if b != (Bounds{Acked: 3, Lo: -1, Hi: 10, Unknowns: 2}) {
		t.Fatalf("bounds of c: %+v", b)
	}
	if !b.Holds(-1) || !b.Holds(10) || b.Holds(-2) || b.Holds(11) {
		t.Fatalf("Holds wrong at the edges of %v", b)
	}
	if s := b.String(); s != "-1..10 (acked 3, 2 unknown)" {
		t.Fatalf("bounds string %q", s)
	}
	if s := l.Bounds()["d"].String(); s != "exactly 1" {
		t.Fatalf("bounds of d: %q", s)
	}
	if tc := l.Counter("c"); tc.Changes != (Counts{OK: 2, Failed: 2, Unknown: 2}) || tc.Up.OK != 5 || tc.Down.Unknown != 4 {
		t.Fatalf("tally of c: %+v", tc)
	}
	if a, bb := l.Node("A"), l.Node("B"); a != (Counts{OK: 2, Unknown: 1}) || bb != (Counts{OK: 1, Failed: 2, Unknown: 1}) {
		t.Fatalf("per node: A %+v, B %+v", a, bb)
	}
	if _, err := l.Exact(); err == nil {
		t.Fatal("Exact with unknown and failed changes: no error")
	}
	want := "[409 Conflict: {} ×1, 503 Service Unavailable: {} ×1, connection refused ×1, connection reset by peer ×1]"
	if got := l.Errors(); got != want {
		t.Fatalf("Errors = %s, want %s", got, want)
	}
}

func TestLedgerKeepsFewErrorTexts(t *testing.T) {
	var l Ledger
	for i := range 3 * maxErrs {
		l.Record("A", "c", 1, Result{Outcome: Unknown, Status: 503, Err: fmt.Errorf("503: %d", i)})
	}
	l.Record("A", "c", 1, Result{Outcome: Unknown, Status: 503, Err: fmt.Errorf("503: %d", 0)})
	if got := l.Errors(); got != "[503: 0 ×2, 503: 1 ×1, 503: 2 ×1, 503: 3 ×1, 503: 4 ×1, 503: 5 ×1, 503: 6 ×1, 503: 7 ×1]" {
		t.Fatalf("Errors = %s", got)
	}
}
