// Command countd-bench measures a countd cluster from the outside, the way a
// client sees it, and compares it with a bare net/http server in the same run
// and, when the nodes are durable, with the cheapest durable server too.
//
// It starts N countd nodes as separate processes (building the binary from the
// module root, or -bin), on free ports on 127.0.0.1 with their own temporary
// data dirs, wires them with -peers and waits until every node sees every
// other alive; or, with -addrs, it targets a cluster that is already running.
// It then runs one of eight modes over every combination of -nodes and
// -clients:
//
//   - load (default): C keep-alive clients send POST /increment (or POST
//     /counters/{name}/increment over -counters names) for -duration,
//     alternating in -chunk slices with the same load on the yardstick
//     servers (below), so machine noise hits all alike; then it measures how
//     long the nodes take to agree.
//   - rounds (-rounds R): R short bursts, each followed by a measurement of
//     the time until every node reports the same counters.
//   - idle (-idle D): the CPU all nodes use over D while nothing happens,
//     as a share of one core, and each node's memory; -detect then times
//     how long the others take to list a SIGKILLed node down. With
//     -idle-peer=memberlist the same is measured, after countd's nodes, on
//     as many hashicorp/memberlist nodes (DefaultLANConfig, on 127.0.0.1),
//     each a child process of this tool's own binary (memberlist.go).
//   - create (-create-counters K): K distinct named counters created on one
//     node, then the time to agreement and each node's memory. With
//     -restart-node, the first node's memory (RSS, RssAnon, RssFile, Go
//     heap) is then read, at its peak while GET /counters streams, and once
//     ready after a SIGTERM and a start on the same data dir, and its
//     GET /counters again.
//   - churn (-churn-counters K): K distinct named counters, each incremented
//     once with ?ttl= from -ttl (a list of seconds, 0 for none: one run on
//     a fresh cluster each), created at an even rate over -duration (as
//     fast as the clients go when they fall behind) and then -tail more;
//     every -sample it records each node's RSS (/proc), Go heap in use,
//     live counters, CRDT entries, expired and collected counters (from
//     /metrics), its data file's size and the part of the file the current
//     bbolt tree uses. That last is read from the file without bbolt (the
//     node holds its lock): a walk of the tree's pages from the meta page,
//     kept only if no commit landed during it (boltpages.go); it reads
//     every page in use, so it costs the tool (not the node) a read of
//     the file's live part per sample. The report
//     prints every sample and each node's peak and final figures; -png
//     draws them against time.
//   - levels (-levels=local,quorum,all): C clients send changes as in the
//     load mode but with ?wait= (the write levels), -duration at each
//     level, alternating between the levels in -chunk slices (each round
//     starting at the next level) so that machine noise hits all alike;
//     the report gives each level's throughput, p50 and p99, and its p50
//     and p99 over local's in the same run. No yardstick runs.
//   - keys (-keys=N): the memory cost of idempotency keys. On a fresh
//     cluster, N unkeyed changes spread over -counters counters (default
//     1,000), by the clients, then the time to agreement; on another fresh
//     cluster of the same size, whose nodes run with -idempotency-window
//     (the tool's flag, default 10m) and -pprof, the same N changes each
//     with its own Idempotency-Key. After each, and again once every node
//     reports countd_idempotency_keys 0 (the window and, with peers,
//     crdt.RetireMargin passed, the keys retired and forgotten), it forces
//     a GC on every node (GET /debug/pprof/heap?gc=1) and reads its RSS,
//     Go heap in use, keys held and retired, data file size and the part
//     of the file bbolt's tree uses (about what a compaction would leave:
//     bbolt never shrinks its file). Bytes per key = (keyed − unkeyed) / N
//     of each figure, with the keys held and once gone. The counters' sum
//     the nodes agree on is checked at each point: N every time. The
//     window must be longer than the keyed changes take, or some keys
//     retire before they are measured (the report says so).
//   - resp (-resp): the Redis protocol port (issue 16) under
//     redis-benchmark -t incr, -c each of -clients, at -P 1 and -P
//     -resp-pipeline (16), -resp-requests INCRs a load: against the RESP
//     port of a -memory node and of a durable node (one node each, started
//     with -resp-port), against redis-server with no persistence and
//     with appendfsync always, and against the two yardsticks over RESP
//     (below), in turn, -resp-rounds times, so noise hits all alike. It
//     reports each one's req/s (over all rounds, and each round's), p50
//     and p99, its CPU per INCR from /proc, and the ratios issue 16 sets
//     targets for: countd -memory / Redis, durable / appendfsync always,
//     and the same at -P 16; then, for information, countd over its
//     yardstick and the yardstick over Redis. redis-benchmark
//     increments one key, counter:__rand_int__ (a name with ':'), so at
//     the end each node's counter of that name (read over HTTP) must equal
//     the INCRs sent to it, warm-up included; a mismatch fails the run.
//
// The yardsticks are child processes of this tool serving internal/bare.
// The bare server (hidden flag -bare-server) does one atomic add per
// request. The fsync yardstick (hidden flag -fsync-server=FILE, bare.Syncing)
// does the same but answers only once the value is on disk: one
// group-committed pwrite+fdatasync of a 4 KiB page per batch of requests, the
// least any durable server pays. Its file is in a temporary directory beside
// the nodes' data dirs (both in os.TempDir), so on the same filesystem, and
// removed at the end. It runs with -bare (the default) when the tool starts
// durable nodes itself (not -memory, not -addrs), unless -fsync=false. Each
// round of slices drives bare, then the fsync yardstick, then countd, each
// for the same time, so the load ends on countd. The report gives countd's
// ratio to bare, the fsync yardstick's ratio to bare (what this machine's
// disk allows any durable server) and countd's ratio to the fsync yardstick
// (what countd's own code costs on top of that). With the hidden flag
// -bare-resp either yardstick speaks RESP instead (bare.RESPServer, on
// tidwall/redcon as countd's RESP port): every command is an INCR, one add
// (and one flush) per pipeline; the resp mode runs both.
//
// The load mode's load generator (-client=raw, the default) is cheap per
// request, so that the figures are the servers' and not the client's: one
// keep-alive TCP connection per client, each request's bytes prepared once,
// and of each answer only the status line and Content-Length read, the body
// skipped; -pipeline=N writes N requests before reading their answers.
// -client=http is the net/http client, which costs about as much CPU as the
// server it loads. -wrk checks the generator: wrk (-t2, -c clients, POST)
// loads the bare server in turn with the other servers, slice by slice, and
// the report gives the generator's bare figure over wrk's ("wrk_bare_rps",
// "bare_ratio_to_wrk"). Each server's CPU time (utime+stime from
// /proc/PID/stat, read around every slice) over its 2xx answers is its CPU
// per change, in µs ("cpu_us_per_change"; for countd the sum over nodes,
// each in "node_cpu_us_per_change"). With -redis (the default), when
// redis-server and redis-benchmark are on PATH, each load run ends with
// Redis as peer rows ("peers"): redis-server on a free port with no
// persistence and, beside durable nodes, with appendfsync always, loaded by
// redis-benchmark -t incr with as many clients and about as many INCRs as
// the bare server took, its CPU per INCR from /proc.
//
// -security=LIST starts one cluster per item (and per -nodes), each node
// demanding what the item names: none, or key (-cluster-key-file: signed
// node-to-node requests), token (-client-token-file: a bearer token on the
// client API and /metrics) and tls (-tls-cert-file, -tls-key-file and
// -tls-ca-file, with certificates from a throwaway CA,
// internal/testcerts) joined by "+". The key, the token file, the CA and
// the certificates are made fresh in the temporary directories and removed
// with them. The load clients and the readers of /health, /peers,
// /counters and /metrics then speak HTTPS trusting that CA and send the
// token; the yardsticks take no token. With tls and -bare, a third
// yardstick, the bare server over HTTPS with a certificate from the same
// CA (hidden flags -bare-tls-cert and -bare-tls-key), is measured too, so
// that countd's ratio to it is the cost of countd's code over TLS rather
// than the cost of TLS. Results carry "security" (omitted for none),
// "bare_tls" and "ratio_to_bare_tls".
//
// -json FILE writes every run's figures and the machine (CPU model, cores,
// Go version, kernel); -from FILE reads such a file back to print it or chart
// it. -png FILE draws one PNG of four panels from the load-mode runs:
// throughput and p99 against clients (a line per node count, with the bare
// server dashed and the fsync yardstick dotted) and against nodes (a line per
// client count); for churn-mode runs, RSS, data file, live counters and CRDT
// entries against time, a line per run and node.
//
// Latency is recorded in a log-linear histogram (128 sub-buckets per power of
// two, so a percentile is within 0.8% of the exact sample); a reported
// percentile is the upper bound of its bucket, so it never understates.
// Replication figures come from each node's GET /metrics before and after the
// load; CPU and peak memory of the nodes it started come from /proc. A
// request's outcome (applied, not applied, unknown) is apiclient.Classify's,
// the same rule the tests use, so the counted total must lie between the
// applied requests and those plus the unknown ones.
//
// The files: main.go (flags), config.go (what the flags mean), cluster.go
// (node processes, through internal/proc), security.go (-security: the
// secrets and how clients use them), bare.go (the yardstick servers),
// load.go (the clients and the progress line), rawclient.go (the cheap
// load generator), wrk.go (-wrk), redis.go (-redis), hist.go (latency
// histogram), agree.go (agreement and readiness), metrics.go (/metrics),
// procstat.go (/proc), snapshot.go (before/after figures), bench.go (runs
// and sweeps), modes.go (the first four modes), churn.go (the churn mode
// and its sampler), levels.go (the levels mode), keys.go (the keys
// mode), resp.go (the resp mode), boltpages.go (the bbolt
// page walk), report.go (results, text and JSON), chart.go and
// churnchart.go (PNG).
package main
