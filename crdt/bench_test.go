package crdt

import (
	"runtime"
	"strconv"
	"testing"
)

// BenchmarkMemoryPerCounter reports the live heap one named counter takes,
// with one entry: go test -run='^$' -bench=MemoryPerCounter ./crdt/
func BenchmarkMemoryPerCounter(b *testing.B) {
	const n = 100_000
	names := make([]string, n)
	for i := range names {
		names[i] = "counter-" + strconv.Itoa(i)
	}
	var perCounter float64
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		s := New("00000000000000aa")
		for _, name := range names {
			if _, err := s.Increment(name, 1); err != nil {
				b.Fatal(err)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		perCounter = float64(after.HeapAlloc-before.HeapAlloc) / n
		runtime.KeepAlive(s)
	}
	b.ReportMetric(perCounter, "B/counter")
}

// BenchmarkIncrement times one increment of a counter that has entries of
// several replicas.
func BenchmarkIncrement(b *testing.B) {
	s := New("00000000000000aa")
	for r := range 8 {
		if _, err := s.Merge([]Entry{{Counter: "c", Replica: "00000000000000b" + strconv.Itoa(r), P: 1}}); err != nil {
			b.Fatal(err)
		}
	}
	for b.Loop() {
		if _, err := s.Increment("c", 1); err != nil {
			b.Fatal(err)
		}
	}
}
