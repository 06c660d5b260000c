package actors

import (
	"errors"
	"testing"
	"time"

	"countd/crdt"
)

// After a failed store write the changes stay in memory (clients read them)
// and must be written again on a timer even if no request comes: peers are
// only offered durable state, so otherwise this node would report a value its
// peers never get once clients stop (invariant 1, after a transient disk fault).
func TestFailedWriteIsRetriedWithoutNewRequests(t *testing.T) {
	sys := newSystem(t)
	st := newFakeStore(false)
	counter, _ := spawnCounter(t, sys, st)

	st.setFail(errors.New("disk hiccup"))
	if r := askActor(t, sys, counter, &Increment{Counter: "a", By: 1}).(*ChangeResult); !errors.Is(r.Err, ErrStore) {
		t.Fatalf("increment = %+v, want ErrStore", r)
	}
	st.awaitSave(t)
	st.setFail(nil) // the fault ends; clients stop

	// A peer's push that brings nothing new (e.g. anti-entropy) arrives.
	if r := askActor(t, sys, counter, &Merge{Entries: nil, From: "127.0.0.9:9"}).(*MergeResult); r.Err != nil {
		t.Fatal(r.Err)
	}
	if v := askActor(t, sys, counter, &GetCounter{Counter: "a"}).(*CounterValue); v.Value != 1 {
		t.Fatalf("local value = %d, want 1 (the change is visible here)", v.Value)
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		d := askActor(t, sys, counter, &DeltaSince{}).(*Delta)
		if len(d.Entries) == 1 {
			return // the change was made durable and is offered to peers
		}
		if time.Now().After(deadline) {
			t.Fatalf("2s after the fault ended: local value 1, but the full delta offered to peers is %v "+
				"and %d store writes happened: the failed change is never retried, peers never converge",
				d.Entries, st.saveCount())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A merge whose entries the state already holds, because an earlier merge of
// them failed to write, must wait for a write before it is answered:
// Transport.Replicate's nil error means durable, and the pushing peer
// advances its ack on it.
func TestRepeatedMergeWaitsForUnwrittenEntries(t *testing.T) {
	sys := newSystem(t)
	st := newFakeStore(false)
	counter, _ := spawnCounter(t, sys, st)
	delta := []crdt.Entry{{Counter: "c", Replica: other, P: 5}}

	st.setFail(errors.New("disk hiccup"))
	if r := askActor(t, sys, counter, &Merge{Entries: delta, From: "127.0.0.9:9"}).(*MergeResult); !errors.Is(r.Err, ErrStore) {
		t.Fatalf("first merge = %+v, want ErrStore", r)
	}
	st.awaitSave(t)
	st.setFail(nil)

	// The peer retries the same push.
	r := askActor(t, sys, counter, &Merge{Entries: delta, From: "127.0.0.9:9"}).(*MergeResult)
	if r.Err == nil && st.saveCount() == 1 {
		t.Fatalf("retried merge answered OK (%+v) after %d store write(s), the only one of which failed: "+
			"acknowledged as durable but only in memory", r, st.saveCount())
	}
}

// A failed batch's entries are carried into the next write, and so must its
// origin: else a later batch that merged only peer X's push would be reported
// with Origin X though it also makes a client change durable, and X's
// PeerActor, which skips such notices, would not push that change to X.
func TestFailedBatchKeepsItsOrigin(t *testing.T) {
	sys := newSystem(t)
	st := newFakeStore(false)
	counter, _ := spawnCounter(t, sys, st)
	sub := subscribe(t, sys, counter)

	st.setFail(errors.New("disk hiccup"))
	if r := askActor(t, sys, counter, &Increment{Counter: "a", By: 1}).(*ChangeResult); !errors.Is(r.Err, ErrStore) {
		t.Fatalf("increment = %+v, want ErrStore", r)
	}
	st.awaitSave(t)
	st.setFail(nil)

	const x = "127.0.0.9:9"
	if r := askActor(t, sys, counter, &Merge{Entries: []crdt.Entry{{Counter: "b", Replica: other, P: 1}}, From: x}).(*MergeResult); r.Err != nil {
		t.Fatal(r.Err)
	}
	saved := st.awaitSave(t)
	n, _ := expect[*Changed](t, sub, wait)
	if n.Origin == x {
		t.Fatalf("notice %+v for a write of %v: the client change to \"a\" is attributed to peer %s, "+
			"whose PeerActor will not push it", n, saved, x)
	}
}

// A change notice from another peer arms the push timer with the lazy
// HeartbeatInterval delay; a client change that follows must shorten it to
// FlushDelay (1ms), not wait a whole heartbeat interval (an hour here).
func TestClientChangeIsNotHeldByLazyForward(t *testing.T) {
	sys := newSystem(t)
	tr := newFakeTransport()
	version := uint64(1)
	counter := counterProbe(t, sys, func() uint64 { return version })
	peer, _ := spawnPeer(t, sys, testPeerConfig(tr, counter.pid)) // HeartbeatInterval: 1h, FlushDelay: 1ms
	tr.awaitPush(t)                                               // the initial full push
	// Flush answers once nothing is owed: the initial push is acknowledged.
	if r, err := sys.Root.RequestFuture(peer, &Flush{}, wait).Result(); err != nil || r.(*Flushed).Err != nil {
		t.Fatalf("flush: %v %v", r, err)
	}

	sys.Root.Send(peer, &Changed{Version: 2, Origin: "127.0.0.3:3"}) // merged from a third node
	sys.Root.Send(peer, &Changed{Version: 3, Origin: ""})            // a client change
	select {
	case <-tr.pushes:
	case <-time.After(time.Second):
		t.Fatal("no push 1s after a client change (FlushDelay 1ms): it waits for the lazy HeartbeatInterval timer")
	}
}

// A peer that follows DeltaLimit's through values,
// with random limits and a lagging upTo (the durable version), holds every
// entry whose latest change is at or below its ack.
func TestDeltaLimitThroughHoldsEverythingBelow(t *testing.T) {
	type key struct{ c, r string }
	for seed := uint64(1); seed <= 300; seed++ {
		rng := newReviewRand(seed)
		s := crdt.New(self)
		lastVer := map[key]uint64{}
		peer := map[key]crdt.Entry{}
		var acked uint64
		reps := []string{self, other, "00000000000000cc"}
		names := []string{"a", "b", "c", "d", "e"}
		for step := 0; step < 200; step++ {
			for n := rng.next() % 4; n > 0; n-- {
				name := names[rng.next()%uint64(len(names))]
				if rng.next()%2 == 0 {
					if _, err := s.Increment(name, 1+rng.next()%3); err == nil {
						lastVer[key{name, self}] = s.Version()
					}
				} else {
					r := reps[1+rng.next()%2]
					cur, _ := s.Get(name, r)
					v0 := s.Version()
					ch, _ := s.Merge([]crdt.Entry{{Counter: name, Replica: r, P: cur.P + rng.next()%3, N: cur.N + rng.next()%2}})
					for i, e := range ch {
						lastVer[key{e.Counter, e.Replica}] = v0 + uint64(i) + 1
					}
				}
			}
			upTo := acked + rng.next()%(s.Version()-acked+1) // a lagging durable version
			entries, through := s.DeltaLimit(acked, upTo, int(rng.next()%4))
			for _, e := range entries {
				k := key{e.Counter, e.Replica}
				p := peer[k]
				p.Counter, p.Replica, p.P, p.N = e.Counter, e.Replica, max(p.P, e.P), max(p.N, e.N)
				peer[k] = p
			}
			if through < acked || through > max(upTo, acked) {
				t.Fatalf("seed %d: through %d outside [%d, %d]", seed, through, acked, upTo)
			}
			acked = through
			for k, v := range lastVer {
				if v > acked {
					continue
				}
				want, _ := s.Get(k.c, k.r)
				if got := peer[k]; got.P < want.P || got.N < want.N {
					t.Fatalf("seed %d step %d: acked %d but peer has %+v for %v (last changed at %d), want %+v",
						seed, step, acked, got, k, v, want)
				}
			}
		}
	}
}

type reviewRand struct{ x uint64 }

func newReviewRand(seed uint64) *reviewRand { return &reviewRand{seed*0x9e3779b97f4a7c15 + 1} }

func (r *reviewRand) next() uint64 {
	r.x ^= r.x << 13
	r.x ^= r.x >> 7
	r.x ^= r.x << 17
	return r.x
}

// A counter that clients change without pause has an in-memory version ahead
// of the durable one at every moment. Deltas used to leave out any entry
// whose latest change was not durable yet, so such a hot counter reached no
// peer until its load stopped (found by cmd/countd-bench: durable pushes
// under load carried 0.04 entries each). A delta must carry the entry's
// durable totals.
func TestDeltaCarriesAHotEntrysDurableTotals(t *testing.T) {
	sys := newSystem(t)
	st := newFakeStore(true)
	counter, _ := spawnCounter(t, sys, st)
	client := NewCounters(sys.Root, counter, wait)

	first := make(chan error, 1)
	go func() { _, err := client.Increment(t.Context(), "hot", 1); first <- err }()
	if got := st.awaitSave(t); len(got) != 1 || got[0].P != 1 {
		t.Fatalf("first write = %v, want hot at 1", got)
	}
	second := make(chan error, 1)
	go func() { _, err := client.Increment(t.Context(), "hot", 1); second <- err }()
	// The second change is applied in memory once a read sees it.
	for deadline := time.Now().Add(wait); ; {
		if v, err := client.Value(t.Context(), "hot"); err == nil && v == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("second increment never applied")
		}
		time.Sleep(time.Millisecond)
	}
	st.release <- struct{}{} // the first write ends; the second starts and is held
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	st.awaitSave(t)

	d := askActor(t, sys, counter, &DeltaSince{}).(*Delta)
	want := crdt.Entry{Counter: "hot", Replica: self, P: 1}
	if len(d.Entries) != 1 || d.Entries[0] != want {
		t.Fatalf("delta while hot = %v, want the durable %v", d.Entries, want)
	}
	st.release <- struct{}{}
	if err := <-second; err != nil {
		t.Fatal(err)
	}
	d = askActor(t, sys, counter, &DeltaSince{Version: d.Version}).(*Delta)
	if want.P = 2; len(d.Entries) != 1 || d.Entries[0] != want {
		t.Fatalf("delta after the second write = %v, want %v", d.Entries, want)
	}
}

// A merge that changes nothing, arriving while a write is in flight, waits
// for the next write (its sender must not hear "durable" before the state it
// saw is). That write makes nothing new durable, so it must not send a change
// notice: a notice with no origin makes every PeerActor push at once.
func TestBatchOfNoOpMergesSendsNoNotice(t *testing.T) {
	sys := newSystem(t)
	st := newFakeStore(true)
	counter, _ := spawnCounter(t, sys, st)
	sub := subscribe(t, sys, counter)
	client := NewCounters(sys.Root, counter, wait)

	inc := make(chan error, 1)
	go func() { _, err := client.Increment(t.Context(), "a", 1); inc <- err }()
	st.awaitSave(t) // held
	// Enqueued now, behind the write in flight; a round trip after it
	// proves the actor has taken it.
	merged := sys.Root.RequestFuture(counter, &Merge{Entries: nil, From: "127.0.0.9:9"}, wait)
	if _, err := sys.Root.RequestFuture(counter, &GetAll{}, wait).Result(); err != nil {
		t.Fatal(err)
	}
	st.release <- struct{}{} // the increment's write ends; the merge's starts
	if err := <-inc; err != nil {
		t.Fatal(err)
	}
	if got := st.awaitSave(t); len(got) != 0 {
		t.Fatalf("the merge's write = %v, want no entries", got)
	}
	st.release <- struct{}{}
	if r, err := merged.Result(); err != nil || r.(*MergeResult).Err != nil {
		t.Fatalf("merge = %v, %v", r, err)
	}
	// One notice for the increment's write, none for the merge's: the next
	// notice is the next increment's, at a newer version.
	first, _ := expect[*Changed](t, sub, wait)
	go func() { _, err := client.Increment(t.Context(), "a", 1); inc <- err }()
	st.awaitSave(t)
	st.release <- struct{}{}
	if err := <-inc; err != nil {
		t.Fatal(err)
	}
	if next, _ := expect[*Changed](t, sub, wait); next.Version <= first.Version {
		t.Fatalf("notices %+v then %+v: the write that made nothing new durable sent one", first, next)
	}
}
