package httpapi

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
)

type nopCounters struct{}

func (nopCounters) Increment(context.Context, string, uint64) (int64, error) { return 1, nil }
func (nopCounters) Decrement(context.Context, string, uint64) (int64, error) { return 1, nil }
func (nopCounters) Value(context.Context, string) (int64, error)             { return 1, nil }
func (nopCounters) Values(context.Context) (map[string]int64, error)         { return nil, nil }

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
