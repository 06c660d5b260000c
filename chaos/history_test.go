package chaos

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"countd/internal/apiclient"
	"countd/internal/testcluster"
)

// at returns an operation sent at s ms and done at d ms after t0.
func at(kind OpKind, node string, delta int64, s, d int, o apiclient.Outcome) Op {
	t0 := time.Unix(1_000_000, 0)
	return Op{Kind: kind, Counter: "gone", Node: node, Delta: delta,
		Sent: t0.Add(time.Duration(s) * time.Millisecond), Done: t0.Add(time.Duration(d) * time.Millisecond), Outcome: o}
}

// TestFate checks each rule of docs/invariants.md ("Deletes") on its own.
func TestFate(t *testing.T) {
	ok, failed, unknown := apiclient.OK, apiclient.Failed, apiclient.Unknown
	delOK := at(OpDelete, "A", 0, 100, 110, ok)
	tests := []struct {
		name   string
		change Op
		dels   []Op
		want   Fate
	}{
		{"no delete at all", at(OpChange, "A", 5, 0, 10, ok), nil, Sure},
		{"failed never counts", at(OpChange, "A", 5, 200, 210, failed), []Op{delOK}, Gone},
		{"sent after every delete's reply", at(OpChange, "B", 5, 111, 120, ok), []Op{delOK}, Sure},
		{"sent while a delete was in flight", at(OpChange, "B", 5, 105, 120, ok), []Op{delOK}, Maybe},
		{"acknowledged before a delete elsewhere", at(OpChange, "B", 5, 0, 10, ok), []Op{delOK}, Maybe},
		{"acknowledged before a delete on its node", at(OpChange, "A", 5, 0, 10, ok), []Op{delOK}, Gone},
		{"its reply came after the delete on its node was sent", at(OpChange, "A", 5, 0, 100, ok), []Op{delOK}, Maybe},
		{"its node was wiped before the delete", func() Op { c := at(OpChange, "A", 5, 0, 10, ok); c.Life = -1; return c }(), []Op{delOK}, Maybe},
		{"unknown before a delete on its node", at(OpChange, "A", 5, 0, 10, unknown), []Op{delOK}, Maybe},
		{"unknown after every delete", at(OpChange, "A", 5, 200, 210, unknown), []Op{delOK}, Maybe},
		{"after an unknown delete", at(OpChange, "B", 5, 200, 210, ok), []Op{at(OpDelete, "A", 0, 100, 110, unknown)}, Maybe},
		{"an unknown delete on its node", at(OpChange, "A", 5, 0, 10, ok), []Op{at(OpDelete, "A", 0, 100, 110, unknown)}, Maybe},
		{"before a later delete", at(OpChange, "B", 5, 111, 120, ok), []Op{delOK, at(OpDelete, "C", 0, 300, 310, ok)}, Maybe},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := fate(tt.change, tt.dels); got != tt.want {
				t.Errorf("fate = %s, want %s", got, tt.want)
			}
		})
	}
}

// TestDeleteBounds: the sure changes add up exactly, each maybe widens the
// range on its own side, and a change reset by a delete counts on neither.
func TestDeleteBounds(t *testing.T) {
	var h History
	ok := apiclient.OK
	for _, op := range []Op{
		at(OpChange, "A", 7, 0, 10, ok),                  // gone: reset on A
		at(OpChange, "B", -3, 0, 10, ok),                 // maybe: B may not have sent it to A in time
		at(OpChange, "B", 4, 20, 30, apiclient.Unknown),  // maybe
		at(OpChange, "C", 9, 20, 30, apiclient.Failed),   // never
		at(OpDelete, "A", 0, 100, 110, ok),               //
		at(OpDelete, "B", 0, 120, 130, apiclient.Failed), // changes nothing
		at(OpChange, "C", 2, 140, 150, ok),               // sure
		at(OpChange, "A", -1, 160, 170, ok),              // sure
	} {
		h.Record(op)
	}
	b := h.DeleteBounds([]string{"gone", "other"})["gone"]
	if b.Acked != 1 || b.Lo != -2 || b.Hi != 5 || b.Sure != 2 || b.Maybe != 2 || b.Gone != 1 || b.Reset != 7 {
		t.Errorf("bounds %s (%+v), want -2..5: sure 1 from 2 changes, 2 maybes, 7 reset by 1", b, b)
	}
	if _, ok := h.DeleteBounds([]string{"other"})["other"]; ok {
		t.Error("a counter no one touched has bounds")
	}
}

// lifecycleSchedule changes and deletes counter gone on B only, so that
// every delete resets what B acknowledged before it, while the links
// delay, reorder and duplicate B's pushes.
func lifecycleSchedule() *Schedule {
	return &Schedule{
		Seed: 3, Nodes: 3, Clients: 2, Counters: []string{"default"}, MaxDelta: 1000,
		Life: Lifecycle{Share: 0.6, Deleted: []string{"gone"}, Expiring: []string{"brief"}, ExpiringSteps: 1, TTLs: []int64{1}},
		Steps: []Step{
			{Hold: 200 * time.Millisecond, Ops: 40, Target: "B"},
			{Faults: []Fault{{Kind: Delay, Delay: 5 * time.Millisecond, Jitter: 30 * time.Millisecond}, {Kind: Duplicate, P: 0.5}},
				Hold: 200 * time.Millisecond, Ops: 40, Target: "B"},
			{Hold: 200 * time.Millisecond, Ops: 40, Target: "B"},
		},
	}
}

// ignoreDeletes answers every DELETE sent to node with 204, as a node
// whose delete does nothing would, and passes everything else on.
type ignoreDeletes struct {
	base http.RoundTripper
	c    *testcluster.Cluster // B's address is known once it starts
	node string
}

func (d ignoreDeletes) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method != http.MethodDelete || req.URL.Host != d.c.Addr(d.node) {
		return d.base.RoundTrip(req)
	}
	return &http.Response{StatusCode: http.StatusNoContent, Status: "204 No Content", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{}, Body: http.NoBody, Request: req}, nil
}

// TestChaosCatchesIgnoredDelete shows the delete bounds catch a node that
// acknowledges deletes and resets nothing: the changes B acknowledged
// before them survive, and Check must say they should not. The same
// schedule on real nodes must pass, or the test proves nothing.
func TestChaosCatchesIgnoredDelete(t *testing.T) {
	t.Run("control", func(t *testing.T) {
		res := Run(t, lifecycleSchedule(), testcluster.Options{})
		if res.Failed() {
			t.Fatalf("the unbroken cluster fails:\n%s", res.Report())
		}
		if b := res.History.DeleteBounds([]string{"gone"})["gone"]; b.Gone == 0 {
			t.Fatalf("no change was surely reset by a delete (%s): the schedule tests nothing", b)
		}
	})
	t.Run("broken", func(t *testing.T) {
		res := run(t, lifecycleSchedule(), testcluster.Options{}, func(c *testcluster.Cluster, rt http.RoundTripper) http.RoundTripper {
			return ignoreDeletes{base: rt, c: c, node: "B"}
		})
		if res.Err != nil {
			t.Fatal(res.Err)
		}
		b := res.History.DeleteBounds([]string{"gone"})["gone"]
		if b.Reset == 0 {
			t.Fatalf("the changes B's deletes should have reset add up to 0 (%s): nothing to catch\n%s", b, res.Report())
		}
		if !strings.Contains(strings.Join(res.Violations, "\n"), "counter gone = ") {
			t.Fatalf("B ignored its deletes, yet Check reports nothing of counter gone (%s):\n%s", b, res.Report())
		}
		t.Logf("caught, as it should be: %s", res.Violations[0])
	})
}
