package auth

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sync"
)

// MinKeyLen is the fewest bytes a key may have once trimmed of white space.
const MinKeyLen = 32

// ErrKeyFile is wrapped by every error about a key file's content or
// reading it.
var ErrKeyFile = errors.New("auth: bad cluster key file")

// key is one shared secret and the id that names it in signatures.
type key struct {
	id     string
	secret []byte
}

// newKey derives k's id: the first 8 bytes, in hex, of an HMAC of a fixed
// string under k, which names the key without revealing it.
func newKey(secret []byte) key {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("countd key id"))
	return key{id: hex.EncodeToString(m.Sum(nil)[:8]), secret: secret}
}

// Keyring holds the cluster's keys: the first signs, every one verifies.
// It is safe for concurrent use, and Reload replaces its keys while
// requests are being signed and verified.
type Keyring struct {
	path string // the key file, for Reload; empty for New

	mu   sync.RWMutex
	keys []key
}

// New returns a keyring of keys, the first of which signs. Each key must be
// at least MinKeyLen bytes.
func New(keys ...[]byte) (*Keyring, error) {
	if len(keys) == 0 {
		return nil, fmt.Errorf("%w: no keys", ErrKeyFile)
	}
	k := &Keyring{}
	for i, s := range keys {
		if len(s) < MinKeyLen {
			return nil, fmt.Errorf("%w: key %d is %d bytes, want at least %d", ErrKeyFile, i+1, len(s), MinKeyLen)
		}
		k.keys = append(k.keys, newKey(bytes.Clone(s)))
	}
	return k, nil
}

// Load reads the key file at path (see ParseKeys) into a new keyring that
// Reload reads again.
func Load(path string) (*Keyring, error) {
	keys, err := readKeys(path)
	if err != nil {
		return nil, err
	}
	k, err := New(keys...)
	if err != nil {
		return nil, err
	}
	k.path = path
	return k, nil
}

// Reload reads the key file again and, if it is good, replaces the keys;
// if it is not, the keys stay as they were and the error says why. A
// keyring made by New has no file and does not change.
func (k *Keyring) Reload() error {
	if k.path == "" {
		return nil
	}
	keys, err := readKeys(k.path)
	if err != nil {
		return err
	}
	fresh, err := New(keys...)
	if err != nil {
		return err
	}
	k.Set(fresh)
	return nil
}

// Set replaces k's keys with those of other (not its file).
func (k *Keyring) Set(other *Keyring) {
	keys := other.snapshot()
	k.mu.Lock()
	k.keys = keys
	k.mu.Unlock()
}

// Path returns the key file k was loaded from, or "" for New.
func (k *Keyring) Path() string { return k.path }

// IDs returns the ids of k's keys, the signing key first, for logs.
func (k *Keyring) IDs() []string {
	var ids []string
	for _, key := range k.snapshot() {
		ids = append(ids, key.id)
	}
	return ids
}

func (k *Keyring) snapshot() []key {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.keys
}

func readKeys(path string) ([][]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w %s: %v", ErrKeyFile, path, errors.Unwrap(err))
	}
	return ParseKeys(path, data)
}

// ParseKeys reads a key file's content, named name in errors: one key per
// line, each trimmed of white space and at least MinKeyLen bytes; blank
// lines are skipped. A file with no key is an error.
func ParseKeys(name string, data []byte) ([][]byte, error) {
	var keys [][]byte
	for i, line := range bytes.Split(data, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		if len(line) < MinKeyLen {
			return nil, fmt.Errorf("%w %s: line %d: the key is %d bytes, want at least %d (make one with: head -c 32 /dev/urandom | base64)",
				ErrKeyFile, name, i+1, len(line), MinKeyLen)
		}
		keys = append(keys, line)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%w %s: no key in it; want one key per line, each at least %d bytes (make one with: head -c 32 /dev/urandom | base64)",
			ErrKeyFile, name, MinKeyLen)
	}
	return keys, nil
}
