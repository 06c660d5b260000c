package httpapi

import (
	"errors"
	"net/http"
)

// errNoPeerCert is a node-to-node request without a client certificate
// signed by the cluster's CA.
var errNoPeerCert = errors.New("httpapi: no verified peer certificate")

// nodeRoute reports whether the route with this path template and method
// is node-to-node traffic: a push, or a membership change.
func nodeRoute(path, method string) bool {
	switch path {
	case "/replicate":
		return true
	case "/peers":
		return method == http.MethodPost
	case "/peers/{addr}":
		return method == http.MethodDelete
	}
	return false
}

// needPeerCert wraps h, when cfg.PeerCerts is set and the route is
// node-to-node, so that it answers 403 to a request whose connection did
// not present a client certificate that the CA verified. The listener
// verifies a certificate when one is given (and refuses the handshake if
// it does not verify); this check refuses the requests that gave none.
func (s *Server) needPeerCert(path, method string, h http.HandlerFunc) http.HandlerFunc {
	if !s.cfg.PeerCerts || !nodeRoute(path, method) {
		return h
	}
	return func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
			s.writeError(w, &clientError{kind: errNoPeerCert,
				msg: "node-to-node requests need a client certificate signed by this node's -tls-ca-file"})
			return
		}
		h(w, r)
	}
}
