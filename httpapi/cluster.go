package httpapi

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gorilla/mux"

	"countd/actors"
	"countd/wire"
)

// Cluster is what the membership and replication handlers need.
// actors.Cluster implements it.
type Cluster interface {
	Peers(ctx context.Context) ([]actors.PeerInfo, error)
	AddPeer(ctx context.Context, addr string) (created bool, err error)
	RemovePeer(ctx context.Context, addr string) error
	Replicate(ctx context.Context, req *wire.ReplicateRequest) (changed int, err error)
	Leave(ctx context.Context, req *wire.LeaveRequest) error
}

var _ Cluster = (*actors.Cluster)(nil)

// handlePeers serves GET /peers.
func (s *Server) handlePeers(w http.ResponseWriter, r *http.Request) {
	peers, err := s.cfg.Cluster.Peers(r.Context())
	if err != nil {
		s.writeError(w, err)
		return
	}
	s.writeJSON(w, http.StatusOK, struct {
		Peers []peerRow `json:"peers"`
		Node  string    `json:"node"`
	}{peerRows(peers), s.cfg.Node})
}

// peerRow is one peer as GET /peers and GET /status report it.
type peerRow struct {
	Addr     string `json:"addr"`
	State    string `json:"state"`
	LastSeen string `json:"last_seen,omitempty"` // RFC 3339, UTC; omitted if never seen
	Behind   uint64 `json:"behind"`
}

// peerRows formats the membership table; it is never nil, so an empty one
// encodes as [].
func peerRows(peers []actors.PeerInfo) []peerRow {
	out := make([]peerRow, len(peers))
	for i, p := range peers {
		out[i] = peerRow{Addr: p.Addr, State: p.State, Behind: p.Behind}
		if !p.LastSeen.IsZero() {
			out[i].LastSeen = p.LastSeen.UTC().Format(time.RFC3339)
		}
	}
	return out
}

// peerBodyForm is the body POST /peers takes, for error messages.
const peerBodyForm = `{"addr":"host:port"}`

// addrForms are the forms of a peer address wire.ParseAddr accepts.
const addrForms = "a port (8081, meaning 127.0.0.1:8081), host:port or http://host:port"

// addrError turns a wire.ParseAddr error into a 400 that lists the forms
// accepted.
func addrError(err error) error {
	msg := err.Error()
	if !strings.Contains(msg, "http://host:port") { // some already list them
		msg += "; want " + addrForms
	}
	return badRequest("%s", msg)
}

// handleAddPeer serves POST /peers {"addr": "host:port"}.
func (s *Server) handleAddPeer(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(r)
	if err != nil {
		s.writeError(w, err)
		return
	}
	req, err := decodeFlat(body, peerBodyForm, map[string]string{"addr": "a string"})
	if err != nil {
		s.writeError(w, err)
		return
	}
	given, ok := req["addr"].(string)
	if !ok {
		s.writeError(w, badRequest("the request body has no field \"addr\"; want %s", peerBodyForm))
		return
	}
	addr, err := wire.ParseAddr(given)
	if err != nil {
		s.writeError(w, addrError(err))
		return
	}
	created, err := s.cfg.Cluster.AddPeer(r.Context(), addr)
	if err != nil {
		s.writeError(w, err)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	s.writeJSON(w, status, struct {
		Addr    string `json:"addr"`
		Created bool   `json:"created"`
	}{addr, created})
}

// handleRemovePeer serves DELETE /peers/{addr}.
func (s *Server) handleRemovePeer(w http.ResponseWriter, r *http.Request) {
	raw, err := url.PathUnescape(mux.Vars(r)["addr"])
	if err != nil {
		s.writeError(w, badRequest("the peer address in the path is not valid URL encoding; want %s", addrForms))
		return
	}
	addr, err := wire.ParseAddr(raw)
	if err != nil {
		s.writeError(w, addrError(err))
		return
	}
	if err := s.cfg.Cluster.RemovePeer(r.Context(), addr); err != nil {
		s.writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// handleReplicate serves POST /replicate, the node-to-node state exchange.
// It answers once the merged state is durable.
func (s *Server) handleReplicate(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(r)
	if err != nil {
		s.writeError(w, err)
		return
	}
	req, err := DecodeReplicate(body)
	if err != nil {
		s.writeError(w, err)
		return
	}
	changed, err := s.cfg.Cluster.Replicate(r.Context(), req)
	if err != nil {
		s.writeError(w, err)
		return
	}
	s.writeJSON(w, http.StatusOK, &wire.ReplicateReply{Node: s.cfg.Node, Replica: s.cfg.Replica, Changed: changed})
}

// handleLeave serves POST /leave: a peer says it is shutting down
// (docs/design.md, section 7, "Graceful leave").
func (s *Server) handleLeave(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(r)
	if err != nil {
		s.writeError(w, err)
		return
	}
	req, err := DecodeLeave(body)
	if err != nil {
		s.writeError(w, err)
		return
	}
	if err := s.cfg.Cluster.Leave(r.Context(), req); err != nil {
		s.writeError(w, err)
		return
	}
	s.writeJSON(w, http.StatusOK, &wire.LeaveReply{Node: s.cfg.Node})
}

// readBody reads a request body of at most wire.MaxBody bytes.
func readBody(r *http.Request) ([]byte, error) {
	body, err := io.ReadAll(r.Body)
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return nil, errTooLarge
	case err != nil:
		return nil, badRequest("the request body could not be read in full")
	}
	return body, nil
}
