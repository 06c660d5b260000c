// Package bare is the yardstick countd's throughput is measured against: a
// net/http handler that does one atomic add per request and answers in
// countd's reply shape, with no routing, validation or persistence. The Go
// benchmarks (node/bench_test.go) and cmd/countd-bench both use it, so their
// ratios compare.
package bare

import (
	"net/http"
	"strconv"
	"sync/atomic"
)

// Handler returns a fresh yardstick handler, counting from 0.
func Handler() http.Handler {
	var v atomic.Int64
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		reply(w, v.Add(1))
	})
}

// reply answers with value v in countd's reply shape.
func reply(w http.ResponseWriter, v int64) {
	buf := make([]byte, 0, 96)
	buf = append(buf, `{"counter":"default","value":`...)
	buf = strconv.AppendInt(buf, v, 10)
	buf = append(buf, `,"node":"127.0.0.1:1"}`+"\n"...)
	w.Header()["Content-Type"] = []string{"application/json"}
	w.Write(buf)
}
