package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"countd/node"
)

// absPath is p made absolute from the working directory.
func absPath(t *testing.T, p string) string {
	t.Helper()
	abs, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

// envOf returns a getenv over m, so no test reads the real environment.
func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestParseConfig(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		// want edits the expected config, which starts as the defaults
		// with data dir data/8080.
		want func(c *node.Config)
	}{
		{
			name: "defaults",
			want: func(c *node.Config) {},
		},
		{
			name: "port sets the data dir",
			args: []string{"-port=8081"},
			want: func(c *node.Config) { c.Port, c.DataDir = 8081, filepath.Join("data", "8081") },
		},
		{
			name: "port as two arguments",
			args: []string{"-port", "8082"},
			want: func(c *node.Config) { c.Port, c.DataDir = 8082, filepath.Join("data", "8082") },
		},
		{
			name: "data dir beats the port default",
			args: []string{"-port=8081", "-data-dir=/var/lib/countd"},
			want: func(c *node.Config) { c.Port, c.DataDir = 8081, "/var/lib/countd" },
		},
		{
			name: "bind",
			args: []string{"-bind=0.0.0.0", "-insecure"},
			want: func(c *node.Config) { c.Bind = "0.0.0.0"; c.Insecure = true },
		},
		{
			name: "advertise normalised",
			args: []string{"-advertise=http://Node-A:9000/"},
			want: func(c *node.Config) { c.Advertise = "node-a:9000" },
		},
		{
			name: "peers in every form, normalised",
			args: []string{"-peers=8081,localhost:8082,http://127.0.0.1:8083"},
			want: func(c *node.Config) {
				c.Peers = []string{"127.0.0.1:8081", "localhost:8082", "127.0.0.1:8083"}
			},
		},
		{
			name: "peers deduplicated",
			args: []string{"-peers=8081,127.0.0.1:8081,,http://127.0.0.1:8081/"},
			want: func(c *node.Config) { c.Peers = []string{"127.0.0.1:8081"} },
		},
		{
			name: "peers by DNS, deduplicated, beside addresses",
			args: []string{"-peers=8081,dns+Countd.svc:8080,dnssrv+_countd._tcp.countd.svc.,dns+countd.svc.:8080", "-newnode=dnssrvnoa+_c._tcp.x,8082"},
			want: func(c *node.Config) {
				c.Peers, c.NewNodes = []string{"127.0.0.1:8081"}, []string{"127.0.0.1:8082"}
				c.DNSPeers = []string{"dns+countd.svc:8080", "dnssrv+_countd._tcp.countd.svc", "dnssrvnoa+_c._tcp.x"}
			},
		},
		{
			name: "dns interval",
			args: []string{"-peers=dns+c:1"},
			env:  map[string]string{"COUNTD_DNS_INTERVAL": "5s"},
			want: func(c *node.Config) { c.DNSPeers, c.DNSInterval = []string{"dns+c:1"}, 5*time.Second },
		},
		{
			name: "newnode",
			args: []string{"-newnode=8083,http://h:8084"},
			want: func(c *node.Config) { c.NewNodes = []string{"127.0.0.1:8083", "h:8084"} },
		},
		{
			name: "memory",
			args: []string{"-memory"},
			want: func(c *node.Config) { c.Memory = true },
		},
		{
			name: "timing flags",
			args: []string{
				"-request-timeout=2s", "-heartbeat-interval=250ms", "-heartbeat-timeout=100ms",
				"-failures-before-down=5", "-flush-delay=0s", "-retry-min=1ms", "-retry-max=1s",
				"-shutdown-timeout=3s",
			},
			want: func(c *node.Config) {
				c.RequestTimeout = 2 * time.Second
				c.HeartbeatInterval = 250 * time.Millisecond
				c.HeartbeatTimeout = 100 * time.Millisecond
				c.FailuresBeforeDown = 5
				c.FlushDelay = 0
				c.RetryMin, c.RetryMax = time.Millisecond, time.Second
				c.ShutdownTimeout = 3 * time.Second
			},
		},
		{
			name: "membership limits",
			args: []string{"-max-peers=3", "-reap-after=1h"},
			env:  map[string]string{"COUNTD_REAP_AFTER": "2h"}, // the flag wins
			want: func(c *node.Config) { c.MaxPeers, c.ReapAfter = 3, time.Hour },
		},
		{
			name: "limits",
			args: []string{"-max-counters=10", "-max-entries=0"},
			want: func(c *node.Config) { c.MaxCounters, c.MaxEntries = 10, 0 },
		},
		{
			name: "idempotency",
			args: []string{"-idempotency-window=1h"},
			env:  map[string]string{"COUNTD_IDEMPOTENCY_WINDOW": "2h", "COUNTD_IDEMPOTENCY_MAX_KEYS": "5"},
			want: func(c *node.Config) { c.IdempotencyWindow, c.IdempotencyMaxKeys = time.Hour, 5 },
		},
		{
			name: "resp port",
			args: []string{"-resp-port=6379"},
			want: func(c *node.Config) { c.RESPPort = 6379 },
		},
		{
			name: "env resp port",
			env:  map[string]string{"COUNTD_RESP_PORT": "6380"},
			want: func(c *node.Config) { c.RESPPort = 6380 },
		},
		{
			name: "env peers",
			env:  map[string]string{"COUNTD_PEERS": "8081,http://h:2/"},
			want: func(c *node.Config) { c.Peers = []string{"127.0.0.1:8081", "h:2"} },
		},
		{
			name: "env port sets the data dir",
			env:  map[string]string{"COUNTD_PORT": "9000"},
			want: func(c *node.Config) { c.Port, c.DataDir = 9000, filepath.Join("data", "9000") },
		},
		{
			name: "env with a dash in the flag name",
			env: map[string]string{
				"COUNTD_HEARTBEAT_INTERVAL": "2s", "COUNTD_DATA_DIR": "/d",
				"COUNTD_FAILURES_BEFORE_DOWN": "7", "COUNTD_NEWNODE": "8083", "COUNTD_MEMORY": "true",
			},
			want: func(c *node.Config) {
				c.HeartbeatInterval, c.DataDir, c.FailuresBeforeDown = 2*time.Second, "/d", 7
				c.NewNodes, c.Memory = []string{"127.0.0.1:8083"}, true
			},
		},
		{
			name: "flag beats env",
			args: []string{"-port=8081", "-peers=8082"},
			env:  map[string]string{"COUNTD_PORT": "9000", "COUNTD_PEERS": "9001"},
			want: func(c *node.Config) {
				c.Port, c.DataDir, c.Peers = 8081, filepath.Join("data", "8081"), []string{"127.0.0.1:8082"}
			},
		},
		{
			name: "explicit empty flag beats env",
			args: []string{"-peers="},
			env:  map[string]string{"COUNTD_PEERS": "8081"},
			want: func(c *node.Config) {},
		},
		{
			name: "flag beats a bad env value",
			args: []string{"-heartbeat-interval=3s"},
			env:  map[string]string{"COUNTD_HEARTBEAT_INTERVAL": "fast"},
			want: func(c *node.Config) { c.HeartbeatInterval = 3 * time.Second },
		},
		{
			name: "empty env ignored",
			env:  map[string]string{"COUNTD_PORT": "", "COUNTD_PEERS": ""},
			want: func(c *node.Config) {},
		},
		{
			name: "other env ignored",
			env:  map[string]string{"PORT": "1", "PEERS": "8081", "COUNTD_PORTS": "2", "countd_port": "3"},
			want: func(c *node.Config) {},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			got, err := parseConfig(tt.args, envOf(tt.env), &stderr)
			if err != nil {
				t.Fatalf("parseConfig(%q) = error %v", tt.args, err)
			}
			if got.Logger == nil {
				t.Error("Logger is nil")
			}
			got.Logger = nil
			want := node.DefaultConfig()
			want.DataDir = filepath.Join("data", "8080")
			tt.want(&want)
			want.DataDir = absPath(t, want.DataDir)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("parseConfig(%q)\n got %+v\nwant %+v", tt.args, got, want)
			}
			if stderr.Len() != 0 {
				t.Errorf("stderr = %q, want nothing", stderr.String())
			}
		})
	}
}

func TestParseConfigDefaults(t *testing.T) {
	// The contract's defaults, spelled out rather than read from
	// DefaultConfig, so a change there is caught too.
	cfg, err := parseConfig(nil, envOf(nil), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Port != 8080 || cfg.Bind != "127.0.0.1" || cfg.DataDir != absPath(t, filepath.Join("data", "8080")) ||
		cfg.Advertise != "" || cfg.Memory || cfg.Peers != nil || cfg.NewNodes != nil {
		t.Errorf("defaults = port %d, bind %q, data dir %q, advertise %q, memory %v, peers %q, newnode %q; "+
			"want 8080, 127.0.0.1, data/8080, empty, false, none, none",
			cfg.Port, cfg.Bind, cfg.DataDir, cfg.Advertise, cfg.Memory, cfg.Peers, cfg.NewNodes)
	}
}

func TestParseConfigLogger(t *testing.T) {
	tests := []struct {
		name      string
		args      []string
		env       map[string]string
		debug     bool // debug records are logged
		warnOnly  bool // info records are dropped
		jsonLines bool
	}{
		{name: "default text at info"},
		{name: "debug", args: []string{"-log-level=debug"}, debug: true},
		{name: "warn", args: []string{"-log-level=warn"}, warnOnly: true},
		{name: "json", args: []string{"-log-format=json"}, jsonLines: true},
		{name: "env json debug", env: map[string]string{"COUNTD_LOG_FORMAT": "json", "COUNTD_LOG_LEVEL": "DEBUG"},
			debug: true, jsonLines: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			cfg, err := parseConfig(tt.args, envOf(tt.env), &stderr)
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			if got := cfg.Logger.Enabled(ctx, slog.LevelDebug); got != tt.debug {
				t.Errorf("debug enabled = %v, want %v", got, tt.debug)
			}
			if got := cfg.Logger.Enabled(ctx, slog.LevelInfo); got == tt.warnOnly {
				t.Errorf("info enabled = %v, want %v", got, !tt.warnOnly)
			}
			cfg.Logger.Warn("hello", "k", "v")
			line := stderr.String()
			if !strings.Contains(line, "hello") {
				t.Fatalf("logger wrote %q to stderr, want the record", line)
			}
			if isJSON := json.Valid([]byte(strings.TrimSpace(line))); isJSON != tt.jsonLines {
				t.Errorf("log line %q: JSON = %v, want %v", line, isJSON, tt.jsonLines)
			}
		})
	}
}

// badConfigs each must fail with one line that names the culprit.
var badConfigs = []struct {
	name  string
	args  []string
	env   map[string]string
	names []string // each must appear in the error
}{
	{name: "port not a number", args: []string{"-port=abc"}, names: []string{"-port"}},
	{name: "port too big", args: []string{"-port=70000"}, names: []string{"-port"}},
	{name: "port negative", args: []string{"-port=-1"}, names: []string{"-port"}},
	{name: "port without value", args: []string{"-port"}, names: []string{"-port"}},
	{name: "env port not a number", env: map[string]string{"COUNTD_PORT": "abc"}, names: []string{"-port", "COUNTD_PORT"}},
	{name: "env port too big", env: map[string]string{"COUNTD_PORT": "70000"}, names: []string{"-port"}},
	{name: "resp port not a number", args: []string{"-resp-port=redis"}, names: []string{"-resp-port"}},
	{name: "resp port too big", args: []string{"-resp-port=65536"}, names: []string{"-resp-port"}},
	{name: "env resp port negative", env: map[string]string{"COUNTD_RESP_PORT": "-1"}, names: []string{"-resp-port", "COUNTD_RESP_PORT"}},
	{name: "peers with a path", args: []string{"-peers=foo/bar"}, names: []string{"-peers", "foo/bar"}},
	{name: "one bad peer among good", args: []string{"-peers=8081,h:0"}, names: []string{"-peers"}},
	{name: "env peers bad", env: map[string]string{"COUNTD_PEERS": "foo/bar"}, names: []string{"-peers"}},
	{name: "newnode bad", args: []string{"-newnode=h:"}, names: []string{"-newnode"}},
	{name: "advertise bad", args: []string{"-advertise=a/b:1"}, names: []string{"-advertise"}},
	{name: "log level", args: []string{"-log-level=loud"}, names: []string{"-log-level", "loud"}},
	{name: "log format", args: []string{"-log-format=xml"}, names: []string{"-log-format", "xml"}},
	{name: "env log level", env: map[string]string{"COUNTD_LOG_LEVEL": "loud"}, names: []string{"-log-level"}},
	{name: "duration word", args: []string{"-heartbeat-interval=fast"}, names: []string{"-heartbeat-interval"}},
	{name: "duration without unit", args: []string{"-request-timeout=5"}, names: []string{"-request-timeout"}},
	{
		name:  "env duration word",
		env:   map[string]string{"COUNTD_HEARTBEAT_INTERVAL": "fast"},
		names: []string{"-heartbeat-interval", "COUNTD_HEARTBEAT_INTERVAL"},
	},
	{name: "bool not a bool", args: []string{"-memory=maybe"}, names: []string{"-memory"}},
	{name: "env bool not a bool", env: map[string]string{"COUNTD_MEMORY": "yes please"}, names: []string{"-memory"}},
	{name: "int not a number", args: []string{"-failures-before-down=many"}, names: []string{"-failures-before-down"}},
	{name: "unknown flag", args: []string{"-nope=1"}, names: []string{"-nope"}},
	{name: "positional argument", args: []string{"extra"}, names: []string{"extra"}},
	{name: "positional after flags", args: []string{"-port=8081", "8082"}, names: []string{"8082"}},
}

func TestParseConfigErrors(t *testing.T) {
	for _, tt := range badConfigs {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseConfig(tt.args, envOf(tt.env), &bytes.Buffer{})
			if err == nil {
				t.Fatalf("parseConfig(%q, env %v) = nil error", tt.args, tt.env)
			}
			msg := err.Error()
			for _, n := range tt.names {
				if !strings.Contains(msg, n) {
					t.Errorf("error %q does not name %q", msg, n)
				}
			}
			if strings.Contains(msg, "\n") {
				t.Errorf("error %q is more than one line", msg)
			}
		})
	}
}

// TestParseConfigOutOfRange checks values that parse but cannot work are
// refused up front, naming the flag, like -port=70000 is; the node's own
// validation reports them later, as "start failed", without the flag name.
func TestParseConfigOutOfRange(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		names []string // the error must name one of these
	}{
		{"zero request timeout", []string{"-request-timeout=0s"}, []string{"-request-timeout"}},
		{"negative heartbeat interval", []string{"-heartbeat-interval=-1s"}, []string{"-heartbeat-interval"}},
		{"zero heartbeat timeout", []string{"-heartbeat-timeout=0s"}, []string{"-heartbeat-timeout"}},
		{"zero failures before down", []string{"-failures-before-down=0"}, []string{"-failures-before-down"}},
		{"negative flush delay", []string{"-flush-delay=-1ms"}, []string{"-flush-delay"}},
		{"zero retry min", []string{"-retry-min=0s"}, []string{"-retry-min"}},
		{"retry max below min", []string{"-retry-min=1s", "-retry-max=10ms"}, []string{"-retry-max", "-retry-min"}},
		{"zero shutdown timeout", []string{"-shutdown-timeout=0s"}, []string{"-shutdown-timeout"}},
		{"zero max peers", []string{"-max-peers=0"}, []string{"-max-peers"}},
		{"zero reap after", []string{"-reap-after=0s"}, []string{"-reap-after"}},
		{"negative max counters", []string{"-max-counters=-1"}, []string{"-max-counters"}},
		{"negative max entries", []string{"-max-entries=-1"}, []string{"-max-entries"}},
		{"zero idempotency window", []string{"-idempotency-window=0s"}, []string{"-idempotency-window"}},
		{"negative idempotency max keys", []string{"-idempotency-max-keys=-1"}, []string{"-idempotency-max-keys"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseConfig(tt.args, envOf(nil), &bytes.Buffer{})
			if err == nil {
				t.Fatalf("parseConfig(%q) = nil error, want one naming %s", tt.args, strings.Join(tt.names, " or "))
			}
			named := false
			for _, n := range tt.names {
				named = named || strings.Contains(err.Error(), n)
			}
			if !named {
				t.Errorf("error %q names none of %q", err, tt.names)
			}
		})
	}
}

// runBounded calls run, failing the test if it does not return: a bad flag
// that slipped through would start a node and wait for a signal.
func runBounded(t *testing.T, args []string, env map[string]string) (int, string) {
	t.Helper()
	var stderr bytes.Buffer
	done := make(chan int, 1)
	go func() { done <- run(args, envOf(env), &stderr) }()
	select {
	case code := <-done:
		return code, stderr.String()
	case <-time.After(10 * time.Second):
		t.Fatalf("run(%q) did not return: it started a node", args)
		return 0, ""
	}
}

func TestRunBadFlag(t *testing.T) {
	// safe comes first so that, should the bad value slip through, the node
	// run starts keeps nothing on disk and takes no fixed port.
	safe := []string{"-memory", "-port=0"}
	tests := []struct {
		name string
		args []string
		env  map[string]string
		flag string
	}{
		{"port", []string{"-port=abc"}, nil, "-port"},
		{"peers", []string{"-peers=foo/bar"}, nil, "-peers"},
		{"log level", []string{"-log-level=loud"}, nil, "-log-level"},
		{"log format", []string{"-log-format=xml"}, nil, "-log-format"},
		{"duration", []string{"-heartbeat-interval=fast"}, nil, "-heartbeat-interval"},
		{"env duration", nil, map[string]string{"COUNTD_HEARTBEAT_INTERVAL": "fast"}, "-heartbeat-interval"},
		{"env peers", nil, map[string]string{"COUNTD_PEERS": "foo/bar"}, "-peers"},
		{"DNS spec", []string{"-newnode=dns+countd.svc"}, nil, "-newnode"},
		{"env DNS interval", nil, map[string]string{"COUNTD_DNS_INTERVAL": "often"}, "-dns-interval"},
		{"unknown flag", []string{"-nope"}, nil, "-nope"},
		{"positional", []string{"extra"}, nil, "extra"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out := runBounded(t, append(append([]string{}, safe...), tt.args...), tt.env)
			if code != 2 {
				t.Errorf("run = %d, want 2", code)
			}
			if strings.Count(out, "\n") != 1 || !strings.HasSuffix(out, "\n") {
				t.Errorf("stderr = %q, want exactly one line", out)
			}
			if !strings.HasPrefix(out, "countd: ") || !strings.Contains(out, tt.flag) {
				t.Errorf("stderr = %q, want \"countd: ...\" naming %q", out, tt.flag)
			}
		})
	}
}

func TestRunHelp(t *testing.T) {
	for _, arg := range []string{"-h", "-help", "--help"} {
		t.Run(arg, func(t *testing.T) {
			code, out := runBounded(t, []string{arg}, nil)
			if code != 0 {
				t.Errorf("run(%s) = %d, want 0", arg, code)
			}
			for _, want := range []string{"Usage", "-port", "-peers", "-newnode", "COUNTD_",
				"0 picks a free port", "a relative path is from the working directory"} {
				if !strings.Contains(out, want) {
					t.Errorf("help output lacks %q:\n%s", want, out)
				}
			}
		})
	}
}

// TestFlagErrorMessages checks every bad flag value is worded one way,
// invalid value "V" for flag -F: want W, with W the values accepted, from
// the command line or the environment, whether flag, its value type or the
// node's validation refuses it.
func TestFlagErrorMessages(t *testing.T) {
	const (
		port     = "want a whole number from 0 to 65535"
		duration = "want a duration above 0 such as 500ms, 2s or 1m30s"
		addrs    = "want a comma-separated list, each a port (8081, meaning 127.0.0.1:8081), host:port or http://host:port, with a port from 1 to 65535, " +
			"or dns+HOST:PORT, dnssrv+_SERVICE._tcp.DOMAIN or dnssrvnoa+_SERVICE._tcp.DOMAIN"
	)
	tests := []struct {
		args []string
		env  map[string]string
		want string
	}{
		{args: []string{"-port=abc"}, want: `invalid value "abc" for flag -port: ` + port},
		{args: []string{"-port=70000"}, want: `invalid value "70000" for flag -port: ` + port},
		{args: []string{"-port=-1"}, want: `invalid value "-1" for flag -port: ` + port},
		{args: []string{"-port"}, want: `flag -port needs a value: ` + port},
		{env: map[string]string{"COUNTD_PORT": "abc"}, want: `invalid value "abc" for COUNTD_PORT (flag -port): ` + port},
		{args: []string{"-resp-port=x"}, want: `invalid value "x" for flag -resp-port: want a whole number from 0 (no RESP port) to 65535`},
		{args: []string{"-memory=maybe"}, want: `invalid value "maybe" for flag -memory: want true or false`},
		{env: map[string]string{"COUNTD_PPROF": "yes"}, want: `invalid value "yes" for COUNTD_PPROF (flag -pprof): want true or false`},
		{args: []string{"-peers=8081,foo/bar"}, want: `invalid value "8081,foo/bar" for flag -peers: "foo/bar" is not a peer address; ` + addrs},
		{args: []string{"-newnode=h:0"}, want: `invalid value "h:0" for flag -newnode: "h:0" is not a peer address; ` + addrs},
		{args: []string{"-peers=8081,dns+countd"}, want: `invalid value "8081,dns+countd" for flag -peers: "dns+countd": want dns+HOST:PORT; ` + addrs},
		{args: []string{"-newnode=dnssrv+countd.svc"}, want: `invalid value "dnssrv+countd.svc" for flag -newnode: "dnssrv+countd.svc": want dnssrv+_SERVICE._tcp.DOMAIN; ` + addrs},
		{env: map[string]string{"COUNTD_PEERS": "dnssrv+_c._tcp.x:80"}, want: `invalid value "dnssrv+_c._tcp.x:80" for COUNTD_PEERS (flag -peers): "dnssrv+_c._tcp.x:80": an SRV name takes no port ("80"): its records give the ports; ` + addrs},
		{args: []string{"-dns-interval=0s"}, want: `invalid value "0s" for flag -dns-interval: ` + duration},
		{args: []string{"-advertise=a/b:1"}, want: `invalid value "a/b:1" for flag -advertise: want a port (8081, meaning 127.0.0.1:8081), host:port or http://host:port, with a port from 1 to 65535`},
		{args: []string{"-log-level=loud"}, want: `invalid value "loud" for flag -log-level: want debug, info, warn or error`},
		{args: []string{"-log-format=xml"}, want: `invalid value "xml" for flag -log-format: want text or json`},
		{args: []string{"-heartbeat-interval=fast"}, want: `invalid value "fast" for flag -heartbeat-interval: ` + duration},
		{args: []string{"-request-timeout=5"}, want: `invalid value "5" for flag -request-timeout: ` + duration},
		{args: []string{"-shutdown-timeout=0s"}, want: `invalid value "0s" for flag -shutdown-timeout: ` + duration},
		{args: []string{"-flush-delay=-1ms"}, want: `invalid value "-1ms" for flag -flush-delay: want a duration of 0 or more such as 0s, 20ms or 1s`},
		{args: []string{"-failures-before-down=0"}, want: `invalid value "0" for flag -failures-before-down: want a whole number of 1 or more`},
		{args: []string{"-retry-min=1s", "-retry-max=10ms"}, want: `invalid value "10ms" for flag -retry-max: want a duration not below -retry-min (1s)`},
		{args: []string{"-max-counters=lots"}, want: `invalid value "lots" for flag -max-counters: want a whole number of 0 (no limit) or more`},
		{args: []string{"-nope=1"}, want: `unknown flag -nope (countd -h lists the flags)`},
		{args: []string{"---x"}, want: `bad flag syntax "---x"; flags look like -port=8080 (countd -h lists them)`},
		{args: []string{"extra"}, want: `unexpected argument "extra"; flags look like -port=8080 (countd -h lists them)`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " ")+fmt.Sprint(tt.env), func(t *testing.T) {
			_, err := parseConfig(tt.args, envOf(tt.env), &bytes.Buffer{})
			if err == nil {
				t.Fatalf("parseConfig(%q, env %v) = nil error", tt.args, tt.env)
			}
			if err.Error() != tt.want {
				t.Errorf("error\n got %s\nwant %s", err, tt.want)
			}
		})
	}
}

// TestValidateWordsLikeFlags checks the node's own validation, which the
// values main cannot check alone reach, words its errors as main does.
func TestValidateWordsLikeFlags(t *testing.T) {
	for _, edit := range []func(c *node.Config){
		func(c *node.Config) { c.Port = 70000 },
		func(c *node.Config) { c.RequestTimeout = 0 },
		func(c *node.Config) { c.FlushDelay = -time.Millisecond },
		func(c *node.Config) { c.RetryMin, c.RetryMax = time.Second, time.Millisecond },
		func(c *node.Config) { c.FailuresBeforeDown = 0 },
		func(c *node.Config) { c.DataDir = "" },
		func(c *node.Config) { c.DNSInterval = 0 },
		func(c *node.Config) { c.DNSPeers = []string{"dns+c:1", "dnssrv+c:1"} },
	} {
		c := node.DefaultConfig()
		c.DataDir = "d"
		edit(&c)
		err := c.Validate()
		if err == nil || !flagErrorForm.MatchString(err.Error()) {
			t.Errorf("Validate = %v, want the form %s", err, flagErrorForm)
		}
	}
}

var flagErrorForm = regexp.MustCompile(`^invalid value "[^"]*" for flag -[a-z-]+: want .+$`)

// TestParseConfigDataDirAbsolute checks the data dir reaches the node as
// an absolute path, relative ones taken from the working directory, so the
// start-up log says where the state is.
func TestParseConfigDataDirAbsolute(t *testing.T) {
	wd := t.TempDir()
	t.Chdir(wd)
	wd, err := os.Getwd() // the temp dir may be reached through a link
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{nil, filepath.Join(wd, "data", "8080")},
		{[]string{"-port=9000"}, filepath.Join(wd, "data", "9000")},
		{[]string{"-data-dir=state"}, filepath.Join(wd, "state")},
		{[]string{"-data-dir=./a/../b/"}, filepath.Join(wd, "b")},
		{[]string{"-data-dir=/var/lib/countd"}, "/var/lib/countd"},
	} {
		cfg, err := parseConfig(tt.args, envOf(nil), &bytes.Buffer{})
		if err != nil {
			t.Fatalf("parseConfig(%q): %v", tt.args, err)
		}
		if cfg.DataDir != tt.want {
			t.Errorf("parseConfig(%q): data dir %q, want %q", tt.args, cfg.DataDir, tt.want)
		}
	}
}

// TestStartLogShowsAbsoluteDataDir starts a node from flags with a relative
// data dir and checks the start-up log names it by its absolute path.
func TestStartLogShowsAbsoluteDataDir(t *testing.T) {
	wd := t.TempDir()
	t.Chdir(wd)
	var logs bytes.Buffer
	cfg, err := parseConfig([]string{"-port=0", "-data-dir=rel", "-log-format=json"}, envOf(nil), &logs)
	if err != nil {
		t.Fatal(err)
	}
	n, err := node.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(logs.String()) {
		var rec struct {
			Msg  string `json:"msg"`
			Data string `json:"data"`
		}
		if json.Unmarshal([]byte(line), &rec) != nil || rec.Msg != "node started" {
			continue
		}
		if !filepath.IsAbs(rec.Data) || !strings.HasPrefix(rec.Data, filepath.Join(cfg.DataDir)+string(filepath.Separator)) {
			t.Errorf("start-up log data = %q, want a path under the absolute %q", rec.Data, cfg.DataDir)
		}
		return
	}
	t.Fatalf("no \"node started\" record in the log:\n%s", logs.String())
}

// TestStartProblemPortInUse checks a node that cannot take its port says
// so in plain words, with what to do.
func TestStartProblemPortInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	cfg, err := parseConfig([]string{"-memory", "-port=" + strconv.Itoa(port)}, envOf(nil), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	n, err := node.Open(cfg)
	if err == nil {
		n.Close()
		t.Fatalf("node.Open on port %d in use succeeded", port)
	}
	msg := startProblem(err, cfg)
	for _, want := range []string{fmt.Sprintf("port %d on 127.0.0.1 is already in use", port), "-port=0"} {
		if !strings.Contains(msg, want) {
			t.Errorf("startProblem = %q, want it to say %q", msg, want)
		}
	}
}

// TestStartProblemRESPPortInUse checks that a RESP port in use is named
// as such: the flag to change is -resp-port, not -port.
func TestStartProblemRESPPortInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	cfg, err := parseConfig([]string{"-memory", "-port=0", "-resp-port=" + strconv.Itoa(port)}, envOf(nil), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	n, err := node.Open(cfg)
	if err == nil {
		n.Close()
		t.Fatalf("node.Open with -resp-port=%d in use succeeded", port)
	}
	msg := startProblem(err, cfg)
	if want := fmt.Sprintf("port %d on 127.0.0.1 is already in use; choose another -resp-port", port); msg != want {
		t.Errorf("startProblem = %q, want %q", msg, want)
	}
}
