package actors

import (
	"context"
	"log/slog"
	"testing"

	"countd/crdt"
)

// BenchmarkCountersIncrement measures one increment through the
// CounterActor (memory mode) from many goroutines, as HTTP handlers do.
//
//	go test -run=^$ -bench=Counters -benchmem ./actors/
func BenchmarkCountersIncrement(b *testing.B) {
	sys := newSystem(b)
	pid := sys.Root.Spawn(NewCounterProps(crdt.New(self), nil, slog.New(slog.DiscardHandler), nil))
	b.Cleanup(func() { sys.Root.PoisonFuture(pid).Wait() })
	c := NewCounters(sys.Root, pid, wait)
	b.ReportAllocs()
	b.SetParallelism(32)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.Increment(context.Background(), "c", 1); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
