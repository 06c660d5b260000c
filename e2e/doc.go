// Package e2e tests countd as its users run it: as a process. TestMain builds
// the binary once; each test starts it with real flags, talks to it over
// HTTP on the port it picked, and ends it with SIGTERM or SIGKILL, then checks
// the contract (the README's API and flags, the invariants of
// docs/design.md) from the outside: no acknowledged increment is lost across
// a crash, a graceful shutdown keeps everything, concurrent
// clients are counted exactly, and bad flags fail fast with one clear line.
// Clusters of such processes converge through SIGSTOP, a node added later with
// -newnode, and every node killed at once.
//
// proc_test.go holds the process handling: thin wrappers over internal/proc
// (build, start, port discovery, health wait, kill, stop) that fail the test
// and log a node's stderr on failure. e2e_test.go holds the single-node tests
// and cluster_test.go the cluster ones; both keep what clients were told in
// an apiclient.Ledger, whose one rule (apiclient.Classify) decides which
// changes were applied, not applied, or may have been. netns_test.go runs each node
// in a network namespace of its own, joined by veth links to a bridge, and
// cuts, splits and drops traffic one way at the link level; it needs root
// and iproute2, and skips (saying why) without them. browser_test.go opens a
// cluster node's status page in headless Chromium (through chromedp) and
// skips when no Chromium or Chrome is installed. key_test.go runs clusters
// with a cluster key (joins, forged requests refused, a stranger kept out,
// a key rotation under load), and the files named after a feature (tls,
// flood, reap, limits tests) test that feature with real processes.
// lifecycle_test.go tests issue 12's counter lifecycle on three-node
// clusters: a delete gone on every node, ?ttl= expiry with the dead
// counters' storage reclaimed (countd_crdt_entries, and the data file
// measured with bbolt once the node has stopped), 20 restarts that must not
// grow the entries, and SIGKILL during deletes and during the fold at
// start; lifecycle_netns_test.go deletes on one side of a netns partition.
// keys_test.go tests Idempotency-Key (issue 14) with processes: 422 and
// 409, and keys retired and forgotten after a short -idempotency-window;
// keys_netns_test.go sends a keyed change on both sides of a netns
// partition, and 10,000 keyed changes resent until known under cuts,
// kill -9 and lost replies, which must count exactly.
// resp_test.go drives the Redis protocol port (issue 16) with Debian's
// redis-tools: redis-cli's commands and error texts, a change over RESP on
// one node read over HTTP on another and back, and redis-benchmark's INCRs
// counted exactly on every node; it skips when the tools are not on PATH.
// The package is skipped under -short because it builds and runs the binary.
//
// E2E_RACE_NODE=1 builds the node itself with -race; a race it sees makes it
// exit 66, which fails the next Stop, and its report is in the logged stderr.
package e2e
