// Package httpapi is countd's HTTP face: the gorilla/mux routes that turn
// client requests into messages for the actors (through narrow interfaces,
// with a bounded wait) and JSON replies back.
package httpapi

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"countd/actors"
	"countd/auth"
	"countd/metrics"
)

// Counters is what the handlers need from the counter owner.
// actors.Counters implements it. Every method must bound its own wait
// (Counters waits at most its timeout): the handlers pass the request's
// context through rather than wrap each request in a timer of their own,
// which costs several percent of throughput on the hot path.
type Counters interface {
	Apply(ctx context.Context, ch actors.Change) (*actors.ChangeResult, error)
	Delete(ctx context.Context, counter string) (bool, error)
	Expire(ctx context.Context, counter string, ttl time.Duration, nx bool) (*actors.ExpireResult, error)
	Lookup(ctx context.Context, counter string) (*actors.CounterValue, error)
	// Range calls fn with every counter that exists, in order of name,
	// without copying them all first (actors.Counters.Range).
	Range(ctx context.Context, fn func(actors.CounterValue) error) error
}

// Config configures a Server.
type Config struct {
	// Addr is the address to listen on, host:port; port 0 picks a free one.
	Addr string
	// Listener, if set, is used instead of listening on Addr.
	Listener net.Listener
	// Node is this node's advertised address, reported in every reply.
	Node string
	// Replica is this process's replica id, reported by /health.
	Replica string
	// Counters owns the counters.
	Counters Counters
	// Cluster owns membership and replication.
	Cluster Cluster
	// Levels reaches the members for ?wait=quorum|all (wait.go) and
	// serves GET /entries/{name}; nil makes this node its only member.
	Levels Levels
	// RequestTimeout is how long the Counters and Cluster implementations
	// wait for the actors (past it the client gets 503); the server uses it
	// to size its write timeout. Zero means 5s.
	RequestTimeout time.Duration
	// Logger receives request errors. Nil means slog.Default().
	Logger *slog.Logger
	// Started is when the node started, for the status page's uptime.
	Started time.Time
	// Metrics, if set, records requests and client changes and is served
	// at GET /metrics.
	Metrics *metrics.Metrics
	// Pprof serves Go's profiles at /debug/pprof/.
	Pprof bool
	// Keys, if set, is the cluster keyring: node-to-node and membership
	// requests, and the profiles, must be signed with one of its keys
	// (auth.go). Nil means they are taken only from loopback addresses.
	Keys *auth.Keyring
	// Insecure, with no Keys, takes node-to-node and membership requests
	// from any address (-insecure).
	Insecure bool
	// Tokens, if set, are the client tokens the client API and /metrics
	// need as Authorization: Bearer (token.go).
	Tokens *Tokens
	// TLS, if set, makes the server serve HTTPS with this config.
	TLS *tls.Config
	// Snapshot, if set, takes a consistent copy of the node's data file
	// for GET /backup (backup.go): its contents, to read once and close,
	// and their size in bytes. store.DB.Snapshot is one. Nil (a -memory
	// node) makes GET /backup answer 409.
	Snapshot func() (io.ReadCloser, int64, error)
	// Prober, if set, serves POST /probe: it health-checks a node for a
	// peer that cannot reach it (an indirect probe, probe.go), within
	// ProbeTimeout (zero means 1s).
	Prober       Prober
	ProbeTimeout time.Duration
	// PeerCerts makes the node-to-node routes require a client
	// certificate that TLS verified (nodeOnly); TLS must then verify client
	// certificates that are given.
	PeerCerts bool
}

// Server serves the countd HTTP API.
type Server struct {
	cfg      Config
	log      *slog.Logger
	handler  http.Handler
	nodeJSON []byte // Node as a JSON string, encoded once

	hist history // the status page's charts, sampled while watched (history.go)

	mu       sync.Mutex
	ln       net.Listener
	srv      *http.Server
	serveErr chan error

	draining atomic.Bool // Close has begun: every reply closes its connection (drain.go)
	connMu   sync.Mutex
	conns    map[net.Conn]connInfo // every open connection's state, for the drain
}

// NewServer returns a server for cfg. It does not listen until Open.
func NewServer(cfg Config) *Server {
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Server{cfg: cfg, log: cfg.Logger, nodeJSON: jsonString(cfg.Node)}
	s.handler = s.routes()
	return s
}

// Handler returns the server's routes, for tests with httptest.
func (s *Server) Handler() http.Handler { return s.handler }

// Open starts listening on cfg.Addr and serving in the background.
func (s *Server) Open() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		return errors.New("httpapi: already open")
	}
	ln := s.cfg.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", s.cfg.Addr); err != nil {
			return fmt.Errorf("httpapi: %w", err)
		}
	}
	if s.cfg.TLS != nil {
		ln = tls.NewListener(ln, s.cfg.TLS)
	}
	ln = &onceCloseListener{Listener: ln} // closed by the drain, then by Shutdown
	s.ln = ln
	s.srv = &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      s.cfg.RequestTimeout + 5*time.Second,
		IdleTimeout:       90 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		ConnState:         s.trackConn,
	}
	srv, errc := s.srv, make(chan error, 1)
	s.serveErr = errc
	go func() { errc <- srv.Serve(ln) }()
	s.hist.open(s.read)
	return nil
}

// Port returns the port the server listens on, or 0 before Open.
func (s *Server) Port() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return 0
	}
	return s.ln.Addr().(*net.TCPAddr).Port
}

// Close stops accepting connections, drains the open ones (drain.go) and
// waits, until ctx ends, for requests in flight to finish. It is safe to
// call more than once.
func (s *Server) Close(ctx context.Context) error {
	s.mu.Lock()
	srv, errc, ln := s.srv, s.serveErr, s.ln
	s.srv = nil
	s.mu.Unlock()
	if srv == nil {
		return nil
	}
	s.hist.close()
	s.drain(ctx, ln)
	// Shutdown waits up to 5s for a connection that never sent a request
	// (golang/go#22682); peers' transports leave such connections behind.
	// The drain is over, so close every connection not in a request, until
	// Shutdown returns.
	done := make(chan error, 1)
	go func() { done <- srv.Shutdown(ctx) }()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	var err error
	for waiting := true; waiting; {
		s.closeQuiet(0)
		select {
		case err = <-done:
			waiting = false
		case <-tick.C:
		}
	}
	if err != nil {
		srv.Close()
	}
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) && !errors.Is(serr, net.ErrClosed) {
		return fmt.Errorf("httpapi: serve: %w", serr)
	}
	if err != nil {
		return fmt.Errorf("httpapi: shutdown: %w", err)
	}
	return nil
}
