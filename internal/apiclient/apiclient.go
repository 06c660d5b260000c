// Package apiclient is a client for countd's HTTP API (the README's API section) for
// tests and tools: the in-process cluster harness (internal/testcluster), the
// process tests of e2e and cmd/countd-bench. It changes counters (Change,
// Post), reads JSON endpoints (GetJSON, Counters, Peers, Replica), removes
// peers (RemovePeer) and renders peer tables for messages.
//
// It also holds the one rule for what a client knows about a change it sent
// (Classify: applied, not applied, or unknown) and the one Ledger that adds
// those outcomes up into the bounds a converged counter must lie in. Every
// test and tool that checks outcomes uses these two, so they cannot disagree.
//
// It imports nothing of countd, so a test that runs the node as a process
// can use it and still test only the binary.
package apiclient

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// Result is the result of one change.
type Result struct {
	Outcome Outcome
	Status  int // the reply's HTTP status; 0 if no reply came
	// Counter, Value and Node are the fields of a 2xx reply's body: the
	// counter changed, its value and the node that answered; zero if the
	// body was unreadable.
	Counter string
	Value   int64
	Node    string
	// ExpiresIn is the counter's expires_in (seconds) in a 2xx reply, 0
	// if it has no expiry.
	ExpiresIn int64
	// Replayed is set when the reply said Idempotent-Replayed: true: the
	// change's Idempotency-Key was known, and nothing was counted again.
	Replayed bool
	// Err says why the outcome is not OK; on OK it is set only when the
	// 2xx reply's body could not be read or decoded, or the reply was a
	// 504 (applied, the write level not reached): Value is then unknown.
	Err error
}

// Client talks to countd nodes over HTTP. The zero value uses
// http.DefaultClient; a Client is safe for concurrent use if HTTP is.
type Client struct {
	// HTTP sends every request. Its Timeout bounds one request; set it above
	// the node's own request timeout, so a stuck node answers 503 before the
	// client gives up.
	HTTP *http.Client
}

func (c Client) http() *http.Client {
	if c.HTTP == nil {
		return http.DefaultClient
	}
	return c.HTTP
}

// Change adds delta (non-zero) to counter on the node at baseURL
// ("http://host:port"), with POST /counters/{counter}/increment?by=delta or
// .../decrement?by=-delta, and classifies the outcome (see Classify). It
// never returns an error of its own: everything is in the Result.
func (c Client) Change(baseURL, counter string, delta int64) Result {
	return c.ChangeContext(context.Background(), baseURL, counter, delta)
}

// ChangeContext is Change with a context, which can cut the request short
// (its outcome is then Unknown).
func (c Client) ChangeContext(ctx context.Context, baseURL, counter string, delta int64) Result {
	return c.ChangeTTL(ctx, baseURL, counter, delta, 0)
}

// ChangeTTL is ChangeContext with ?ttl=ttl (seconds) when ttl > 0: the
// counter expires that long from now if it has no expiry yet.
func (c Client) ChangeTTL(ctx context.Context, baseURL, counter string, delta, ttl int64) Result {
	return c.send(ctx, http.MethodPost, changeURL(baseURL, counter, delta, ttl), "")
}

// changeURL is the URL of a change of counter by delta, with ?ttl=ttl if
// ttl > 0.
func changeURL(baseURL, counter string, delta, ttl int64) string {
	verb, by := "increment", delta
	if delta < 0 {
		verb, by = "decrement", -delta
	}
	u := fmt.Sprintf("%s/counters/%s/%s?by=%d", baseURL, url.PathEscape(counter), verb, by)
	if ttl > 0 {
		u += fmt.Sprintf("&ttl=%d", ttl)
	}
	return u
}

// Expire makes counter expire ttl seconds from now, with POST
// /counters/{counter}/expire?ttl=ttl (200; 404 if the counter does not
// exist), classified like a change.
func (c Client) Expire(ctx context.Context, baseURL, counter string, ttl int64) Result {
	return c.Post(ctx, fmt.Sprintf("%s/counters/%s/expire?ttl=%d", baseURL, url.PathEscape(counter), ttl))
}

// Delete deletes counter on the node at baseURL with DELETE
// /counters/{counter} (204, known or not), classified like a change: OK
// means the delete is durable on that node.
func (c Client) Delete(ctx context.Context, baseURL, counter string) Result {
	return c.send(ctx, http.MethodDelete, fmt.Sprintf("%s/counters/%s", baseURL, url.PathEscape(counter)), "")
}

// Post sends a change as POST u with no body, reads the reply, and
// classifies the outcome (see Classify). Tests that change the default
// counter (POST /increment) call it directly.
func (c Client) Post(ctx context.Context, u string) Result {
	return c.send(ctx, http.MethodPost, u, "")
}

// send sends a change request, with Idempotency-Key: key unless key is
// "", and classifies its outcome (Classify, or ClassifyKeyed with a key).
func (c Client) send(ctx context.Context, method, u, key string) Result {
	classify := Classify
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return Result{Outcome: Failed, Err: err} // never sent
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
		classify = ClassifyKeyed
	}
	resp, err := c.http().Do(req)
	if err != nil {
		return Result{Outcome: classify(0, err), Err: err}
	}
	defer resp.Body.Close()
	body, rerr := io.ReadAll(resp.Body)
	r := Result{Status: resp.StatusCode, Outcome: classify(resp.StatusCode, nil),
		Replayed: resp.Header.Get("Idempotent-Replayed") == "true"}
	if r.Outcome == OK && resp.StatusCode == http.StatusGatewayTimeout {
		r.Err = fmt.Errorf("%s (applied on the node, its write level not reached): %s", resp.Status, bytes.TrimSpace(body))
		return r
	}
	if r.Outcome == OK {
		var v struct {
			Counter   string `json:"counter"`
			Value     int64  `json:"value"`
			Node      string `json:"node"`
			ExpiresIn int64  `json:"expires_in"`
		}
		switch {
		case rerr != nil:
			r.Err = fmt.Errorf("%s, then reading the body: %w", resp.Status, rerr)
		case resp.StatusCode == http.StatusNoContent:
		case json.Unmarshal(body, &v) != nil:
			r.Err = fmt.Errorf("%s with a bad body %q", resp.Status, body)
		default:
			r.Counter, r.Value, r.Node, r.ExpiresIn = v.Counter, v.Value, v.Node, v.ExpiresIn
		}
		return r
	}
	r.Err = fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(body))
	if rerr != nil {
		r.Err = fmt.Errorf("%w (reading the body: %v)", r.Err, rerr)
	}
	return r
}

// GetJSON GETs path from the node at baseURL and decodes the reply into
// out. The status must be 200.
func (c Client) GetJSON(ctx context.Context, baseURL, path string, out any) error {
	body, err := c.do(ctx, http.MethodGet, baseURL+path, http.StatusOK)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("GET %s: %q: %w", baseURL+path, body, err)
	}
	return nil
}

// do sends a request without a body and returns the reply's body, which
// must come with status want.
func (c Client) do(ctx context.Context, method, u string, want int) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.http().Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %s, then reading the body: %w", method, u, resp.Status, err)
	}
	if resp.StatusCode != want {
		return nil, fmt.Errorf("%s %s: %s, want %d: %s", method, u, resp.Status, want, bytes.TrimSpace(body))
	}
	return body, nil
}

// Counters returns GET /counters of the node at baseURL: every counter it
// knows, by name.
func (c Client) Counters(ctx context.Context, baseURL string) (map[string]int64, error) {
	var r struct {
		Counters map[string]int64 `json:"counters"`
	}
	err := c.GetJSON(ctx, baseURL, "/counters", &r)
	return r.Counters, err
}

// PeerRow is one row of GET /peers.
type PeerRow struct {
	Addr     string `json:"addr"`
	State    string `json:"state"`     // alive, suspect, down, unauthorized or left
	LastSeen string `json:"last_seen"` // RFC 3339
	Behind   uint64 `json:"behind"`
}

// Peers returns the rows of GET /peers of the node at baseURL.
func (c Client) Peers(ctx context.Context, baseURL string) ([]PeerRow, error) {
	var r struct {
		Peers []PeerRow `json:"peers"`
	}
	err := c.GetJSON(ctx, baseURL, "/peers", &r)
	return r.Peers, err
}

// Replica returns the replica id the node at baseURL reports in GET
// /health. It changes on every start of the node's process.
func (c Client) Replica(ctx context.Context, baseURL string) (string, error) {
	var r struct {
		Replica string `json:"replica"`
	}
	err := c.GetJSON(ctx, baseURL, "/health", &r)
	return r.Replica, err
}

// RemovePeer removes the peer at addr from the node at baseURL for good,
// with DELETE /peers/{addr}. The status must be 204.
func (c Client) RemovePeer(ctx context.Context, baseURL, addr string) error {
	_, err := c.do(ctx, http.MethodDelete, baseURL+"/peers/"+url.PathEscape(addr), http.StatusNoContent)
	return err
}

// PeerStates maps each row's peer, named by name (its address if name is
// nil), to its state.
func PeerStates(rows []PeerRow, name func(addr string) string) map[string]string {
	out := make(map[string]string, len(rows))
	for _, r := range rows {
		out[nameOf(name, r.Addr)] = r.State
	}
	return out
}

// DescribePeers renders rows as "[A=alive B=down]", each peer named by name
// (its address if name is nil), sorted, for messages.
func DescribePeers(rows []PeerRow, name func(addr string) string) string {
	parts := make([]string, len(rows))
	for i, r := range rows {
		parts[i] = nameOf(name, r.Addr) + "=" + r.State
	}
	slices.Sort(parts)
	return "[" + strings.Join(parts, " ") + "]"
}

func nameOf(name func(string) string, addr string) string {
	if name == nil {
		return addr
	}
	return name(addr)
}
