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
	b.Run("plain", func(b *testing.B) {
		for b.Loop() {
			if _, err := s.Increment("c", 1); err != nil {
				b.Fatal(err)
			}
		}
	})
	// A rate-limiter window: the own entry carries the expiry register.
	if _, err := s.Expire("c", 1<<40, false, 1); err != nil {
		b.Fatal(err)
	}
	b.Run("expiring", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := s.Increment("c", 1); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkLoadOneCounter merges 200,000 entries of one counter into an
// empty state, as a node does when it loads its store: linear, since a
// counter past indexFrom entries finds them in O(1).
func BenchmarkLoadOneCounter(b *testing.B) {
	const n = 200_000
	es := make([]Entry, n)
	for i := range es {
		es[i] = Entry{Counter: "c", Replica: replicaN(i), P: 1}
	}
	var perEntry float64
	for b.Loop() {
		var before, after runtime.MemStats
		b.StopTimer()
		runtime.GC()
		runtime.ReadMemStats(&before)
		b.StartTimer()
		s := New("00000000000000aa")
		if _, err := s.Merge(es); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.StartTimer()
		perEntry = float64(after.HeapAlloc-before.HeapAlloc) / n
		runtime.KeepAlive(s)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/entry")
	b.ReportMetric(perEntry, "B/entry")
}

// BenchmarkFind times merging a change to the last of a counter's entries,
// around indexFrom: a search in order below it, the index above.
func BenchmarkFind(b *testing.B) {
	for _, slots := range []int{1, 4, 8, 16, 17, 64} {
		b.Run("slots="+strconv.Itoa(slots), func(b *testing.B) {
			s := New("00000000000000aa")
			for i := range slots {
				if _, err := s.Merge([]Entry{{Counter: "c", Replica: replicaN(i), P: 1}}); err != nil {
					b.Fatal(err)
				}
			}
			e := []Entry{{Counter: "c", Replica: replicaN(slots - 1), P: 1}}
			for b.Loop() {
				e[0].P++
				if _, err := s.Merge(e); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
