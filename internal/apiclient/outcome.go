package apiclient

import (
	"errors"
	"fmt"
	"net"
	"net/http"
)

// Outcome is what a client can know about one change it sent.
type Outcome int

// The outcomes of a change, as Classify assigns them.
const (
	OK      Outcome = iota // applied: a 2xx status came
	Failed                 // not applied: a 4xx status came, or the connection was never made
	Unknown                // maybe applied: a 5xx, or no status after the request may have left
)

func (o Outcome) String() string {
	if o < OK || o > Unknown {
		return fmt.Sprintf("Outcome(%d)", int(o))
	}
	return [...]string{"ok", "failed", "unknown"}[o]
}

// Classify is the one rule by which every test and tool of countd decides
// what a change request did to the counter (invariant 2 of docs/design.md
// bounds a converged value by it). status is the reply's status code, 0 if
// no status line came; err is what went wrong sending the request or
// reading the reply, if anything.
//
//   - A 2xx status is OK (applied). The node applies a change and makes it
//     durable before it writes the status line, so a body lost or cut off
//     after it changes nothing.
//   - A 4xx status, or 507, is Failed (not applied). Every 4xx the node
//     sends (400, 401, 403, 404, 405, 409, 413) refuses the change before
//     anything is changed, and so does its 507 (a counter or entry limit).
//   - A 504 is OK (applied): countd sends it only for a change whose write
//     level (?wait=quorum|all) was not reached in time, after the change
//     was applied and made durable on the node that answers; it will still
//     reach the others.
//   - Any other status is Unknown (maybe applied). A 503 is the node's own
//     timeout, a stopping actor or a failed store write: the change may be
//     applied in memory, and reach the peers, all the same. A 500, a 1xx or
//     a 3xx promise nothing either.
//   - No status and a dial error (connection refused, no route, a dial
//     timeout) is Failed. No connection was made, so this attempt reached no
//     node; and net/http retries a POST on a new connection only when
//     nothing of it was written on the old one (a POST without an
//     Idempotency-Key header is not replayable), so no earlier attempt did.
//   - No status and any other error (a client timeout, a reset, EOF, a
//     reply lost by a fault injector) is Unknown: the request may have left.
//
// A request that carries an Idempotency-Key header is replayable, and
// net/http may then send it again after a written attempt; the dial-error
// rule does not hold for it, so such requests are classified by
// ClassifyKeyed.
func Classify(status int, err error) Outcome {
	switch {
	case status >= 200 && status < 300, status == http.StatusGatewayTimeout:
		return OK
	case status >= 400 && status < 500, status == http.StatusInsufficientStorage:
		return Failed
	case status != 0:
		return Unknown
	case dialFailed(err):
		return Failed
	}
	return Unknown
}

// ClassifyKeyed is Classify for one attempt of a change sent with an
// Idempotency-Key: the same, except that no status is always Unknown,
// since net/http may have sent the request on an earlier connection before
// the one it could not dial. A 409 (the key's change is still being made
// on that node) is Failed for this attempt, as Classify has it, but says
// nothing of the key's change: Resend sends it again.
func ClassifyKeyed(status int, err error) Outcome {
	if status == 0 {
		return Unknown
	}
	return Classify(status, err)
}

// dialFailed reports whether err says a connection could not be made.
func dialFailed(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// Counts counts changes (requests, not units) by outcome.
type Counts struct {
	OK, Failed, Unknown int64
}

// Add counts one change of outcome o.
func (c *Counts) Add(o Outcome) { c.AddN(o, 1) }

// AddN adds n to the count of outcome o.
func (c *Counts) AddN(o Outcome, n int64) {
	switch o {
	case OK:
		c.OK += n
	case Failed:
		c.Failed += n
	default:
		c.Unknown += n
	}
}

// Of returns the count of outcome o.
func (c Counts) Of(o Outcome) int64 {
	switch o {
	case OK:
		return c.OK
	case Failed:
		return c.Failed
	}
	return c.Unknown
}

// Total is the number of changes counted.
func (c Counts) Total() int64 { return c.OK + c.Failed + c.Unknown }

// Plus returns c with o added.
func (c Counts) Plus(o Counts) Counts {
	return Counts{c.OK + o.OK, c.Failed + o.Failed, c.Unknown + o.Unknown}
}

// Minus returns c less an earlier count o.
func (c Counts) Minus(o Counts) Counts {
	return Counts{c.OK - o.OK, c.Failed - o.Failed, c.Unknown - o.Unknown}
}

func (c Counts) String() string {
	return fmt.Sprintf("%d ok, %d failed, %d unknown", c.OK, c.Failed, c.Unknown)
}
