package poll

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestUntilReturnsOnceCondHolds(t *testing.T) {
	n := 0
	took, err := Until(t.Context(), 10*time.Second, time.Millisecond, "third call", func() (bool, string) {
		n++
		return n == 3, "not yet"
	})
	if err != nil || n != 3 || took <= 0 || took > 10*time.Second {
		t.Fatalf("Until = %v, %v after %d calls; want nil after 3", took, err, n)
	}
}

func TestUntilTimesOutWithTheLastDescription(t *testing.T) {
	n := 0
	start := time.Now()
	_, err := Until(t.Context(), 30*time.Millisecond, 5*time.Millisecond, "never", func() (bool, string) {
		n++
		return false, "saw " + strings.Repeat("x", n)
	})
	if err == nil || !strings.Contains(err.Error(), "after 30ms: never: still saw "+strings.Repeat("x", n)) {
		t.Fatalf("err = %v, want the timeout, what, and the last of %d descriptions", err, n)
	}
	if el := time.Since(start); el < 30*time.Millisecond || n < 2 {
		t.Fatalf("gave up after %v and %d calls", el, n)
	}
}

func TestUntilStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	n := 0
	_, err := Until(ctx, time.Hour, time.Millisecond, "cancelled", func() (bool, string) {
		if n++; n == 2 {
			cancel()
		}
		return false, "no"
	})
	if err == nil || !strings.Contains(err.Error(), "context canceled") {
		t.Fatalf("err = %v, want the context's", err)
	}
}

func TestWhile(t *testing.T) {
	n := 0
	start := time.Now()
	if err := While(t.Context(), 20*time.Millisecond, time.Millisecond, "holds", func() (bool, string) {
		n++
		return true, ""
	}); err != nil || n < 2 || time.Since(start) < 20*time.Millisecond {
		t.Fatalf("While = %v after %d calls in %v; want nil after the whole 20ms", err, n, time.Since(start))
	}
	n = 0
	err := While(t.Context(), time.Hour, time.Millisecond, "breaks", func() (bool, string) {
		n++
		return n < 3, "broke at 3"
	})
	if err == nil || err.Error() != "breaks: broken: broke at 3" || n != 3 {
		t.Fatalf("While = %v after %d calls; want it to stop at the first break", err, n)
	}
}
