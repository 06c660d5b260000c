package faultnet

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"countd/internal/poll"
)

// Muted wraps base so that every request is lost (ErrDropped) while muted
// is set: a node cut off from everyone, whatever the Network's rules say.
// The flag outlives the transport, so a node restarted while muted stays
// muted.
func Muted(muted *atomic.Bool, base http.RoundTripper) http.RoundTripper {
	return &muteTransport{muted: muted, base: base}
}

type muteTransport struct {
	muted *atomic.Bool
	base  http.RoundTripper
}

func (m *muteTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if m.muted.Load() {
		closeBody(req)
		return nil, ErrDropped
	}
	return m.base.RoundTrip(req)
}

func (m *muteTransport) CloseIdleConnections() {
	if c, ok := m.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// Relisten listens on addr again, for a node restarted on its own port. The
// port was the node's, but an outgoing connection may briefly hold it as its
// local port, so it retries for a while.
func Relisten(addr string) (net.Listener, error) {
	var ln net.Listener
	var err error
	_, perr := poll.Until(context.Background(), 5*time.Second, 20*time.Millisecond, "listen again on "+addr, func() (bool, string) {
		ln, err = net.Listen("tcp", addr)
		return err == nil, fmt.Sprint(err)
	})
	if perr != nil {
		return nil, fmt.Errorf("listen again on %s: %w", addr, err)
	}
	return ln, nil
}
