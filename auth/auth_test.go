package auth

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	keyA = []byte("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
	keyB = []byte("bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb")
	now  = time.Unix(1767225600, 0)
)

func mustNew(t *testing.T, keys ...[]byte) *Keyring {
	t.Helper()
	k, err := New(keys...)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestParseKeys(t *testing.T) {
	long := strings.Repeat("k", MinKeyLen)
	tests := []struct {
		name    string
		data    string
		want    int    // keys
		wantErr string // substring of the error; "" for none
	}{
		{"one", long, 1, ""},
		{"trimmed and blank lines", "\n  " + long + "\t\r\n\n" + long + "x\n", 2, ""},
		{"short", long + "\nshort\n", 0, "line 2: the key is 5 bytes"},
		{"short once trimmed", "  " + long[1:] + "  ", 0, "line 1: the key is 31 bytes"},
		{"empty", "", 0, "no key in it"},
		{"only blanks", "\n \n\t\n", 0, "no key in it"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keys, err := ParseKeys("f.key", []byte(tt.data))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "f.key") || !errors.Is(err, ErrKeyFile) {
					t.Fatalf("err = %v, want one naming f.key and %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || len(keys) != tt.want {
				t.Fatalf("got %d keys, %v; want %d", len(keys), err, tt.want)
			}
			for _, k := range keys {
				if !bytes.Equal(bytes.TrimSpace(k), k) {
					t.Errorf("key %q not trimmed", k)
				}
			}
		})
	}
}

func TestLoadUnreadable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing.key")
	_, err := Load(path)
	if !errors.Is(err, ErrKeyFile) || !strings.Contains(err.Error(), path) {
		t.Fatalf("Load(missing) = %v, want an error naming the file", err)
	}
}

func newReq(method, target string) *http.Request {
	return httptest.NewRequest(method, target, nil)
}

func TestSignVerify(t *testing.T) {
	ring := mustNew(t, keyA)
	body := []byte(`{"x":1}`)
	signed := func() *http.Request {
		r := newReq(http.MethodPost, "/replicate?a=1")
		ring.Sign(r, body, now)
		return r
	}
	tests := []struct {
		name   string
		mutate func(r *http.Request) ([]byte, time.Time)
		want   error // nil: valid
	}{
		{"as signed", func(r *http.Request) ([]byte, time.Time) { return body, now }, nil},
		{"within window", func(r *http.Request) ([]byte, time.Time) { return body, now.Add(Window) }, nil},
		{"clock behind", func(r *http.Request) ([]byte, time.Time) { return body, now.Add(-Window) }, nil},
		{"too old", func(r *http.Request) ([]byte, time.Time) { return body, now.Add(Window + time.Second) }, ErrExpired},
		{"from the future", func(r *http.Request) ([]byte, time.Time) { return body, now.Add(-Window - time.Second) }, ErrExpired},
		{"other body", func(r *http.Request) ([]byte, time.Time) { return []byte(`{"x":2}`), now }, ErrBadSignature},
		{"no body", func(r *http.Request) ([]byte, time.Time) { return nil, now }, ErrBadSignature},
		{"other method", func(r *http.Request) ([]byte, time.Time) { r.Method = http.MethodPut; return body, now }, ErrBadSignature},
		{"other path", func(r *http.Request) ([]byte, time.Time) { r.URL.Path = "/peers"; return body, now }, ErrBadSignature},
		{"other query", func(r *http.Request) ([]byte, time.Time) { r.URL.RawQuery = "a=2"; return body, now }, ErrBadSignature},
		{"unsigned", func(r *http.Request) ([]byte, time.Time) { r.Header.Del(Header); return body, now }, ErrUnsigned},
		{"garbled", func(r *http.Request) ([]byte, time.Time) { r.Header.Set(Header, "t=1"); return body, now }, ErrMalformed},
		{"timestamp moved", func(r *http.Request) ([]byte, time.Time) {
			s, _ := ParseHeader(r.Header.Get(Header))
			s.Time++
			r.Header.Set(Header, s.String())
			return body, now
		}, ErrBadSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := signed()
			b, at := tt.mutate(r)
			err := ring.Verify(r, b, at)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("Verify = %v, want %v", err, tt.want)
			}
		})
	}
}

// The header carries the key's id and a MAC, never the key.
func TestKeyNeverSent(t *testing.T) {
	r := newReq(http.MethodGet, "/health")
	mustNew(t, keyA).Sign(r, nil, now)
	for name, vs := range r.Header {
		for _, v := range vs {
			if strings.Contains(v, string(keyA[:16])) {
				t.Fatalf("header %s carries the key: %s", name, v)
			}
		}
	}
}

func TestOtherKeyRefused(t *testing.T) {
	r := newReq(http.MethodGet, "/health")
	mustNew(t, keyB).Sign(r, nil, now)
	if err := mustNew(t, keyA).Verify(r, nil, now); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("Verify of another key's signature = %v, want ErrUnknownKey", err)
	}
}

// Rotation: every key verifies, the first one signs.
func TestRotation(t *testing.T) {
	old, both, next := mustNew(t, keyA), mustNew(t, keyB, keyA), mustNew(t, keyB)
	for _, c := range []struct {
		signer, verifier *Keyring
		ok               bool
	}{
		{old, both, true}, {both, old, false}, {both, next, true}, {next, both, true}, {old, next, false},
	} {
		r := newReq(http.MethodGet, "/health")
		c.signer.Sign(r, nil, now)
		if err := c.verifier.Verify(r, nil, now); (err == nil) != c.ok {
			t.Errorf("signer %v verifier %v: %v, want ok=%v", c.signer.IDs(), c.verifier.IDs(), err, c.ok)
		}
	}
}

func TestReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cluster.key")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(string(keyA) + "\n")
	ring, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	idA := ring.IDs()[0]
	write(string(keyB) + "\n" + string(keyA) + "\n")
	if err := ring.Reload(); err != nil {
		t.Fatal(err)
	}
	if ids := ring.IDs(); len(ids) != 2 || ids[1] != idA || ids[0] == idA {
		t.Fatalf("after reload ids = %v, want [B %s]", ids, idA)
	}
	write("short\n")
	if err := ring.Reload(); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Fatalf("Reload of a bad file = %v, want an error naming line 1", err)
	}
	if ids := ring.IDs(); len(ids) != 2 {
		t.Fatalf("a bad reload changed the keys: %v", ids)
	}
}

// Signing and verifying go on while the keys are replaced (run with -race).
func TestConcurrentReload(t *testing.T) {
	ring := mustNew(t, keyA, keyB)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				r := newReq(http.MethodPost, "/replicate")
				ring.Sign(r, []byte("x"), now)
				if err := ring.Verify(r, []byte("x"), now); err != nil && !errors.Is(err, ErrUnknownKey) {
					t.Error(err)
					return
				}
			}
		}()
	}
	for i := range 200 {
		if i%2 == 0 {
			ring.Set(mustNew(t, keyB, keyA))
		} else {
			ring.Set(mustNew(t, keyA, keyB))
		}
	}
	close(stop)
	wg.Wait()
}

func TestParseHeader(t *testing.T) {
	mac := strings.Repeat("0f", 32)
	tests := []struct {
		name string
		v    string
		ok   bool
	}{
		{"good", "t=1767225600,k=0123456789abcdef,s=" + mac, true},
		{"zero time", "t=0,k=0123456789abcdef,s=" + mac, true},
		{"order", "k=0123456789abcdef,t=1,s=" + mac, false},
		{"spaces", "t=1, k=0123456789abcdef, s=" + mac, false},
		{"negative time", "t=-1,k=0123456789abcdef,s=" + mac, false},
		{"plus time", "t=+1,k=0123456789abcdef,s=" + mac, false},
		{"leading zero", "t=01,k=0123456789abcdef,s=" + mac, false},
		{"upper hex key", "t=1,k=0123456789ABCDEF,s=" + mac, false},
		{"short key id", "t=1,k=0123,s=" + mac, false},
		{"short mac", "t=1,k=0123456789abcdef,s=" + mac[2:], false},
		{"extra field", "t=1,k=0123456789abcdef,s=" + mac + ",x=1", false},
		{"empty", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := ParseHeader(tt.v)
			if tt.ok != (err == nil) {
				t.Fatalf("ParseHeader(%q) = %v, want ok=%v", tt.v, err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v is not ErrMalformed", err)
			}
			if tt.ok && s.String() != tt.v {
				t.Fatalf("round trip: %q, want %q", s.String(), tt.v)
			}
		})
	}
}
