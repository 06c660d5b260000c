package actors

import (
	"sync"
	"sync/atomic"
)

// pinnedDispatcher runs one actor's mailbox on one long-lived goroutine.
//
// protoactor's default dispatcher starts a new goroutine each time a
// mailbox goes from idle to busy. A new goroutine starts with a small
// stack, and the CounterActor's handlers run deep enough to outgrow it, so
// under load, where the mailbox empties and refills thousands of times a
// second, every run paid for copying its stack as it grew: 13% of a
// -memory node's CPU under redis-benchmark (BENCHMARKS.md, "Redis
// protocol"). The pinned goroutine grows its stack once and keeps it.
//
// The goroutine starts with the first run. A mailbox calls Schedule only
// when it goes from idle to busy, so at most one run waits while another
// finishes: runs holds one. Once the actor has stopped (retire), the
// goroutine ends and later runs, if any, get a goroutine each, as with
// protoactor's own dispatcher.
type pinnedDispatcher struct {
	throughput int
	runs       chan func()
	retiring   atomic.Bool

	mu      sync.Mutex
	started bool // guarded by mu
	closed  bool // the goroutine has ended; guarded by mu
}

// newPinnedDispatcher returns a dispatcher for one actor. throughput is
// how many messages the mailbox handles before it yields the processor,
// as actor.NewDefaultDispatcher's.
func newPinnedDispatcher(throughput int) *pinnedDispatcher {
	return &pinnedDispatcher{throughput: throughput, runs: make(chan func(), 1)}
}

// Schedule implements actor.Dispatcher.
func (d *pinnedDispatcher) Schedule(fn func()) {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case d.closed:
	case !d.started:
		d.started = true
		go d.work(fn)
		return
	default:
		select {
		case d.runs <- fn:
			return
		default: // not for one mailbox: see the type's comment
		}
	}
	go fn()
}

// Throughput implements actor.Dispatcher.
func (d *pinnedDispatcher) Throughput() int { return d.throughput }

// retire ends the goroutine once the run that calls it returns: the actor
// has stopped and its mailbox will run no more.
func (d *pinnedDispatcher) retire() { d.retiring.Store(true) }

// work is the goroutine: it runs fn, then each run scheduled, until the
// actor has stopped.
func (d *pinnedDispatcher) work(fn func()) {
	for {
		fn()
		if d.retiring.Load() {
			break
		}
		fn = <-d.runs
	}
	d.mu.Lock()
	d.closed = true
	d.mu.Unlock()
	select {
	case fn := <-d.runs: // scheduled before closed was set
		go fn()
	default:
	}
}
