package node

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"countd/actors"
	"countd/auth"
	"countd/discovery"
)

// Config configures a Node. Durations are wall-clock time.
type Config struct {
	// Bind is the interface to listen on.
	Bind string
	// Port is the port to listen on; 0 picks a free one (tests).
	Port int
	// RESPPort is the port of the Redis protocol (respapi), on Bind; 0
	// means no RESP port.
	RESPPort int
	// RESPListener, if set, is used for the RESP port instead of listening
	// on Bind:RESPPort; the node closes it. Tests use it for a free port.
	RESPListener net.Listener
	// Advertise is the address other nodes reach this one at, host:port; it
	// is the node's name. Empty means 127.0.0.1:<port>.
	Advertise string
	// Peers are registered at start (normalised host:port).
	Peers []string
	// NewNodes are registered right after start and announced to every peer.
	NewNodes []string
	// DNSPeers are the DNS specs of -peers and -newnode (dns+HOST:PORT,
	// dnssrv+_SERVICE._tcp.DOMAIN, dnssrvnoa+...; see package discovery),
	// resolved at start and every DNSInterval; each address found is
	// registered unless it is this node's or was removed.
	DNSPeers []string
	// DNSInterval is the mean time between resolutions of DNSPeers.
	DNSInterval time.Duration
	// Resolver looks DNSPeers up; nil means the system resolver
	// (net.DefaultResolver). Tests point it at a DNS server of their own.
	Resolver discovery.Resolver
	// DataDir holds the store file. Ignored when Memory is set.
	DataDir string
	// Memory keeps no state on disk.
	Memory bool
	// Pprof serves Go's profiles at /debug/pprof/.
	Pprof bool
	// ClusterKeys, if set, is the cluster keyring (-cluster-key-file): the
	// node signs its node-to-node requests with it and takes node-to-node
	// and membership requests only when signed with one of its keys. Nil
	// means those requests are taken only from loopback addresses.
	ClusterKeys *auth.Keyring
	// Insecure lets a node without ClusterKeys (or TLSCAFile) bind a
	// non-loopback address, and take node-to-node and membership requests
	// from anyone.
	Insecure bool
	// Listener, if set, is used instead of listening on Bind:Port; the node
	// closes it (at once if Open fails). Tests use it to know a node's
	// address before it starts.
	Listener net.Listener

	// RequestTimeout bounds how long an HTTP request waits for the actors.
	RequestTimeout time.Duration
	// HeartbeatInterval is the mean time between health checks of a peer.
	HeartbeatInterval time.Duration
	// HeartbeatTimeout bounds one health check or push.
	HeartbeatTimeout time.Duration
	// FailuresBeforeDown is how many health checks in a row must fail before
	// a peer is marked down.
	FailuresBeforeDown int
	// FlushDelay is how long a peer waits after a change notice before it
	// pushes, so changes close together share one push.
	FlushDelay time.Duration
	// RetryMin and RetryMax bound the backoff between failed pushes.
	RetryMin, RetryMax time.Duration
	// AntiEntropyInterval is the mean time between full-state pushes to
	// each peer, which repair any divergence a lost delta might leave.
	AntiEntropyInterval time.Duration
	// DownProbeMax caps the backoff between probes of a down peer (the
	// first comes after one heartbeat interval), and of a candidate.
	DownProbeMax time.Duration
	// MaxPeers caps the peers a node holds: POST /peers beyond it gets 507,
	// gossip beyond it is ignored (and counted).
	MaxPeers int
	// ReapAfter is how long a peer may stay down before it leaves the
	// membership table on its own (no tombstone: it may join again).
	ReapAfter time.Duration
	// RoundTripper carries node-to-node HTTP; nil means a default
	// keep-alive transport. Tests inject faults here.
	RoundTripper http.RoundTripper
	// ShutdownTimeout bounds a graceful shutdown.
	ShutdownTimeout time.Duration

	// MaxCounters is the most counters client changes may create; a change
	// that would create one more is refused (507). Counters that arrive by
	// replication are always kept. 0 means no limit.
	MaxCounters int
	// MaxEntries is the most replica entries (one per process that changed
	// it) one counter may hold; a push that would give a counter more is
	// refused whole (400). 0 means no limit.
	MaxEntries int
	// IdempotencyWindow is how long a keyed change's key is kept (a retry
	// with the same Idempotency-Key within it is counted once), after
	// which its key entry is retired.
	IdempotencyWindow time.Duration
	// IdempotencyMaxKeys is the most key entries the node holds for a
	// keyed change to add one (507 past it); keys peers send are always
	// kept. 0 means no limit.
	IdempotencyMaxKeys int

	// ClientTokenFile, if set, holds the client tokens (one a line) the
	// client API and /metrics need as Authorization: Bearer.
	ClientTokenFile string
	// TLSCertFile and TLSKeyFile, if set, make the node serve HTTPS and
	// reach its peers over https; TLSCAFile, if set, is the CA its peers'
	// certificates must be signed by, as servers and as clients of the
	// node-to-node routes.
	TLSCertFile, TLSKeyFile, TLSCAFile string

	// Logger receives the node's logs. Nil means slog.Default().
	Logger *slog.Logger

	// WrapStore is a test hook: if set, it wraps the store the CounterActor
	// writes to (the durable store; ignored when Memory is set), so a test
	// can break persistence and check that its checks notice.
	WrapStore func(actors.Store) actors.Store
}

// DefaultConfig returns the configuration of a node on port 8080.
func DefaultConfig() Config {
	return Config{
		Bind:                "127.0.0.1",
		Port:                8080,
		RequestTimeout:      5 * time.Second,
		HeartbeatInterval:   time.Second,
		HeartbeatTimeout:    time.Second,
		FailuresBeforeDown:  3,
		FlushDelay:          20 * time.Millisecond,
		RetryMin:            50 * time.Millisecond,
		RetryMax:            5 * time.Second,
		AntiEntropyInterval: 30 * time.Second,
		DownProbeMax:        10 * time.Second,
		MaxPeers:            256,
		ReapAfter:           24 * time.Hour, // Serf's reconnect timeout
		DNSInterval:         30 * time.Second,
		ShutdownTimeout:     5 * time.Second,
		MaxCounters:         1_000_000,
		MaxEntries:          10_000,
		IdempotencyWindow:   actors.DefaultIdempotencyWindow,
		IdempotencyMaxKeys:  10_000_000,
	}
}

// TestConfig returns a configuration for in-process tests: a free port on
// loopback, no disk, and fast timers.
func TestConfig() Config {
	c := DefaultConfig()
	c.Port = 0
	c.Memory = true
	c.RequestTimeout = 5 * time.Second
	c.HeartbeatInterval = 50 * time.Millisecond
	c.HeartbeatTimeout = 500 * time.Millisecond
	c.FlushDelay = 2 * time.Millisecond
	c.RetryMin = 10 * time.Millisecond
	c.RetryMax = 200 * time.Millisecond
	c.AntiEntropyInterval = 2 * time.Second
	c.DownProbeMax = 500 * time.Millisecond
	c.ShutdownTimeout = 5 * time.Second
	return c
}

// Validate reports the first field out of range, naming it by its flag in
// the words countd uses for every bad flag value:
// invalid value "V" for flag -F: want W.
func (c *Config) Validate() error {
	const positive = "a duration above 0 such as 500ms, 2s or 1m30s"
	bad := func(flag string, v any, want string) error {
		return fmt.Errorf("invalid value \"%v\" for flag -%s: want %s", v, flag, want)
	}
	if c.Port < 0 || c.Port > 65535 {
		return bad("port", c.Port, "a whole number from 0 to 65535")
	}
	if c.RESPPort < 0 || c.RESPPort > 65535 {
		return bad("resp-port", c.RESPPort, "a whole number from 0 (no RESP port) to 65535")
	}
	if !c.Insecure && c.openToOtherHosts() {
		return fmt.Errorf("-bind %s takes requests from other hosts, and without a cluster key anyone who reaches the port could change every counter; "+
			"give every node the same -cluster-key-file (make one with: head -c 32 /dev/urandom | base64 > cluster.key), "+
			"or -tls-ca-file to take node-to-node requests by client certificate, or -insecure to run open", bindName(c.Bind))
	}
	if !c.Memory && c.DataDir == "" {
		return bad("data-dir", "", "a directory (or -memory to keep nothing on disk)")
	}
	if c.FlushDelay < 0 {
		return bad("flush-delay", c.FlushDelay, "a duration of 0 or more such as 0s, 20ms or 1s")
	}
	for _, d := range []struct {
		flag string
		v    time.Duration
	}{
		{"request-timeout", c.RequestTimeout}, {"heartbeat-interval", c.HeartbeatInterval},
		{"heartbeat-timeout", c.HeartbeatTimeout}, {"retry-min", c.RetryMin}, {"retry-max", c.RetryMax},
		{"shutdown-timeout", c.ShutdownTimeout}, {"anti-entropy-interval", c.AntiEntropyInterval},
		{"down-probe-max", c.DownProbeMax}, {"reap-after", c.ReapAfter}, {"dns-interval", c.DNSInterval},
	} {
		if d.v <= 0 {
			return bad(d.flag, d.v, positive)
		}
	}
	if c.RetryMax < c.RetryMin {
		return bad("retry-max", c.RetryMax, fmt.Sprintf("a duration not below -retry-min (%v)", c.RetryMin))
	}
	if c.MaxPeers < 1 {
		return bad("max-peers", c.MaxPeers, "a whole number of 1 or more")
	}
	if c.FailuresBeforeDown < 1 {
		return bad("failures-before-down", c.FailuresBeforeDown, "a whole number of 1 or more")
	}
	if c.MaxCounters < 0 {
		return bad("max-counters", c.MaxCounters, "a whole number of 0 (no limit) or more")
	}
	if c.MaxEntries < 0 {
		return bad("max-entries", c.MaxEntries, "a whole number of 0 (no limit) or more")
	}
	if c.IdempotencyWindow < time.Millisecond {
		return bad("idempotency-window", c.IdempotencyWindow, "a duration of 1ms or more such as 24h")
	}
	if c.IdempotencyMaxKeys < 0 {
		return bad("idempotency-max-keys", c.IdempotencyMaxKeys, "a whole number of 0 (no limit) or more")
	}
	for _, spec := range c.DNSPeers {
		// main has refused a bad spec already, naming its flag; a Config
		// built in code gets the same words, naming -peers.
		if _, err := discovery.ParseSpec(spec); err != nil {
			why := strings.TrimPrefix(err.Error(), fmt.Sprintf("%v %q: ", discovery.ErrBadSpec, spec))
			return bad("peers", spec, "a DNS name in one of the forms "+discovery.Forms+" ("+why+")")
		}
	}
	return nil
}

// openToOtherHosts reports whether the node listens beyond this machine
// with nothing to tell its nodes from strangers: no cluster key and no CA.
// Validate refuses that without -insecure; with it, Open warns.
func (c *Config) openToOtherHosts() bool {
	return c.ClusterKeys == nil && c.TLSCAFile == "" && !loopbackBind(c.Bind)
}

// loopbackBind reports whether listening on bind takes connections only
// from this machine: localhost or a loopback IP. Empty means every
// interface.
func loopbackBind(bind string) bool {
	if bind == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(bind)
	return err == nil && ip.Unmap().IsLoopback()
}

func bindName(bind string) string {
	if bind == "" {
		return `"" (every interface)`
	}
	return bind
}

// parts are what a starting node makes that the actors' configs refer to,
// beside the Config they are derived from.
type parts struct {
	addr       string // this node's advertised address
	replica    string // this process's replica id
	log        *slog.Logger
	counter    *actor.PID // the CounterActor
	transport  actors.Transport
	removed    []string          // tombstoned addresses, as loaded
	initial    []string          // members as loaded, and the flags' peers
	tombstones actors.Tombstones // nil in memory mode
	obs        actors.SupervisorObserver
}

// supervisorConfig derives the Supervisor's config, and the PeerActors'
// within it, from c: every flag that tunes membership or replication is
// mapped here and nowhere else.
func (c *Config) supervisorConfig(p parts) actors.SupervisorConfig {
	return actors.SupervisorConfig{
		Self:    p.addr,
		Replica: p.replica,
		Peer: actors.PeerConfig{
			Self:                p.addr,
			HeartbeatInterval:   c.HeartbeatInterval,
			Timeout:             c.HeartbeatTimeout,
			FailuresBeforeDown:  c.FailuresBeforeDown,
			FlushDelay:          c.FlushDelay,
			RetryMin:            c.RetryMin,
			RetryMax:            c.RetryMax,
			AntiEntropyInterval: c.AntiEntropyInterval,
			Transport:           p.transport,
			Counter:             p.counter,
			Logger:              p.log,
		},
		// A down peer is first probed after one heartbeat interval.
		DownProbeMin: c.HeartbeatInterval,
		DownProbeMax: max(c.DownProbeMax, c.HeartbeatInterval),
		Logger:       p.log,
		Removed:      p.removed,
		Initial:      p.initial,
		Tombstones:   p.tombstones,
		Members:      members(p.tombstones),
		MaxPeers:     c.MaxPeers,
		// A candidate is probed at the down-peer pace and has about a
		// minute (60 heartbeat intervals) to answer as a node.
		CandidateTimeout: 60 * c.HeartbeatInterval,
		ReapAfter:        c.ReapAfter,
		Observer:         p.obs,
	}
}

// members returns the store behind t as the Supervisor's member store, or
// nil in memory mode (t nil).
func members(t actors.Tombstones) actors.MemberStore {
	if m, ok := t.(actors.MemberStore); ok {
		return m
	}
	return nil
}
