// Package respapi is countd's Redis face: a RESP2/RESP3 server (on
// tidwall/redcon) that turns Redis commands into the same messages to the
// CounterActor the HTTP API sends, through a narrow interface with a
// bounded wait, and writes Redis replies back. It keeps no state of its
// own beyond each connection's (protocol, name, authentication).
//
// server.go owns the listener and the connections; commands.go holds the
// command table, runs each command and batches a pipeline's runs of
// changes into one message to the CounterActor; connection.go,
// counters.go, keyspace.go, command.go and info.go are the commands by
// kind; reply.go writes RESP2 or RESP3.
// docs/design.md, "The RESP port", says why it is built this way.
package respapi

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tidwall/redcon"

	"countd/actors"
	"countd/metrics"
)

// Counters is what the commands need from the counter owner.
// actors.Counters implements it; every method bounds its own wait.
type Counters interface {
	Apply(ctx context.Context, ch actors.Change) (*actors.ChangeResult, error)
	// ApplyAll makes every change in order, committed together, and
	// returns one result per change (actors.Counters.ApplyAll).
	ApplyAll(ctx context.Context, chs []actors.Change) ([]actors.ChangeResult, error)
	Lookup(ctx context.Context, counter string) (*actors.CounterValue, error)
	LookupAll(ctx context.Context, names []string) ([]actors.CounterValue, error)
	All(ctx context.Context) (*actors.AllCounters, error)
	Delete(ctx context.Context, counter string) (bool, error)
	ExpireWith(ctx context.Context, m actors.Expire) (*actors.ExpireResult, error)
	Names(ctx context.Context) ([]string, error)
}

var _ Counters = (*actors.Counters)(nil)

// Peers lists the members for INFO replication; actors.Cluster
// implements it.
type Peers interface {
	Peers(ctx context.Context) ([]actors.PeerInfo, error)
}

var _ Peers = (*actors.Cluster)(nil)

// TokenChecker says whether a client token is valid (httpapi.Tokens).
type TokenChecker interface{ Valid(token string) bool }

// Config configures a Server.
type Config struct {
	// Listener is where the server takes connections; it owns it from Open.
	Listener net.Listener
	// TLS, if set, makes the server speak RESP over TLS with this config.
	TLS *tls.Config
	// Node is this node's advertised address (INFO).
	Node string
	// Replica is this process's replica id (INFO run_id).
	Replica string
	// Counters owns the counters.
	Counters Counters
	// Peers, if set, lists the members for INFO replication.
	Peers Peers
	// Tokens, if set, are the client tokens AUTH takes; until a
	// connection authenticates, it may only AUTH, HELLO, RESET and QUIT.
	Tokens TokenChecker
	// RequestTimeout bounds one command's wait for the actors; Counters
	// enforces it, the server only reports it. Zero means 5s.
	RequestTimeout time.Duration
	// Logger receives connection errors. Nil means slog.Default().
	Logger *slog.Logger
	// Metrics, if set, counts commands and connections.
	Metrics *metrics.Metrics
	// Started is when the node started (INFO uptime).
	Started time.Time
}

// Server serves RESP on one listener.
type Server struct {
	cfg Config
	log *slog.Logger
	// ctx bounds the commands' waits for the actors; Close cancels it.
	ctx    context.Context
	cancel context.CancelFunc

	mu     sync.Mutex
	srv    *redcon.Server
	ln     net.Listener
	served chan error // serve's result, once Close has stopped it

	conns   sync.WaitGroup // connections being served
	nextID  atomic.Int64   // CLIENT ID
	clients atomic.Int64   // connected clients (INFO)
}

// NewServer returns a server for cfg. It does not serve until Open.
func NewServer(cfg Config) *Server {
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Started.IsZero() {
		cfg.Started = time.Now()
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{cfg: cfg, log: cfg.Logger, ctx: ctx, cancel: cancel}
}

// Open starts serving cfg.Listener in the background.
func (s *Server) Open() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		return errors.New("respapi: already open")
	}
	if s.cfg.Listener == nil {
		return errors.New("respapi: no listener")
	}
	ln := s.cfg.Listener
	if s.cfg.TLS != nil {
		ln = tls.NewListener(ln, s.cfg.TLS)
	}
	ln = guardListener{ln}
	s.ln = ln
	s.srv = redcon.NewServerNetwork("tcp", ln.Addr().String(), s.handle, s.accept, s.closed)
	srv, served := s.srv, make(chan error, 1)
	s.served = served
	go func() { served <- srv.Serve(ln) }()
	return nil
}

// Addr returns the address the server listens on, or nil before Open.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Port returns the port the server listens on, or 0 before Open.
func (s *Server) Port() int {
	if a, ok := s.Addr().(*net.TCPAddr); ok {
		return a.Port
	}
	return 0
}

// Close stops accepting connections, closes the open ones and waits,
// until ctx ends, for the commands in flight to return from the actors.
// It is safe to call more than once.
func (s *Server) Close(ctx context.Context) error {
	s.mu.Lock()
	srv, served := s.srv, s.served
	s.srv = nil
	s.mu.Unlock()
	if srv == nil {
		return nil
	}
	// redcon closes the listener, then every connection as Serve returns.
	err := srv.Close()
	if serr := <-served; serr != nil && !errors.Is(serr, net.ErrClosed) {
		err = serr
	}
	done := make(chan struct{})
	go func() { s.conns.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		s.cancel() // the waits for the actors end now
		<-done
	}
	s.cancel()
	return err
}

// client is one connection's state; only its connection's goroutine
// touches it.
type client struct {
	id     int64
	name   string
	lib    string // CLIENT SETINFO lib-name
	libVer string // CLIENT SETINFO lib-ver
	proto  int    // 2 or 3
	authed bool
	buf    []byte // scratch for replies written raw
	// changes and results are reused from one pipeline run to the next.
	changes []actors.Change
}

func (s *Server) newClient() *client {
	return &client{id: s.nextID.Add(1), proto: 2, authed: s.cfg.Tokens == nil}
}

func (s *Server) accept(conn redcon.Conn) bool {
	s.conns.Add(1)
	s.clients.Add(1)
	s.cfg.Metrics.RESPConnection(1)
	conn.SetContext(s.newClient())
	return true
}

func (s *Server) closed(conn redcon.Conn, err error) {
	if err != nil {
		s.log.Debug("resp connection ended", "remote", conn.RemoteAddr(), "err", err)
	}
	s.clients.Add(-1)
	s.cfg.Metrics.RESPConnection(-1)
	s.conns.Done()
}

// handle runs cmd and every command the connection has buffered behind it
// (a pipeline), in order; redcon flushes the replies after it returns.
func (s *Server) handle(conn redcon.Conn, cmd redcon.Command) {
	c := conn.Context().(*client)
	if s.run(c, conn, cmd, conn.ReadPipeline()) {
		conn.Close() // QUIT: redcon flushes the replies first
	}
}
