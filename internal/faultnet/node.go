package faultnet

import (
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"time"
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
	var err error
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		var ln net.Listener
		if ln, err = net.Listen("tcp", addr); err == nil {
			return ln, nil
		}
	}
	return nil, fmt.Errorf("listen again on %s: %w", addr, err)
}
