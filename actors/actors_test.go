package actors

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.uber.org/goleak"

	"countd/crdt"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	self  = "00000000000000aa"
	other = "00000000000000bb"
	wait  = 5 * time.Second
)

// fakeStore records every Save. While gated, each Save blocks until the test
// releases it; fail makes the next Saves return an error.
type fakeStore struct {
	mu      sync.Mutex
	saves   [][]crdt.Entry
	dels    []crdt.Entry // every entry deleted, in order
	gated   bool
	release chan struct{}
	started chan []crdt.Entry
	fail    error
}

func newFakeStore(gated bool) *fakeStore {
	return &fakeStore{gated: gated, release: make(chan struct{}, 100), started: make(chan []crdt.Entry, 100)}
}

func (s *fakeStore) Save(entries, del []crdt.Entry) error {
	s.mu.Lock()
	s.saves = append(s.saves, slices.Clone(entries))
	s.dels = append(s.dels, del...)
	gated, err := s.gated, s.fail
	s.mu.Unlock()
	s.started <- slices.Clone(entries)
	if gated {
		<-s.release
	}
	return err
}

// deleted returns every entry deleted so far.
func (s *fakeStore) deleted() []crdt.Entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.dels)
}

func (s *fakeStore) setFail(err error) {
	s.mu.Lock()
	s.fail = err
	s.mu.Unlock()
}

func (s *fakeStore) saveCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.saves)
}

// awaitSave waits until the actor starts a store write and returns its entries.
func (s *fakeStore) awaitSave(t *testing.T) []crdt.Entry {
	t.Helper()
	select {
	case e := <-s.started:
		return e
	case <-time.After(wait):
		t.Fatal("no store write started")
		return nil
	}
}

// spawnCounter starts a CounterActor over a fresh state and stops it (after
// its mailbox drains) when the test ends.
func spawnCounter(t *testing.T, sys *actor.ActorSystem, st Store) (*actor.PID, *crdt.State) {
	t.Helper()
	state := crdt.New(self)
	var props *actor.Props
	if st == nil {
		props = NewCounterProps(state, nil, slog.New(slog.DiscardHandler), nil)
	} else {
		props = NewCounterProps(state, st, slog.New(slog.DiscardHandler), nil)
	}
	pid := sys.Root.Spawn(props)
	t.Cleanup(func() { sys.Root.PoisonFuture(pid).Wait() })
	return pid, state
}

// subscribe registers a fresh probe for change notices and waits until the
// actor has it (a Subscribe is followed by a GetAll round trip).
func subscribe(t *testing.T, sys *actor.ActorSystem, counter *actor.PID) *probe {
	t.Helper()
	sub := newProbe(t, sys, nil)
	sys.Root.Send(counter, &Subscribe{PID: sub.pid})
	if _, err := sys.Root.RequestFuture(counter, &GetAll{}, wait).Result(); err != nil {
		t.Fatal(err)
	}
	return sub
}

func TestIncrementAnsweredOnlyWhenDurable(t *testing.T) {
	sys := newSystem(t)
	st := newFakeStore(true)
	counter, _ := spawnCounter(t, sys, st)
	client := newProbe(t, sys, nil)

	sys.Root.RequestWithCustomSender(counter, &Increment{Counter: "c", By: 3}, client.pid)
	saved := st.awaitSave(t)
	if want := []crdt.Entry{{Counter: "c", Replica: self, P: 3}}; !slices.Equal(saved, want) {
		t.Fatalf("store write = %v, want %v", saved, want)
	}
	// The write has not finished: a read is answered (reads see the change)
	// but the increment is not.
	v, err := sys.Root.RequestFuture(counter, &GetCounter{Counter: "c"}, wait).Result()
	if err != nil || v.(*CounterValue).Value != 3 {
		t.Fatalf("GetCounter during write = %v, %v", v, err)
	}
	if n := len(client.ch); n != 0 {
		t.Fatalf("client got %d replies before the write finished", n)
	}
	st.release <- struct{}{}
	r, _ := expect[*ChangeResult](t, client, wait)
	if r.Err != nil || r.Value != 3 || r.Counter != "c" {
		t.Fatalf("reply = %+v, want value 3", r)
	}
}

func TestGroupCommitOneWritePerBatchEachOwnReply(t *testing.T) {
	sys := newSystem(t)
	st := newFakeStore(true)
	counter, _ := spawnCounter(t, sys, st)
	sub := subscribe(t, sys, counter)
	client := newProbe(t, sys, nil)

	// The first increment starts a write; the next 50 arrive while it is in
	// flight and must share the second write.
	sys.Root.RequestWithCustomSender(counter, &Increment{Counter: "c", By: 1}, client.pid)
	st.awaitSave(t)
	for i := 0; i < 50; i++ {
		sys.Root.RequestWithCustomSender(counter, &Increment{Counter: "c", By: 1}, client.pid)
	}
	sys.Root.RequestWithCustomSender(counter, &Decrement{Counter: "d", By: 2}, client.pid)
	// Wait until all 52 are in the actor before releasing the first write.
	if _, err := sys.Root.RequestFuture(counter, &GetAll{}, wait).Result(); err != nil {
		t.Fatal(err)
	}
	st.release <- struct{}{}
	first, _ := expect[*ChangeResult](t, client, wait)
	if first.Value != 1 {
		t.Fatalf("first reply = %+v, want value 1", first)
	}
	n1, _ := expect[*Changed](t, sub, wait)

	second := st.awaitSave(t)
	slices.SortFunc(second, func(a, b crdt.Entry) int {
		return len(a.Counter) - len(b.Counter) + int(a.Counter[0]) - int(b.Counter[0])
	})
	want := []crdt.Entry{{Counter: "c", Replica: self, P: 51}, {Counter: "d", Replica: self, N: 2}}
	if !slices.Equal(second, want) {
		t.Fatalf("second write = %v, want %v (one write for the whole batch)", second, want)
	}
	if n := len(client.ch); n != 0 {
		t.Fatalf("%d replies arrived before the batch was durable", n)
	}
	st.release <- struct{}{}
	for i := 2; i <= 51; i++ {
		r, _ := expect[*ChangeResult](t, client, wait)
		if r.Err != nil || r.Value != int64(i) {
			t.Fatalf("reply %d = %+v, want its own value %d", i, r, i)
		}
	}
	if r, _ := expect[*ChangeResult](t, client, wait); r.Counter != "d" || r.Value != -2 {
		t.Fatalf("decrement reply = %+v, want d = -2", r)
	}
	n2, _ := expect[*Changed](t, sub, wait)
	if n2.Version <= n1.Version {
		t.Fatalf("notices %d then %d: versions must grow", n1.Version, n2.Version)
	}
	if got := st.saveCount(); got != 2 {
		t.Fatalf("%d store writes for 2 batches", got)
	}
	if extra := sub.drain(); len(extra) != 0 {
		t.Fatalf("subscriber got %v after 2 batches, want exactly 2 notices", extra)
	}
}

func TestMergeThatChangesNothingSendsNoNotice(t *testing.T) {
	sys := newSystem(t)
	st := newFakeStore(false)
	counter, _ := spawnCounter(t, sys, st)
	sub := subscribe(t, sys, counter)
	ask := func(msg any) any {
		t.Helper()
		return askActor(t, sys, counter, msg)
	}

	delta := []crdt.Entry{{Counter: "c", Replica: other, P: 7, N: 1}}
	if r := ask(&Merge{Entries: delta}).(*MergeResult); r.Err != nil || r.Changed != 1 {
		t.Fatalf("first merge = %+v, want 1 changed", r)
	}
	first, _ := expect[*Changed](t, sub, wait)
	if got := st.awaitSave(t); !slices.Equal(got, delta) {
		t.Fatalf("merge wrote %v, want %v", got, delta)
	}

	// The same delta again, and an older one: nothing changes.
	stale := []crdt.Entry{{Counter: "c", Replica: other, P: 3, N: 1}}
	for _, d := range [][]crdt.Entry{delta, stale} {
		if r := ask(&Merge{Entries: d}).(*MergeResult); r.Err != nil || r.Changed != 0 {
			t.Fatalf("repeat merge = %+v, want 0 changed", r)
		}
	}
	// A real change afterwards: its notice must be the very next message.
	if r := ask(&Increment{Counter: "c", By: 1}).(*ChangeResult); r.Value != 7 {
		t.Fatalf("increment = %+v, want 7", r)
	}
	next, _ := expect[*Changed](t, sub, wait)
	if next.Version != first.Version+1 {
		t.Fatalf("notice after no-op merges is for version %d, want %d (a no-op merge sent a notice or bumped the version)",
			next.Version, first.Version+1)
	}
	if got := st.saveCount(); got != 2 {
		t.Fatalf("%d store writes, want 2 (no-op merges write nothing)", got)
	}
}

func TestInvalidMergeChangesNothing(t *testing.T) {
	sys := newSystem(t)
	st := newFakeStore(false)
	counter, state := spawnCounter(t, sys, st)
	bad := []crdt.Entry{
		{Counter: "ok", Replica: other, P: 5},
		{Counter: "not ok", Replica: other, P: 5},
	}
	r, err := sys.Root.RequestFuture(counter, &Merge{Entries: bad}, wait).Result()
	if err != nil {
		t.Fatal(err)
	}
	if res := r.(*MergeResult); !errors.Is(res.Err, crdt.ErrInvalid) {
		t.Fatalf("merge of a bad delta = %+v, want ErrInvalid", res)
	}
	v, _ := sys.Root.RequestFuture(counter, &GetAll{}, wait).Result()
	if len(v.(*AllCounters).Values) != 0 || state.Version() != 0 || st.saveCount() != 0 {
		t.Fatalf("a bad delta changed state: %v, version %d, %d writes", v, state.Version(), st.saveCount())
	}
}

func TestOverflowIsRefusedAndWritesNothing(t *testing.T) {
	sys := newSystem(t)
	st := newFakeStore(false)
	counter, _ := spawnCounter(t, sys, st)
	ask := func(msg any) *ChangeResult {
		t.Helper()
		return askActor(t, sys, counter, msg).(*ChangeResult)
	}
	near := []crdt.Entry{{Counter: "c", Replica: other, P: 1<<63 - 10}}
	if _, err := sys.Root.RequestFuture(counter, &Merge{Entries: near}, wait).Result(); err != nil {
		t.Fatal(err)
	}
	writes := st.saveCount()
	if r := ask(&Increment{Counter: "c", By: 10}); !errors.Is(r.Err, crdt.ErrOverflow) {
		t.Fatalf("increment past MaxInt64 = %+v, want ErrOverflow", r)
	}
	if r := ask(&Increment{Counter: "c", By: 9}); r.Err != nil || r.Value != 1<<63-1 {
		t.Fatalf("increment to MaxInt64 = %+v", r)
	}
	if got := st.saveCount() - writes; got != 1 {
		t.Fatalf("%d writes after one refused and one accepted increment, want 1", got)
	}
}

func TestStoreFailureAnswersErrStoreAndRetriesWithNextWrite(t *testing.T) {
	sys := newSystem(t)
	st := newFakeStore(false)
	counter, _ := spawnCounter(t, sys, st)
	ask := func(msg any) *ChangeResult {
		t.Helper()
		return askActor(t, sys, counter, msg).(*ChangeResult)
	}
	st.setFail(errors.New("disk on fire"))
	if r := ask(&Increment{Counter: "a", By: 1}); !errors.Is(r.Err, ErrStore) {
		t.Fatalf("increment with a failing store = %+v, want ErrStore", r)
	}
	st.awaitSave(t)
	// Not durable, so not offered to peers.
	d, _ := sys.Root.RequestFuture(counter, &DeltaSince{}, wait).Result()
	if es := d.(*Delta).Entries; len(es) != 0 {
		t.Fatalf("delta after a failed write = %v, want nothing", es)
	}
	st.setFail(nil)
	if r := ask(&Increment{Counter: "b", By: 1}); r.Err != nil {
		t.Fatal(r.Err)
	}
	got := st.awaitSave(t)
	slices.SortFunc(got, func(x, y crdt.Entry) int { return int(x.Counter[0]) - int(y.Counter[0]) })
	want := []crdt.Entry{{Counter: "a", Replica: self, P: 1}, {Counter: "b", Replica: self, P: 1}}
	if !slices.Equal(got, want) {
		t.Fatalf("write after recovery = %v, want %v (the failed entry carried over)", got, want)
	}
	d, _ = sys.Root.RequestFuture(counter, &DeltaSince{}, wait).Result()
	if es := d.(*Delta).Entries; len(es) != 2 {
		t.Fatalf("delta after recovery = %v, want both entries", es)
	}
}

func TestDeltaSinceOffersOnlyDurableState(t *testing.T) {
	sys := newSystem(t)
	st := newFakeStore(true)
	counter, _ := spawnCounter(t, sys, st)
	delta := func(since uint64) *Delta {
		t.Helper()
		return askActor(t, sys, counter, &DeltaSince{Version: since}).(*Delta)
	}
	client := newProbe(t, sys, nil)
	sys.Root.RequestWithCustomSender(counter, &Increment{Counter: "c", By: 1}, client.pid)
	st.awaitSave(t)
	if d := delta(0); len(d.Entries) != 0 || d.Version != 0 || d.Replica != self {
		t.Fatalf("delta during the write = %+v, want nothing at version 0", d)
	}
	st.release <- struct{}{}
	expect[*ChangeResult](t, client, wait)
	d := delta(0)
	if want := []crdt.Entry{{Counter: "c", Replica: self, P: 1}}; !slices.Equal(d.Entries, want) || d.Version != 1 {
		t.Fatalf("delta after the write = %+v, want %v at version 1", d, want)
	}
	if d := delta(d.Version); len(d.Entries) != 0 {
		t.Fatalf("delta since the acknowledged version = %v, want nothing", d.Entries)
	}
}

func TestMemoryModeAnswersAtOnceAndNotifiesEachChange(t *testing.T) {
	sys := newSystem(t)
	counter, _ := spawnCounter(t, sys, nil)
	sub := subscribe(t, sys, counter)
	for i := 1; i <= 3; i++ {
		r, err := sys.Root.RequestFuture(counter, &Increment{Counter: "c", By: 2}, wait).Result()
		if err != nil || r.(*ChangeResult).Value != int64(2*i) {
			t.Fatalf("increment %d = %v, %v", i, r, err)
		}
		if n, _ := expect[*Changed](t, sub, wait); n.Version != uint64(i) {
			t.Fatalf("notice %d for version %d", i, n.Version)
		}
	}
}

func TestStoppedSubscriberIsDropped(t *testing.T) {
	sys := newSystem(t)
	counter, _ := spawnCounter(t, sys, nil)
	sub := subscribe(t, sys, counter)
	kept := subscribe(t, sys, counter)
	sys.Root.StopFuture(sub.pid).Wait()

	dead := make(chan any, 10)
	es := sys.EventStream.Subscribe(func(evt any) {
		if d, ok := evt.(*actor.DeadLetterEvent); ok {
			if _, ok := d.Message.(*Changed); ok {
				dead <- d.Message
			}
		}
	})
	defer sys.EventStream.Unsubscribe(es)
	// Terminated reaches the counter before the next message from us.
	for i := 0; i < 3; i++ {
		if _, err := sys.Root.RequestFuture(counter, &Increment{Counter: "c", By: 1}, wait).Result(); err != nil {
			t.Fatal(err)
		}
		expect[*Changed](t, kept, wait)
	}
	if len(dead) != 0 {
		t.Fatalf("%d change notices went to the stopped subscriber", len(dead))
	}
}

func TestCounters(t *testing.T) {
	sys := newSystem(t)
	counter, _ := spawnCounter(t, sys, nil)
	c := NewCounters(sys.Root, counter, wait)
	ctx := context.Background()
	if v, err := c.Increment(ctx, "a", 5); err != nil || v != 5 {
		t.Fatalf("Increment = %d, %v", v, err)
	}
	if v, err := c.Decrement(ctx, "a", 7); err != nil || v != -2 {
		t.Fatalf("Decrement = %d, %v", v, err)
	}
	if v, err := c.Value(ctx, "a"); err != nil || v != -2 {
		t.Fatalf("Value = %d, %v", v, err)
	}
	if v, err := c.Value(ctx, "unknown"); err != nil || v != 0 {
		t.Fatalf("Value of an unknown counter = %d, %v", v, err)
	}
	if vs, err := c.Values(ctx); err != nil || len(vs) != 1 || vs["a"] != -2 {
		t.Fatalf("Values = %v, %v", vs, err)
	}
	if _, err := c.Increment(ctx, "bad name", 1); !errors.Is(err, crdt.ErrInvalid) {
		t.Fatalf("Increment of a bad name: %v, want ErrInvalid", err)
	}
}

func TestCountersTimesOutWhenTheWriteHangs(t *testing.T) {
	sys := newSystem(t)
	st := newFakeStore(true)
	counter, _ := spawnCounter(t, sys, st)
	t.Cleanup(func() { st.release <- struct{}{} }) // let the write end before the actor stops
	c := NewCounters(sys.Root, counter, 50*time.Millisecond)
	start := time.Now()
	if _, err := c.Increment(context.Background(), "a", 1); !errors.Is(err, ErrTimeout) {
		t.Fatalf("Increment with a hung store: %v, want ErrTimeout", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("timeout took %v", d)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := NewCounters(sys.Root, counter, wait).Value(ctx, "a"); !errors.Is(err, ErrTimeout) {
		t.Fatalf("Value with a done context: %v", err)
	}
}

func TestCountersOfStoppedActor(t *testing.T) {
	sys := newSystem(t)
	pid := sys.Root.Spawn(NewCounterProps(crdt.New(self), nil, slog.New(slog.DiscardHandler), nil))
	sys.Root.StopFuture(pid).Wait()
	if _, err := NewCounters(sys.Root, pid, wait).Increment(context.Background(), "a", 1); !errors.Is(err, ErrStopped) {
		t.Fatalf("Increment on a stopped actor: %v, want ErrStopped", err)
	}
}
