// Package chaos is a randomized cluster test driver for countd. It is test
// support only: main never imports it, and it runs under go test.
//
// From a seed, Generate builds a Schedule: how many nodes start (3 to 7),
// and a list of steps, each holding one or two faults for a while as clients
// change counters. The faults are symmetric and one-way partitions, an
// isolated node, a bridge (A sees B and C, which do not see each other),
// message loss, lost replies, duplication, delays with jitter that reorder,
// lost client replies, a crash and restart on the same data dir, a restart
// on a wiped data dir, a new node joining, and a node removed with DELETE
// /peers.
//
// Run executes a Schedule against a testcluster.Cluster: N in-process nodes
// (package node) talking real HTTP on 127.0.0.1 ports picked by the kernel,
// each with its own data dir, every node-to-node request going through one
// faultnet.Network and signed with a cluster key made from the seed (as
// -cluster-key-file does in production), so that signing, its body
// buffering and its checks are under every fault too. Clients go through a second network of their own, so a
// fault between nodes never touches them and a client-side fault (lost
// replies) never touches replication. Every client change is recorded in an
// apiclient.Ledger as ok, failed (surely not applied) or unknown (it may
// have been applied), by the one rule of apiclient.Classify.
//
// Clients send each change of Schedule.Counters and each lifecycle change
// with an Idempotency-Key of its own, and send it again, with the same
// key, to a live node picked at random while its outcome is unknown (or a
// 409), until it is known (apiclient.Resend). So the plain counters must
// end at exactly their acknowledged sums, and an outcome still unknown
// after resendTimeout is a violation. One operation in five (by its
// number, not drawn from the client's stream) goes to counter Bare without
// a key and is checked against the ledger's range, so nodes' own entries,
// and their folds across restarts, stay under the faults too.
//
// A share of the clients' operations (Schedule.Life) go to counters of
// their own: "gone" is changed and deleted (DELETE /counters/{name});
// "brief" is changed with ?ttl= (1 to 3 s, so that expiries fire within
// the run) and given expiries (POST .../expire), in the first steps only.
// They run under the same faults, through the same client network, and are
// recorded in a History with the time each was sent and done, classified
// by the same rule, because their bounds depend on order.
//
// When the steps are done Run heals everything, stops the clients, and Check
// verifies the invariants of docs/design.md (section 1) that a cluster run can see:
//
//   - convergence: every live node reports the same value of every counter
//     within a bounded time;
//   - no loss, no double count: each keyed counter's value is its
//     acknowledged sum; Bare's lies between the acknowledged sum plus the
//     unknown decrements and the acknowledged sum plus the unknown
//     increments;
//   - deletes (docs/invariants.md): keyed or not, a change concurrent with a
//     delete may or may not have been seen by it, so a deleted counter's
//     value lies between
//     the sum of its sure changes plus its maybe decrements and that sum
//     plus its maybe increments; a change acknowledged by a node before an
//     acknowledged delete on that node never counts;
//   - expiries (docs/invariants.md): once every expiry the clients set has
//     passed and been swept, an expiring counter is gone on every node;
//   - agreement: every live node lists the same counters (a deleted counter
//     is not a live one at 0);
//   - durability: implied by the above across crash-restarts (a node crashes
//     after acknowledging changes it could not push);
//   - membership: every live node lists every other one as alive, and none
//     lists a removed node.
//
// # Wipes and removals
//
// A node restarted on an empty data dir, or removed, takes with it whatever
// it acknowledged and had not yet replicated; losing that is allowed by the
// contract (an acknowledgement promises durability on that node, not on the
// cluster). So before a wipe or a removal Run pauses the clients, heals the
// network and waits until every live node agrees; only then does the node
// lose its data or leave. A crash-restart on the same data dir gets no such
// help: it must lose nothing.
//
// # Determinism
//
// The schedule, every client's sequence of changes, and the network's random
// choices come from the seed, so a seed replays the same faults and the same
// changes. Goroutine and network timing is not replayed: a rare
// interleaving may need the seed run a few times (go test -count=N).
//
// # Running
//
// chaos_test.go runs a fixed set of seeds. COUNTD_CHAOS_SEED (or
// -chaos.seed) replays one seed; COUNTD_CHAOS_SEEDS (or -chaos.seeds) runs
// that many seeds from COUNTD_CHAOS_START (or -chaos.start);
// COUNTD_CHAOS_DURATION (or -chaos.duration) keeps running new seeds until
// the time is up. Give go test a -timeout above the duration.
package chaos
