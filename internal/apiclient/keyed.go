package apiclient

import (
	"context"
	"time"
)

// ChangeKey is ChangeTTL with an Idempotency-Key header: a second send of
// the same key and change, to any node within the key's window, counts
// nothing and answers the counter's value (Result.Replayed). One attempt,
// classified by ClassifyKeyed; Resend sends it until its outcome is known.
func (c Client) ChangeKey(ctx context.Context, baseURL, counter string, delta, ttl int64, key string) Result {
	return c.send(ctx, "POST", changeURL(baseURL, counter, delta, ttl), key)
}

// Attempt is one send of a keyed change, by the caller's choice of node;
// n counts the attempts from 0.
type Attempt func(n int) Result

// Resend sends a keyed change by send until its outcome is known or ctx
// ends, and returns the last attempt's result, with Outcome set to the
// change's outcome over every attempt, and the number of attempts:
//
//   - OK as soon as one attempt is OK (its own, or a replay of an earlier
//     attempt that was applied): the key makes the change count once;
//   - Failed if an attempt other than a 409 is Failed and every attempt
//     before it was Failed too (no attempt can have applied it); Unknown
//     if such an attempt follows an Unknown or a 409;
//   - otherwise it sends again: after an Unknown (the change may be
//     applied; the key makes a resend safe) or a 409 (an earlier attempt
//     is still being made on that node). If ctx ends first, Unknown.
//
// Between attempts it waits a little more each time (10 ms, up to
// 200 ms), a pace for the nodes, not a wait for a condition.
func Resend(ctx context.Context, send Attempt) (Result, int) {
	var (
		r       Result
		unknown bool // some attempt may have applied the change
	)
	for n := 0; ; n++ {
		r = send(n)
		switch {
		case r.Outcome == OK:
			return r, n + 1
		case r.Outcome == Failed && r.Status != 409 && !unknown:
			return r, n + 1
		case r.Outcome == Failed && r.Status != 409:
			// A refusal after a maybe: the earlier attempt may have
			// been applied on a node this one has not heard from.
			r.Outcome = Unknown
			return r, n + 1
		default: // Unknown, or a 409: an attempt may be applied yet
			unknown = true
		}
		pause := min(time.Duration(n+1)*10*time.Millisecond, 200*time.Millisecond)
		select {
		case <-ctx.Done():
			r.Outcome = Unknown
			return r, n + 1
		case <-time.After(pause):
		}
	}
}
