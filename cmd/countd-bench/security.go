package main

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"countd/internal/testcerts"
)

// security is what the nodes of a run demand (-security): a cluster key
// (node-to-node requests signed), client tokens (a bearer token on the
// client API) and TLS (HTTPS everywhere, node certificates from one CA).
type security struct {
	Key, Token, TLS bool
}

// String is the -security spelling: "none", or the parts joined by "+"
// in the order key, token, tls.
func (s security) String() string {
	var parts []string
	if s.Key {
		parts = append(parts, "key")
	}
	if s.Token {
		parts = append(parts, "token")
	}
	if s.TLS {
		parts = append(parts, "tls")
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, "+")
}

// parseSecurity reads one -security item: "none", or any of key, token
// and tls joined by "+" (e.g. "tls+token").
func parseSecurity(v string) (security, error) {
	var s security
	v = strings.TrimSpace(v)
	if v == "none" {
		return s, nil
	}
	for _, p := range strings.Split(v, "+") {
		switch strings.TrimSpace(p) {
		case "key":
			s.Key = true
		case "token":
			s.Token = true
		case "tls":
			s.TLS = true
		default:
			return s, fmt.Errorf("want none, or key, token and tls joined by +, got %q", v)
		}
	}
	return s, nil
}

// securityList is a flag.Value for -security: a comma-separated list.
type securityList struct{ dst *[]security }

func (l securityList) String() string {
	if l.dst == nil {
		return ""
	}
	s := make([]string, len(*l.dst))
	for i, v := range *l.dst {
		s[i] = v.String()
	}
	return strings.Join(s, ",")
}

func (l securityList) Set(v string) error {
	var out []security
	for _, f := range strings.Split(v, ",") {
		s, err := parseSecurity(f)
		if err != nil {
			return err
		}
		out = append(out, s)
	}
	*l.dst = out
	return nil
}

// clientAuth is what a client of the nodes needs: the scheme, the CA to
// trust over TLS, and the bearer token. The zero value is plain HTTP.
type clientAuth struct {
	roots *x509.CertPool // nil: plain HTTP
	token string         // "": no Authorization header
}

// base returns the base URL of the node at addr (host:port).
func (a clientAuth) base(addr string) string {
	if a.roots != nil {
		return "https://" + addr
	}
	return "http://" + addr
}

// bases returns the base URLs of addrs.
func (a clientAuth) bases(addrs []string) []string {
	out := make([]string, len(addrs))
	for i, addr := range addrs {
		out[i] = a.base(addr)
	}
	return out
}

// transport sets t up for the nodes (TLS trusting the CA) and wraps it to
// send the token, if any. The load path sends the token itself (see post):
// this wrapper copies each request.
func (a clientAuth) transport(t *http.Transport) http.RoundTripper {
	if a.roots != nil {
		t.TLSClientConfig = a.tlsConfig()
	}
	if a.token == "" {
		return t
	}
	return tokenTransport{t, a.token}
}

// tlsConfig trusts only the run's CA. HTTP/2 stays off (the transport is
// given its own TLS config), so TLS and plain runs both use HTTP/1.1
// keep-alive connections.
func (a clientAuth) tlsConfig() *tls.Config {
	return &tls.Config{RootCAs: a.roots, MinVersion: tls.VersionTLS12}
}

// tokenTransport adds a bearer token to every request.
type tokenTransport struct {
	next  http.RoundTripper
	token string
}

func (t tokenTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+t.token)
	return t.next.RoundTrip(r)
}

func (t tokenTransport) CloseIdleConnections() {
	if c, ok := t.next.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// secrets are the files a secured cluster's nodes are started with, made
// fresh in the cluster's temporary directory.
type secrets struct {
	sec  security
	auth clientAuth
	// keyFile and tokenFile are "" unless sec asks for them; ca and certs
	// (one per node, by port) are nil unless it asks for TLS.
	keyFile, tokenFile string
	ca                 *testcerts.CA
}

// makeSecrets writes what sec asks for into dir: a random cluster key and
// a random token; with TLS, ca signs each node's certificate.
func makeSecrets(dir string, sec security, ca *testcerts.CA) (*secrets, error) {
	s := &secrets{sec: sec}
	var err error
	if sec.Key {
		if s.keyFile, err = writeRandom(filepath.Join(dir, "cluster.key")); err != nil {
			return nil, err
		}
	}
	if sec.Token {
		if s.tokenFile, err = writeRandom(filepath.Join(dir, "tokens")); err != nil {
			return nil, err
		}
		b, err := os.ReadFile(s.tokenFile)
		if err != nil {
			return nil, err
		}
		s.auth.token = strings.TrimSpace(string(b))
	}
	if sec.TLS {
		if ca == nil {
			return nil, errors.New("TLS asked for with no CA")
		}
		s.ca = ca
		s.auth.roots = ca.Pool()
	}
	return s, nil
}

// nodeArgs returns the security flags of the node named name (it gets its
// own certificate).
func (s *secrets) nodeArgs(name string) ([]string, error) {
	var args []string
	if s.keyFile != "" {
		args = append(args, "-cluster-key-file="+s.keyFile)
	}
	if s.tokenFile != "" {
		args = append(args, "-client-token-file="+s.tokenFile)
	}
	if s.ca != nil {
		n, err := s.ca.IssueFiles(name)
		if err != nil {
			return nil, fmt.Errorf("issue certificate: %w", err)
		}
		args = append(args, "-tls-cert-file="+n.CertFile, "-tls-key-file="+n.KeyFile, "-tls-ca-file="+s.ca.File)
	}
	return args, nil
}

// writeRandom writes 32 random bytes, base64, as the one line of path.
func writeRandom(path string) (string, error) {
	b := make([]byte, 32)
	rand.Read(b) // never fails
	return path, os.WriteFile(path, []byte(base64.StdEncoding.EncodeToString(b)+"\n"), 0o600)
}

// securityLabel is Result.Security: "" for none, so that plain runs'
// results read as they always did.
func securityLabel(s security) string {
	if s == (security{}) {
		return ""
	}
	return s.String()
}
