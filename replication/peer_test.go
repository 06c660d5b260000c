package replication

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

const ms = time.Millisecond

// The peer is "peer:2"; "peer:3" is a third node. r1 and r2 are two
// processes of the peer (r2 came after a restart).
const (
	addr  = "peer:2"
	third = "peer:3"
	r1    = "00000000000000r1"
	r2    = "00000000000000r2"
)

var testConfig = Config{
	Addr:               addr,
	FlushDelay:         10 * ms,
	LazyDelay:          time.Second,
	RetryMin:           100 * ms,
	RetryMax:           400 * ms,
	FailuresBeforeDown: 3,
}

var (
	errRefused = errors.New("connection refused")
	errTimeout = errors.New("timeout")
	errKey     = errors.New("401: no valid cluster signature")
)

// Events and decisions, shortened.
func soon(seq uint64) SchedulePush { return SchedulePush{Seq: seq, Min: 10 * ms, Max: 10 * ms} }
func lazy(seq uint64) SchedulePush { return SchedulePush{Seq: seq, Min: time.Second, Max: time.Second} }
func now(seq uint64) SchedulePush  { return SchedulePush{Seq: seq} }
func retry(seq uint64, backoff time.Duration) SchedulePush {
	return SchedulePush{Seq: seq, Min: backoff / 2, Max: backoff}
}
func due(seq uint64) PushDue               { return PushDue{Seq: seq} }
func client(v uint64) Changed              { return Changed{Version: v} }
func fromPeer(v uint64) Changed            { return Changed{Version: v, Origin: addr} }
func fromThird(v uint64) Changed           { return Changed{Version: v, Origin: third} }
func ok(v uint64, replica string) Pushed   { return Pushed{Version: v, Replica: replica} }
func page(v uint64, replica string) Pushed { return Pushed{Version: v, More: true, Replica: replica} }
func failed(v uint64) Pushed               { return Pushed{Version: v, Err: errRefused} }
func up(replica string) Health             { return Health{Replica: replica} }
func down() Health                         { return Health{Err: errTimeout} }
func refusedCheck() Health                 { return Health{Err: errKey, Unauthorized: true} }
func refusedPush(v uint64) Pushed          { return Pushed{Version: v, Err: errKey, Unauthorized: true} }
func alive(replica string, held, latest uint64) Report {
	return Report{Answered: true, Replica: replica, Held: held, Latest: latest}
}
func suspect(replica string, held, latest uint64) Report {
	return Report{Replica: replica, Held: held, Latest: latest}
}

// step is one event and the decisions it must give, in order.
type step struct {
	ev   Event
	want []Action
}

func do(ev Event, want ...Action) step { return step{ev, want} }

// syncedAt brings a fresh Peer to hold version v at process r1, by a full
// push that used push timer 1.
func syncedAt(v uint64) []step {
	return []step{
		do(Start{}, soon(1)),
		do(client(v)),
		do(due(1), Push{Since: 0}),
		do(ok(v, r1)),
		do(up(r1), alive(r1, v, v)),
	}
}

func seq(parts ...[]step) []step {
	var out []step
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func TestPeer(t *testing.T) {
	tests := []struct {
		name  string
		steps []step
	}{
		{"first push is full, then deltas since the ack", seq(syncedAt(5), []step{
			do(client(7), soon(2)),
			do(due(2), Push{Since: 5, To: r1}),
			do(ok(7, r1)),
			do(up(r1), alive(r1, 7, 7)),
		})},
		{"changes during a push go out together in the next", seq(syncedAt(5), []step{
			do(client(6), soon(2)),
			do(due(2), Push{Since: 5, To: r1}),
			do(client(7)), do(client(8)), do(fromThird(9)), do(client(10)),
			do(ok(6, r1), soon(3)),
			do(due(3), Push{Since: 6, To: r1}),
			do(ok(10, r1)),
			do(up(r1), alive(r1, 10, 10)),
		})},
		{"changes while the timer is armed share its push", seq(syncedAt(5), []step{
			do(client(6), soon(2)),
			do(client(7)), do(MembersChanged{}), do(fromThird(8)),
			do(due(2), Push{Since: 5, To: r1}),
			do(ok(8, r1)),
		})},
		{"a timer cancelled by a flush is ignored when it fires", seq(syncedAt(5), []step{
			do(client(6), soon(2)),
			do(Flush{}, Push{Since: 5, To: r1}),
			do(due(2)),
			do(ok(6, r1), AnswerFlush{}),
			do(due(2)),
		})},
		{"failed pushes are retried with capped exponential backoff, reset by a success", seq(syncedAt(5), []step{
			do(client(6), soon(2)),
			do(due(2), Push{Since: 5, To: r1}),
			do(failed(6), retry(3, 100*ms)),
			do(client(7)), // a client change does not cut the backoff short
			do(fromThird(8)),
			do(due(3), Push{Since: 5, To: r1}),
			do(failed(8), retry(4, 200*ms)),
			do(due(4), Push{Since: 5, To: r1}),
			do(failed(8), retry(5, 400*ms)),
			do(due(5), Push{Since: 5, To: r1}),
			do(failed(8), retry(6, 400*ms)),
			do(due(6), Push{Since: 5, To: r1}),
			do(ok(8, r1)),
			do(client(9), soon(7)),
			do(due(7), Push{Since: 8, To: r1}),
			do(failed(9), retry(8, 100*ms)),
		})},
		{"a failed cut is retried like a failed push", seq(syncedAt(5), []step{
			do(client(6), soon(2)),
			do(due(2), Push{Since: 5, To: r1}),
			do(Pushed{Err: errTimeout}, retry(3, 100*ms)),
			do(due(3), Push{Since: 5, To: r1}),
			do(ok(6, r1)),
		})},
		{"a peer that answers again is retried at once", seq(syncedAt(5), []step{
			do(client(6), soon(2)),
			do(due(2), Push{Since: 5, To: r1}),
			do(failed(6), retry(3, 100*ms)),
			do(down(), suspect(r1, 5, 6)),
			do(up(r1), now(4), alive(r1, 5, 6)),
			do(due(3)), // the backoff timer, replaced
			do(due(4), Push{Since: 5, To: r1}),
			do(failed(6), retry(5, 100*ms)), // the backoff starts over
		})},
		{"unhealthy is reported once per run of failures", seq(syncedAt(5), []step{
			do(down(), suspect(r1, 5, 5)),
			do(down(), suspect(r1, 5, 5)),
			do(down(), suspect(r1, 5, 5), ReportUnhealthy{Err: errTimeout}),
			do(down(), suspect(r1, 5, 5)),
			do(up(r1), alive(r1, 5, 5)),
			do(down(), suspect(r1, 5, 5)),
			do(down(), suspect(r1, 5, 5)),
			do(down(), suspect(r1, 5, 5), ReportUnhealthy{Err: errTimeout}),
		})},
		{"a refused health check is reported once and stops the pushes", seq(syncedAt(5), []step{
			do(client(6), soon(2)),
			do(refusedCheck(), ReportUnauthorized{Err: errKey}),
			do(due(2)), // the armed push is cancelled
			do(refusedCheck()),
			do(client(7)),
			do(AntiEntropy{}),
			do(MembersChanged{}),
			do(down(), suspect(r1, 5, 7)), // a plain failure is no recovery
			do(up(r1), now(3), alive(r1, 5, 7)),
			do(due(3), Push{Since: 0, To: r1}),
			do(ok(7, r1)),
			do(refusedCheck(), ReportUnauthorized{Err: errKey}), // a new run of refusals
		})},
		{"a refused push is reported once and not retried", seq(syncedAt(5), []step{
			do(client(6), soon(2)),
			do(Flush{}, Push{Since: 5, To: r1}),
			do(refusedPush(6), AnswerFlush{Err: errKey}, ReportUnauthorized{Err: errKey}),
			do(client(7)),
			do(refusedCheck()),
			do(Flush{}, AnswerFlush{Err: errKey}),
			do(up(r1), now(3), alive(r1, 5, 7)),
			do(due(3), Push{Since: 5, To: r1}),
			do(ok(7, r1)),
		})},
		{"an address that answers as this node is reported", []step{
			do(Start{}, soon(1)),
			do(Health{Replica: r1, Self: true}, ReportSelf{}),
		}},
		{"a restart seen by a health check brings a full push", seq(syncedAt(5), []step{
			do(fromPeer(6)), // credited to r1
			do(up(r2), soon(2), alive(r2, 0, 6)),
			do(due(2), Push{Since: 0, To: r2}),
			do(ok(6, r2)),
			do(client(7), soon(3)),
			do(due(3), Push{Since: 6, To: r2}),
			do(ok(7, r2)),
			do(up(r2), alive(r2, 7, 7)),
		})},
		{"a delta answered by another process brings a full push", seq(syncedAt(5), []step{
			do(client(6), soon(2)),
			do(due(2), Push{Since: 5, To: r1}),
			do(ok(6, r2), soon(3)),
			do(up(r2), alive(r2, 0, 6)),
			do(due(3), Push{Since: 0, To: r2}),
			do(ok(6, r2)),
			do(up(r2), alive(r2, 6, 6)),
		})},
		{"a delta cut before a restart and answered after it", seq(syncedAt(5), []step{
			do(client(6), soon(2)),
			do(due(2), Push{Since: 5, To: r1}),
			do(up(r2), alive(r2, 0, 6)), // the push is in flight: it decides
			do(ok(6, r2), soon(3)),
			do(due(3), Push{Since: 0, To: r2}),
			do(ok(6, r2)),
		})},
		{"the old process's ack of a full push says nothing of its successor", seq(syncedAt(5), []step{
			do(fromPeer(6)),
			do(AntiEntropy{}, soon(2)),
			do(due(2), Push{Since: 0, To: r1}),
			do(up(r2), alive(r2, 0, 6)),
			do(ok(6, r1), soon(3)), // r1 answered before it went
			do(due(3), Push{Since: 0, To: r2}),
			do(ok(6, r2)),
			do(up(r2), alive(r2, 6, 6)),
		})},
		{"the old process's ack of a delta says nothing of its successor", seq(syncedAt(5), []step{
			do(client(6), soon(2)),
			do(due(2), Push{Since: 5, To: r1}),
			do(up(r2), alive(r2, 0, 6)),
			do(ok(6, r1), soon(3)),
			do(due(3), Push{Since: 0, To: r2}),
			do(ok(6, r2)),
		})},
		{"changes from a third node are forwarded lazily", seq(syncedAt(5), []step{
			do(fromThird(6), lazy(2)),
			do(fromThird(7)),
			do(due(2), Push{Since: 5, To: r1}),
			do(ok(7, r1)),
		})},
		{"a client change cuts a lazy forward short", seq(syncedAt(5), []step{
			do(fromThird(6), lazy(2)),
			do(client(7), soon(3)),
			do(due(2)),
			do(due(3), Push{Since: 5, To: r1}),
			do(ok(7, r1)),
		})},
		{"a third node's change during a push stays lazy", seq(syncedAt(5), []step{
			do(client(6), soon(2)),
			do(due(2), Push{Since: 5, To: r1}),
			do(fromThird(7)),
			do(ok(6, r1), lazy(3)),
			do(due(3), Push{Since: 6, To: r1}),
			do(ok(7, r1)),
		})},
		{"the peer's own changes are credited, not pushed back", seq(syncedAt(5), []step{
			do(fromPeer(6)),
			do(fromPeer(7)),
			do(up(r1), alive(r1, 7, 7)),
			do(client(8), soon(2)),
			do(due(2), Push{Since: 5, To: r1}),
			do(ok(8, r1)),
			do(up(r1), alive(r1, 8, 8)),
		})},
		{"no credit for the peer's changes while a gap is unacknowledged", seq(syncedAt(5), []step{
			do(client(6), soon(2)),
			do(fromPeer(7)),
			do(down(), suspect(r1, 5, 7)),
		})},
		{"a fresh peer is credited with nothing", []step{
			do(Start{}, soon(1)),
			do(up(r1), alive(r1, 0, 0)),
			do(fromPeer(5)),
			do(up(r1), alive(r1, 0, 5)),
			do(due(1), Push{Since: 0, To: r1}),
			do(failed(5), retry(2, 100*ms)),
			do(down(), suspect(r1, 0, 5)),
		}},
		{"a failed push still tells how far behind the peer is", []step{
			do(Start{}, soon(1)),
			do(due(1), Push{Since: 0}),
			do(failed(9), retry(2, 100*ms)),
			do(down(), suspect("", 0, 9)),
		}},
		{"paged deltas follow each other", []step{
			do(Start{}, soon(1)),
			do(due(1), Push{Since: 0}),
			do(page(2000, r1), soon(2)),
			do(due(2), Push{Since: 2000, To: r1}),
			do(page(4000, r1), soon(3)),
			do(due(3), Push{Since: 4000, To: r1}),
			do(ok(4500, r1)),
			do(up(r1), alive(r1, 4500, 4500)),
		}},
		{"a page answered by another process brings a full push", []step{
			do(Start{}, soon(1)),
			do(due(1), Push{Since: 0}),
			do(page(2000, r1), soon(2)),
			do(due(2), Push{Since: 2000, To: r1}),
			do(page(4000, r2), soon(3)),
			do(due(3), Push{Since: 0, To: r2}),
		}},
		{"anti-entropy pushes the full state once something changed", seq(syncedAt(5), []step{
			do(fromPeer(6)), // credited: no push
			do(AntiEntropy{}, soon(2)),
			do(due(2), Push{Since: 0, To: r1}),
			do(ok(6, r1)),
			do(AntiEntropy{}), // nothing changed since r1 took the full state
			do(client(7), soon(3)),
			do(due(3), Push{Since: 6, To: r1}),
			do(ok(7, r1)),
			do(AntiEntropy{}, soon(4)), // a delta since: the full state again
			do(due(4), Push{Since: 0, To: r1}),
		})},
		{"anti-entropy sends nothing when the peer took the full state as it is", seq(syncedAt(5), []step{
			do(AntiEntropy{}),
			do(AntiEntropy{}),
			do(up(r2), soon(2), alive(r2, 0, 5)), // a new process gets it
			do(due(2), Push{Since: 0, To: r2}),
			do(ok(5, r2)),
			do(AntiEntropy{}),
		})},
		{"a probe of a peer in sync is a push that carries the sync clock", seq(syncedAt(5), []step{
			do(ProbeDue{}, Push{Since: 5, To: r1, Probe: true}),
			do(ok(5, r1)),
			do(up(r1), alive(r1, 5, 5)),
			do(fromPeer(6)), // credited: the peer holds 6, the probe sends nothing back
			do(ProbeDue{}, Push{Since: 6, To: r1, Probe: true}),
			do(ok(6, r1)),
			do(up(r1), alive(r1, 6, 6)),
		})},
		{"a probe is a health check while the peer is owed a push or not synced", []step{
			do(Start{}, soon(1)),
			do(ProbeDue{}, Check{}), // no full push yet
			do(client(5)),
			do(due(1), Push{Since: 0}),
			do(ProbeDue{}, Check{}), // a push in flight
			do(ok(5, r1)),
			do(client(6), soon(2)),
			do(ProbeDue{}, Check{}), // owed a push
		}},
		{"a failed probe push is not retried; a change made meanwhile is", seq(syncedAt(5), []step{
			do(ProbeDue{}, Push{Since: 5, To: r1, Probe: true}),
			do(failed(5)),
			do(down(), suspect(r1, 5, 5)),
			do(ProbeDue{}, Push{Since: 5, To: r1, Probe: true}),
			do(client(6)), // a push is in flight
			do(failed(6), retry(2, 100*ms)),
			do(due(2), Push{Since: 5, To: r1}),
		})},
		{"a refused probe push stops the pushes", seq(syncedAt(5), []step{
			do(ProbeDue{}, Push{Since: 5, To: r1, Probe: true}),
			do(refusedPush(5), ReportUnauthorized{Err: errKey}),
			do(ProbeDue{}, Check{}),
		})},
		{"a flush during a probe push is answered by it, failed or not", seq(syncedAt(5), []step{
			do(ProbeDue{}, Push{Since: 5, To: r1, Probe: true}),
			do(Flush{}),
			do(ok(5, r1), AnswerFlush{}),
			do(ProbeDue{}, Push{Since: 5, To: r1, Probe: true}),
			do(Flush{}),
			do(failed(5), AnswerFlush{}), // the peer still holds all it held
			do(ProbeDue{}, Push{Since: 5, To: r1, Probe: true}),
			do(Flush{}),
			do(refusedPush(5), AnswerFlush{Err: errKey}, ReportUnauthorized{Err: errKey}),
		})},
		{"a probe push answered by another process brings a full push", seq(syncedAt(5), []step{
			do(ProbeDue{}, Push{Since: 5, To: r1, Probe: true}),
			do(ok(5, r2), soon(2)),
			do(up(r2), alive(r2, 0, 5)),
			do(due(2), Push{Since: 0, To: r2}),
		})},
		{"a members change pushes", seq(syncedAt(5), []step{
			do(MembersChanged{}, soon(2)),
			do(due(2), Push{Since: 5, To: r1}),
			do(ok(5, r1)),
		})},
		{"a flush with nothing owed is answered at once", seq(syncedAt(5), []step{
			do(Flush{}, AnswerFlush{}),
		})},
		{"a flush pushes at once until the peer is up to date", seq(syncedAt(5), []step{
			do(client(6), soon(2)),
			do(Flush{}, Push{Since: 5, To: r1}),
			do(client(7)),
			do(ok(6, r1), Push{Since: 6, To: r1}),
			do(ok(7, r1), AnswerFlush{}),
		})},
		{"a flush during a push waits for it", seq(syncedAt(5), []step{
			do(client(6), soon(2)),
			do(due(2), Push{Since: 5, To: r1}),
			do(Flush{}),
			do(Flush{}),
			do(ok(6, r1), AnswerFlush{}),
		})},
		{"a flush cuts a retry backoff short and gets the push's error", seq(syncedAt(5), []step{
			do(client(6), soon(2)),
			do(due(2), Push{Since: 5, To: r1}),
			do(failed(6), retry(3, 100*ms)),
			do(Flush{}, Push{Since: 5, To: r1}),
			do(failed(6), AnswerFlush{Err: errRefused}, retry(4, 200*ms)),
			do(Flush{}, Push{Since: 5, To: r1}),
			do(ok(6, r1), AnswerFlush{}),
		})},
		{"a flush goes through every page", []step{
			do(Start{}, soon(1)),
			do(Flush{}, Push{Since: 0}),
			do(page(2000, r1), Push{Since: 2000, To: r1}),
			do(ok(4500, r1), AnswerFlush{}),
		}},
		{"a flush is not answered by another process's ack of a delta", seq(syncedAt(5), []step{
			do(client(6), soon(2)),
			do(Flush{}, Push{Since: 5, To: r1}),
			do(ok(6, r2), Push{Since: 0, To: r2}),
			do(ok(6, r2), AnswerFlush{}),
		})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := New(testConfig)
			for i, s := range tt.steps {
				got := p.Step(s.ev)
				if show(got) != show(s.want) {
					t.Fatalf("step %d, %s:\n got %s\nwant %s", i, show([]Event{s.ev}), show(got), show(s.want))
				}
			}
		})
	}
}

// show prints events or decisions with their types.
func show[T any](xs []T) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = strings.TrimPrefix(fmt.Sprintf("%T%+v", x, x), "replication.")
	}
	return "[" + strings.Join(parts, " ") + "]"
}
