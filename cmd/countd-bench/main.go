package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run is main without the exit: 0 when every run finished, 1 when one
// failed or was interrupted, 2 for bad flags.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "countd-bench:", err)
		return 2
	}
	if cfg.BareServer {
		return serveBare(cfg.BareRESP, cfg.BareCert, cfg.BareKey, stdin, stdout, stderr)
	}
	if cfg.MemberlistNode {
		return serveMemberlist(cfg.MemberlistJoin, stdin, stdout, stderr)
	}
	if cfg.FsyncServer != "" {
		return serveFsync(cfg.FsyncServer, cfg.BareRESP, stdin, stdout, stderr)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		// From now on a second Ctrl-C kills at once; the nodes die with us
		// (they are started with a parent-death signal).
		stop()
	}()
	if _, err := execute(ctx, cfg, stdout, stderr); err != nil {
		if ctx.Err() != nil {
			fmt.Fprintln(stderr, "countd-bench: interrupted")
		} else {
			fmt.Fprintln(stderr, "countd-bench:", err)
		}
		return 1
	}
	return 0
}

// parseFlags reads the command line into a Config.
func parseFlags(args []string, stderr io.Writer) (Config, error) {
	cfg := defaultConfig()
	fs := flag.NewFlagSet("countd-bench", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported in one line by run
	fs.Var(intList{&cfg.Nodes, 1, 256}, "nodes", "`list` of cluster sizes to start, comma separated (e.g. 1,3,5)")
	fs.Var(intList{&cfg.Clients, 1, 10000}, "clients", "`list` of concurrent keep-alive client counts, comma separated (e.g. 1,8,64)")
	fs.DurationVar(&cfg.Duration, "duration", cfg.Duration, "load time on countd per run (each yardstick server gets as long again)")
	fs.DurationVar(&cfg.Chunk, "chunk", cfg.Chunk, "length of each alternating slice of load on bare, fsync yardstick and countd")
	fs.StringVar(&cfg.Target, "target", cfg.Target, "one: load the first node; all: spread clients over every node")
	fs.IntVar(&cfg.Counters, "counters", 0, "spread the load over this many named counters (0: POST /increment)")
	fs.BoolVar(&cfg.Memory, "memory", false, "start nodes with -memory (no disk)")
	fs.StringVar(&cfg.Bin, "bin", "", "countd binary to run (default: go build the module root)")
	fs.Var(addrList{&cfg.Addrs}, "addrs", "target a running cluster instead of starting one: `host:port,...`")
	fs.Var(repeated{&cfg.NodeFlags}, "node-flag", "extra countd `flag` for every node, e.g. -node-flag=-flush-delay=5ms (repeatable)")
	fs.Var(securityList{&cfg.Security}, "security", "`list` of what the started nodes demand, one cluster each: none, or key (-cluster-key-file), token (-client-token-file) and tls (a throwaway CA) joined by + (e.g. none,key,tls+token)")
	fs.StringVar(&cfg.Client, "client", cfg.Client, "load generator of the load mode: raw (keep-alive connections writing prepared requests, reading only status and Content-Length: cheap, so the figures are the server's) or http (net/http)")
	fs.IntVar(&cfg.Pipeline, "pipeline", cfg.Pipeline, "with -client=raw, requests each client writes before it reads their answers (HTTP/1.1 pipelining)")
	fs.BoolVar(&cfg.Wrk, "wrk", false, "load mode with -bare: after each run also load the bare server with wrk (-t2, as many connections as clients, -duration; skipped if wrk is not on PATH) and print both figures")
	fs.BoolVar(&cfg.Redis, "redis", cfg.Redis, "load mode: also run redis-server (no persistence, and appendfsync always) loaded by redis-benchmark -t incr with as many clients, as rows of each run (skipped if they are not on PATH)")
	fs.BoolVar(&cfg.Bare, "bare", cfg.Bare, "measure a bare net/http atomic add alongside and report ratios to it")
	fs.BoolVar(&cfg.Fsync, "fsync", cfg.Fsync, "with -bare and durable nodes the tool starts, also measure the fsync yardstick (the bare add answered after a group-committed fdatasync) and report ratios to it")
	fs.StringVar(&cfg.JSON, "json", "", "write every result to this JSON file")
	fs.StringVar(&cfg.PNG, "png", "", "draw throughput and p99 against clients and nodes into this PNG")
	fs.IntVar(&cfg.Rounds, "rounds", 0, "rounds mode: this many bursts, each followed by time to agreement")
	fs.DurationVar(&cfg.Burst, "burst", cfg.Burst, "load time of one round (-rounds)")
	fs.DurationVar(&cfg.Idle, "idle", 0, "idle mode: measure the nodes' CPU and memory over this long with no load")
	fs.BoolVar(&cfg.Detect, "detect", false, "idle mode: then SIGKILL the last node and time until every other node lists it down")
	fs.StringVar(&cfg.IdlePeer, "idle-peer", "", "idle mode: after countd's nodes, measure as many nodes of this peer the same way: memberlist (hashicorp/memberlist, DefaultLANConfig, on 127.0.0.1)")
	fs.DurationVar(&cfg.Settle, "settle", 0, "idle mode: wait this long after the nodes see each other alive before measuring")
	fs.IntVar(&cfg.CreateCounters, "create-counters", 0, "create mode: create this many named counters on one node")
	fs.BoolVar(&cfg.RestartNode, "restart-node", false, "create mode: then measure the first node's memory (RSS, anon and file, Go heap) after the creates, while GET /counters streams, and after a SIGTERM and a restart on its data dir")
	fs.IntVar(&cfg.ChurnCounters, "churn-counters", 0, "churn mode: create this many named counters at an even rate over -duration, sampling memory and disk")
	fs.Var(intList{&cfg.TTLs, 0, 315576000}, "ttl", "churn mode: `list` of ttls in seconds for the counters, one run on a fresh cluster each; 0 for none (e.g. 60,0)")
	fs.DurationVar(&cfg.Tail, "tail", 0, "churn mode: keep sampling this long after the last create (default the largest -ttl plus 3m)")
	fs.DurationVar(&cfg.Sample, "sample", cfg.Sample, "churn mode: time between samples of each node's memory, data file and counters")
	fs.Var(levelList{&cfg.Levels}, "levels", "levels mode: `list` of write levels (?wait=) to measure a change at, -duration each, alternating in -chunk slices (e.g. local,quorum,all)")
	fs.IntVar(&cfg.Keys, "keys", 0, "keys mode: this many changes, each with its own Idempotency-Key, over -counters counters (default 1000), on a fresh cluster, and as many unkeyed ones on another as the baseline; memory and data file with the keys held and once the window retired them")
	fs.DurationVar(&cfg.Window, "idempotency-window", cfg.Window, "keys mode: the nodes' -idempotency-window; make it longer than the keyed changes take, so every key is held when they end")
	fs.BoolVar(&cfg.RESP, "resp", false, "resp mode: redis-benchmark -t incr (-c each of -clients, -P 1 and -P -resp-pipeline) against the RESP port of a -memory node and of a durable one, redis-server (no persistence, and appendfsync always) and Go yardsticks on redcon (an atomic add, and one answered after fdatasync), interleaved, -resp-rounds times; then checks each node counted every INCR")
	fs.Int64Var(&cfg.RESPRequests, "resp-requests", cfg.RESPRequests, "resp mode: INCRs of each redis-benchmark run (-n)")
	fs.IntVar(&cfg.RESPRounds, "resp-rounds", cfg.RESPRounds, "resp mode: rounds, each loading every server once at each pipeline depth")
	fs.IntVar(&cfg.RESPPipeline, "resp-pipeline", cfg.RESPPipeline, "resp mode: the pipeline depth (-P) of the pipelined runs")
	fs.DurationVar(&cfg.ReadyTimeout, "ready-timeout", cfg.ReadyTimeout, "longest wait for started nodes to see each other alive")
	fs.DurationVar(&cfg.AgreeTimeout, "agree-timeout", cfg.AgreeTimeout, "longest wait for the nodes to agree")
	fs.DurationVar(&cfg.StopTimeout, "stop-timeout", cfg.StopTimeout, "time a node gets after SIGTERM before SIGKILL")
	fs.BoolVar(&cfg.Keep, "keep", false, "keep the temporary directory (binary, data dirs, node logs)")
	fs.BoolVar(&cfg.Quiet, "quiet", false, "no progress line on stderr")
	fs.StringVar(&cfg.From, "from", "", "read results from this JSON file instead of running (with -png, -json)")
	fs.BoolVar(&cfg.BareServer, "bare-server", false, "")         // hidden: run as the bare server
	fs.StringVar(&cfg.FsyncServer, "fsync-server", "", "")        // hidden: run as the fsync yardstick, its file here
	fs.BoolVar(&cfg.MemberlistNode, "memberlist-node", false, "") // hidden: run as one memberlist node
	fs.StringVar(&cfg.MemberlistJoin, "memberlist-join", "", "")  // hidden: and join it to this address
	fs.StringVar(&cfg.BareCert, "bare-tls-cert", "", "")          // hidden: the bare server's certificate
	fs.StringVar(&cfg.BareKey, "bare-tls-key", "", "")            // hidden: and its key
	fs.BoolVar(&cfg.BareRESP, "bare-resp", false, "")             // hidden: the yardstick speaks RESP
	fs.Usage = func() {}                                          // flag calls it on every error; help is printed below

	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printUsage(fs, stderr)
		}
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected argument %q (flags look like -clients=8)", fs.Arg(0))
	}
	cfg.Args = args
	given := make(map[string]bool)
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	return cfg, cfg.validate(given)
}

// printUsage prints help for every flag but the hidden ones.
func printUsage(fs *flag.FlagSet, w io.Writer) {
	fmt.Fprintf(w, "Usage: countd-bench [flags]\n\n"+
		"Starts a countd cluster (or uses -addrs), loads it, and compares it with a\n"+
		"bare net/http atomic add measured in the same run and, when the nodes are\n"+
		"durable, with the same add made durable by a group-committed fdatasync.\n\n")
	fs.VisitAll(func(f *flag.Flag) {
		if f.Name == "bare-server" || f.Name == "fsync-server" || f.Name == "bare-resp" || strings.HasPrefix(f.Name, "bare-tls-") || strings.HasPrefix(f.Name, "memberlist-") {
			return
		}
		name, usage := flag.UnquoteUsage(f)
		line := "  -" + f.Name
		if name != "" {
			line += " " + name
		}
		fmt.Fprintf(w, "%s\n    \t%s", line, usage)
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" && f.DefValue != "0s" {
			fmt.Fprintf(w, " (default %s)", f.DefValue)
		}
		fmt.Fprintln(w)
	})
}
