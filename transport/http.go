// Package transport carries node-to-node traffic: HTTP implements
// actors.Transport over the countd API (GET /health, POST /replicate,
// POST /probe).
package transport

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"countd/actors"
	"countd/auth"
	"countd/metrics"
	"countd/wire"
)

// HTTP is the transport between nodes: actors.Transport over the countd
// API. It reuses keep-alive connections to each peer.
type HTTP struct {
	http    *http.Client
	metrics *metrics.Metrics // nil: none
	keys    *auth.Keyring    // nil: requests go unsigned
}

var _ actors.Transport = (*HTTP)(nil)

// New returns a transport that sends through rt; nil means a transport
// of its own with keep-alive connections. It records pushes and heartbeats
// in m, which may be nil.
func New(rt http.RoundTripper, m *metrics.Metrics) *HTTP {
	if rt == nil {
		rt = NewRoundTripper()
	}
	return &HTTP{http: &http.Client{Transport: rt}, metrics: m}
}

// NewRoundTripper returns the round tripper HTTP uses by default.
func NewRoundTripper() *http.Transport {
	return &http.Transport{
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
	}
}

// SignWith makes c sign every request it sends with keys (see package
// auth) and returns c. Call it before c is used.
func (c *HTTP) SignWith(keys *auth.Keyring) *HTTP {
	c.keys = keys
	return c
}

// NewTLSRoundTripper returns the round tripper of a node that serves
// HTTPS: NewRoundTripper's, over TLS with cfg. Peers are named host:port
// and reached over https, whatever scheme the request names.
func NewTLSRoundTripper(cfg *tls.Config) http.RoundTripper {
	rt := NewRoundTripper()
	rt.TLSClientConfig = cfg
	return httpsOnly{rt}
}

// httpsOnly sends every request over https.
type httpsOnly struct{ rt *http.Transport }

func (h httpsOnly) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Scheme != "https" {
		r = r.Clone(r.Context())
		r.URL.Scheme = "https"
	}
	return h.rt.RoundTrip(r)
}

// CloseIdleConnections closes rt's idle connections, so that
// http.Client.CloseIdleConnections reaches them.
func (h httpsOnly) CloseIdleConnections() { h.rt.CloseIdleConnections() }

// CloseIdleConnections closes the transport's idle keep-alive connections.
func (c *HTTP) CloseIdleConnections() { c.http.CloseIdleConnections() }

// Health implements actors.Transport with GET /health.
func (c *HTTP) Health(ctx context.Context, addr string) (wire.HealthReply, error) {
	var reply wire.HealthReply
	err := c.do(ctx, http.MethodGet, addr, "/health", nil, &reply)
	if err == nil && reply.Status != "ok" {
		err = fmt.Errorf("%s reports status %q", addr, reply.Status)
	}
	return reply, err
}

// CheckRTT implements actors.RTTObserver: the actors time each successful
// check of a node (a health check, or a PeerActor's probe push).
func (c *HTTP) CheckRTT(rtt time.Duration) { c.metrics.Heartbeat(rtt) }

// Replicate implements actors.Transport with POST /replicate.
func (c *HTTP) Replicate(ctx context.Context, addr string, req *wire.ReplicateRequest) (*wire.ReplicateReply, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	var reply wire.ReplicateReply
	err = c.do(ctx, http.MethodPost, addr, "/replicate", body, &reply)
	c.metrics.Pushed(len(body), len(req.Entries), err)
	if err != nil {
		return nil, err
	}
	return &reply, nil
}

// Probe implements actors.Transport with POST /probe: via health-checks
// target and answers with target's reply.
func (c *HTTP) Probe(ctx context.Context, via, target string) (wire.HealthReply, error) {
	body, err := json.Marshal(&wire.ProbeRequest{Target: target})
	if err != nil {
		return wire.HealthReply{}, err
	}
	var reply wire.HealthReply
	err = c.do(ctx, http.MethodPost, via, "/probe", body, &reply)
	if err == nil && reply.Status != "ok" {
		err = fmt.Errorf("%s via %s reports status %q", target, via, reply.Status)
	}
	return reply, err
}

// Leave tells the node at addr that this node is shutting down, with
// POST /leave (docs/design.md, section 7, "Graceful leave").
func (c *HTTP) Leave(ctx context.Context, addr string, req *wire.LeaveRequest) error {
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	var reply wire.LeaveReply
	return c.do(ctx, http.MethodPost, addr, "/leave", body, &reply)
}

func (c *HTTP) do(ctx context.Context, method, addr, path string, body []byte, out any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+addr+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.keys != nil {
		c.keys.Sign(req, body, time.Now())
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, wire.MaxBody))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		json.Unmarshal(data, &e)
		if resp.StatusCode == http.StatusUnauthorized {
			return fmt.Errorf("%s %s%s: %w: %s", method, addr, path, actors.ErrUnauthorized, e.Error)
		}
		return fmt.Errorf("%s %s%s: status %d: %s", method, addr, path, resp.StatusCode, e.Error)
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s %s%s: %w", method, addr, path, err)
	}
	return nil
}
