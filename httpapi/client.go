package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"countd/actors"
	"countd/metrics"
)

// Client is the HTTP transport between nodes: actors.Transport over the
// countd API. It reuses keep-alive connections to each peer.
type Client struct {
	http    *http.Client
	metrics *metrics.Metrics // nil: none
}

var _ actors.Transport = (*Client)(nil)

// NewClient returns a client that sends through rt; nil means a transport
// of its own with keep-alive connections. It records pushes and heartbeats
// in m, which may be nil.
func NewClient(rt http.RoundTripper, m *metrics.Metrics) *Client {
	if rt == nil {
		rt = NewRoundTripper()
	}
	return &Client{http: &http.Client{Transport: rt}, metrics: m}
}

// NewRoundTripper returns the transport Client uses by default.
func NewRoundTripper() *http.Transport {
	return &http.Transport{
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
	}
}

// CloseIdleConnections closes the client's idle keep-alive connections.
func (c *Client) CloseIdleConnections() { c.http.CloseIdleConnections() }

// Health implements actors.Transport with GET /health.
func (c *Client) Health(ctx context.Context, addr string) (actors.HealthReply, error) {
	var reply actors.HealthReply
	start := time.Now()
	err := c.do(ctx, http.MethodGet, addr, "/health", nil, &reply)
	if err == nil && reply.Status != "ok" {
		err = fmt.Errorf("httpapi: %s reports status %q", addr, reply.Status)
	}
	if err == nil {
		c.metrics.Heartbeat(time.Since(start))
	}
	return reply, err
}

// Replicate implements actors.Transport with POST /replicate.
func (c *Client) Replicate(ctx context.Context, addr string, req *actors.ReplicateRequest) (*actors.ReplicateReply, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	var reply actors.ReplicateReply
	err = c.do(ctx, http.MethodPost, addr, "/replicate", body, &reply)
	c.metrics.Pushed(len(body), len(req.Entries), err)
	if err != nil {
		return nil, err
	}
	return &reply, nil
}

func (c *Client) do(ctx context.Context, method, addr, path string, body []byte, out any) error {
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
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		json.Unmarshal(data, &e)
		return fmt.Errorf("httpapi: %s %s%s: status %d: %s", method, addr, path, resp.StatusCode, e.Error)
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("httpapi: %s %s%s: %w", method, addr, path, err)
	}
	return nil
}
