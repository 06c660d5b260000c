package actors

import (
	"log/slog"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// envelope is one message a probe received.
type envelope struct {
	msg    any
	sender *actor.PID
}

// probe is an actor that records every message it receives, so a test can
// assert on their content and order. If reply is set and returns non-nil,
// the probe answers the sender with it, standing in for a real actor.
type probe struct {
	pid   *actor.PID
	ch    chan envelope
	reply func(msg any) any
}

// spawnChild asks a probe to spawn props as its child and answer the PID,
// so that the probe can stand in for a parent.
type spawnChild struct{ props *actor.Props }

func (p *probe) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started, *actor.Stopping, *actor.Stopped, *actor.Restarting:
		return
	case *spawnChild:
		ctx.Respond(ctx.Spawn(m.props))
		return
	}
	p.ch <- envelope{ctx.Message(), ctx.Sender()}
	if p.reply != nil {
		if r := p.reply(ctx.Message()); r != nil {
			ctx.Respond(r)
		}
	}
}

// newProbe spawns a probe that is stopped when the test ends.
func newProbe(t testing.TB, sys *actor.ActorSystem, reply func(any) any) *probe {
	t.Helper()
	p := &probe{ch: make(chan envelope, 10000), reply: reply}
	p.pid = sys.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return p }))
	t.Cleanup(func() { sys.Root.StopFuture(p.pid).Wait() })
	return p
}

// expect waits for the probe's next message and fails unless it is a T.
func expect[T any](t testing.TB, p *probe, within time.Duration) (T, *actor.PID) {
	t.Helper()
	select {
	case e := <-p.ch:
		m, ok := e.msg.(T)
		if !ok {
			var zero T
			t.Fatalf("probe got %T %+v, want %T", e.msg, e.msg, zero)
		}
		return m, e.sender
	case <-time.After(within):
		var zero T
		t.Fatalf("probe got nothing in %v, want %T", within, zero)
		return zero, nil
	}
}

// fishFor skips messages until one of type T satisfies pred.
func fishFor[T any](t testing.TB, p *probe, within time.Duration, pred func(T) bool) T {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case e := <-p.ch:
			if m, ok := e.msg.(T); ok && pred(m) {
				return m
			}
		case <-deadline:
			var zero T
			t.Fatalf("probe saw no matching %T in %v", zero, within)
			return zero
		}
	}
}

// drain returns every message the probe holds right now.
func (p *probe) drain() []any {
	var out []any
	for {
		select {
		case e := <-p.ch:
			out = append(out, e.msg)
		default:
			return out
		}
	}
}

// newSystem returns an actor system that logs nothing and whose dead-letter
// throttle does not outlive the test.
func newSystem(t testing.TB) *actor.ActorSystem {
	t.Helper()
	sys := actor.NewActorSystem(
		actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return slog.New(slog.DiscardHandler) }),
		actor.WithDeadLetterThrottleInterval(10*time.Millisecond),
		actor.WithDeadLetterRequestLogging(false),
	)
	t.Cleanup(sys.Shutdown)
	return sys
}

// askActor sends msg to the actor and waits for its reply.
func askActor(t *testing.T, sys *actor.ActorSystem, pid *actor.PID, msg any) any {
	t.Helper()
	r, err := sys.Root.RequestFuture(pid, msg, wait).Result()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// receive returns the answer sent to a Reply channel, failing the test if
// none comes within wait or it is not a T.
func receive[T any](t *testing.T, ch chan any) T {
	t.Helper()
	select {
	case r := <-ch:
		v, ok := r.(T)
		if !ok {
			t.Fatalf("answer %T, want %T", r, v)
		}
		return v
	case <-time.After(wait):
		var zero T
		t.Fatalf("no %T answered", zero)
		return zero
	}
}
