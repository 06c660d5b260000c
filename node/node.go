// Package node wires one countd node together: the store, the actor system
// with its CounterActor, and the HTTP server. main parses flags into a
// Config and runs a Node; tests run several Nodes in one process.
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"countd/actors"
	"countd/crdt"
	"countd/httpapi"
	"countd/metrics"
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
	started time.Time

	db      *store.DB // nil in memory mode
	sys     *actor.ActorSystem
	counter *actor.PID
	sup     *actor.PID
	client  *actors.Counters
	cluster *actors.Cluster
	peerNet *transport.HTTP
	http    *httpapi.Server
	addr    string
	metrics *metrics.Metrics

	closeOnce sync.Once
	closeErr  error
}

// Open starts a node: it loads the store, takes a fresh replica id, starts
// the actors and begins serving HTTP. Close releases everything Open took.
func Open(cfg Config) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("node: config: %w", err)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	n := &Node{cfg: cfg, replica: crdt.NewReplicaID(), started: time.Now()}
	n.log = cfg.Logger.With("replica", n.replica)

	state := crdt.New(n.replica)
	var st actors.Store
	var removed []string
	if !cfg.Memory {
		db, err := store.Open(filepath.Join(cfg.DataDir, StoreFile))
		if err != nil {
			return nil, err
		}
		entries, err := db.Load()
		if err == nil {
			_, err = state.Merge(entries)
		}
		if err != nil {
			db.Close()
			return nil, fmt.Errorf("node: loading %s: %w", db.Path(), err)
		}
		if removed, err = db.Tombstones(); err != nil {
			db.Close()
			return nil, err
		}
		n.db, st = db, db
		if cfg.WrapStore != nil {
			st = cfg.WrapStore(st)
		}
	}

	loaded := state.Len() // the CounterActor owns state from here on
	n.sys = actor.NewActorSystem(
		actor.WithLoggerFactory(func(s *actor.ActorSystem) *slog.Logger {
			return slog.New(minLevel{cfg.Logger.Handler(), slog.LevelWarn}).With("lib", "protoactor")
		}),
		actor.WithDeadLetterRequestLogging(false),
		actor.WithDeadLetterThrottleInterval(10*time.Millisecond),
	)
	actorLog := n.log // n.log gains the node's address later; this closure must not race with that
	n.sys.EventStream.Subscribe(func(evt any) {
		if e, ok := evt.(*actor.SupervisorEvent); ok {
			actorLog.Error("actor failed", "actor", e.Child.Id, "directive", e.Directive.String(), "reason", fmt.Sprint(e.Reason))
		}
	})
	// A top-level actor that panics resumes, keeping its state (and, for the
	// Supervisor, its children); only the message that panicked is lost.
	root := n.sys.Root.WithGuardian(actor.NewOneForOneStrategy(10, time.Minute,
		func(any) actor.Directive { return actor.ResumeDirective }))
	n.metrics = metrics.New(metrics.Sources{PeerStates: n.peerStates})
	counter, err := root.SpawnNamed(actors.NewCounterProps(state, st, n.log, n.metrics), "counter")
	if err != nil {
		n.closeStore()
		return nil, fmt.Errorf("node: spawn counter: %w", err)
	}
	n.counter = counter
	n.client = actors.NewCounters(n.sys.Root, counter, cfg.RequestTimeout)

	ln := cfg.Listener
	if ln == nil {
		ln, err = net.Listen("tcp", net.JoinHostPort(cfg.Bind, strconv.Itoa(cfg.Port)))
	}
	if err != nil {
		n.stopActors()
		n.closeStore()
		return nil, fmt.Errorf("node: %w", err)
	}
	n.cfg.Port = ln.Addr().(*net.TCPAddr).Port
	n.addr = n.cfg.advertise()
	n.log = n.log.With("node", n.addr)
	n.peerNet = transport.New(cfg.RoundTripper, n.metrics)
	supProps := actors.NewSupervisorProps(actors.SupervisorConfig{
		Self: n.addr,
		Peer: actors.PeerConfig{
			Self:                n.addr,
			HeartbeatInterval:   cfg.HeartbeatInterval,
			Timeout:             cfg.HeartbeatTimeout,
			FailuresBeforeDown:  cfg.FailuresBeforeDown,
			FlushDelay:          cfg.FlushDelay,
			RetryMin:            cfg.RetryMin,
			RetryMax:            cfg.RetryMax,
			AntiEntropyInterval: cfg.AntiEntropyInterval,
			Transport:           n.peerNet,
			Counter:             counter,
			Logger:              n.log,
		},
		Removed:      removed,
		Tombstones:   tombstones(n.db),
		DownProbeMin: cfg.HeartbeatInterval,
		DownProbeMax: max(cfg.DownProbeMax, cfg.HeartbeatInterval),
		Logger:       n.log,
	})
	n.sup, err = root.SpawnNamed(supProps, "peers")
	if err != nil {
		ln.Close()
		n.stopActors()
		n.closeStore()
		return nil, fmt.Errorf("node: spawn supervisor: %w", err)
	}
	n.cluster = actors.NewCluster(n.sys.Root, n.sup, n.client, cfg.RequestTimeout)
	n.http = httpapi.NewServer(httpapi.Config{
		Listener:       ln,
		Node:           n.addr,
		Replica:        n.replica,
		Counters:       n.client,
		Cluster:        n.cluster,
		RequestTimeout: cfg.RequestTimeout,
		Logger:         n.log,
		Started:        n.started,
		Metrics:        n.metrics,
		Pprof:          cfg.Pprof,
	})
	if err := n.http.Open(); err != nil {
		ln.Close()
		n.stopActors()
		n.closeStore()
		return nil, err
	}
	for _, addr := range append(slices.Clone(cfg.Peers), cfg.NewNodes...) {
		if addr != n.addr {
			n.sys.Root.Send(n.sup, &actors.RegisterPeer{Addr: addr})
		}
	}
	n.log.Info("node started", "listen", ln.Addr().String(),
		"memory", cfg.Memory, "data", n.dataPath(), "counters", loaded)
	return n, nil
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
	return "http://" + net.JoinHostPort(host, strconv.Itoa(n.cfg.Port))
}

// Replica returns this process's replica id.
func (n *Node) Replica() string { return n.replica }

// Counters returns the node's counter client, for in-process callers.
func (n *Node) Counters() *actors.Counters { return n.client }

// Close shuts the node down in order: HTTP first (in-flight requests finish),
// then the actors, then the store. It is safe to call more than once.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), n.cfg.ShutdownTimeout)
		defer cancel()
		var errs []error
		if err := n.http.Close(ctx); err != nil {
			errs = append(errs, err)
		}
		n.flushPeers(ctx)
		n.stopActors()
		n.peerNet.CloseIdleConnections()
		if err := n.closeStore(); err != nil {
			errs = append(errs, err)
		}
		n.closeErr = errors.Join(errs...)
		n.log.Info("node stopped")
	})
	return n.closeErr
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

// stopActors stops the top-level actors after they drain their mailboxes.
func (n *Node) stopActors() {
	if n.sup != nil {
		n.sys.Root.PoisonFuture(n.sup).Wait()
	}
	if n.counter != nil {
		n.sys.Root.PoisonFuture(n.counter).Wait()
	}
	n.sys.Shutdown()
}

// closeStore closes the store; bbolt first waits for a write in flight.
func (n *Node) closeStore() error {
	if n.db == nil {
		return nil
	}
	return n.db.Close()
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
	peers, err := n.cluster.Peers(ctx)
	if err != nil {
		return nil
	}
	out := make(map[string]int, 3)
	for _, p := range peers {
		out[p.State]++
	}
	return out
}
