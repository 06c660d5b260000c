// Package node wires one countd node together: the store, the actor system
// with its CounterActor, and the HTTP server. main parses flags into a
// Config and runs a Node; tests run several Nodes in one process.
package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"countd/actors"
	"countd/certs"
	"countd/crdt"
	"countd/httpapi"
	"countd/metrics"
	"countd/respapi"
	"countd/store"
	"countd/transport"
)

// StoreFile is the name of the store file inside the data dir.
const StoreFile = "countd.db"

// Node is one running countd node.
type Node struct {
	cfg     Config
	log     *slog.Logger
	replica string
	known   []string // the member addresses the store recorded, as loaded
	started time.Time

	db      *store.DB // nil in memory mode
	sys     *actor.ActorSystem
	counter *actor.PID
	sup     *actor.PID
	client  *actors.Counters
	cluster *actors.Cluster
	peerNet *transport.HTTP
	http    *httpapi.Server
	resp    *respapi.Server // nil: no RESP port
	addr    string
	metrics *metrics.Metrics
	tokens  *httpapi.Tokens // nil: no client tokens
	certs   *certs.Store    // nil: plain HTTP

	undo      undoStack // releases what Open took, in reverse
	closeOnce sync.Once
	closeErr  error
	crashed   atomic.Bool // Crash: leave the store's log as a kill -9 would
}

// Open starts a node: it listens, loads the store, takes a fresh replica
// id, starts the actors and begins serving HTTP. Close releases everything
// Open took; if Open fails, it has released it already (cfg.Listener too).
func Open(cfg Config) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		if cfg.Listener != nil {
			cfg.Listener.Close()
		}
		return nil, fmt.Errorf("node: config: %w", err)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	n := &Node{cfg: cfg, started: time.Now()}
	n.log = cfg.Logger
	if err := n.open(); err != nil {
		ctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
		defer cancel()
		if uerr := n.undo.run(ctx); uerr != nil {
			n.log.Warn("releasing what a failed start took", "err", uerr)
		}
		return nil, err
	}
	return n, nil
}

// open runs the steps of Open in order; each pushes onto n.undo what
// releases what it took.
func (n *Node) open() error {
	if err := n.loadSecurity(); err != nil {
		return err
	}
	ln, err := n.listen()
	if err != nil {
		return err
	}
	state, st, removed, err := n.openStore()
	if err != nil {
		return err
	}
	loaded := state.Len() // the CounterActor owns state from here on
	if err := n.startActors(state, st, removed); err != nil {
		return err
	}
	if err := n.startHTTP(ln); err != nil {
		return err
	}
	if err := n.startRESP(); err != nil {
		return err
	}
	n.registerPeers()
	n.startDiscovery()
	n.undo.push(n.leave) // first of all at Close: see leave.go
	n.log.Info("node started", "listen", ln.Addr().String(),
		"memory", n.cfg.Memory, "data", n.dataPath(), "counters", loaded, "cluster_keys", n.keyIDs())
	if n.cfg.Insecure && n.cfg.openToOtherHosts() {
		n.log.Warn("-insecure: no cluster key, so anyone who reaches " + ln.Addr().String() +
			" can change every counter and the membership; give every node the same -cluster-key-file")
	}
	return nil
}

// listen takes the listener (cfg.Listener, or one on Bind:Port); from here
// on the node's address, and so its name in the logs, is known.
func (n *Node) listen() (net.Listener, error) {
	ln := n.cfg.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", net.JoinHostPort(n.cfg.Bind, strconv.Itoa(n.cfg.Port))); err != nil {
			return nil, fmt.Errorf("node: %w", err)
		}
	}
	n.undo.push(func(context.Context) error {
		// Closed already if the HTTP server took it.
		if err := ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			return fmt.Errorf("node: close listener: %w", err)
		}
		return nil
	})
	n.cfg.Port = ln.Addr().(*net.TCPAddr).Port
	n.addr = n.cfg.advertise()
	n.log = n.log.With("node", n.addr)
	return ln, nil
}

// openStore takes this process's replica id, and loads the durable state
// and the tombstones, or makes an empty state in memory mode (st nil). st
// is what the CounterActor writes to.
//
// A process on a data file takes the next incarnation of the file's
// lineage (store.DB.Start) and folds its earlier incarnations' entries
// into one per counter (crdt.State.Fold) before it serves anything, so
// restarts do not add entries. A memory-mode process is the first
// incarnation of a lineage of its own.
func (n *Node) openStore() (state *crdt.State, st actors.Store, removed []string, err error) {
	limits := crdt.Limits{MaxCounters: n.cfg.MaxCounters, MaxEntries: n.cfg.MaxEntries, MaxKeys: n.cfg.IdempotencyMaxKeys}
	if n.cfg.Memory {
		n.setReplica(crdt.NewReplicaID())
		state = crdt.New(n.replica)
		state.SetLimits(limits)
		return state, nil, nil, nil
	}
	db, err := store.Open(filepath.Join(n.cfg.DataDir, StoreFile))
	if err != nil {
		return nil, nil, nil, err
	}
	n.undo.push(func(context.Context) error { // waits for a write in flight
		if n.crashed.Load() {
			return db.Abandon()
		}
		return db.Close()
	})
	if r := db.Recovery(); r.SetAside != "" {
		n.log.Error("write-ahead log not replayed: set aside", "why", r.Reason, "moved_to", r.SetAside)
	} else if r.Replayed > 0 {
		n.log.Info("replayed the write-ahead log", "records", r.Replayed, "bytes", r.Bytes)
	}
	start, err := db.Start()
	if err != nil {
		return nil, nil, nil, err
	}
	n.setReplica(start.Replica)
	if start.NewLineage {
		n.log.Info("data file starts a new lineage", "why", start.Reason)
	}
	state = crdt.New(n.replica)
	state.SetHigh(start.High)
	entries, err := db.Load()
	if err == nil {
		err = state.Load(entries)
	}
	if err != nil {
		return nil, nil, nil, fmt.Errorf("node: loading %s: %w", db.Path(), err)
	}
	// Limits apply to what comes after the load: a store that holds more
	// (written under higher limits) is loaded whole.
	state.SetLimits(limits)
	folded := state.Fold()
	if dropped := state.TakeRemoved(); len(dropped) > 0 {
		if err := db.Save(folded, dropped); err != nil {
			return nil, nil, nil, fmt.Errorf("node: folding earlier incarnations: %w", err)
		}
		n.log.Info("folded earlier incarnations", "counters", len(folded), "entries_dropped", len(dropped))
	}
	if removed, err = db.Tombstones(); err != nil {
		return nil, nil, nil, err
	}
	if n.known, err = db.Members(); err != nil {
		return nil, nil, nil, err
	}
	n.db, st = db, db
	if n.cfg.WrapStore != nil {
		st = n.cfg.WrapStore(st)
	}
	return state, st, removed, nil
}

// setReplica sets this process's replica id, which names it in the logs.
func (n *Node) setReplica(id string) {
	n.replica = id
	n.log = n.log.With("replica", id)
}

// startActors starts the actor system, the CounterActor that owns state and
// the Supervisor with no peers yet, and their synchronous faces.
func (n *Node) startActors(state *crdt.State, st actors.Store, removed []string) error {
	n.sys = actor.NewActorSystem(
		actor.WithLoggerFactory(func(s *actor.ActorSystem) *slog.Logger {
			return slog.New(minLevel{n.cfg.Logger.Handler(), slog.LevelWarn}).With("lib", "protoactor")
		}),
		actor.WithDeadLetterRequestLogging(false),
		actor.WithDeadLetterThrottleInterval(10*time.Millisecond),
	)
	n.undo.push(func(context.Context) error { n.sys.Shutdown(); return nil })
	log := n.log
	n.sys.EventStream.Subscribe(func(evt any) {
		if e, ok := evt.(*actor.SupervisorEvent); ok {
			log.Error("actor failed", "actor", e.Child.Id, "directive", e.Directive.String(), "reason", fmt.Sprint(e.Reason))
		}
	})
	// A top-level actor that panics resumes, keeping its state (and, for the
	// Supervisor, its children); only the message that panicked is lost.
	root := n.sys.Root.WithGuardian(actor.NewOneForOneStrategy(10, time.Minute,
		func(any) actor.Directive { return actor.ResumeDirective }))
	n.metrics = metrics.New(metrics.Sources{PeerStates: n.peerStates})

	counter, err := root.SpawnNamed(actors.NewCounterProps(state, st, n.log, n.metrics,
		actors.WithIdempotencyWindow(n.cfg.IdempotencyWindow)), "counter")
	if err != nil {
		return fmt.Errorf("node: spawn counter: %w", err)
	}
	n.undo.push(func(context.Context) error { n.sys.Root.PoisonFuture(counter).Wait(); return nil })
	n.counter = counter
	if st != nil {
		// Loading decoded every stored entry once more than the state keeps
		// (and the durable copy was made from the state): give that memory
		// back now, rather than as the scavenger gets to it.
		debug.FreeOSMemory()
	}
	n.client = actors.NewCounters(n.sys.Root, counter, n.cfg.RequestTimeout)

	rt := n.cfg.RoundTripper
	if rt == nil && n.certs != nil {
		rt = transport.NewTLSRoundTripper(n.certs.ClientConfig())
	}
	n.peerNet = transport.New(rt, n.metrics)
	if n.cfg.ClusterKeys != nil {
		n.peerNet.SignWith(n.cfg.ClusterKeys)
	}
	n.undo.push(func(context.Context) error { n.peerNet.CloseIdleConnections(); return nil })
	sup, err := root.SpawnNamed(actors.NewSupervisorProps(n.cfg.supervisorConfig(parts{
		addr:       n.addr,
		log:        n.log,
		counter:    counter,
		transport:  n.peerNet,
		removed:    removed,
		initial:    slices.Concat(n.known, n.cfg.Peers, n.cfg.NewNodes),
		replica:    n.replica,
		tombstones: tombstones(n.db),
		obs:        n.metrics,
	})), "peers")
	if err != nil {
		return fmt.Errorf("node: spawn supervisor: %w", err)
	}
	// The PeerActors push what their peers lack once more, then stop after
	// draining their mailboxes; the CounterActor stops after them.
	n.undo.push(func(ctx context.Context) error {
		n.flushPeers(ctx)
		n.sys.Root.PoisonFuture(sup).Wait()
		return nil
	})
	n.sup = sup
	n.cluster = actors.NewCluster(n.sys.Root, sup, n.client, n.cfg.RequestTimeout).ReadWith(n.peerNet)
	return nil
}

// startHTTP serves the API on ln; from here on the server owns ln.
func (n *Node) startHTTP(ln net.Listener) error {
	var snapshot func() (io.ReadCloser, int64, error) // GET /backup: none in memory mode
	if n.db != nil {
		snapshot = n.db.Snapshot
	}
	n.http = httpapi.NewServer(httpapi.Config{
		Listener:       ln,
		Node:           n.addr,
		Replica:        n.replica,
		Counters:       n.client,
		Cluster:        n.cluster,
		Levels:         n.cluster,
		RequestTimeout: n.cfg.RequestTimeout,
		Logger:         n.log,
		Started:        n.started,
		Metrics:        n.metrics,
		Pprof:          n.cfg.Pprof,
		Keys:           n.cfg.ClusterKeys,
		Insecure:       n.cfg.Insecure,
		Tokens:         n.tokens,
		TLS:            n.serverTLS(),
		PeerCerts:      n.certs != nil && n.certs.VerifiesPeers(),
		Snapshot:       snapshot,
		Prober:         n.peerNet,
		ProbeTimeout:   n.cfg.HeartbeatTimeout,
	})
	if err := n.http.Open(); err != nil {
		return err
	}
	n.undo.push(n.http.Close) // in-flight requests finish, within the shutdown timeout
	return nil
}

// startRESP serves the Redis protocol on -resp-port, if set, beside HTTP;
// Close stops it with HTTP, before the actors.
func (n *Node) startRESP() error {
	ln := n.cfg.RESPListener
	if ln == nil {
		if n.cfg.RESPPort == 0 {
			return nil
		}
		var err error
		if ln, err = net.Listen("tcp", net.JoinHostPort(n.cfg.Bind, strconv.Itoa(n.cfg.RESPPort))); err != nil {
			return &RESPListenError{Err: err}
		}
	}
	cfg := respapi.Config{
		Listener:       ln,
		TLS:            n.serverTLS(),
		Node:           n.addr,
		Replica:        n.replica,
		Counters:       n.client,
		Peers:          n.cluster,
		RequestTimeout: n.cfg.RequestTimeout,
		Logger:         n.log,
		Metrics:        n.metrics,
		Started:        n.started,
	}
	if n.tokens != nil {
		cfg.Tokens = n.tokens
	}
	n.resp = respapi.NewServer(cfg)
	if err := n.resp.Open(); err != nil {
		ln.Close()
		return err
	}
	n.undo.push(n.resp.Close)
	n.log.Info("resp listening", "listen", ln.Addr().String())
	return nil
}

// RESPListenError is Open's error when the node cannot listen on
// -resp-port, so that the message names that flag, not -port.
type RESPListenError struct{ Err error }

func (e *RESPListenError) Error() string { return "node: resp port: " + e.Err.Error() }
func (e *RESPListenError) Unwrap() error { return e.Err }

// RESPAddr returns the address of the RESP port, or "" without one.
func (n *Node) RESPAddr() string {
	if n.resp == nil {
		return ""
	}
	return n.resp.Addr().String()
}

// reloadClusterKey reads the cluster key file again (Reload, on SIGHUP):
// if it is good, the node signs with its first key and takes every key
// from then on; if not, the keys stay as they were and the error says why.
func (n *Node) reloadClusterKey() error {
	if err := n.cfg.ClusterKeys.Reload(); err != nil {
		return err
	}
	n.log.Info("cluster key reloaded", "cluster_keys", n.keyIDs())
	return nil
}

// keyIDs names the cluster keys, the signing one first, for the logs.
func (n *Node) keyIDs() []string {
	if n.cfg.ClusterKeys == nil {
		return nil
	}
	return n.cfg.ClusterKeys.IDs()
}

// registerPeers registers -peers and -newnode; each PeerActor announces
// the members to its peer with its first push.
func (n *Node) registerPeers() {
	for _, addr := range append(slices.Clone(n.cfg.Peers), n.cfg.NewNodes...) {
		if addr != n.addr {
			n.sys.Root.Send(n.sup, &actors.RegisterPeer{Addr: addr})
		}
	}
}

// tombstones returns db as the Supervisor's store, or nil (no store) if db
// is nil: a nil *store.DB in the interface would not compare equal to nil.
func tombstones(db *store.DB) actors.Tombstones {
	if db == nil {
		return nil
	}
	return db
}

func (c *Config) advertise() string {
	if c.Advertise != "" {
		return c.Advertise
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(c.Port))
}

func (n *Node) dataPath() string {
	if n.db == nil {
		return ""
	}
	return n.db.Path()
}

// Addr returns the node's advertised address, host:port.
func (n *Node) Addr() string { return n.addr }

// URL returns the base URL of the node's HTTP API.
func (n *Node) URL() string {
	host := n.cfg.Bind
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	scheme := "http://"
	if n.certs != nil {
		scheme = "https://"
	}
	return scheme + net.JoinHostPort(host, strconv.Itoa(n.cfg.Port))
}

// Replica returns this process's replica id.
func (n *Node) Replica() string { return n.replica }

// Counters returns the node's counter client, for in-process callers.
func (n *Node) Counters() *actors.Counters { return n.client }

// Close shuts the node down in order: it tells its peers it is leaving
// (leave.go), stops HTTP (in-flight requests finish), then the actors (the
// PeerActors flush once), then the store; it undoes Open's steps in
// reverse. It is safe to call more than once.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), n.cfg.ShutdownTimeout)
		defer cancel()
		n.closeErr = n.undo.run(ctx)
		n.log.Info("node stopped")
	})
	return n.closeErr
}

// Crash is Close, except that the store is left as a kill -9 would leave
// it: its write-ahead log is not applied, so the next start on the data
// dir replays it. For in-process tests (internal/testcluster) of recovery.
func (n *Node) Crash() error {
	n.crashed.Store(true)
	return n.Close()
}

// flushPeers pushes, once and within ctx, whatever each peer still lacks.
func (n *Node) flushPeers(ctx context.Context) {
	d := time.Until(deadline(ctx))
	if d <= 0 {
		return
	}
	res, err := n.sys.Root.RequestFuture(n.sup, &actors.GetPeerPIDs{}, d).Result()
	if err != nil {
		return
	}
	var wg sync.WaitGroup
	for _, pid := range res.(*actors.PeerPIDs).PIDs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if d := time.Until(deadline(ctx)); d > 0 {
				n.sys.Root.RequestFuture(pid, &actors.Flush{}, d).Wait()
			}
		}()
	}
	wg.Wait()
}

func deadline(ctx context.Context) time.Time {
	d, ok := ctx.Deadline()
	if !ok {
		return time.Now().Add(time.Second)
	}
	return d
}

// undoStack holds what releases each resource a node took, in the order
// taken; run releases them in reverse.
type undoStack []func(context.Context) error

func (u *undoStack) push(f func(context.Context) error) { *u = append(*u, f) }

// run releases everything, last taken first, and empties the stack. Every
// step runs even if one before it failed; their errors are joined.
func (u *undoStack) run(ctx context.Context) error {
	var errs []error
	for i := len(*u) - 1; i >= 0; i-- {
		if err := (*u)[i](ctx); err != nil {
			errs = append(errs, err)
		}
	}
	*u = nil
	return errors.Join(errs...)
}

// minLevel drops records below a floor, so a library's chatter stays out of
// the node's log at info.
type minLevel struct {
	slog.Handler
	floor slog.Level
}

func (h minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.floor && h.Handler.Enabled(ctx, l)
}

func (h minLevel) WithAttrs(as []slog.Attr) slog.Handler {
	return minLevel{h.Handler.WithAttrs(as), h.floor}
}

func (h minLevel) WithGroup(name string) slog.Handler {
	return minLevel{h.Handler.WithGroup(name), h.floor}
}

// peerStates counts the peers in each state, for the metrics.
func (n *Node) peerStates() map[string]int {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	states, err := n.cluster.States(ctx)
	if err != nil {
		return nil
	}
	return states
}
