package httpapi

import (
	"context"
	"net"
	"net/http"
	"sync"
	"time"
)

// A graceful stop drains the server before it shuts it down, so that no
// client has a request cut off: a request cut off after it was sent leaves
// the client not knowing whether its change was applied. http.Server's
// Shutdown alone closes every idle keep-alive connection at once, and a
// client that is just sending on one then sees the connection reset. So
// Close first
//
//   - closes the listener: a client that connects from now on is refused,
//     which tells it plainly that nothing was applied, so it can go to
//     another node;
//   - answers every request with "Connection: close", so each client learns
//     from a reply, not from a reset, that its connection is done;
//   - closes a connection only once it has been idle (or never carried a
//     request) for drainQuiet: a client that keeps sending comes back well
//     within it and gets its Connection: close;
//
// and ends the drain when no connection is left, or after maxDrain.

const (
	// maxDrain bounds the drain, so that a client holding a connection
	// open cannot hold up the rest of the stop.
	maxDrain = time.Second
	// drainQuiet is how long a connection must have been idle before a
	// drain closes it.
	drainQuiet = 250 * time.Millisecond
)

// onceCloseListener closes its listener once; closing it again is not an
// error, as http.Server.Shutdown's close after the drain's must not be.
type onceCloseListener struct {
	net.Listener
	once sync.Once
	err  error
}

func (l *onceCloseListener) Close() error {
	l.once.Do(func() { l.err = l.Listener.Close() })
	return l.err
}

// connInfo is a connection's last state, and when it entered it (only
// kept for the states a drain closes: not for StateActive, the state of
// every request, whose clock read would be wasted).
type connInfo struct {
	state http.ConnState
	since time.Time
}

// trackConn (http.Server's ConnState hook) keeps every open connection's
// state, for the drain.
func (s *Server) trackConn(c net.Conn, st http.ConnState) {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	switch st {
	case http.StateClosed, http.StateHijacked:
		delete(s.conns, c)
	default:
		if s.conns == nil {
			s.conns = make(map[net.Conn]connInfo)
		}
		ci := connInfo{state: st}
		if st != http.StateActive {
			ci.since = time.Now()
		}
		s.conns[c] = ci
	}
}

// closeQuiet closes every connection that has been idle, or open without a
// request, for at least quiet, and returns how many connections are left.
func (s *Server) closeQuiet(quiet time.Duration) int {
	now := time.Now()
	s.connMu.Lock()
	defer s.connMu.Unlock()
	for c, ci := range s.conns {
		if ci.state != http.StateActive && now.Sub(ci.since) >= quiet {
			c.Close()
			delete(s.conns, c)
		}
	}
	return len(s.conns)
}

// closeWhenDraining asks the client, once a drain has begun, to close the
// connection after this reply.
func (s *Server) closeWhenDraining(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.draining.Load() {
			w.Header().Set("Connection", "close")
		}
		next.ServeHTTP(w, r)
	})
}

// drain stops taking connections and waits, within ctx and maxDrain, for
// the open ones to end (see the top of this file).
func (s *Server) drain(ctx context.Context, ln net.Listener) {
	// Listener first: a client that reconnects after a Connection: close
	// must find it closed, not sit in its accept queue when it closes.
	ln.Close() // Serve returns; the connections it took go on
	s.draining.Store(true)
	ctx, cancel := context.WithTimeout(ctx, maxDrain)
	defer cancel()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for s.closeQuiet(drainQuiet) > 0 {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
