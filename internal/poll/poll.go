// Package poll waits for a condition with a deadline: the one way countd's
// tests and tools wait for what they cannot be told about (a cluster
// converging, a process becoming healthy). Where something can be asked
// with a future or a channel, ask it instead.
package poll

import (
	"context"
	"fmt"
	"time"
)

// Cond reports whether the awaited state holds and, if not, describes what
// it saw instead, for the error.
type Cond func() (ok bool, saw string)

// Until calls cond, then again every `every`, until it holds, timeout
// passes or ctx ends. It returns how long it took for cond to hold, or an
// error naming what, the timeout and cond's last description.
func Until(ctx context.Context, timeout, every time.Duration, what string, cond Cond) (time.Duration, error) {
	start := time.Now()
	deadline := start.Add(timeout)
	t := time.NewTimer(every)
	defer t.Stop()
	for {
		ok, saw := cond()
		if ok {
			return time.Since(start), nil
		}
		if !time.Now().Before(deadline) {
			return time.Since(start), fmt.Errorf("after %v: %s: still %s", timeout, what, saw)
		}
		t.Reset(min(every, time.Until(deadline)))
		select {
		case <-ctx.Done():
			return time.Since(start), fmt.Errorf("%s: %w; last saw %s", what, ctx.Err(), saw)
		case <-t.C:
		}
	}
}

// While calls cond, then again every `every`, for the whole of d, and
// returns an error the first time it does not hold. It asserts a negative
// ("never again"), which no single observation can. It returns ctx's error
// if ctx ends first.
func While(ctx context.Context, d, every time.Duration, what string, cond Cond) error {
	end := time.Now().Add(d)
	t := time.NewTimer(every)
	defer t.Stop()
	for {
		if ok, saw := cond(); !ok {
			return fmt.Errorf("%s: broken: %s", what, saw)
		}
		if !time.Now().Before(end) {
			return nil
		}
		t.Reset(min(every, time.Until(end)))
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", what, ctx.Err())
		case <-t.C:
		}
	}
}
