package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"countd/actors"
	"countd/crdt"
	"countd/wire"
)

// Kinds of error the handlers raise themselves; each maps to one status.
// The handlers wrap them in a clientError that says, for the client, what
// was wrong and what is accepted.
var (
	errBadRequest = errors.New("httpapi: bad request")
	errTooLarge   = errors.New("httpapi: request body too large")
	errNotFound   = errors.New("httpapi: no such path")
	errMethod     = errors.New("httpapi: method not allowed")

	errNoSignature = errors.New("httpapi: no valid cluster signature")
	errNotLoopback = errors.New("httpapi: not from loopback and no cluster key")
	errNoPeerCert  = errors.New("httpapi: no verified peer certificate") // with -tls-ca-file
)

// clientError is an error about a request: kind (one of the sentinels
// above) decides the status, msg is what the client reads.
type clientError struct {
	kind error
	msg  string
}

func (e *clientError) Error() string { return e.msg }
func (e *clientError) Unwrap() error { return e.kind }

// badRequest returns a 400 error whose message is the formatted text.
func badRequest(format string, args ...any) error {
	return &clientError{kind: errBadRequest, msg: fmt.Sprintf(format, args...)}
}

// statusOf is the one table from error to HTTP status.
func statusOf(err error) int {
	switch {
	case errors.Is(err, actors.ErrFull): // before crdt.ErrLimit, which it wraps
		return http.StatusInsufficientStorage
	case errors.Is(err, errBadRequest), errors.Is(err, crdt.ErrInvalid), errors.Is(err, actors.ErrSelf),
		errors.Is(err, crdt.ErrLimit): // a merge past the entry limit
		return http.StatusBadRequest
	case errors.Is(err, errUnauthorized):
		return http.StatusUnauthorized
	case errors.Is(err, errNoPeerCert):
		return http.StatusForbidden
	case errors.Is(err, errTooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, errNoSignature):
		return http.StatusUnauthorized
	case errors.Is(err, errNotLoopback):
		return http.StatusForbidden
	case errors.Is(err, errNotFound), errors.Is(err, crdt.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, errMethod):
		return http.StatusMethodNotAllowed
	case errors.Is(err, errProbeFailed):
		return http.StatusBadGateway
	case errors.Is(err, actors.ErrKeyConflict):
		return http.StatusUnprocessableEntity
	case errors.Is(err, crdt.ErrOverflow), errors.Is(err, errNoDataFile), errors.Is(err, actors.ErrKeyInFlight):
		return http.StatusConflict
	case errors.Is(err, actors.ErrTooManyPeers):
		return http.StatusInsufficientStorage
	case errors.Is(err, actors.ErrNotReached): // ?wait= (wait.go): the outcome is known
		return http.StatusGatewayTimeout
	case errors.Is(err, actors.ErrTimeout), errors.Is(err, actors.ErrStopped), errors.Is(err, actors.ErrStore),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// maybeApplied ends every message whose outcome the client cannot know.
const maybeApplied = "; if this was a change, it may or may not have been applied"

// messageOf is the one table from error to what the client reads: plain
// English that says what went wrong and, where the client can fix it, what
// is accepted. Other packages' sentinels keep their prefixes for logs; they
// never reach the client as they are.
func messageOf(err error) string {
	var ce *clientError
	switch {
	case errors.As(err, &ce):
		return ce.msg
	case errors.Is(err, errTooLarge):
		return fmt.Sprintf("request body is over 1 MiB (%d bytes), the most a node accepts", wire.MaxBody)
	case errors.Is(err, crdt.ErrOverflow):
		return "the change would take the counter outside -9223372036854775808 to 9223372036854775807; nothing was changed"
	case errors.Is(err, actors.ErrFull):
		return "this node is full: " + limitDetail(err) +
			"; nothing was changed (existing counters keep working; the limits are -max-counters and -max-entries)"
	case errors.Is(err, crdt.ErrLimit):
		return "replicate payload refused whole: " + limitDetail(err) + " (-max-entries); nothing of it was applied"
	case errors.Is(err, actors.ErrKeyConflict):
		return "this Idempotency-Key was first used to " + detail(err, actors.ErrKeyConflict, "make another change (counter, operation or amount)") +
			"; nothing was changed: a key names one change, so send a new change with a new key"
	case errors.Is(err, actors.ErrKeyInFlight):
		return "a change with this Idempotency-Key is still being made on this node; nothing was changed by this request: " +
			"send it again once the first has answered, and it is answered as that change"
	case errors.Is(err, crdt.ErrNotFound):
		return "no such counter: it was never created, or it was deleted or expired; nothing was changed"
	case errors.Is(err, crdt.ErrInvalid):
		return "invalid counter data; nothing was changed"
	case errors.Is(err, actors.ErrSelf):
		return "that address is this node itself; a node cannot be its own peer"
	case errors.Is(err, actors.ErrTooManyPeers):
		return "the node has as many peers as -max-peers allows; remove one (DELETE /peers/{addr}) or raise -max-peers; nothing was changed"
	case errors.Is(err, actors.ErrTimeout):
		return "the node did not answer within its request timeout (-request-timeout)" + maybeApplied
	case errors.Is(err, actors.ErrStore):
		return "the node could not write its state to disk" + maybeApplied
	case errors.Is(err, actors.ErrStopped):
		return "the node is shutting down" + maybeApplied
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return "the request was cancelled or ran out of time" + maybeApplied
	}
	return "internal error; the node's log has the details"
}

// limitDetail is what a crdt.ErrLimit says after its package prefix: which
// counter, and what it holds.
func limitDetail(err error) string {
	return detail(err, crdt.ErrLimit, "a limit was reached")
}

// detail is what err says after the text of sentinel, which it wraps as
// "sentinel: detail"; fallback if it says nothing more.
func detail(err, sentinel error, fallback string) string {
	msg, prefix := err.Error(), sentinel.Error()+": "
	if i := strings.LastIndex(msg, prefix); i >= 0 && i+len(prefix) < len(msg) {
		return msg[i+len(prefix):]
	}
	return fallback
}

// quote quotes what a client sent for an error message, cut to a length a
// person can read.
func quote(s string) string {
	const limit = 64
	if len(s) > limit {
		return fmt.Sprintf("%q… (%d bytes)", s[:limit], len(s))
	}
	return fmt.Sprintf("%q", s)
}

// cut shortens what a client sent that needs no quoting (a method, an
// escaped path) to a length a person can read.
func cut(s string) string {
	const limit = 64
	if len(s) > limit {
		return fmt.Sprintf("%s… (%d bytes)", s[:limit], len(s))
	}
	return s
}
