package actors

import "time"

// DefaultCommitHold bounds how long a gathered batch is held for clients to
// come back (pacer), whatever the last write took, unless WithCommitHold
// says otherwise: a stalled disk must not turn into a stalled node once it
// recovers.
const DefaultCommitHold = 2 * time.Millisecond

// pacer decides when the CounterActor starts its next write: the adaptive
// half of its group commit (docs/design.md §8).
//
// Without it the next write starts as soon as one ends, with whatever
// arrived during it. Under a closed loop of clients that alternates a large
// batch with a small one: the clients of the large batch are answered just
// as the small one starts, and they all come back to wait for it. Each
// small write costs a whole fdatasync for a few requests. The pacer holds
// the next batch after a write that answered clients until those clients
// and the ones already gathered are all back (each client has one request
// in flight, so that is everyone), or for half the last write's time
// (at most DefaultCommitHold), whichever comes first: Postgres' commit_delay and
// MySQL's binlog_group_commit_sync_delay, bounded by the disk's own pace.
// One client is never held: it comes back, the batch holds everyone, and
// the write starts at once.
//
// A hold pays only while clients come back faster than the disk writes.
// When they do not (the node is short of CPU, so the answered requests
// come back slowly), each hold ends by its timer and only stretches the
// write cycle. So a hold that runs out makes the pacer skip the holds of
// the next writes, one after the first miss, then 3, 7, up to maxSkip,
// and a hold that fills resets that: a failing hold is tried again now
// and then, never on every write.
type pacer struct {
	max     time.Duration // the longest hold; 0: never hold
	want    int           // client requests the held batch waits for; 0: none
	skip    int           // writes not to hold after the last hold ran out
	skipped int           // of those, how many have been written
}

// maxSkip bounds how many writes in a row the pacer skips holding after
// holds that ran out.
const maxSkip = 15

// written is told that a write answered clients client requests (merges
// from peers do not count: a peer does not come straight back) and took
// took, while gathered client requests were already waiting for the next
// one. It returns how long to hold the next batch for more (0: write it
// now).
func (p *pacer) written(clients, gathered int, took time.Duration) time.Duration {
	p.want = 0
	hold := min(took, p.max)
	if clients == 0 || hold <= 0 {
		return 0
	}
	if p.skipped < p.skip {
		p.skipped++
		return 0
	}
	p.want = clients + gathered
	return hold
}

// ended is told how a hold ended: full (enough client requests came back)
// or by its timer.
func (p *pacer) ended(full bool) {
	if full {
		p.skip = 0
	} else {
		p.skip = min(2*p.skip+1, maxSkip)
	}
	p.skipped = 0
}

// enough says whether gathered client requests are worth writing now.
func (p *pacer) enough(gathered int) bool { return gathered >= p.want }

// failed is told that a write failed: the next one is not held (it is
// retried with backoff instead).
func (p *pacer) failed() { p.want = 0 }
