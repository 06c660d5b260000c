// Command countd runs one node of a countd cluster: a distributed counter
// whose nodes converge on the same values through crashes, restarts and
// partitions.
//
//	go run main.go -port=8080 -peers=8081,8082 -newnode=8083
//
// Every flag can also be set with an environment variable COUNTD_<FLAG>,
// for example COUNTD_PEERS=8081,8082; a flag on the command line wins.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"countd/node"
	"countd/wire"
)

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stderr))
}

// run is main without the exit: it returns 0 after a clean shutdown, 1 when
// the node fails, and 2 for bad flags.
func run(args []string, getenv func(string) string, stderr io.Writer) int {
	cfg, err := parseConfig(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "countd:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	n, err := node.Open(cfg)
	if err != nil {
		cfg.Logger.Error("start failed", "err", err)
		return 1
	}
	<-ctx.Done()
	stop()
	cfg.Logger.Info("shutting down")
	if err := n.Close(); err != nil {
		cfg.Logger.Error("shutdown failed", "err", err)
		return 1
	}
	return 0
}

// parseConfig reads the flags, falling back to COUNTD_* environment variables
// for flags not given, and builds the node's configuration and logger.
func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (node.Config, error) {
	cfg := node.DefaultConfig()
	fs := flag.NewFlagSet("countd", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported in one line by run
	var (
		peers, newNodes, dataDir string
		logFormat, logLevel      string
	)
	fs.IntVar(&cfg.Port, "port", cfg.Port, "port to listen on")
	fs.StringVar(&cfg.Bind, "bind", cfg.Bind, "interface to listen on (0.0.0.0 for multi-host)")
	fs.StringVar(&cfg.Advertise, "advertise", "", "address other nodes use for this node (default 127.0.0.1:<port>)")
	fs.StringVar(&peers, "peers", "", "peers to register at start, comma separated: port, host:port or http://host:port")
	fs.StringVar(&newNodes, "newnode", "", "addresses to add to the running cluster right after start (same forms as -peers)")
	fs.StringVar(&dataDir, "data-dir", "", "where the node keeps its durable state (default data/<port>)")
	fs.BoolVar(&cfg.Memory, "memory", false, "keep no state on disk")
	fs.BoolVar(&cfg.Pprof, "pprof", false, "serve Go's profiles at /debug/pprof/ (for measuring; off in production)")
	fs.StringVar(&logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.DurationVar(&cfg.RequestTimeout, "request-timeout", cfg.RequestTimeout, "longest an HTTP request waits before 503")
	fs.DurationVar(&cfg.HeartbeatInterval, "heartbeat-interval", cfg.HeartbeatInterval, "mean time between health checks of a peer")
	fs.DurationVar(&cfg.HeartbeatTimeout, "heartbeat-timeout", cfg.HeartbeatTimeout, "timeout of one health check or push")
	fs.IntVar(&cfg.FailuresBeforeDown, "failures-before-down", cfg.FailuresBeforeDown, "failed health checks in a row before a peer is down")
	fs.DurationVar(&cfg.FlushDelay, "flush-delay", cfg.FlushDelay, "wait after a change before pushing it, to batch changes")
	fs.DurationVar(&cfg.RetryMin, "retry-min", cfg.RetryMin, "first backoff after a failed push")
	fs.DurationVar(&cfg.RetryMax, "retry-max", cfg.RetryMax, "longest backoff between failed pushes")
	fs.DurationVar(&cfg.AntiEntropyInterval, "anti-entropy-interval", cfg.AntiEntropyInterval, "mean time between full-state pushes to each peer")
	fs.DurationVar(&cfg.DownProbeMax, "down-probe-max", cfg.DownProbeMax, "longest backoff between probes of a down peer")
	fs.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", cfg.ShutdownTimeout, "longest a graceful shutdown waits")
	fs.Usage = func() {} // flag calls it on every error; help is printed below
	usage := func() {
		fmt.Fprintf(stderr, "Usage: countd [flags]\n\nEvery flag also reads COUNTD_<FLAG> (e.g. COUNTD_PEERS).\n\n")
		fs.SetOutput(stderr)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}

	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage()
		}
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected argument %q (flags look like -port=8080)", fs.Arg(0))
	}
	if err := applyEnv(fs, getenv); err != nil {
		return cfg, err
	}
	var err error
	if cfg.Peers, err = wire.ParseAddrList(peers); err != nil {
		return cfg, fmt.Errorf("invalid value for flag -peers: %w", err)
	}
	if cfg.NewNodes, err = wire.ParseAddrList(newNodes); err != nil {
		return cfg, fmt.Errorf("invalid value for flag -newnode: %w", err)
	}
	if cfg.Advertise != "" {
		if cfg.Advertise, err = wire.ParseAddr(cfg.Advertise); err != nil {
			return cfg, fmt.Errorf("invalid value for flag -advertise: %w", err)
		}
	}
	cfg.DataDir = dataDir
	if cfg.DataDir == "" {
		cfg.DataDir = filepath.Join("data", strconv.Itoa(cfg.Port))
	}
	if err := cfg.Validate(); err != nil {
		return cfg, fmt.Errorf("invalid value for flag %w", err)
	}
	if cfg.Logger, err = newLogger(logFormat, logLevel, stderr); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// applyEnv sets every flag not given on the command line from COUNTD_<FLAG>.
func applyEnv(fs *flag.FlagSet, getenv func(string) string) error {
	given := make(map[string]bool)
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if err != nil || given[f.Name] {
			return
		}
		env := "COUNTD_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v := getenv(env); v != "" {
			if serr := fs.Set(f.Name, v); serr != nil {
				err = fmt.Errorf("invalid value %q for %s (flag -%s): %v", v, env, f.Name, serr)
			}
		}
	})
	return err
}

func newLogger(format, level string, w io.Writer) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("invalid value %q for flag -log-level: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("invalid value %q for flag -log-format: want text or json", format)
}
