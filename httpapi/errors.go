package httpapi

import (
	"context"
	"errors"
	"net/http"

	"countd/actors"
	"countd/crdt"
)

// Errors raised by the handlers themselves.
var (
	errBadRequest = errors.New("bad request")
	errTooLarge   = errors.New("request body over 1 MiB")
	errNotFound   = errors.New("no such path")
	errMethod     = errors.New("method not allowed")
)

// statusOf is the one table from error to HTTP status.
func statusOf(err error) int {
	switch {
	case errors.Is(err, errBadRequest), errors.Is(err, crdt.ErrInvalid), errors.Is(err, actors.ErrSelf):
		return http.StatusBadRequest
	case errors.Is(err, errTooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, errNotFound):
		return http.StatusNotFound
	case errors.Is(err, errMethod):
		return http.StatusMethodNotAllowed
	case errors.Is(err, crdt.ErrOverflow):
		return http.StatusConflict
	case errors.Is(err, actors.ErrTimeout), errors.Is(err, actors.ErrStopped), errors.Is(err, actors.ErrStore),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}
