package auth

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzParseHeader: a header either parses into a Signature that formats
// back to the same text, or is refused with ErrMalformed.
func FuzzParseHeader(f *testing.F) {
	f.Add("t=1767225600,k=0123456789abcdef,s=" + string(bytes.Repeat([]byte("ab"), 32)))
	f.Add("t=1,k=,s=")
	f.Add(",,")
	f.Fuzz(func(t *testing.T, v string) {
		s, err := ParseHeader(v)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v is not ErrMalformed", err)
			}
			return
		}
		if s.String() != v {
			t.Fatalf("ParseHeader(%q) formats back as %q", v, s.String())
		}
	})
}

// FuzzParseKeys: a key file either gives keys that are each trimmed and at
// least MinKeyLen bytes, or an error naming the file.
func FuzzParseKeys(f *testing.F) {
	f.Add([]byte(string(keyA) + "\n" + string(keyB) + "\n"))
	f.Add([]byte("\n\n short \n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		keys, err := ParseKeys("f.key", data)
		if err != nil {
			if !errors.Is(err, ErrKeyFile) || !bytes.Contains([]byte(err.Error()), []byte("f.key")) {
				t.Fatalf("error %v does not name the file", err)
			}
			return
		}
		if len(keys) == 0 {
			t.Fatal("no error and no keys")
		}
		for _, k := range keys {
			if len(k) < MinKeyLen || !bytes.Equal(bytes.TrimSpace(k), k) || bytes.Contains(k, []byte("\n")) {
				t.Fatalf("bad key %q", k)
			}
		}
		if _, err := New(keys...); err != nil {
			t.Fatalf("New refuses parsed keys: %v", err)
		}
	})
}
