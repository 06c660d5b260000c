package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Header is the request header that carries a signature.
const Header = "Countd-Signature"

// Window is how far a signature's timestamp may be from the verifier's
// clock, either way.
const Window = 5 * time.Minute

// Errors of Verify and ParseHeader; every one means the request is refused.
var (
	ErrUnsigned     = errors.New("auth: request is not signed")
	ErrMalformed    = errors.New("auth: malformed signature header")
	ErrExpired      = errors.New("auth: signature timestamp outside the window")
	ErrUnknownKey   = errors.New("auth: signed with a key this node does not have")
	ErrBadSignature = errors.New("auth: signature does not match")
)

// Signature is a parsed signature header.
type Signature struct {
	Time  int64  // Unix seconds
	KeyID string // 16 lowercase hex digits
	MAC   []byte // 32 bytes
}

// String formats s as the header carries it.
func (s Signature) String() string {
	return fmt.Sprintf("t=%d,k=%s,s=%s", s.Time, s.KeyID, hex.EncodeToString(s.MAC))
}

// ParseHeader parses a signature header: t=UNIX,k=KEYID,s=HEX, in that
// order, with no spaces.
func ParseHeader(v string) (Signature, error) {
	var s Signature
	parts := strings.Split(v, ",")
	if len(parts) != 3 {
		return s, fmt.Errorf("%w: want t=UNIX,k=KEYID,s=HEX", ErrMalformed)
	}
	field := func(i int, name string) (string, error) {
		val, ok := strings.CutPrefix(parts[i], name+"=")
		if !ok {
			return "", fmt.Errorf("%w: field %d is not %s=; want t=UNIX,k=KEYID,s=HEX", ErrMalformed, i+1, name)
		}
		return val, nil
	}
	t, err := field(0, "t")
	if err != nil {
		return s, err
	}
	if s.Time, err = strconv.ParseInt(t, 10, 64); err != nil || s.Time < 0 || t != strconv.FormatInt(s.Time, 10) {
		return s, fmt.Errorf("%w: t is not a Unix time in seconds", ErrMalformed)
	}
	if s.KeyID, err = field(1, "k"); err != nil {
		return s, err
	}
	if len(s.KeyID) != 16 || !isLowerHex(s.KeyID) {
		return s, fmt.Errorf("%w: k is not 16 lowercase hex digits", ErrMalformed)
	}
	mac, err := field(2, "s")
	if err != nil {
		return s, err
	}
	if len(mac) != 2*sha256.Size || !isLowerHex(mac) {
		return s, fmt.Errorf("%w: s is not %d lowercase hex digits", ErrMalformed, 2*sha256.Size)
	}
	s.MAC, _ = hex.DecodeString(mac)
	return s, nil
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// mac computes the signature of a request under secret.
func mac(secret []byte, method, target string, t int64, body []byte) []byte {
	sum := sha256.Sum256(body)
	m := hmac.New(sha256.New, secret)
	fmt.Fprintf(m, "countd-v1\n%s\n%s\n%d\n%x", method, target, t, sum)
	return m.Sum(nil)
}

// Sign sets r's signature header for body (nil for none) under the first
// key, at time now.
func (k *Keyring) Sign(r *http.Request, body []byte, now time.Time) {
	signer := k.snapshot()[0]
	t := now.Unix()
	s := Signature{Time: t, KeyID: signer.id, MAC: mac(signer.secret, r.Method, r.URL.RequestURI(), t, body)}
	r.Header.Set(Header, s.String())
}

// Verify checks r's signature header for body (nil or empty for none) at
// time now: it must be well formed, within Window of now, and made by one
// of k's keys over r's method, path, query and body. The MAC is compared
// in constant time.
func (k *Keyring) Verify(r *http.Request, body []byte, now time.Time) error {
	v := r.Header.Get(Header)
	if v == "" {
		return ErrUnsigned
	}
	s, err := ParseHeader(v)
	if err != nil {
		return err
	}
	if d := now.Sub(time.Unix(s.Time, 0)); d > Window || d < -Window {
		return fmt.Errorf("%w: signed at %s, %s from this node's clock (at most %s)",
			ErrExpired, time.Unix(s.Time, 0).UTC().Format(time.RFC3339), d.Round(time.Second), Window)
	}
	for _, key := range k.snapshot() {
		if key.id != s.KeyID {
			continue
		}
		if hmac.Equal(mac(key.secret, r.Method, r.URL.RequestURI(), s.Time, body), s.MAC) {
			return nil
		}
		return ErrBadSignature
	}
	return fmt.Errorf("%w (key id %s)", ErrUnknownKey, s.KeyID)
}
