package httpapi

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/pprof"
	"net/url"
	"strconv"
	"strings"

	"github.com/gorilla/mux"

	"countd/crdt"
	"countd/metrics"
	"countd/wire"
)

// defaultCounter is the counter behind /increment, /decrement and /counter.
const defaultCounter = "default"

// maxBy is the largest step a single increment or decrement may take: 2^53,
// the largest integer every JSON client represents exactly.
const maxBy = 1 << 53

// routes registers every route in one place.
func (s *Server) routes() http.Handler {
	r := mux.NewRouter()
	r.UseEncodedPath() // so a name holding %2F is a bad name, not another path
	r.SkipClean(true)  // "." and ".." are counter names, not segments to redirect away
	r.NotFoundHandler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		s.writeError(w, errNotFound)
	})
	r.MethodNotAllowedHandler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		s.writeError(w, errMethod)
	})

	// handle registers h for path and method, naming the route for the
	// request metrics by its template.
	handle := func(path, method string, h http.HandlerFunc) {
		r.Handle(path, s.routeNamed(path, h)).Methods(method)
	}
	handle("/increment", http.MethodPost, s.handleIncrement)
	handle("/decrement", http.MethodPost, s.handleDecrement)
	handle("/counter", http.MethodGet, s.handleCounter)
	handle("/counters/{name}/increment", http.MethodPost, s.handleIncrement)
	handle("/counters/{name}/decrement", http.MethodPost, s.handleDecrement)
	handle("/counters/{name}", http.MethodGet, s.handleCounter)
	handle("/counters", http.MethodGet, s.handleCounters)
	handle("/health", http.MethodGet, s.handleHealth)
	handle("/", http.MethodGet, s.handleStatusPage)
	handle("/status", http.MethodGet, s.handleStatus)
	if s.cfg.Metrics != nil {
		handle("/metrics", http.MethodGet, s.cfg.Metrics.Handler().ServeHTTP)
	}
	if s.cfg.Pprof {
		for name, h := range map[string]http.HandlerFunc{
			"cmdline": pprof.Cmdline, "profile": pprof.Profile, "symbol": pprof.Symbol, "trace": pprof.Trace,
		} {
			r.Handle("/debug/pprof/"+name, s.routeNamed("/debug/pprof/"+name, h))
		}
		r.PathPrefix("/debug/pprof/").Handler(s.routeNamed("/debug/pprof/", pprof.Index)) // heap, goroutine, ... by name
	}
	if s.cfg.Cluster != nil {
		handle("/replicate", http.MethodPost, s.handleReplicate)
		handle("/peers", http.MethodGet, s.handlePeers)
		handle("/peers", http.MethodPost, s.handleAddPeer)
		handle("/peers/{addr}", http.MethodDelete, s.handleRemovePeer)
	}

	return s.instrument(s.guard(r))
}

// handleIncrement serves POST /increment and POST /counters/{name}/increment.
func (s *Server) handleIncrement(w http.ResponseWriter, r *http.Request) {
	s.change(w, r, "increment", s.cfg.Counters.Increment)
}

// handleDecrement serves POST /decrement and POST /counters/{name}/decrement.
func (s *Server) handleDecrement(w http.ResponseWriter, r *http.Request) {
	s.change(w, r, "decrement", s.cfg.Counters.Decrement)
}

func (s *Server) change(w http.ResponseWriter, r *http.Request, op string,
	apply func(ctx context.Context, counter string, by uint64) (int64, error)) {
	v, name, err := s.applyChange(r, apply)
	if err != nil {
		outcome := metrics.OutcomeRejected
		if statusOf(err) >= 500 {
			outcome = metrics.OutcomeUnavailable
		}
		s.cfg.Metrics.Change(op, outcome)
		s.writeError(w, err)
		return
	}
	s.cfg.Metrics.Change(op, metrics.OutcomeOK)
	s.writeValue(w, name, v)
}

func (s *Server) applyChange(r *http.Request,
	apply func(ctx context.Context, counter string, by uint64) (int64, error)) (int64, string, error) {
	name, err := counterName(r)
	if err != nil {
		return 0, "", err
	}
	by, err := parseBy(r.URL.Query())
	if err != nil {
		return 0, "", err
	}
	v, err := apply(r.Context(), name, by)
	return v, name, err
}

// handleCounter serves GET /counter and GET /counters/{name}.
func (s *Server) handleCounter(w http.ResponseWriter, r *http.Request) {
	name, err := counterName(r)
	if err != nil {
		s.writeError(w, err)
		return
	}
	v, err := s.cfg.Counters.Value(r.Context(), name)
	if err != nil {
		s.writeError(w, err)
		return
	}
	s.writeValue(w, name, v)
}

// handleCounters serves GET /counters.
func (s *Server) handleCounters(w http.ResponseWriter, r *http.Request) {
	values, err := s.cfg.Counters.Values(r.Context())
	if err != nil {
		s.writeError(w, err)
		return
	}
	s.writeJSON(w, http.StatusOK, struct {
		Counters map[string]int64 `json:"counters"`
		Node     string           `json:"node"`
	}{values, s.cfg.Node})
}

// handleHealth serves GET /health. It answers without asking the actors, so
// a busy node still reads as alive.
func (s *Server) handleHealth(w http.ResponseWriter, _ *http.Request) {
	s.writeJSON(w, http.StatusOK, struct {
		Status  string `json:"status"`
		Node    string `json:"node"`
		Replica string `json:"replica"`
	}{"ok", s.cfg.Node, s.cfg.Replica})
}

// counterName returns the {name} route variable, or "default" on the routes
// without one.
func counterName(r *http.Request) (string, error) {
	raw, ok := mux.Vars(r)["name"]
	if !ok {
		return defaultCounter, nil
	}
	name, err := url.PathUnescape(raw)
	if err != nil || !crdt.ValidName(name) {
		return "", fmt.Errorf("%w: counter name must be 1 to %d characters from [A-Za-z0-9._-]",
			errBadRequest, crdt.MaxNameLen)
	}
	return name, nil
}

// parseBy reads the optional by parameter: a whole number from 1 to 2^53.
func parseBy(q url.Values) (uint64, error) {
	vals, ok := q["by"]
	if !ok {
		return 1, nil
	}
	if len(vals) != 1 {
		return 0, fmt.Errorf("%w: by given more than once", errBadRequest)
	}
	return ParseBy(vals[0])
}

// ParseBy parses the text of a by parameter: decimal digits only, 1 to 2^53.
func ParseBy(s string) (uint64, error) {
	if s != "" && len(s) <= 32 && strings.TrimLeft(s, "0123456789") == "" {
		if n, err := strconv.ParseUint(s, 10, 64); err == nil && n >= 1 && n <= maxBy {
			return n, nil
		}
	}
	return 0, fmt.Errorf("%w: by must be a whole number from 1 to %d, got %q", errBadRequest, uint64(maxBy), s)
}

// guard refuses bodies over wire.MaxBody with 413: up front when the length is
// declared, else by reading the body now, so that no handler acts on part of
// one.
func (s *Server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > wire.MaxBody {
			w.Header().Set("Connection", "close")
			writeErrorJSON(w, http.StatusRequestEntityTooLarge, errTooLarge.Error())
			return
		}
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = http.MaxBytesReader(w, r.Body, wire.MaxBody)
			if r.ContentLength < 0 { // length unknown (chunked)
				b, err := readBody(r)
				if err != nil {
					w.Header().Set("Connection", "close")
					writeErrorJSON(w, statusOf(err), err.Error())
					return
				}
				r.Body = io.NopCloser(bytes.NewReader(b))
			}
		}
		next.ServeHTTP(w, r)
	})
}
