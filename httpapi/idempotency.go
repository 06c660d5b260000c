package httpapi

import (
	"net/http"
	"strings"
)

// The headers of idempotent changes (docs/design.md, "Idempotency keys").
const (
	// keyHeader carries the client's idempotency key on a change.
	keyHeader = "Idempotency-Key"
	// replayedHeader marks the answer to a change whose key had been used
	// for this very change before: nothing was counted again.
	replayedHeader = "Idempotent-Replayed"
)

// maxKeyLen is the longest idempotency key a node takes, in characters.
const maxKeyLen = 255

// keyForm is what an Idempotency-Key header may hold, for error messages.
const keyForm = "1 to 255 characters, each printable ASCII (space to '~'), " +
	`sent bare or as a quoted string ("..." with \" and \\ as escapes)`

// idempotencyKey reads the Idempotency-Key header of a change: "" if the
// request has none.
func idempotencyKey(r *http.Request) (string, error) {
	vals := r.Header[keyHeader]
	switch len(vals) {
	case 0:
		return "", nil
	case 1:
		return ParseIdempotencyKey(vals[0])
	}
	return "", badRequest("the Idempotency-Key header is given %d times; give it once, as %s", len(vals), keyForm)
}

// ParseIdempotencyKey parses the value of an Idempotency-Key header and
// returns the key. It takes the IETF draft's form, a structured-field
// string ("..." in which \" and \\ stand for " and \, and nothing may
// follow the closing quote), and the bare form other clients send (the
// value as it is). Either way the key must be 1 to 255 characters, each
// printable ASCII: 0x20 to 0x7E.
func ParseIdempotencyKey(v string) (string, error) {
	key := v
	if strings.HasPrefix(v, `"`) {
		var err error
		if key, err = unquoteSF(v); err != nil {
			return "", err
		}
	}
	if key == "" || len(key) > maxKeyLen {
		return "", badRequest("the Idempotency-Key must be %s; got %d characters", keyForm, len(key))
	}
	for i := 0; i < len(key); i++ {
		if c := key[i]; c < 0x20 || c > 0x7e {
			return "", badRequest("the Idempotency-Key must be %s; character %d of %s is not (byte 0x%02x)",
				keyForm, i+1, quote(key), c)
		}
	}
	return key, nil
}

// unquoteSF unquotes v, which starts with '"', as a structured-field
// string (RFC 8941 §3.3.3). The characters are checked by the caller.
func unquoteSF(v string) (string, error) {
	var b strings.Builder
	for i := 1; i < len(v); i++ {
		switch c := v[i]; c {
		case '\\':
			if i+1 == len(v) || v[i+1] != '"' && v[i+1] != '\\' {
				return "", badRequest(`the quoted Idempotency-Key %s has a \ that is not \" or \\; it must be %s`, quote(v), keyForm)
			}
			i++
			b.WriteByte(v[i])
		case '"':
			if i != len(v)-1 {
				return "", badRequest("the quoted Idempotency-Key %s goes on after its closing quote; it must be %s", quote(v), keyForm)
			}
			return b.String(), nil
		default:
			b.WriteByte(c)
		}
	}
	return "", badRequest("the quoted Idempotency-Key %s has no closing quote; it must be %s", quote(v), keyForm)
}
