package actors

import (
	"bytes"
	"runtime"
	"strconv"
	"testing"
	"time"
)

// goroutineID returns the running goroutine's id, from its stack header
// ("goroutine 7 [running]:"): only to tell goroutines apart in a test.
func goroutineID() uint64 {
	buf := make([]byte, 64)
	buf = buf[:runtime.Stack(buf, false)]
	buf = bytes.TrimPrefix(buf, []byte("goroutine "))
	id, _ := strconv.ParseUint(string(buf[:bytes.IndexByte(buf, ' ')]), 10, 64)
	return id
}

// TestPinnedDispatcherRunsOnOneGoroutine checks the point of it: every run
// of the mailbox is on the same goroutine (which keeps its grown stack),
// not the scheduler's; and that once retired the goroutine ends and later
// runs still happen.
func TestPinnedDispatcherRunsOnOneGoroutine(t *testing.T) {
	d := newPinnedDispatcher(10)
	if d.Throughput() != 10 {
		t.Fatalf("throughput %d, want 10", d.Throughput())
	}
	ids := make(chan uint64, 1)
	run := func() { ids <- goroutineID() }
	d.Schedule(run)
	first := <-ids
	if first == goroutineID() {
		t.Fatal("the run was on the scheduling goroutine")
	}
	for i := range 100 {
		d.Schedule(run)
		if id := <-ids; id != first {
			t.Fatalf("run %d on goroutine %d, the first on %d", i+2, id, first)
		}
	}

	done := make(chan struct{})
	d.Schedule(func() { d.retire(); close(done) })
	<-done
	deadline := time.Now().Add(10 * time.Second)
	for {
		d.mu.Lock()
		closed := d.closed
		d.mu.Unlock()
		if closed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the goroutine did not end after retire")
		}
		runtime.Gosched()
	}
	d.Schedule(run) // after the end: a goroutine of its own, still run
	if id := <-ids; id == first {
		t.Fatalf("a run after retire was on the ended goroutine %d", id)
	}
}

// TestPinnedDispatcherNeverDropsARun checks the case one mailbox never
// makes but the dispatcher must survive: a run scheduled while one runs
// and another waits still runs (on a goroutine of its own).
func TestPinnedDispatcherNeverDropsARun(t *testing.T) {
	d := newPinnedDispatcher(1)
	release := make(chan struct{})
	ran := make(chan int, 3)
	d.Schedule(func() { <-release; ran <- 1 }) // the goroutine, busy
	d.Schedule(func() { ran <- 2 })            // waits in runs
	d.Schedule(func() { ran <- 3 })            // runs is full: its own goroutine
	if got := <-ran; got != 3 {
		t.Fatalf("run %d first, want 3 (the other two wait for the first)", got)
	}
	close(release)
	if a, b := <-ran, <-ran; a != 1 || b != 2 {
		t.Fatalf("then runs %d and %d, want 1 and 2 in order", a, b)
	}
	done := make(chan struct{})
	d.Schedule(func() { d.retire(); close(done) })
	<-done
}
