// Package replication decides, for one remote node, what this node pushes to
// it and when. It is a plain state machine in the manner of etcd-io/raft's
// raft.go: a Peer takes events (a change notice, a timer that fired, the
// result of a push or of a health check) through Step, and returns decisions
// (push the delta since v, schedule a push, report the peer's status, answer
// the flushers). It starts no goroutines and holds no timers, clock or
// randomness, so its tests drive it through long sequences of events without
// a network and without waiting.
//
// actors.PeerActor is its shell: it feeds the Peer its messages, carries out
// the decisions (asks the CounterActor for the delta, sends it through the
// transport, arms the timers, adding the jitter), and reports the results
// back as events. The design is in docs/design.md (replication).
//
// # What the Peer tracks
//
// Every change on this node bumps a durable version; a push carries the
// entries changed after a version, up to the version the cut reached. The
// peer's process (its replica id) acknowledges a push once it made the
// entries durable, and from then on holds everything up to that version.
// Only the process the pushes were cut for counts: a peer that restarted is a
// new process, which may hold less than its predecessor (a wiped data dir),
// so it gets the full state again. A peer learns of its own changes first
// hand, so a change notice whose changes all came from it needs no push;
// changes that came from a third node are forwarded lazily, since that node
// pushes them here and to the peer alike.
//
// At most one push is in flight. Changes that come meanwhile only mark
// something owed, and the next push carries all of them, so traffic stays
// bounded however fast clients write. A failed push is retried after a capped
// exponential backoff, which ends early when the peer answers a health check
// again.
package replication
