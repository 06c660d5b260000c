package main

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// Modes of a run; see the package comment.
const (
	modeLoad   = "load"
	modeRounds = "rounds"
	modeIdle   = "idle"
	modeCreate = "create"
	modeChurn  = "churn"
	modeLevels = "levels"
	modeKeys   = "keys"
	modeRESP   = "resp"
)

// Config is what the flags ask for.
type Config struct {
	// Nodes and Clients are the cluster sizes and client counts to sweep;
	// every combination is one run.
	Nodes, Clients []int
	// Duration is how long each run loads countd (load mode); each yardstick
	// server gets as long again, alternating in slices of Chunk.
	Duration, Chunk time.Duration
	// Target is "one" (every client on the first node) or "all" (client i
	// on node i mod N).
	Target string
	// Counters is how many named counters the load spreads over; 0 means the
	// default counter (POST /increment).
	Counters int
	// Memory starts nodes with -memory instead of a data dir.
	Memory bool
	// Bin is a countd binary to run; empty means build one.
	Bin string
	// Addrs targets a running cluster (host:port each) instead of starting one.
	Addrs []string
	// NodeFlags are passed to every node after the tool's own flags, so they
	// win (e.g. -flush-delay=5ms).
	NodeFlags []string
	// Security lists what the nodes demand, one cluster per item and node
	// count (-security=none,key,token,tls+token).
	Security []security
	// Client is the load mode's load generator: clientRaw (the cheap one,
	// rawclient.go) or clientHTTP (net/http); Pipeline is how many
	// requests each raw client writes before it reads their answers.
	Client   string
	Pipeline int
	// Wrk, with Bare, also runs wrk against the bare server after each
	// load run, to check the load generator's bare figure against it.
	Wrk bool
	// Redis runs Redis (no persistence, and appendfsync always) as peer
	// rows of each load run when redis-server and redis-benchmark are on
	// PATH.
	Redis bool
	// Bare measures the bare net/http server alongside (load mode).
	Bare bool
	// Fsync, with Bare, also measures the fsync yardstick alongside when the
	// tool starts durable nodes (not Memory, not Addrs).
	Fsync bool
	// JSON and PNG, if set, are where results and charts are written.
	JSON, PNG string
	// Rounds > 0 selects rounds mode: that many bursts of Burst each.
	Rounds int
	Burst  time.Duration
	// Idle > 0 selects idle mode for that long; Settle is how long it
	// waits after the nodes see each other alive before it measures.
	Idle, Settle time.Duration
	// Detect (idle mode) SIGKILLs the last node after the measurement and
	// times until every other node lists it down.
	Detect bool
	// IdlePeer (idle mode) also measures a peer system's nodes after
	// countd's, with the same node counts and windows: "memberlist" or "".
	IdlePeer string
	// CreateCounters > 0 selects create mode with that many counters.
	CreateCounters int
	// RestartNode: create mode then measures the first node's memory, its
	// GET /counters and a restart on its data dir (MemoryResult).
	RestartNode bool
	// ChurnCounters > 0 selects churn mode: that many counters created
	// evenly over Duration, once per TTL in TTLs (seconds, 0 for none) on
	// a fresh cluster each, sampled every Sample until Tail after the last
	// (0: the largest TTL plus 3 minutes).
	ChurnCounters int
	TTLs          []int
	Tail, Sample  time.Duration
	// Levels, if not empty, selects levels mode: Duration of changes at
	// each of these write levels (?wait=), alternating in slices of Chunk.
	Levels []string
	// Keys > 0 selects keys mode: that many keyed changes (each with its
	// own Idempotency-Key) over Counters counters (keysCounters if 0),
	// and as many unkeyed ones on a fresh cluster as the baseline; the
	// nodes run with -idempotency-window=Window.
	Keys   int
	Window time.Duration
	// RESP selects resp mode (resp.go): redis-benchmark -t incr against
	// countd's RESP port (a -memory node and a durable one) and against
	// redis-server (no persistence, and appendfsync always), interleaved,
	// RESPRounds times, each load RESPRequests INCRs, with -P 1 and -P
	// RESPPipeline.
	RESP         bool
	RESPRequests int64
	RESPRounds   int
	RESPPipeline int
	// ReadyTimeout bounds the wait for a started cluster to see itself
	// alive; AgreeTimeout bounds each wait for agreement; StopTimeout is how
	// long a node gets after SIGTERM before SIGKILL.
	ReadyTimeout, AgreeTimeout, StopTimeout time.Duration
	// Keep leaves the temporary directory (binary, data, node logs) behind.
	Keep bool
	// Quiet drops the once-a-second progress line.
	Quiet bool
	// From re-reads a results file instead of running anything (to print
	// it again or to draw its charts).
	From string
	// Args is the command line, recorded in the results.
	Args []string
	// BareServer makes this process the bare server, and FsyncServer the
	// fsync yardstick with its file at that path (hidden; the tool starts
	// itself this way).
	BareServer  bool
	FsyncServer string
	// MemberlistNode makes this process one memberlist node, joined to
	// MemberlistJoin if set (hidden; the tool starts the peer this way).
	MemberlistNode bool
	MemberlistJoin string
	// BareCert and BareKey, with BareServer, make it serve HTTPS with
	// this certificate (hidden; for TLS runs).
	BareCert, BareKey string
	// BareRESP, with BareServer or FsyncServer, makes the yardstick speak
	// the Redis protocol (hidden; for the resp mode).
	BareRESP bool
}

// defaultConfig returns the defaults of every flag.
func defaultConfig() Config {
	return Config{
		Nodes:        []int{1},
		Clients:      []int{64},
		Security:     []security{{}},
		Duration:     10 * time.Second,
		Chunk:        time.Second,
		Target:       "one",
		Client:       clientRaw,
		Pipeline:     1,
		Redis:        true,
		Bare:         true,
		Fsync:        true,
		Burst:        200 * time.Millisecond,
		TTLs:         []int{60},
		Sample:       5 * time.Second,
		ReadyTimeout: 2 * time.Minute,
		AgreeTimeout: 30 * time.Second,
		StopTimeout:  10 * time.Second,
		Window:       10 * time.Minute,
		RESPRequests: 200_000,
		RESPRounds:   3,
		RESPPipeline: 16,
	}
}

// measureFsync reports whether load runs measure the fsync yardstick: only
// beside the bare server, and only when the nodes are durable and started
// by the tool on this machine, so that both flush to the same filesystem.
func (c *Config) measureFsync() bool {
	return c.Bare && c.Fsync && !c.Memory && len(c.Addrs) == 0
}

// mode returns which of the eight modes the configuration selects.
func (c *Config) mode() string {
	switch {
	case c.Rounds > 0:
		return modeRounds
	case c.Idle > 0:
		return modeIdle
	case c.CreateCounters > 0:
		return modeCreate
	case c.ChurnCounters > 0:
		return modeChurn
	case len(c.Levels) > 0:
		return modeLevels
	case c.Keys > 0:
		return modeKeys
	case c.RESP:
		return modeRESP
	}
	return modeLoad
}

// validate checks the values that each flag's parser cannot check alone.
// given names the flags set on the command line.
func (c *Config) validate(given map[string]bool) error {
	if c.From != "" {
		return nil
	}
	modes := 0
	for _, f := range []string{"rounds", "idle", "create-counters", "churn-counters", "levels", "keys", "resp"} {
		if given[f] {
			modes++
		}
	}
	switch {
	case modes > 1:
		return errors.New("-rounds, -idle, -create-counters, -churn-counters, -levels, -keys and -resp are different modes: give at most one")
	case c.Rounds < 0 || c.CreateCounters < 0 || c.Counters < 0 || c.ChurnCounters < 0 || c.Keys < 0:
		return errors.New("-rounds, -counters, -create-counters, -churn-counters and -keys must not be negative")
	case c.Tail < 0 || c.Sample <= 0:
		return errors.New("-tail must not be negative and -sample must be positive")
	case c.Idle < 0 || c.Settle < 0 || c.Duration <= 0 || c.Chunk <= 0 || c.Burst <= 0:
		return errors.New("-duration, -chunk and -burst must be positive, -idle and -settle not negative")
	case c.ReadyTimeout <= 0 || c.AgreeTimeout <= 0 || c.StopTimeout <= 0:
		return errors.New("-ready-timeout, -agree-timeout and -stop-timeout must be positive")
	case c.Client != clientRaw && c.Client != clientHTTP:
		return fmt.Errorf("invalid value %q for flag -client: want raw or http", c.Client)
	case c.Pipeline < 1 || c.Pipeline > 1000:
		return errors.New("invalid value for flag -pipeline: from 1 to 1000")
	case c.Pipeline > 1 && c.Client != clientRaw:
		return errors.New("-pipeline applies to -client=raw")
	case c.Target != "one" && c.Target != "all":
		return fmt.Errorf("invalid value %q for flag -target: want one or all", c.Target)
	case c.CreateCounters > 10_000_000:
		return errors.New("invalid value for flag -create-counters: at most 10000000")
	case c.ChurnCounters > 10_000_000:
		return errors.New("invalid value for flag -churn-counters: at most 10000000")
	case c.Keys > 10_000_000:
		return errors.New("invalid value for flag -keys: at most 10000000")
	case c.Window < time.Millisecond:
		return errors.New("invalid value for flag -idempotency-window: at least 1ms")
	case c.Counters > 1_000_000:
		return errors.New("invalid value for flag -counters: at most 1000000")
	}
	if c.PNG != "" && c.mode() != modeLoad && c.mode() != modeChurn {
		return errors.New("-png draws load-mode and churn-mode runs; it has no meaning with -rounds, -idle, -create-counters, -levels or -keys")
	}
	if c.IdlePeer != "" && c.IdlePeer != peerMemberlist {
		return fmt.Errorf("invalid value %q for flag -idle-peer: want %s", c.IdlePeer, peerMemberlist)
	}
	if c.IdlePeer != "" && c.mode() != modeIdle {
		return errors.New("-idle-peer applies to -idle")
	}
	if c.IdlePeer != "" && len(c.Addrs) > 0 {
		return errors.New("-idle-peer starts its own nodes beside the ones the tool starts: it has no meaning with -addrs")
	}
	if c.RestartNode && (c.mode() != modeCreate || c.Memory || len(c.Addrs) > 0) {
		return errors.New("-restart-node applies to -create-counters on durable nodes the tool starts")
	}
	if c.mode() != modeKeys && given["idempotency-window"] {
		return errors.New("-idempotency-window applies to -keys")
	}
	if c.mode() == modeKeys && len(c.Addrs) > 0 {
		return errors.New("-keys starts its own nodes (fresh ones, with -idempotency-window): it has no meaning with -addrs")
	}
	if c.mode() == modeRESP {
		if len(c.Addrs) > 0 || given["memory"] || given["nodes"] || given["security"] {
			return errors.New("-resp starts its own nodes, one -memory and one durable, without security: -addrs, -memory, -nodes and -security have no meaning with it")
		}
		if c.RESPRequests < 1 || c.RESPRounds < 1 || c.RESPPipeline < 2 || c.RESPPipeline > 1000 {
			return errors.New("-resp-requests and -resp-rounds must be positive, -resp-pipeline from 2 to 1000")
		}
	} else {
		for _, f := range []string{"resp-requests", "resp-rounds", "resp-pipeline"} {
			if given[f] {
				return fmt.Errorf("-%s applies to -resp", f)
			}
		}
	}
	if c.mode() != modeChurn {
		for _, f := range []string{"ttl", "tail", "sample"} {
			if given[f] {
				return fmt.Errorf("-%s applies to -churn-counters", f)
			}
		}
	}
	if len(c.Addrs) > 0 {
		for _, f := range []string{"nodes", "bin", "node-flag", "memory", "keep", "security"} {
			if given[f] {
				return fmt.Errorf("-%s applies to nodes the tool starts; it has no meaning with -addrs", f)
			}
		}
		c.Nodes = []int{len(c.Addrs)}
	}
	return nil
}

// intList is a flag.Value for a comma-separated list of whole numbers in
// [lo, hi], like -clients=1,8,64.
type intList struct {
	dst    *[]int
	lo, hi int
}

func (l intList) String() string {
	if l.dst == nil {
		return ""
	}
	s := make([]string, len(*l.dst))
	for i, v := range *l.dst {
		s[i] = strconv.Itoa(v)
	}
	return strings.Join(s, ",")
}

func (l intList) Set(v string) error {
	var out []int
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < l.lo || n > l.hi {
			return fmt.Errorf("want comma-separated whole numbers from %d to %d", l.lo, l.hi)
		}
		out = append(out, n)
	}
	*l.dst = out
	return nil
}

// addrList is a flag.Value for -addrs: comma-separated host:port.
type addrList struct{ dst *[]string }

func (l addrList) String() string {
	if l.dst == nil {
		return ""
	}
	return strings.Join(*l.dst, ",")
}

func (l addrList) Set(v string) error {
	var out []string
	for _, f := range strings.Split(v, ",") {
		f = strings.TrimPrefix(strings.TrimSpace(f), "http://")
		host, port, err := net.SplitHostPort(f)
		if err != nil || host == "" {
			return fmt.Errorf("want comma-separated host:port, got %q", f)
		}
		if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
			return fmt.Errorf("bad port in %q", f)
		}
		out = append(out, f)
	}
	*l.dst = out
	return nil
}

// repeated is a flag.Value that collects every use of a repeatable flag.
type repeated struct{ dst *[]string }

func (r repeated) String() string {
	if r.dst == nil {
		return ""
	}
	return strings.Join(*r.dst, " ")
}

func (r repeated) Set(v string) error {
	if !strings.HasPrefix(v, "-") {
		return fmt.Errorf("want a countd flag like -flush-delay=5ms, got %q", v)
	}
	*r.dst = append(*r.dst, v)
	return nil
}
