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
	"math"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"countd/auth"
	"countd/certs"
	"countd/discovery"
	"countd/httpapi"
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
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP) // before the node starts: a SIGHUP then must not kill it
	defer signal.Stop(hup)

	n, err := node.Open(cfg)
	if err != nil {
		cfg.Logger.Error("start failed", "err", startProblem(err, cfg))
		return 1
	}
	for running := true; running; {
		select {
		case <-ctx.Done():
			running = false
		case <-hup:
			if err := n.Reload(); err != nil {
				cfg.Logger.Error("reload failed; the files in force before stay", "err", err)
			} else {
				cfg.Logger.Info("reloaded the client token, TLS and cluster key files")
			}
		}
	}
	stop()
	cfg.Logger.Info("shutting down")
	if err := n.Close(); err != nil {
		cfg.Logger.Error("shutdown failed", "err", err)
		return 1
	}
	return 0
}

// startProblem says in plain words why the node could not start, for the
// causes a user meets and can fix; any other error it returns as it is.
func startProblem(err error, cfg node.Config) string {
	flag, port, zero := "-port", cfg.Port, ", or -port=0 for a free one"
	if resp := (*node.RESPListenError)(nil); errors.As(err, &resp) {
		flag, port, zero = "-resp-port", cfg.RESPPort, ""
	}
	var op *net.OpError
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		return fmt.Sprintf("port %d on %s is already in use; choose another %s%s", port, cfg.Bind, flag, zero)
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return fmt.Sprintf("-bind %s is not an address of this machine; want 127.0.0.1, 0.0.0.0 or the address of one of its interfaces", cfg.Bind)
	case errors.As(err, &op) && op.Op == "listen":
		return fmt.Sprintf("cannot listen on %s (%s): %v", net.JoinHostPort(cfg.Bind, strconv.Itoa(port)), flag, op.Err)
	}
	return err.Error()
}

// addrForms are the forms of a peer address, as -peers, -newnode and
// -advertise take them.
const addrForms = "a port (8081, meaning 127.0.0.1:8081), host:port or http://host:port, with a port from 1 to 65535"

// peerForms are the forms of an item of -peers and -newnode: an address,
// or a DNS name whose records name peers.
const peerForms = "a port (8081, meaning 127.0.0.1:8081), host:port or http://host:port, with a port from 1 to 65535, or " + discovery.Forms

// A flagDef is one flag: its name, its value, what values it accepts (the
// end of every error about it) and its help text.
type flagDef struct {
	name  string
	value flag.Value
	want  string
	usage string
}

// parseConfig reads the flags, falling back to COUNTD_* environment variables
// for flags not given, and builds the node's configuration and logger. Every
// error about a value reads the same: invalid value "V" for flag -F (or for
// COUNTD_F (flag -F)): want W.
func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (node.Config, error) {
	cfg := node.DefaultConfig()
	var (
		dataDir             string
		peers, newNodes     peerList
		logFormat, logLevel = "text", "info"
		keyFile             string
	)
	const (
		positive = "a duration above 0 such as 500ms, 2s or 1m30s"
		boolean  = "true or false"
	)
	defs := []flagDef{
		{"port", intValue(&cfg.Port, 0, 65535), "a whole number from 0 to 65535",
			"port to listen on; 0 picks a free port, which the start-up log shows"},
		{"resp-port", intValue(&cfg.RESPPort, 0, 65535), "a whole number from 0 (no RESP port) to 65535",
			"port of the Redis protocol (RESP2 and RESP3: redis-cli, any Redis client) on -bind; 0 means none"},
		{"bind", (*stringValue)(&cfg.Bind), "an address of this machine such as 127.0.0.1 or 0.0.0.0",
			"interface to listen on; 0.0.0.0 for multi-host"},
		{"advertise", (*addrValue)(&cfg.Advertise), addrForms,
			"address other nodes use for this node (default 127.0.0.1:<port>)"},
		{"peers", &peers, "a comma-separated list, each " + peerForms,
			"peers to register at start, comma separated: port, host:port, http://host:port, or DNS names re-resolved every -dns-interval: " + discovery.Forms},
		{"newnode", &newNodes, "a comma-separated list, each " + peerForms,
			"addresses to add to the running cluster right after start (same forms as -peers)"},
		{"dns-interval", durationValue(&cfg.DNSInterval, 1), positive,
			"how often the DNS names of -peers and -newnode are resolved again, to find new peers"},
		{"data-dir", (*stringValue)(&dataDir), "a directory",
			"where the node keeps its durable state; a relative path is from the working directory (default data/<port>)"},
		{"memory", boolValue(&cfg.Memory), boolean, "keep no state on disk"},
		{"pprof", boolValue(&cfg.Pprof), boolean, "serve Go's profiles at /debug/pprof/ (for measuring; off in production)"},
		{"log-format", choiceValue(&logFormat, "text", "json"), "text or json", "log format: text or json"},
		{"log-level", choiceValue(&logLevel, "debug", "info", "warn", "error"), "debug, info, warn or error",
			"log level: debug, info, warn or error"},
		{"request-timeout", durationValue(&cfg.RequestTimeout, 1), positive, "longest an HTTP request waits before 503"},
		{"heartbeat-interval", durationValue(&cfg.HeartbeatInterval, 1), positive, "the protocol period: each node probes one peer per period (SWIM)"},
		{"heartbeat-timeout", durationValue(&cfg.HeartbeatTimeout, 1), positive, "timeout of one health check or push"},
		{"failures-before-down", intValue(&cfg.FailuresBeforeDown, 1, math.MaxInt32), "a whole number of 1 or more",
			"failed health checks in a row before a peer is down"},
		{"flush-delay", durationValue(&cfg.FlushDelay, 0), "a duration of 0 or more such as 0s, 20ms or 1s",
			"wait after a change before pushing it, to batch changes"},
		{"retry-min", durationValue(&cfg.RetryMin, 1), positive, "first backoff after a failed push"},
		{"retry-max", durationValue(&cfg.RetryMax, 1), positive + ", not below -retry-min", "longest backoff between failed pushes"},
		{"anti-entropy-interval", durationValue(&cfg.AntiEntropyInterval, 1), positive,
			"mean time between full-state pushes to each peer"},
		{"down-probe-max", durationValue(&cfg.DownProbeMax, 1), positive, "longest backoff between probes of a down peer"},
		{"max-peers", intValue(&cfg.MaxPeers, 1, math.MaxInt32), "a whole number of 1 or more",
			"most peers a node holds; POST /peers beyond it gets 507, gossip beyond it is ignored"},
		{"reap-after", durationValue(&cfg.ReapAfter, 1), positive,
			"how long a peer may stay down before it leaves the membership on its own"},
		{"shutdown-timeout", durationValue(&cfg.ShutdownTimeout, 1), positive, "longest a graceful shutdown waits"},
		// Cluster key (README "Security").
		{"cluster-key-file", (*stringValue)(&keyFile), "a file of keys, one per line, each at least 32 bytes",
			"file of cluster keys, one per line: the first signs node-to-node requests, every one verifies; SIGHUP reloads it"},
		{"insecure", boolValue(&cfg.Insecure), boolean,
			"without -cluster-key-file, allow a non-loopback -bind and take node-to-node requests from anyone"},

		// Security: client tokens and TLS. SIGHUP reloads these files.
		{"client-token-file", (*stringValue)(&cfg.ClientTokenFile), "a file of client tokens, one per line",
			"file of client tokens, one per line: the client API and /metrics then need Authorization: Bearer <token>"},
		{"tls-cert-file", (*stringValue)(&cfg.TLSCertFile), "a PEM certificate file",
			"the node's certificate (PEM): with -tls-key-file, serve HTTPS and reach peers over https"},
		{"tls-key-file", (*stringValue)(&cfg.TLSKeyFile), "a PEM private key file", "the private key of -tls-cert-file (PEM)"},
		{"tls-ca-file", (*stringValue)(&cfg.TLSCAFile), "a PEM CA certificate file",
			"CA (PEM) that signs the cluster's node certificates: peers are verified against it, and node-to-node requests need a client certificate it signed"},

		// Bounds on state: a change past them gets 507, a push past -max-entries 400.
		{"max-counters", intValue(&cfg.MaxCounters, 0, math.MaxInt32), "a whole number of 0 (no limit) or more",
			"most counters client changes may create (counters peers send are always kept)"},
		{"max-entries", intValue(&cfg.MaxEntries, 0, math.MaxInt32), "a whole number of 0 (no limit) or more",
			"most replica entries one counter may hold; a push that would pass it is refused whole"},
		// Idempotency-Key (README "Retries").
		{"idempotency-window", durationValue(&cfg.IdempotencyWindow, time.Millisecond), "a duration of 1ms or more such as 24h",
			"how long a change's Idempotency-Key is kept: a retry within it is counted once"},
		{"idempotency-max-keys", intValue(&cfg.IdempotencyMaxKeys, 0, math.MaxInt32), "a whole number of 0 (no limit) or more",
			"most idempotency keys a node holds; a keyed change that would add one more gets 507"},
	}

	fs := flag.NewFlagSet("countd", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported in one line by run
	fs.Usage = func() {}     // flag calls it on every error; help is printed below
	failed := new(badValue)  // the value a Set refused, whichever way it came
	wants := make(map[string]string, len(defs))
	for _, d := range defs {
		fs.Var(&recording{Value: d.value, name: d.name, failed: failed}, d.name, d.usage)
		wants[d.name] = d.want
	}

	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printUsage(stderr, fs)
			return cfg, err
		}
		return cfg, parseError(err, failed, wants)
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected argument %q; flags look like -port=8080 (countd -h lists them)", fs.Arg(0))
	}
	if err := applyEnv(fs, getenv, failed, wants); err != nil {
		return cfg, err
	}
	cfg.Peers, cfg.NewNodes = peers.addrs, newNodes.addrs
	cfg.DNSPeers = slices.Concat(peers.specs, newNodes.specs)
	cfg.DataDir = dataDir
	if cfg.DataDir == "" {
		cfg.DataDir = filepath.Join("data", strconv.Itoa(cfg.Port))
	}
	// Absolute, so that the start-up log says where the state is whatever
	// the working directory was.
	abs, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return cfg, fmt.Errorf("invalid value %q for flag -data-dir: %v", cfg.DataDir, err)
	}
	cfg.DataDir = abs
	if keyFile != "" {
		if cfg.ClusterKeys, err = auth.Load(keyFile); err != nil {
			return cfg, fmt.Errorf("invalid value %q for flag -cluster-key-file: %s", keyFile, strings.TrimPrefix(err.Error(), "auth: "))
		}
	}
	if err := cfg.Validate(); err != nil {
		return cfg, err
	}
	if err := checkSecurityFiles(cfg); err != nil {
		return cfg, err
	}
	cfg.Logger = newLogger(logFormat, logLevel, stderr)
	return cfg, nil
}

// checkSecurityFiles reads the client token and TLS files as the node will,
// so that a missing or bad file is a flag error (exit 2), not a failed start.
func checkSecurityFiles(cfg node.Config) error {
	if cfg.ClientTokenFile != "" {
		if _, err := httpapi.LoadTokens(cfg.ClientTokenFile); err != nil {
			return err
		}
	}
	if cfg.TLSCertFile != "" || cfg.TLSKeyFile != "" || cfg.TLSCAFile != "" {
		if _, err := certs.Load(certs.Files{Cert: cfg.TLSCertFile, Key: cfg.TLSKeyFile, CA: cfg.TLSCAFile}); err != nil {
			return err
		}
	}
	return nil
}

// badValue is the value a flag's Set last refused.
type badValue struct {
	name, value string
	err         error
}

// recording wraps a flag's Value to remember a value it refuses, so the
// error can be worded one way for every flag: flag's own wording differs
// between bool flags and others.
type recording struct {
	flag.Value
	name   string
	failed *badValue
}

func (r *recording) Set(s string) error {
	err := r.Value.Set(s)
	if err != nil {
		*r.failed = badValue{name: r.name, value: s, err: err}
	}
	return err
}

func (r *recording) IsBoolFlag() bool {
	b, ok := r.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// valueError words a refused value: where it came from, what is wrong with
// it (if the value's Set says more than that it is invalid), and what is
// accepted.
func valueError(from string, b *badValue, want string) error {
	msg := fmt.Sprintf("invalid value %q for %s: ", b.value, from)
	if !errors.Is(b.err, errInvalid) {
		msg += b.err.Error() + "; "
	}
	return errors.New(msg + "want " + want)
}

// parseError rewords an error of flag.FlagSet.Parse.
func parseError(err error, failed *badValue, wants map[string]string) error {
	if failed.name != "" {
		return valueError("flag -"+failed.name, failed, wants[failed.name])
	}
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: -"); ok {
		return fmt.Errorf("unknown flag -%s (countd -h lists the flags)", name)
	}
	if name, ok := strings.CutPrefix(msg, "flag needs an argument: -"); ok {
		return fmt.Errorf("flag -%s needs a value: want %s", name, wants[name])
	}
	if arg, ok := strings.CutPrefix(msg, "bad flag syntax: "); ok {
		return fmt.Errorf("bad flag syntax %q; flags look like -port=8080 (countd -h lists them)", arg)
	}
	return err
}

// applyEnv sets every flag not given on the command line from COUNTD_<FLAG>.
func applyEnv(fs *flag.FlagSet, getenv func(string) string, failed *badValue, wants map[string]string) error {
	given := make(map[string]bool)
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if err != nil || given[f.Name] {
			return
		}
		env := envName(f.Name)
		if v := getenv(env); v != "" {
			if fs.Set(f.Name, v) != nil {
				err = valueError(fmt.Sprintf("%s (flag -%s)", env, f.Name), failed, wants[f.Name])
			}
		}
	})
	return err
}

func envName(flagName string) string {
	return "COUNTD_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// printUsage writes the help -h asks for.
func printUsage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage: countd [flags]\n\n"+
		"Every flag also reads COUNTD_<FLAG> (e.g. COUNTD_PEERS, COUNTD_DATA_DIR); a flag on the command line wins.\n\n")
	fs.VisitAll(func(f *flag.Flag) {
		kind := ""
		if k, ok := f.Value.(*recording).Value.(interface{ kind() string }); ok {
			kind = " " + k.kind()
		}
		fmt.Fprintf(w, "  -%s%s\n    \t%s", f.Name, kind, f.Usage)
		if f.DefValue != "" && f.DefValue != "false" {
			fmt.Fprintf(w, " (default %s)", f.DefValue)
		}
		fmt.Fprintln(w)
	})
}

func newLogger(format, level string, w io.Writer) *slog.Logger {
	var lvl slog.Level
	lvl.UnmarshalText([]byte(level)) // choiceValue took only names it knows
	opts := &slog.HandlerOptions{Level: lvl}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// errInvalid is what a flag value's Set returns when the value is not of
// the flag's kind or range; the message then says only what is wanted.
var errInvalid = errors.New("invalid")

// intVal is an int flag from min to max.
type intVal struct {
	p        *int
	min, max int
}

func intValue(p *int, min, max int) *intVal { return &intVal{p, min, max} }
func (v *intVal) String() string            { return strconv.Itoa(*v.p) }
func (v *intVal) kind() string              { return "int" }
func (v *intVal) Set(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil || n < v.min || n > v.max {
		return errInvalid
	}
	*v.p = n
	return nil
}

// durationVal is a duration flag of min or more.
type durationVal struct {
	p   *time.Duration
	min time.Duration
}

func durationValue(p *time.Duration, min time.Duration) *durationVal { return &durationVal{p, min} }
func (v *durationVal) String() string                                { return v.p.String() }
func (v *durationVal) kind() string                                  { return "duration" }
func (v *durationVal) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil || d < v.min {
		return errInvalid
	}
	*v.p = d
	return nil
}

// boolVal is a bool flag: -memory alone means -memory=true.
type boolVal bool

func boolValue(p *bool) *boolVal    { return (*boolVal)(p) }
func (v *boolVal) String() string   { return strconv.FormatBool(bool(*v)) }
func (v *boolVal) IsBoolFlag() bool { return true }
func (v *boolVal) Set(s string) error {
	b, err := strconv.ParseBool(s)
	if err != nil {
		return errInvalid
	}
	*v = boolVal(b)
	return nil
}

// stringValue is a string flag that takes any text.
type stringValue string

func (v *stringValue) String() string     { return string(*v) }
func (v *stringValue) kind() string       { return "string" }
func (v *stringValue) Set(s string) error { *v = stringValue(s); return nil }

// choiceVal is a string flag that takes one of a few names, in any case.
type choiceVal struct {
	p       *string
	choices []string
}

func choiceValue(p *string, choices ...string) *choiceVal { return &choiceVal{p, choices} }
func (v *choiceVal) String() string                       { return *v.p }
func (v *choiceVal) kind() string                         { return "string" }
func (v *choiceVal) Set(s string) error {
	if !slices.Contains(v.choices, strings.ToLower(s)) {
		return errInvalid
	}
	*v.p = strings.ToLower(s)
	return nil
}

// addrValue is one peer address flag, normalised to host:port; empty means
// unset.
type addrValue string

func (v *addrValue) String() string { return string(*v) }
func (v *addrValue) kind() string   { return "address" }
func (v *addrValue) Set(s string) error {
	if s == "" {
		*v = ""
		return nil
	}
	a, err := wire.ParseAddr(s)
	if err != nil {
		return errInvalid
	}
	*v = addrValue(a)
	return nil
}

// peerList is a comma-separated list of peer addresses, normalised to
// host:port, and DNS specs (package discovery), each without duplicates or
// empty items.
type peerList struct {
	addrs []string
	specs []string
}

func (v *peerList) String() string { return strings.Join(slices.Concat(v.addrs, v.specs), ",") }
func (v *peerList) kind() string   { return "list" }
func (v *peerList) Set(s string) error {
	var list peerList
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		switch {
		case item == "":
		case discovery.IsSpec(item):
			spec, err := discovery.ParseSpec(item)
			if err != nil {
				// The spec's own error says what is wrong with it.
				return errors.New(strings.TrimPrefix(err.Error(), discovery.ErrBadSpec.Error()+" "))
			}
			if !slices.Contains(list.specs, spec.String()) {
				list.specs = append(list.specs, spec.String())
			}
		default:
			a, err := wire.ParseAddr(item)
			if err != nil {
				// Name the item at fault: in a list, the whole value does not.
				return fmt.Errorf("%q is not a peer address", item)
			}
			if !slices.Contains(list.addrs, a) {
				list.addrs = append(list.addrs, a)
			}
		}
	}
	*v = list
	return nil
}
