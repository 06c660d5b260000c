package httpapi

import (
	"net/http"
	"time"
)

// recorder remembers the status code a handler wrote, and the route that
// served the request, for the request metrics.
type recorder struct {
	http.ResponseWriter
	code  int
	route string
}

func (rec *recorder) WriteHeader(code int) {
	if rec.code == 0 {
		rec.code = code
	}
	rec.ResponseWriter.WriteHeader(code)
}

func (rec *recorder) Write(b []byte) (int, error) {
	if rec.code == 0 {
		rec.code = http.StatusOK
	}
	return rec.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (rec *recorder) Unwrap() http.ResponseWriter { return rec.ResponseWriter }

// unmatched labels requests that no route served (404, 405, 413).
const unmatched = "unmatched"

// instrument records every request's route, status and duration.
func (s *Server) instrument(next http.Handler) http.Handler {
	if s.cfg.Metrics == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &recorder{ResponseWriter: w, route: unmatched}
		next.ServeHTTP(rec, r)
		if rec.code == 0 {
			rec.code = http.StatusOK
		}
		s.cfg.Metrics.Request(rec.route, rec.code, time.Since(start))
	})
}

// routeNamed returns h, telling the request's recorder that route (a
// template such as /counters/{name}, never a client's own path) served it.
func (s *Server) routeNamed(route string, h http.HandlerFunc) http.Handler {
	if s.cfg.Metrics == nil {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rec, ok := w.(*recorder); ok {
			rec.route = route
		}
		h(w, r)
	})
}
