package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"countd/actors"
	"countd/wire"
)

// fakeProber answers health checks of the addresses in up, records every
// address it checks, and fails the others with err.
type fakeProber struct {
	up      map[string]bool
	err     error
	checked []string
}

func (f *fakeProber) Health(ctx context.Context, addr string) (wire.HealthReply, error) {
	f.checked = append(f.checked, addr)
	if !f.up[addr] {
		return wire.HealthReply{}, f.err
	}
	return wire.HealthReply{Status: "ok", Node: addr, Replica: "00000000000000cd"}, nil
}

// TestProbeChecksTheTargetForThePeer: POST /probe health-checks the
// target, normalised, and answers with its reply; a target that does not
// answer is a 502 whatever the reason (never the 401 its refusal of this
// node's key would be, which the asker would take for its own refusal).
func TestProbeChecksTheTargetForThePeer(t *testing.T) {
	p := &fakeProber{up: map[string]bool{"127.0.0.1:9001": true}, err: errors.New("connection refused")}
	s := NewServer(Config{Node: testNode, Replica: testReplica, Prober: p})
	rec := do(t, s, http.MethodPost, "/probe", strings.NewReader(`{"target":"http://127.0.0.1:9001/"}`))
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	assertBody(t, rec.Body.Bytes(), `{"status":"ok","node":"127.0.0.1:9001","replica":"00000000000000cd"}`)

	for name, err := range map[string]error{
		"down":         errors.New("connection refused"),
		"unauthorized": fmt.Errorf("401: %w", actors.ErrUnauthorized),
	} {
		t.Run(name, func(t *testing.T) {
			p := &fakeProber{err: err}
			s := NewServer(Config{Node: testNode, Replica: testReplica, Prober: p})
			assertError(t, do(t, s, http.MethodPost, "/probe", strings.NewReader(`{"target":"127.0.0.1:9002"}`)), http.StatusBadGateway)
			if len(p.checked) != 1 || p.checked[0] != "127.0.0.1:9002" {
				t.Fatalf("checked %v, want the target once", p.checked)
			}
		})
	}
}

func TestProbeRefusesABadBody(t *testing.T) {
	acceptInvalidRequests(t) // tests of bad input
	for name, body := range map[string]string{
		"not json":      `{`,
		"unknown field": `{"target":"127.0.0.1:9001","via":"x"}`,
		"bad target":    `{"target":"nowhere"}`,
		"no target":     `{}`,
		"trailing":      `{"target":"127.0.0.1:9001"}{}`,
	} {
		t.Run(name, func(t *testing.T) {
			p := &fakeProber{}
			s := NewServer(Config{Node: testNode, Replica: testReplica, Prober: p})
			assertError(t, do(t, s, http.MethodPost, "/probe", strings.NewReader(body)), http.StatusBadRequest)
			if len(p.checked) != 0 {
				t.Fatalf("a bad probe checked %v", p.checked)
			}
		})
	}
}
