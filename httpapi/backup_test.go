package httpapi

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"countd/auth"
)

var backupRequest = nodeRequest{http.MethodGet, "/backup", ""}

// snapshotOf returns a Config.Snapshot that hands out data, and the count
// of snapshots taken and not closed.
func snapshotOf(data []byte) (func() (io.ReadCloser, int64, error), *int) {
	open := new(int)
	return func() (io.ReadCloser, int64, error) {
		*open++
		return closer{Reader: bytes.NewReader(data), close: func() { *open-- }}, int64(len(data)), nil
	}, open
}

type closer struct {
	io.Reader
	close func()
}

func (c closer) Close() error { c.close(); return nil }

// GET /backup streams the snapshot whole, as a file to save, and closes it.
func TestBackupStreamsSnapshot(t *testing.T) {
	data := bytes.Repeat([]byte("countd snapshot "), 10_000)
	snap, open := snapshotOf(data)
	s := keyedServer(newFakeCluster(), Config{Snapshot: snap})
	rec := send(t, s, backupRequest, loopbackClient, nil)
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d, want 200; body %.200s", rec.Code, rec.Body)
	}
	if !bytes.Equal(rec.Body.Bytes(), data) {
		t.Fatalf("body is %d bytes, not the %d of the snapshot", rec.Body.Len(), len(data))
	}
	h := rec.Header()
	if got := h.Get("Content-Type"); got != "application/octet-stream" {
		t.Errorf("Content-Type %q", got)
	}
	if got := h.Get("Content-Length"); got != strconv.Itoa(len(data)) {
		t.Errorf("Content-Length %q, want %d", got, len(data))
	}
	name := "countd-" + strings.ReplaceAll(testNode, ":", "-") + "-"
	if got := h.Get("Content-Disposition"); !strings.HasPrefix(got, `attachment; filename="`+name) || !strings.HasSuffix(got, `Z.db"`) {
		t.Errorf("Content-Disposition %q, want an attachment named %s<time>.db", got, name)
	}
	if *open != 0 {
		t.Errorf("%d snapshots left open", *open)
	}
}

// Who may take a backup: as the other node-to-node routes (auth.go).
func TestBackupGuarded(t *testing.T) {
	snap, _ := snapshotOf([]byte("data"))
	for _, tt := range []struct {
		name     string
		keys     *auth.Keyring
		insecure bool
		remote   string
		sign     signer
		want     int
	}{
		{"keyed, signed", clusterKeys, false, remoteClient, signedWith(clusterKeys, 0), http.StatusOK},
		{"keyed, anonymous", clusterKeys, false, remoteClient, nil, http.StatusUnauthorized},
		{"keyed, anonymous loopback", clusterKeys, false, loopbackClient, nil, http.StatusUnauthorized},
		{"keyed, another key", clusterKeys, false, remoteClient, signedWith(strangeKeys, 0), http.StatusUnauthorized},
		{"no key, loopback", nil, false, loopbackClient, nil, http.StatusOK},
		{"no key, remote", nil, false, remoteClient, nil, http.StatusForbidden},
		{"no key, remote, insecure", nil, true, remoteClient, nil, http.StatusOK},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := keyedServer(newFakeCluster(), Config{Keys: tt.keys, Insecure: tt.insecure, Snapshot: snap})
			rec := send(t, s, backupRequest, tt.remote, tt.sign)
			if rec.Code != tt.want {
				t.Fatalf("status %d, want %d; body %.200s", rec.Code, tt.want, rec.Body)
			}
			if tt.want != http.StatusOK {
				assertError(t, rec, tt.want)
				if rec.Body.String() == "data" {
					t.Fatal("refused request got the data")
				}
			}
		})
	}
}

// A node with no data file says so; a failed snapshot is a 500 that says
// what the node needs.
func TestBackupErrors(t *testing.T) {
	t.Run("memory", func(t *testing.T) {
		s := keyedServer(newFakeCluster(), Config{})
		rec := send(t, s, backupRequest, loopbackClient, nil)
		assertError(t, rec, http.StatusConflict)
		if !strings.Contains(rec.Body.String(), "-memory") {
			t.Errorf("body %s does not name -memory", rec.Body)
		}
	})
	t.Run("snapshot fails", func(t *testing.T) {
		fail := func() (io.ReadCloser, int64, error) {
			return nil, 0, errors.New("store: snapshot: no space left on device")
		}
		s := keyedServer(newFakeCluster(), Config{Snapshot: fail})
		rec := send(t, s, backupRequest, loopbackClient, nil)
		assertError(t, rec, http.StatusInternalServerError)
		if !strings.Contains(rec.Body.String(), "free space") {
			t.Errorf("body %s does not say the node needs free space", rec.Body)
		}
	})
	t.Run("query", func(t *testing.T) {
		snap, _ := snapshotOf([]byte("data"))
		s := keyedServer(newFakeCluster(), Config{Snapshot: snap})
		rec := send(t, s, nodeRequest{http.MethodGet, "/backup?full=1", ""}, loopbackClient, nil)
		assertError(t, rec, http.StatusBadRequest)
	})
}

// Over a real connection, a stream that outlasts the server's write
// timeout (sized for one request) still arrives whole: each write moves
// the deadline on.
func TestBackupOutlastsWriteTimeout(t *testing.T) {
	const chunks = 8
	s := keyedServer(newFakeCluster(), Config{
		Addr:           "127.0.0.1:0",
		RequestTimeout: time.Millisecond, // write timeout 5.001s
		Snapshot: func() (io.ReadCloser, int64, error) {
			return io.NopCloser(&slowReader{left: chunks, every: 700 * time.Millisecond}), chunks * slowChunk, nil
		},
	})
	if testing.Short() {
		t.Skip("takes about 6s")
	}
	if err := s.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(t.Context()) })
	resp, err := (&http.Client{Transport: specTransport(t, nil)}).Get("http://127.0.0.1:" + strconv.Itoa(s.Port()) + "/backup")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	if err != nil || n != chunks*slowChunk {
		t.Fatalf("read %d of %d bytes: %v", n, chunks*slowChunk, err)
	}
}

const slowChunk = 64 << 10

// slowReader hands out left chunks of slowChunk bytes, one each every.
type slowReader struct {
	left  int
	every time.Duration
	buf   []byte
}

func (r *slowReader) Read(p []byte) (int, error) {
	if len(r.buf) == 0 {
		if r.left == 0 {
			return 0, io.EOF
		}
		time.Sleep(r.every) // the disk is slow: the point of the test, not a wait for a condition
		r.left--
		r.buf = make([]byte, slowChunk)
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}
