package httpapi

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"time"

	"countd/auth"
)

// Who may use the node-to-node routes (POST /replicate, POST /peers,
// DELETE /peers/{addr}, GET /backup) and the profiles (docs/design.md, "Cluster key"):
//   - with a keyring (Config.Keys), only requests signed with one of its
//     keys; anything else gets 401 and changes nothing;
//   - without one, only requests from a loopback address or over TLS with
//     a client certificate the node's CA verified (403 otherwise), unless
//     Config.Insecure opens them to anyone.
//
// GET /health stays open to probes, but a signed health check must carry a
// valid signature, so a node with another key sees its checks of us fail.

// forbiddenMsg is the 403 a non-loopback client gets from a node with no key.
const forbiddenMsg = "this node has no cluster key, so it takes node-to-node and membership requests only from loopback addresses " +
	"(or with a client certificate its -tls-ca-file signed); " +
	"give every node the same -cluster-key-file to let nodes on other hosts in"

// nodeOnly lets through to h only what may use the node-to-node routes, as
// above; with needCert (the node's Config.PeerCerts), only a request that
// also presents a client certificate the CA verified (403 otherwise: the
// listener verifies a certificate when one is given, this refuses the
// requests that gave none). A signed request's body is read here, to check
// the signature, and handed on to h unchanged.
func (s *Server) nodeOnly(needCert bool, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		switch {
		case needCert && !s.certifiedPeer(r):
			s.writeError(w, &clientError{kind: errNoPeerCert,
				msg: "node-to-node requests need a client certificate signed by this node's -tls-ca-file"})
			return
		case s.cfg.Keys != nil:
			if err := s.verify(r); err != nil {
				s.writeError(w, err)
				return
			}
		case !s.cfg.Insecure && !fromLoopback(r) && !s.certifiedPeer(r):
			s.writeError(w, &clientError{kind: errNotLoopback, msg: forbiddenMsg})
			return
		}
		h(w, r)
	}
}

// signedIfSigned lets through to h any request without a signature, and a
// signed one only if its signature is valid (when there is a keyring).
func (s *Server) signedIfSigned(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.cfg.Keys != nil && r.Header.Get(auth.Header) != "" {
			if err := s.verify(r); err != nil {
				s.writeError(w, err)
				return
			}
		}
		h(w, r)
	}
}

// verify checks r's signature against the keyring, reading its body and
// putting it back for the handler.
func (s *Server) verify(r *http.Request) error {
	if r.Header.Get(auth.Header) == "" { // refused without reading the body
		return s.refuse(r, auth.ErrUnsigned)
	}
	var body []byte
	if r.Body != nil && r.Body != http.NoBody {
		var err error
		if body, err = readBody(r); err != nil {
			return err
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	if err := s.cfg.Keys.Verify(r, body, time.Now()); err != nil {
		return s.refuse(r, err)
	}
	return nil
}

// refuse logs why r's signature was refused and returns the 401.
func (s *Server) refuse(r *http.Request, err error) error {
	s.log.Debug("refused a request without a valid cluster signature",
		"method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr, "err", err)
	return &clientError{kind: errNoSignature, msg: unauthorizedMsg(err)}
}

// unauthorizedMsg says, for the client, why a signature was refused.
func unauthorizedMsg(err error) string {
	const need = "this node needs node-to-node and membership requests signed with its cluster key (-cluster-key-file)"
	switch {
	case errors.Is(err, auth.ErrUnsigned):
		return need + "; the request has no " + auth.Header + " header"
	case errors.Is(err, auth.ErrExpired):
		return fmt.Sprintf("the request's signature is more than %s old or ahead of this node's clock; check the clocks", auth.Window)
	case errors.Is(err, auth.ErrUnknownKey):
		return need + "; the request is signed with a key it does not have"
	case errors.Is(err, auth.ErrMalformed):
		return need + "; the " + auth.Header + " header is not t=UNIX,k=KEYID,s=HEX"
	}
	return need + "; the request's signature does not match it"
}

// certifiedPeer reports whether r came over TLS with a client certificate
// that the node's -tls-ca-file verified: proof enough of a node of this
// cluster when there is no key.
func (s *Server) certifiedPeer(r *http.Request) bool {
	return s.cfg.PeerCerts && r.TLS != nil && len(r.TLS.VerifiedChains) > 0
}

// fromLoopback reports whether r came from a loopback address.
func fromLoopback(r *http.Request) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}
