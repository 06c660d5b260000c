package httpapi

import (
	"context"
	"errors"
	"net/http"
	"time"

	"countd/wire"
)

// Prober health-checks another node on a peer's behalf (POST /probe, an
// indirect probe: docs/design.md, section 7). transport.HTTP is one.
type Prober interface {
	Health(ctx context.Context, addr string) (wire.HealthReply, error)
}

// errProbeFailed: the target of an indirect probe did not answer this
// node (502). It is never the caller's fault, nor a refusal of its key.
var errProbeFailed = errors.New("httpapi: the probed node did not answer")

// probeForm is the body POST /probe takes, for error messages.
const probeForm = `{"target":"host:port"}`

// DecodeProbe parses and validates the body of POST /probe: the address
// to probe, nothing else. The address comes back normalised.
func DecodeProbe(body []byte) (*wire.ProbeRequest, error) {
	var req wire.ProbeRequest
	if err := decodeObject(body, &req, probeForm); err != nil {
		return nil, badRequest("probe payload: %v", err)
	}
	target, err := wire.ParseAddr(req.Target)
	if err != nil {
		return nil, badRequest("probe payload: target: %v", addrError(err))
	}
	req.Target = target
	return &req, nil
}

// handleProbe health-checks the target for the peer that asks (it could
// not reach it itself) and answers with the target's reply; 502 if the
// target did not answer within the probe timeout.
func (s *Server) handleProbe(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(r)
	if err != nil {
		s.writeError(w, err)
		return
	}
	req, err := DecodeProbe(body)
	if err != nil {
		s.writeError(w, err)
		return
	}
	timeout := s.cfg.ProbeTimeout
	if timeout <= 0 {
		timeout = time.Second
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	reply, err := s.cfg.Prober.Health(ctx, req.Target)
	if err != nil {
		s.log.Debug("indirect probe failed", "peer", req.Target, "err", err)
		s.writeError(w, &clientError{kind: errProbeFailed, msg: req.Target + " did not answer this node's health check"})
		return
	}
	s.writeJSON(w, http.StatusOK, &reply)
}
