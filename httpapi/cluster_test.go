package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"countd/actors"
	"countd/crdt"
	"countd/wire"
)

// fakeCluster records what the cluster handlers ask of it.
type fakeCluster struct {
	mu         sync.Mutex
	peers      map[string]string // addr -> state
	replicated []*wire.ReplicateRequest
	err        error
}

func newFakeCluster() *fakeCluster { return &fakeCluster{peers: map[string]string{}} }

func (f *fakeCluster) Peers(ctx context.Context) ([]actors.PeerInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []actors.PeerInfo
	for a, s := range f.peers {
		out = append(out, actors.PeerInfo{Addr: a, State: s, LastSeen: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)})
	}
	return out, f.err
}

func (f *fakeCluster) AddPeer(ctx context.Context, addr string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return false, f.err
	}
	if addr == testNode {
		return false, actors.ErrSelf
	}
	_, known := f.peers[addr]
	f.peers[addr] = actors.StateSuspect
	return !known, nil
}

func (f *fakeCluster) RemovePeer(ctx context.Context, addr string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.peers, addr)
	return f.err
}

func (f *fakeCluster) Leave(ctx context.Context, req *wire.LeaveRequest) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	if _, ok := f.peers[req.From]; ok {
		f.peers[req.From] = actors.StateLeft
	}
	return nil
}

func (f *fakeCluster) Replicate(ctx context.Context, req *wire.ReplicateRequest) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return 0, f.err
	}
	f.replicated = append(f.replicated, req)
	return len(req.Entries), nil
}

func newClusterServer(c *fakeCluster) *Server {
	return NewServer(Config{Counters: newFake(), Cluster: c, Node: testNode, Replica: testReplica})
}

const goodPush = `{"from":"127.0.0.1:9001","replica":"00000000000000ab","members":["9002","http://127.0.0.1:9003/"],
	"entries":[{"counter":"c","replica":"00000000000000ab","p":5,"n":1}]}`

func TestReplicateMergesAndAnswersWithReplica(t *testing.T) {
	c := newFakeCluster()
	s := newClusterServer(c)
	rec := do(t, s, http.MethodPost, "/replicate", strings.NewReader(goodPush))
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	assertBody(t, rec.Body.Bytes(), `{"node":"`+testNode+`","replica":"`+testReplica+`","changed":1}`)
	want := &wire.ReplicateRequest{
		From: "127.0.0.1:9001", Replica: "00000000000000ab",
		Members: []string{"127.0.0.1:9002", "127.0.0.1:9003"},
		Entries: []crdt.Entry{{Counter: "c", Replica: "00000000000000ab", P: 5, N: 1}},
	}
	if len(c.replicated) != 1 || !reflect.DeepEqual(c.replicated[0], want) {
		t.Fatalf("replicated %+v, want %+v (members normalised)", c.replicated, want)
	}
}

const goodLeave = `{"from":"http://127.0.0.1:9001/","replica":"00000000000000ab"}`

// TestLeaveMarksThePeerLeft: POST /leave hands the Cluster the sender,
// normalised, and answers with this node's name; a bad body changes
// nothing.
func TestLeaveMarksThePeerLeft(t *testing.T) {
	acceptInvalidRequests(t) // tests of bad input
	c := newFakeCluster()
	c.peers["127.0.0.1:9001"] = actors.StateAlive
	rec := do(t, newClusterServer(c), http.MethodPost, "/leave", strings.NewReader(goodLeave))
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	assertBody(t, rec.Body.Bytes(), `{"node":"`+testNode+`"}`)
	if got := c.peers["127.0.0.1:9001"]; got != actors.StateLeft {
		t.Fatalf("the sender is %q after its leave, want %q", got, actors.StateLeft)
	}
	for name, body := range map[string]string{
		"not json":      `{`,
		"unknown field": `{"from":"127.0.0.1:9001","replica":"00000000000000ab","members":[]}`,
		"bad from":      `{"from":"nowhere","replica":"00000000000000ab"}`,
		"no replica":    `{"from":"127.0.0.1:9001"}`,
		"trailing":      goodLeave + `{}`,
	} {
		t.Run(name, func(t *testing.T) {
			c := newFakeCluster()
			c.peers["127.0.0.1:9001"] = actors.StateAlive
			assertError(t, do(t, newClusterServer(c), http.MethodPost, "/leave", strings.NewReader(body)), http.StatusBadRequest)
			if got := c.peers["127.0.0.1:9001"]; got != actors.StateAlive {
				t.Fatalf("a bad leave changed the peer to %q", got)
			}
		})
	}
}

func TestReplicateRejectsBadPayloadsWithoutMerging(t *testing.T) {
	acceptInvalidRequests(t) // tests of bad input
	cases := map[string]string{
		"not json":        `{`,
		"array":           `[]`,
		"trailing":        goodPush + `{}`,
		"unknown field":   `{"from":"127.0.0.1:1","replica":"00000000000000ab","extra":1}`,
		"bad from":        `{"from":"nowhere","replica":"00000000000000ab"}`,
		"empty from":      `{"from":"","replica":"00000000000000ab"}`,
		"bad replica":     `{"from":"127.0.0.1:1","replica":"XYZ"}`,
		"bad member":      `{"from":"127.0.0.1:1","replica":"00000000000000ab","members":["a/b:1"]}`,
		"bad name":        `{"from":"127.0.0.1:1","replica":"00000000000000ab","entries":[{"counter":"a b","replica":"00000000000000ab","p":1}]}`,
		"bad entry rid":   `{"from":"127.0.0.1:1","replica":"00000000000000ab","entries":[{"counter":"a","replica":"zz","p":1}]}`,
		"negative total":  `{"from":"127.0.0.1:1","replica":"00000000000000ab","entries":[{"counter":"a","replica":"00000000000000ab","p":-1}]}`,
		"total over u64":  `{"from":"127.0.0.1:1","replica":"00000000000000ab","entries":[{"counter":"a","replica":"00000000000000ab","p":18446744073709551616}]}`,
		"fractional":      `{"from":"127.0.0.1:1","replica":"00000000000000ab","entries":[{"counter":"a","replica":"00000000000000ab","p":1.5}]}`,
		"one bad of many": `{"from":"127.0.0.1:1","replica":"00000000000000ab","entries":[{"counter":"a","replica":"00000000000000ab","p":1},{"counter":"","replica":"00000000000000ab","p":1}]}`,
	}
	for name, body := range cases {
		t.Run(name, func(t *testing.T) {
			c := newFakeCluster()
			rec := do(t, newClusterServer(c), http.MethodPost, "/replicate", strings.NewReader(body))
			assertError(t, rec, http.StatusBadRequest)
			if len(c.replicated) != 0 {
				t.Fatalf("a bad payload reached the merge: %+v", c.replicated)
			}
		})
	}
	t.Run("too many members", func(t *testing.T) {
		members := make([]string, MaxMembers+1)
		for i := range members {
			members[i] = "127.0.0.1:1"
		}
		b, _ := json.Marshal(wire.ReplicateRequest{From: "127.0.0.1:1", Replica: "00000000000000ab", Members: members})
		c := newFakeCluster()
		assertError(t, do(t, newClusterServer(c), http.MethodPost, "/replicate", strings.NewReader(string(b))), http.StatusBadRequest)
	})
}

func TestReplicateMergeErrors(t *testing.T) {
	acceptInvalidRequests(t) // tests of bad input
	for _, tc := range []struct {
		err    error
		status int
	}{
		{actors.ErrTimeout, http.StatusServiceUnavailable},
		{actors.ErrStore, http.StatusServiceUnavailable},
		{crdt.ErrInvalid, http.StatusBadRequest},
		{errTooManyEntries, http.StatusBadRequest},
	} {
		c := newFakeCluster()
		c.err = tc.err
		assertError(t, do(t, newClusterServer(c), http.MethodPost, "/replicate", strings.NewReader(goodPush)), tc.status)
	}
}

// errTooManyEntries is what the CounterActor answers a merge past the entry limit.
var errTooManyEntries = fmt.Errorf("%w: counter %q would hold more than 10000 replica entries, the most a counter may hold (it holds 9999)",
	crdt.ErrLimit, "c")

// TestReplicatePastEntryLimitMessage: a push refused for the entry limit
// says which counter, the limit, and that nothing of it was applied.
func TestReplicatePastEntryLimitMessage(t *testing.T) {
	c := newFakeCluster()
	c.err = errTooManyEntries
	rec := do(t, newClusterServer(c), http.MethodPost, "/replicate", strings.NewReader(goodPush))
	assertError(t, rec, http.StatusBadRequest)
	assertMentions(t, rec.Body.Bytes(), "refused whole", `counter "c" would hold more than 10000 replica entries`, "-max-entries", "nothing of it was applied")
}

func TestPeersRoutes(t *testing.T) {
	c := newFakeCluster()
	s := newClusterServer(c)

	rec := do(t, s, http.MethodPost, "/peers", strings.NewReader(`{"addr":"9001"}`))
	if rec.Code != http.StatusCreated {
		t.Fatalf("first POST /peers: %d %s", rec.Code, rec.Body)
	}
	assertBody(t, rec.Body.Bytes(), `{"addr":"127.0.0.1:9001","created":true}`)
	rec = do(t, s, http.MethodPost, "/peers", strings.NewReader(`{"addr":"http://127.0.0.1:9001"}`))
	if rec.Code != http.StatusOK {
		t.Fatalf("POST /peers of a known peer: %d %s", rec.Code, rec.Body)
	}

	rec = do(t, s, http.MethodGet, "/peers", nil)
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /peers: %d", rec.Code)
	}
	assertBody(t, rec.Body.Bytes(), `{"peers":[{"addr":"127.0.0.1:9001","state":"suspect","last_seen":"2026-01-02T03:04:05Z","behind":0}],"node":"`+testNode+`"}`)

	rec = do(t, s, http.MethodDelete, "/peers/127.0.0.1:9001", nil)
	if rec.Code != http.StatusNoContent || rec.Body.Len() != 0 {
		t.Fatalf("DELETE /peers: %d %q", rec.Code, rec.Body)
	}
	if len(c.peers) != 0 {
		t.Fatalf("peers after DELETE: %v", c.peers)
	}
}

func TestPeersBadInput(t *testing.T) {
	acceptInvalidRequests(t) // tests of bad input
	for name, tc := range map[string]struct {
		method, path, body string
		status             int
	}{
		"post not json":     {http.MethodPost, "/peers", `{`, http.StatusBadRequest},
		"post unknown key":  {http.MethodPost, "/peers", `{"address":"1"}`, http.StatusBadRequest},
		"post bad addr":     {http.MethodPost, "/peers", `{"addr":"a/b"}`, http.StatusBadRequest},
		"post empty":        {http.MethodPost, "/peers", ``, http.StatusBadRequest},
		"post self":         {http.MethodPost, "/peers", `{"addr":"` + testNode + `"}`, http.StatusBadRequest},
		"delete bad addr":   {http.MethodDelete, "/peers/nowhere", ``, http.StatusBadRequest},
		"put":               {http.MethodPut, "/peers", ``, http.StatusMethodNotAllowed},
		"get replicate":     {http.MethodGet, "/replicate", ``, http.StatusMethodNotAllowed},
		"delete no address": {http.MethodDelete, "/peers/", ``, http.StatusNotFound},
	} {
		t.Run(name, func(t *testing.T) {
			c := newFakeCluster()
			c.peers["127.0.0.1:5"] = actors.StateAlive
			rec := do(t, newClusterServer(c), tc.method, tc.path, strings.NewReader(tc.body))
			assertError(t, rec, tc.status)
			if len(c.peers) != 1 {
				t.Fatalf("membership changed: %v", c.peers)
			}
		})
	}
}

func FuzzDecodeReplicate(f *testing.F) {
	f.Add([]byte(goodPush))
	f.Add([]byte(`{"from":"1","replica":"00000000000000ab","members":null,"entries":null}`))
	f.Add([]byte(`{"from":"[::1]:80","replica":"00000000000000ab","entries":[{"counter":"..","replica":"0000000000000000","p":18446744073709551615,"n":0}]}`))
	f.Add([]byte(`{"from":"127.0.0.1:1","replica":"00000000000000ab","entries":[{"counter":"rate:user:42","replica":"00000000000000ab","p":3,"n":0}]}`))
	f.Add([]byte(`{"from":"127.0.0.1:1","replica":"00000000000000ab","entries":[{"counter":"a;b","replica":"00000000000000ab","p":3,"n":0}]}`))
	f.Add([]byte(`{"from":"127.0.0.1:1","replica":"00000000000000ab","extra":1}`))
	f.Add([]byte(`{"from":"127.0.0.1:1","replica":"00000000000000ab","to":"00000000000000ac","at":1764567000000}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := DecodeReplicate(body)
		if err != nil {
			if req != nil {
				t.Fatal("an error came with a payload")
			}
			if !errors.Is(err, errBadRequest) {
				t.Fatalf("error %v is not a bad request", err)
			}
			return
		}
		if a, err := wire.ParseAddr(req.From); err != nil || a != req.From {
			t.Fatalf("from %q is not in normal form", req.From)
		}
		for _, m := range req.Members {
			if a, err := wire.ParseAddr(m); err != nil || a != m {
				t.Fatalf("member %q is not in normal form", m)
			}
		}
		if !crdt.ValidReplica(req.Replica) || crdt.Validate(req.Entries) != nil || len(req.Members) > MaxMembers ||
			(req.To == "") != (req.At == 0) || req.To != "" && !crdt.ValidReplica(req.To) {
			t.Fatalf("accepted an invalid payload: %+v", req)
		}
		// What it accepts merges without error.
		if _, err := crdt.New("00000000000000ff").Merge(req.Entries); err != nil {
			t.Fatalf("accepted entries the CRDT refuses: %v", err)
		}
	})
}

// TestPeersErrorMessages checks what a client reads when POST /peers or
// DELETE /peers/{addr} is refused: what was wrong and the forms accepted.
func TestPeersErrorMessages(t *testing.T) {
	acceptInvalidRequests(t) // tests of bad input
	const forms = "host:port or http://host:port"
	for _, tc := range []struct {
		name, method, path, body string
		words                    []string
	}{
		{"not json", "POST", "/peers", `{"addr":nul}`, []string{"not valid JSON", `{"addr":"host:port"}`}},
		{"empty", "POST", "/peers", ``, []string{"body is empty", `{"addr":"host:port"}`}},
		{"empty object", "POST", "/peers", `{}`, []string{`no field "addr"`}},
		{"unknown key", "POST", "/peers", `{"address":"9001"}`, []string{`unknown field "address"`, `{"addr":"host:port"}`}},
		{"key in another case", "POST", "/peers", `{"Addr":"9001"}`, []string{`unknown field "Addr"`}},
		{"key twice", "POST", "/peers", `{"addr":"9001","addr":"9002"}`, []string{"given twice"}},
		{"number", "POST", "/peers", `{"addr":9001}`, []string{`"addr" must be a string, not a number`}},
		{"bad host", "POST", "/peers", `{"addr":"a/b:1"}`, []string{`"a/b:1"`, forms}},
		{"bad port", "POST", "/peers", `{"addr":"h:0"}`, []string{"1 to 65535", forms}},
		{"no port", "POST", "/peers", `{"addr":"nowhere"}`, []string{`"nowhere"`, forms}},
		{"self", "POST", "/peers", `{"addr":"` + testNode + `"}`, []string{"this node itself"}},
		{"delete bad addr", "DELETE", "/peers/nowhere", ``, []string{`"nowhere"`, forms}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newFakeCluster()
			c.peers["127.0.0.1:5"] = actors.StateAlive
			rec := do(t, newClusterServer(c), tc.method, tc.path, strings.NewReader(tc.body))
			assertError(t, rec, http.StatusBadRequest)
			assertMentions(t, rec.Body.Bytes(), tc.words...)
			if len(c.peers) != 1 {
				t.Fatalf("membership changed: %v", c.peers)
			}
			if msg := errorMessage(t, rec.Body.Bytes()); strings.Count(msg, forms) > 1 {
				t.Errorf("message %q lists the accepted forms more than once", msg)
			}
		})
	}
}

// TestReplicateErrorMessages checks a refused push says what is wrong,
// without Go's wording.
func TestReplicateErrorMessages(t *testing.T) {
	acceptInvalidRequests(t) // tests of bad input
	for name, tc := range map[string]struct {
		body  string
		words []string
	}{
		"not json":   {`{"from":`, []string{"replicate payload", "not valid JSON"}},
		"wrong type": {`{"from":"127.0.0.1:1","replica":"00000000000000ab","entries":[{"counter":"a","replica":"00000000000000ab","p":-1}]}`, []string{`"entries.p"`, "whole number of 0 or more", "-1"}},
		"unknown":    {`{"from":"127.0.0.1:1","replica":"00000000000000ab","extra":1}`, []string{`unknown field "extra"`}},
		"replica":    {`{"from":"127.0.0.1:1","replica":"XYZ"}`, []string{`"XYZ"`, "16 lowercase hex digits"}},
		"entry name": {`{"from":"127.0.0.1:1","replica":"00000000000000ab","entries":[{"counter":"a b","replica":"00000000000000ab","p":1}]}`, []string{"entry 0", `"a b"`, "1 to 128 characters"}},
		"from":       {`{"from":"nowhere","replica":"00000000000000ab"}`, []string{"from", `"nowhere"`, "host:port"}},
		"to":         {`{"from":"127.0.0.1:1","replica":"00000000000000ab","to":"r1","at":5}`, []string{"to", `"r1"`, "16 lowercase hex digits"}},
		"to, no at":  {`{"from":"127.0.0.1:1","replica":"00000000000000ab","to":"00000000000000ac"}`, []string{"to and at come together"}},
		"at, no to":  {`{"from":"127.0.0.1:1","replica":"00000000000000ab","at":5}`, []string{"to and at come together"}},
	} {
		t.Run(name, func(t *testing.T) {
			rec := do(t, newClusterServer(newFakeCluster()), http.MethodPost, "/replicate", strings.NewReader(tc.body))
			assertError(t, rec, http.StatusBadRequest)
			assertMentions(t, rec.Body.Bytes(), tc.words...)
		})
	}
}

// POST /peers past -max-peers gets 507 with an error that names the flag.
func TestAddPeerPastTheLimit(t *testing.T) {
	c := newFakeCluster()
	c.err = actors.ErrTooManyPeers
	rec := do(t, newClusterServer(c), http.MethodPost, "/peers", strings.NewReader(`{"addr":"9001"}`))
	assertError(t, rec, http.StatusInsufficientStorage)
	if !strings.Contains(rec.Body.String(), "-max-peers") {
		t.Fatalf("body %s does not name -max-peers", rec.Body)
	}
}
