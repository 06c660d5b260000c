package httpapi

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/pprof"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/mux"

	"countd/actors"
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

	var paths []string           // every path template, for the 404 message
	methods := map[string]bool{} // every method some route takes, for Allow
	// register registers h for path and method behind guard, naming the
	// route for the request metrics by its template. params are the query
	// parameters the route takes; any other is refused, once guard let the
	// request through. handle registers a route of the client API (guarded
	// by a client token, when tokens are set), node a node-to-node route
	// (nodeOnly), open a route anyone may use.
	register := func(path, method string, guard func(http.HandlerFunc) http.HandlerFunc, h http.HandlerFunc, params ...string) {
		if !slices.Contains(paths, path) {
			paths = append(paths, path)
		}
		methods[method] = true
		r.Handle(path, s.routeNamed(path, guard(s.onlyParams(params, h)))).Methods(method)
	}
	handle := func(path, method string, h http.HandlerFunc, params ...string) {
		register(path, method, s.needToken, h, params...)
	}
	node := func(path, method string, h http.HandlerFunc) {
		register(path, method, func(h http.HandlerFunc) http.HandlerFunc { return s.nodeOnly(s.cfg.PeerCerts, h) }, h)
	}
	open := func(path, method string, h http.HandlerFunc) {
		register(path, method, func(h http.HandlerFunc) http.HandlerFunc { return h }, h)
	}
	handle("/increment", http.MethodPost, s.handleIncrement, "by", "ttl", "wait")
	handle("/decrement", http.MethodPost, s.handleDecrement, "by", "ttl", "wait")
	handle("/counter", http.MethodGet, s.handleCounter, "wait")
	handle("/counters/{name}/increment", http.MethodPost, s.handleIncrement, "by", "ttl", "wait")
	handle("/counters/{name}/decrement", http.MethodPost, s.handleDecrement, "by", "ttl", "wait")
	handle("/counters/{name}/expire", http.MethodPost, s.handleExpire, "ttl")
	handle("/counters/{name}", http.MethodGet, s.handleCounter, "wait")
	handle("/counters/{name}", http.MethodDelete, s.handleDelete)
	handle("/counters", http.MethodGet, s.handleCounters)
	open("/health", http.MethodGet, s.signedIfSigned(s.handleHealth)) // for probes
	open("/", http.MethodGet, s.handleStatusPage)                     // its data, /status, needs the token
	open("/openapi.yaml", http.MethodGet, s.handleOpenAPI)            // the contract, docs/openapi.yaml
	handle("/status", http.MethodGet, s.handleStatus, "history")
	if s.cfg.Metrics != nil {
		handle("/metrics", http.MethodGet, s.cfg.Metrics.Handler().ServeHTTP)
	}
	if s.cfg.Cluster != nil {
		handle("/peers", http.MethodGet, s.handlePeers)
		node("/peers", http.MethodPost, s.handleAddPeer)
		node("/peers/{addr}", http.MethodDelete, s.handleRemovePeer)
		node("/replicate", http.MethodPost, s.handleReplicate)
		node("/leave", http.MethodPost, s.handleLeave)
	}
	if s.cfg.Prober != nil {
		node("/probe", http.MethodPost, s.handleProbe) // indirect probes (probe.go)
	}
	if s.cfg.Levels != nil {
		node("/entries/{name}", http.MethodGet, s.handleEntries) // reads at a level (wait.go)
	}
	node("/backup", http.MethodGet, s.handleBackup) // the whole data file: nodes and operators only
	if s.cfg.Pprof {
		// Go's own handlers, which take their own query parameters
		// (?seconds=, ?debug=) and any method.
		for name, h := range map[string]http.HandlerFunc{
			"cmdline": pprof.Cmdline, "profile": pprof.Profile, "symbol": pprof.Symbol, "trace": pprof.Trace,
		} {
			r.Handle("/debug/pprof/"+name, s.routeNamed("/debug/pprof/"+name, s.profilesOnly(h)))
		}
		r.PathPrefix("/debug/pprof/").Handler(s.routeNamed("/debug/pprof/", s.profilesOnly(pprof.Index))) // heap, goroutine, ... by name
		paths = append(paths, "/debug/pprof/")
	}
	allMethods := slices.Sorted(maps.Keys(methods))

	r.NotFoundHandler = http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		s.writeError(w, &clientError{kind: errNotFound, msg: fmt.Sprintf("no such path %s; the paths are %s",
			cut(req.URL.EscapedPath()), strings.Join(paths, ", "))})
	})
	r.MethodNotAllowedHandler = http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		allow := allowed(r, req, allMethods)
		w.Header().Set("Allow", strings.Join(allow, ", "))
		s.writeError(w, &clientError{kind: errMethod, msg: fmt.Sprintf("%s is not allowed on %s; use %s",
			cut(req.Method), cut(req.URL.EscapedPath()), strings.Join(allow, " or "))})
	})

	return s.closeWhenDraining(s.instrument(s.guard(r)))
}

// allowed lists the methods among candidates that r routes req's path
// with, for the Allow header of a 405.
func allowed(r *mux.Router, req *http.Request, candidates []string) []string {
	var out []string
	for _, m := range candidates {
		try := *req
		try.Method = m
		var match mux.RouteMatch
		if r.Match(&try, &match) && match.MatchErr == nil {
			out = append(out, m)
		}
	}
	return out
}

// onlyParams refuses, with 400, a query that is not valid URL encoding or
// that names a parameter other than params, so that a typo (?bye=5) is
// never silently ignored, nor a pair url.Query would drop (?by=%zz).
func (s *Server) onlyParams(params []string, h http.HandlerFunc) http.HandlerFunc {
	takes := "this path takes no query parameters"
	if len(params) > 0 {
		takes = "this path takes only " + strings.Join(params, ", ")
	}
	return func(w http.ResponseWriter, r *http.Request) {
		if r.URL.RawQuery != "" {
			if err := checkQuery(r.URL.RawQuery, params, takes); err != nil {
				s.writeError(w, err)
				return
			}
		}
		h(w, r)
	}
}

// checkQuery checks raw as url.ParseQuery reads it (pairs split on &, ;
// refused, keys and values unescaped), without allocating when it is fine:
// it runs on every change that has ?by=.
func checkQuery(raw string, params []string, takes string) error {
	for rest := raw; rest != ""; {
		var pair string
		pair, rest, _ = strings.Cut(rest, "&")
		if pair == "" {
			continue
		}
		key, value, _ := strings.Cut(pair, "=")
		k, kerr := url.QueryUnescape(key)
		_, verr := url.QueryUnescape(value)
		if kerr != nil || verr != nil || strings.Contains(pair, ";") {
			return badRequest("the query %s is not valid URL encoding; write it as name=value&name=value", quote(raw))
		}
		if !slices.Contains(params, k) {
			return badRequest("unknown query parameter %s; %s", quote(k), takes)
		}
	}
	return nil
}

// handleIncrement serves POST /increment and POST /counters/{name}/increment.
func (s *Server) handleIncrement(w http.ResponseWriter, r *http.Request) {
	s.change(w, r, "increment", false)
}

// handleDecrement serves POST /decrement and POST /counters/{name}/decrement.
func (s *Server) handleDecrement(w http.ResponseWriter, r *http.Request) {
	s.change(w, r, "decrement", true)
}

func (s *Server) change(w http.ResponseWriter, r *http.Request, op string, neg bool) {
	q := query(r)
	l, err := parseLevel(q) // wait.go
	var res *actors.ChangeResult
	if err == nil {
		res, err = s.applyChange(r, q, neg)
	}
	if err != nil {
		outcome := metrics.OutcomeRejected // 409, 422 and 507 too: nothing changed
		if st := statusOf(err); st >= 500 && st != http.StatusInsufficientStorage {
			outcome = metrics.OutcomeUnavailable
		}
		s.cfg.Metrics.Change(op, outcome)
		s.writeError(w, err)
		return
	}
	s.cfg.Metrics.Change(op, metrics.OutcomeOK) // applied, whether the level is reached or not
	if err := s.awaitLevel(r, l, res.Version); err != nil {
		s.writeError(w, err)
		return
	}
	if res.Replayed {
		w.Header()[replayedHeader] = replayedTrue
	}
	s.writeValue(w, res.Counter, res.Value, res.Expires)
}

var replayedTrue = []string{"true"}

// applyChange makes the change r asks for; q is r's query (query).
func (s *Server) applyChange(r *http.Request, q url.Values, neg bool) (*actors.ChangeResult, error) {
	name, err := counterName(r)
	if err != nil {
		return nil, err
	}
	by, err := changeBy(r, q)
	if err != nil {
		return nil, err
	}
	ttl, _, err := parseTTL(q)
	if err != nil {
		return nil, err
	}
	key, err := idempotencyKey(r)
	if err != nil {
		return nil, err
	}
	return s.cfg.Counters.Apply(r.Context(), actors.Change{Counter: name, By: by, Neg: neg, TTL: ttl, Key: key})
}

// handleDelete serves DELETE /counters/{name}: 204 whether the counter
// existed or not, once the delete is durable on this node.
func (s *Server) handleDelete(w http.ResponseWriter, r *http.Request) {
	name, err := counterName(r)
	if err == nil {
		_, err = s.cfg.Counters.Delete(r.Context(), name)
	}
	if err != nil {
		s.writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// handleExpire serves POST /counters/{name}/expire?ttl=SECONDS: the
// counter expires that long from now, replacing any expiry it had.
func (s *Server) handleExpire(w http.ResponseWriter, r *http.Request) {
	name, err := counterName(r)
	if err != nil {
		s.writeError(w, err)
		return
	}
	ttl, given, err := parseTTL(query(r))
	if err == nil && !given {
		err = badRequest("ttl is required: the seconds from now until the counter expires, from 1 to %d (10 years)", maxTTL)
	}
	var res *actors.ExpireResult
	if err == nil {
		res, err = s.cfg.Counters.Expire(r.Context(), name, ttl, false)
	}
	if err != nil {
		s.writeError(w, err)
		return
	}
	s.writeValue(w, name, res.Value, res.Expires) // as set, whatever came after
}

// maxTTL is the longest expiry a client may set: 10 years, in seconds.
const maxTTL = 10 * 36525 * 24 * 60 * 60 / 100

// query returns r's query parameters, parsed once for all of a handler's
// parameters, or nil for a request with no query (the common case: no map
// to build). onlyParams has checked the query already.
func query(r *http.Request) url.Values {
	if r.URL.RawQuery == "" {
		return nil
	}
	return r.URL.Query()
}

// param returns the value of the optional query parameter name, and
// whether it is given; given twice, it is a 400.
func param(q url.Values, name string) (string, bool, error) {
	vals, ok := q[name]
	switch {
	case !ok:
		return "", false, nil
	case len(vals) != 1:
		return "", true, badRequest("%s is given %d times in the query; give it once", name, len(vals))
	}
	return vals[0], true, nil
}

// parseTTL reads the optional ttl parameter: whole seconds, 1 to maxTTL.
func parseTTL(q url.Values) (ttl time.Duration, given bool, err error) {
	v, given, err := param(q, "ttl")
	if !given || err != nil {
		return 0, given, err
	}
	secs, err := ParseTTL(v)
	return time.Duration(secs) * time.Second, true, err
}

// ParseTTL parses the text of a ttl parameter: decimal digits only, 1 to
// 315576000 seconds (10 years).
func ParseTTL(s string) (uint64, error) {
	if s != "" && len(s) <= 32 && strings.TrimLeft(s, "0123456789") == "" {
		if n, err := strconv.ParseUint(s, 10, 64); err == nil && n >= 1 && n <= maxTTL {
			return n, nil
		}
	}
	return 0, badRequest("ttl must be a whole number of seconds from 1 to %d (10 years), written in digits only; got %s", maxTTL, quote(s))
}

// changeBy reads the step of a change: ?by=N or a JSON body {"by":N}, at
// most one of them; 1 if neither. The body is read as JSON whatever its
// Content-Type, since curl -d sends a form type; an empty body is no body.
func changeBy(r *http.Request, q url.Values) (uint64, error) {
	by, inQuery, err := parseBy(q)
	if err != nil || r.Body == nil || r.Body == http.NoBody {
		return by, err
	}
	body, err := readBody(r)
	if err != nil {
		return 0, err
	}
	bodyBy, inBody, err := decodeChange(body)
	switch {
	case err != nil:
		return 0, err
	case inBody && inQuery:
		return 0, badRequest("by is given both in the query and in the body; give it once")
	case inBody:
		return bodyBy, nil
	}
	return by, nil
}

// changeBodyFields are the keys a change's body may hold, and their kinds.
var changeBodyFields = map[string]string{"by": "a number"}

// changeBodyForm is what a change's body may hold, for error messages.
const changeBodyForm = `{"by":N} with N a whole number from 1 to 9007199254740992, or no body`

// decodeChange parses the body of a change: empty (or only white space),
// or a JSON object {"by":N} where N is a JSON number written as ?by= is
// (digits only, 1 to 2^53). {} is allowed and sets nothing. given reports
// whether the body set by; on error, nothing is set.
func decodeChange(body []byte) (by uint64, given bool, err error) {
	if len(bytes.Trim(body, jsonSpace)) == 0 {
		return 0, false, nil
	}
	v, err := decodeFlat(body, changeBodyForm, changeBodyFields)
	if err != nil {
		return 0, false, err
	}
	n, ok := v["by"].(json.Number)
	if !ok {
		return 0, false, nil // {}
	}
	by, err = ParseBy(string(n))
	if err != nil {
		return 0, false, err
	}
	return by, true, nil
}

// handleCounter serves GET /counter and GET /counters/{name}.
func (s *Server) handleCounter(w http.ResponseWriter, r *http.Request) {
	name, err := counterName(r)
	l, lerr := parseLevel(query(r)) // wait.go
	if err = cmp.Or(err, lerr); err != nil {
		s.writeError(w, err)
		return
	}
	c, err := s.readAt(r, l, name)
	if err != nil {
		s.writeError(w, err)
		return
	}
	s.writeValue(w, name, c.Value, c.Expires)
}

// handleCounters serves GET /counters: {"counters":{...},
// "expires_in":{...},"node":...}, streamed (writeCounters).
func (s *Server) handleCounters(w http.ResponseWriter, r *http.Request) {
	suffix := make([]byte, 0, len(`,"node":}`)+len(s.nodeJSON))
	suffix = append(suffix, `,"node":`...)
	suffix = append(suffix, s.nodeJSON...)
	suffix = append(suffix, '}')
	s.writeCounters(w, r, []byte{'{'}, suffix)
}

// expiresIn turns expiry times (unix milliseconds) into the seconds left
// (rounded up: a counter that still exists has at least 1 left).
func expiresIn(at map[string]uint64, now time.Time) map[string]int64 {
	if len(at) == 0 {
		return nil
	}
	out := make(map[string]int64, len(at))
	for name, ms := range at {
		out[name] = secondsLeft(ms, now)
	}
	return out
}

func secondsLeft(ms uint64, now time.Time) int64 {
	left := int64(ms) - now.UnixMilli()
	return max((left+999)/1000, 1)
}

// handleHealth serves GET /health. It answers without asking the actors, so
// a busy node still reads as alive.
func (s *Server) handleHealth(w http.ResponseWriter, _ *http.Request) {
	s.writeJSON(w, http.StatusOK, wire.HealthReply{Status: "ok", Node: s.cfg.Node, Replica: s.cfg.Replica})
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
		if err != nil {
			name = raw
		}
		return "", badRequest("counter name %s is not valid: want %s", quote(name), crdt.NameRule)
	}
	return name, nil
}

// parseBy reads the optional by parameter: a whole number from 1 to 2^53,
// 1 when absent. given reports whether the query held it.
func parseBy(q url.Values) (by uint64, given bool, err error) {
	v, given, err := param(q, "by")
	if !given || err != nil {
		return 1, given, err
	}
	by, err = ParseBy(v)
	return by, true, err
}

// ParseBy parses the text of a by parameter: decimal digits only, 1 to 2^53.
func ParseBy(s string) (uint64, error) {
	if s != "" && len(s) <= 32 && strings.TrimLeft(s, "0123456789") == "" {
		if n, err := strconv.ParseUint(s, 10, 64); err == nil && n >= 1 && n <= maxBy {
			return n, nil
		}
	}
	return 0, badRequest("by must be a whole number from 1 to %d (2^53), written in digits only; got %s", uint64(maxBy), quote(s))
}

// guard refuses bodies over wire.MaxBody with 413: up front when the length is
// declared, else by reading the body now, so that no handler acts on part of
// one.
func (s *Server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > wire.MaxBody {
			w.Header().Set("Connection", "close")
			s.writeError(w, errTooLarge)
			return
		}
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = http.MaxBytesReader(w, r.Body, wire.MaxBody)
			if r.ContentLength < 0 { // length unknown (chunked)
				b, err := readBody(r)
				if err != nil {
					w.Header().Set("Connection", "close")
					s.writeError(w, err)
					return
				}
				r.Body = io.NopCloser(bytes.NewReader(b))
			}
		}
		next.ServeHTTP(w, r)
	})
}
