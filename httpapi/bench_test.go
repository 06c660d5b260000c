package httpapi

import (
	"context"
	"countd/actors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

type nopCounters struct{}

func (nopCounters) Apply(_ context.Context, ch actors.Change) (*actors.ChangeResult, error) {
	return &actors.ChangeResult{Counter: ch.Counter, Value: 1}, nil
}
func (nopCounters) Delete(context.Context, string) (bool, error) { return false, nil }
func (nopCounters) Expire(context.Context, string, time.Duration, bool) (*actors.ExpireResult, error) {
	return &actors.ExpireResult{}, nil
}
func (nopCounters) Lookup(_ context.Context, c string) (*actors.CounterValue, error) {
	return &actors.CounterValue{Counter: c, Value: 1, Exists: true}, nil
}
func (nopCounters) Range(context.Context, func(actors.CounterValue) error) error { return nil }

// BenchmarkHandler measures the HTTP layer alone (routing, validation,
// reply) over a Counters that does nothing.
//
//	go test -run=^$ -bench=Handler -benchmem ./httpapi/
func BenchmarkHandler(b *testing.B) {
	h := NewServer(Config{Counters: nopCounters{}, Node: "127.0.0.1:8080"}).Handler()
	for _, path := range []string{"/increment", "/counters/visits/increment?by=5"} {
		b.Run(path, func(b *testing.B) {
			req := httptest.NewRequest(http.MethodPost, path, nil)
			w := httptest.NewRecorder()
			b.ReportAllocs()
			for b.Loop() {
				w.Body.Reset()
				h.ServeHTTP(w, req)
			}
		})
	}
}
