package httpapi

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
)

// ErrTokenFile is the kind of every error about a client token file. Its
// text starts the error's, which main prints as it is.
var ErrTokenFile = errors.New("client token file")

// errUnauthorized is a request to the client API without a valid token.
var errUnauthorized = errors.New("httpapi: unauthorized")

// maxTokenLen bounds one token, so a wrong file (a binary, a log) is
// refused rather than read as a few huge tokens.
const maxTokenLen = 4096

// ParseTokens reads a client token file: one token per line, surrounding
// white space trimmed, blank lines ignored. A file with no token, or with
// a token holding white space or over 4096 bytes, is an error that says
// which line is at fault.
func ParseTokens(data []byte) ([]string, error) {
	var tokens []string
	for i, line := range bytes.Split(data, []byte("\n")) {
		t := strings.TrimSpace(string(line))
		switch {
		case t == "":
			continue
		case len(t) > maxTokenLen:
			return nil, fmt.Errorf("%w: line %d is over %d bytes; want one token per line", ErrTokenFile, i+1, maxTokenLen)
		case strings.IndexFunc(t, isTokenSpace) >= 0:
			return nil, fmt.Errorf("%w: line %d holds white space inside a token; want one token per line", ErrTokenFile, i+1)
		}
		tokens = append(tokens, t)
	}
	if len(tokens) == 0 {
		return nil, fmt.Errorf("%w: no token in it; want one token per line", ErrTokenFile)
	}
	return tokens, nil
}

// isTokenSpace is white space or a control character, neither of which
// an Authorization header can carry inside a token.
func isTokenSpace(r rune) bool { return r <= ' ' || r == 0x7f }

// Tokens is the set of client tokens the client API accepts. Load swaps
// the whole set at once, so SIGHUP can reload it while requests run.
type Tokens struct {
	path string
	set  atomic.Pointer[[][sha256.Size]byte] // hashed, so each comparison takes the same time
}

// LoadTokens reads the token file at path.
func LoadTokens(path string) (*Tokens, error) {
	t := &Tokens{path: path}
	if err := t.Reload(); err != nil {
		return nil, err
	}
	return t, nil
}

// Reload reads the token file again. On error the tokens in force stay.
func (t *Tokens) Reload() error {
	data, err := os.ReadFile(t.path)
	if err != nil {
		return fmt.Errorf("%w %s: %v", ErrTokenFile, t.path, errors.Unwrap(err))
	}
	tokens, err := ParseTokens(data)
	if err != nil {
		return fmt.Errorf("%w (%s)", err, t.path)
	}
	set := make([][sha256.Size]byte, len(tokens))
	for i, tok := range tokens {
		set[i] = sha256.Sum256([]byte(tok))
	}
	t.set.Store(&set)
	return nil
}

// Valid reports whether token is one of the set. It hashes the token and
// compares it with every token in constant time, so the time taken tells
// nothing about how much of a token was right.
func (t *Tokens) Valid(token string) bool {
	h := sha256.Sum256([]byte(token))
	ok := 0
	for _, want := range *t.set.Load() {
		ok |= subtle.ConstantTimeCompare(h[:], want[:])
	}
	return ok == 1
}

// needToken wraps h, a route of the client API, when tokens are set, so
// that it answers 401 to a request without a valid bearer token. /health
// and the status page's HTML stay open, and the node-to-node routes are
// authenticated as nodes (nodeOnly), not clients: routes.go registers
// those without it.
func (s *Server) needToken(h http.HandlerFunc) http.HandlerFunc {
	if s.cfg.Tokens == nil {
		return h
	}
	return func(w http.ResponseWriter, r *http.Request) {
		if given, valid := s.clientToken(r); !valid {
			w.Header().Set("WWW-Authenticate", `Bearer realm="countd"`)
			msg := "this node needs a client token: send Authorization: Bearer <token>, a token from its -client-token-file"
			if given {
				msg = "the bearer token is not one this node accepts (see its -client-token-file)"
			}
			s.writeError(w, &clientError{kind: errUnauthorized, msg: msg})
			return
		}
		h(w, r)
	}
}

// profilesOnly lets through to h (Go's profiles, with -pprof) a request
// that carries a valid client token (with -client-token-file), and
// otherwise what may use the node-to-node routes (nodeOnly: signed with the
// cluster key, or from loopback without one). A bad token is not refused
// here: the request may still be signed.
func (s *Server) profilesOnly(h http.HandlerFunc) http.HandlerFunc {
	guarded := s.nodeOnly(false, h) // loopback may read them without a certificate
	return func(w http.ResponseWriter, r *http.Request) {
		if _, valid := s.clientToken(r); valid {
			h(w, r)
			return
		}
		guarded(w, r)
	}
}

// clientToken reports whether r carries a bearer token, and whether it is
// one of the node's client tokens (never, without -client-token-file).
func (s *Server) clientToken(r *http.Request) (given, valid bool) {
	token, given := bearer(r.Header.Get("Authorization"))
	return given, given && s.cfg.Tokens != nil && s.cfg.Tokens.Valid(token)
}

// bearer returns the token of an Authorization header "Bearer <token>"
// (the scheme in any case, RFC 7235).
func bearer(header string) (string, bool) {
	scheme, token, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}
