package metrics

import (
	"errors"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// A component built without metrics holds a nil *Metrics: every recording
// method must be a no-op on it.
func TestNilMetricsRecordNothing(t *testing.T) {
	var m *Metrics
	m.Change("increment", OutcomeOK)
	m.Pushed(10, 1, nil)
	m.Heartbeat(time.Millisecond)
	m.Request("/", 200, time.Millisecond)
	m.Committed(3, time.Millisecond)
	m.Counters(7)
	m.CountersOverLimit(2)
	m.MergeRefused()
	if n := m.Applied(); n != 0 {
		t.Errorf("Applied() = %d on nil metrics, want 0", n)
	}
}

// TestApplied counts the changes that succeeded, of both operations, and
// nothing else.
func TestApplied(t *testing.T) {
	m := New(Sources{})
	if n := m.Applied(); n != 0 {
		t.Fatalf("Applied() = %d before any change, want 0", n)
	}
	for range 3 {
		m.Change("increment", OutcomeOK)
	}
	m.Change("decrement", OutcomeOK)
	m.Change("increment", OutcomeRejected)
	m.Change("decrement", OutcomeUnavailable)
	if n := m.Applied(); n != 4 {
		t.Errorf("Applied() = %d after 3 increments and 1 decrement applied (and 2 not), want 4", n)
	}
}

func TestRecordingAndExposition(t *testing.T) {
	m := New(Sources{PeerStates: func() map[string]int { return map[string]int{"alive": 2, "down": 1, "unauthorized": 1, "left": 3} }})
	m.Change("increment", OutcomeOK)
	m.Change("increment", OutcomeOK)
	m.Change("decrement", OutcomeUnavailable)
	m.Pushed(100, 3, nil)
	m.Pushed(50, 1, errors.New("refused"))
	m.Request("/counters/{name}", 200, time.Millisecond)
	m.Request("/counters/{name}", 200, time.Millisecond)
	m.Committed(4, time.Millisecond)
	m.Counters(9)
	m.CountersOverLimit(2)
	m.CountersOverLimit(1)
	m.MergeRefused()

	for _, c := range []struct {
		got, want float64
		what      string
	}{
		{testutil.ToFloat64(m.changes.WithLabelValues("increment", OutcomeOK)), 2, "increments ok"},
		{testutil.ToFloat64(m.changes.WithLabelValues("decrement", OutcomeUnavailable)), 1, "decrements unavailable"},
		{testutil.ToFloat64(m.pushes), 2, "pushes"},
		{testutil.ToFloat64(m.pushFailures), 1, "push failures"},
		{testutil.ToFloat64(m.pushBytes), 150, "push bytes"},
		{testutil.ToFloat64(m.counters), 9, "counters"},
		{testutil.ToFloat64(m.overLimit), 3, "counters over the limit"},
		{testutil.ToFloat64(m.mergesRefused), 1, "merges refused"},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.what, c.got, c.want)
		}
	}

	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	for _, want := range []string{
		`countd_peers{state="alive"} 2`,
		`countd_peers{state="suspect"} 0`,
		`countd_peers{state="down"} 1`,
		`countd_peers{state="unauthorized"} 1`,
		`countd_peers{state="left"} 3`,
		`countd_http_request_duration_seconds_count{code="200",route="/counters/{name}"} 2`,
		`countd_commit_batch_size_sum 4`,
		`countd_changes_total{op="decrement",outcome="ok"} 0`, // every series exists from the start
		"countd_replicated_counters_over_limit_total 3",
		"countd_merges_refused_total 1",
		"process_cpu_seconds_total",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}
