// Package faultnet injects network faults between in-process countd nodes.
// It wraps each node's outgoing http.RoundTripper, so the real HTTP code
// runs and only delivery changes: links can be cut one way or both, and
// requests dropped (before delivery), replies lost (after delivery),
// delayed (which reorders them) or duplicated.
package faultnet

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// ErrDropped is what a sender sees for a request or reply the network lost.
var ErrDropped = errors.New("faultnet: dropped")

// Rule is the behaviour of one direction of one link. The zero Rule is a
// perfect link.
type Rule struct {
	Cut       bool          // nothing gets through
	Drop      float64       // chance a request is lost before delivery
	DropReply float64       // chance a reply is lost after delivery
	Duplicate float64       // chance a request is delivered twice
	Delay     time.Duration // added to every request
	Jitter    time.Duration // a random extra delay up to this, which reorders
}

type link struct{ from, to string }

// Network holds the rules between named nodes (their advertised addresses).
// It is safe for concurrent use.
type Network struct {
	mu    sync.Mutex
	rules map[link]Rule
	all   Rule // applies to links without a rule of their own
	rng   *rand.Rand

	Sent, Dropped, Duplicated atomic.Int64
}

// New returns a network of perfect links whose random choices come from seed.
func New(seed uint64) *Network {
	return &Network{rules: make(map[link]Rule), rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

// Set sets the rule for traffic from one node to another (one direction).
func (n *Network) Set(from, to string, r Rule) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.rules[link{from, to}] = r
}

// SetAll sets the rule for every link that has no rule of its own.
func (n *Network) SetAll(r Rule) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.all = r
}

// Partition cuts every link between nodes of different groups, both ways.
func (n *Network) Partition(groups ...[]string) {
	for i, g := range groups {
		for j, h := range groups {
			if i == j {
				continue
			}
			for _, a := range g {
				for _, b := range h {
					n.Set(a, b, Rule{Cut: true})
				}
			}
		}
	}
}

// Heal removes every rule.
func (n *Network) Heal() {
	n.mu.Lock()
	defer n.mu.Unlock()
	clear(n.rules)
	n.all = Rule{}
}

func (n *Network) rule(from, to string) Rule {
	n.mu.Lock()
	defer n.mu.Unlock()
	if r, ok := n.rules[link{from, to}]; ok {
		return r
	}
	return n.all
}

func (n *Network) chance(p float64) bool {
	if p <= 0 {
		return false
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.rng.Float64() < p
}

func (n *Network) jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return time.Duration(n.rng.Int64N(int64(d)))
}

// Transport returns a RoundTripper for traffic sent by node from, passing
// what survives the rules to base (nil: a new http.Transport).
func (n *Network) Transport(from string, base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = &http.Transport{MaxIdleConnsPerHost: 4}
	}
	return &transport{net: n, from: from, base: base}
}

type transport struct {
	net  *Network
	from string
	base http.RoundTripper
}

// CloseIdleConnections lets http.Client.CloseIdleConnections reach base.
func (t *transport) CloseIdleConnections() {
	if c, ok := t.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	n := t.net
	r := n.rule(t.from, req.URL.Host)
	n.Sent.Add(1)
	if d := r.Delay + n.jitter(r.Jitter); d > 0 {
		select {
		case <-time.After(d):
		case <-req.Context().Done():
			return nil, req.Context().Err()
		}
	}
	if r.Cut || n.chance(r.Drop) {
		n.Dropped.Add(1)
		closeBody(req)
		return nil, ErrDropped
	}
	var body []byte
	if req.Body != nil {
		var err error
		if body, err = io.ReadAll(req.Body); err != nil {
			return nil, err
		}
		req.Body.Close()
	}
	if n.chance(r.Duplicate) {
		n.Duplicated.Add(1)
		if resp, err := t.base.RoundTrip(withBody(req, body)); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	resp, err := t.base.RoundTrip(withBody(req, body))
	if err != nil {
		return nil, err
	}
	if n.chance(r.DropReply) {
		n.Dropped.Add(1)
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return nil, ErrDropped
	}
	return resp, nil
}

func withBody(req *http.Request, body []byte) *http.Request {
	r := req.Clone(req.Context())
	if body != nil {
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
	}
	return r
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}
