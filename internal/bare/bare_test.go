package bare

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"countd/internal/apiclient"
)

// post sends one increment and returns the value in the reply, which must
// be a 200.
func post(url string) (int64, error) {
	r := apiclient.Client{}.Change(url, "default", 1)
	if r.Status != http.StatusOK || r.Err != nil {
		return 0, fmt.Errorf("increment: status %d, %v", r.Status, r.Err)
	}
	return r.Value, nil
}

func TestHandlerCounts(t *testing.T) {
	srv := httptest.NewServer(Handler())
	defer srv.Close()
	for want := int64(1); want <= 3; want++ {
		got, err := post(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Fatalf("value %d, want %d", got, want)
		}
	}
}

// TestSyncingAnswersOnlyWhatIsWritten checks that every answer's value is
// already in the file when the client reads it, with requests from many
// clients sharing writes.
func TestSyncingAnswersOnlyWhatIsWritten(t *testing.T) {
	path := filepath.Join(t.TempDir(), "yardstick")
	s, err := NewSyncing(path)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	defer func() {
		srv.Close()
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	}()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	onDisk := func() int64 {
		var buf [8]byte
		if _, err := f.ReadAt(buf[:], 0); err != nil {
			t.Error(err)
		}
		return int64(binary.BigEndian.Uint64(buf[:]))
	}

	const clients, each = 8, 25
	seen := make([]bool, clients*each+1)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for range each {
				v, err := post(srv.URL)
				if err != nil {
					t.Error(err) // not Fatal: this is not the test's goroutine
					return
				}
				if d := onDisk(); d < v {
					t.Errorf("answered %d with %d in the file", v, d)
				}
				mu.Lock()
				if v < 1 || v >= int64(len(seen)) || seen[v] {
					t.Errorf("value %d out of range or answered twice", v)
				} else {
					seen[v] = true
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if d := onDisk(); d != clients*each {
		t.Fatalf("file holds %d, want %d", d, clients*each)
	}
}

// TestSyncingCloseAnswersWaiters checks that a request that cannot be
// written any more is answered 503, not left hanging.
func TestSyncingCloseAnswersWaiters(t *testing.T) {
	s, err := NewSyncing(filepath.Join(t.TempDir(), "yardstick"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/increment", nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("status %d after Close, want 503", rec.Code)
	}
}

// TestRESPServer checks both RESP yardsticks: every command counts once, in
// order, a pipeline too, and the durable one's value is on disk when the
// reply comes.
func TestRESPServer(t *testing.T) {
	for _, durable := range []bool{false, true} {
		var s *Syncing
		var path string
		if durable {
			path = filepath.Join(t.TempDir(), "yardstick")
			var err error
			if s, err = NewSyncing(path); err != nil {
				t.Fatal(err)
			}
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := RESPServer(s)
		served := make(chan error, 1)
		go func() { served <- srv.Serve(ln) }()
		conn, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		// One command, then a pipeline of three in one write.
		r := bufio.NewReader(conn)
		for _, batch := range []string{"INCR a\r\n", "INCR a\r\nINCR a\r\nINCR a\r\n"} {
			if _, err := conn.Write([]byte(batch)); err != nil {
				t.Fatal(err)
			}
		}
		for want := 1; want <= 4; want++ {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			if line != fmt.Sprintf(":%d\r\n", want) {
				t.Fatalf("durable %v: reply %q, want :%d", durable, line, want)
			}
			if durable {
				b, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				if got := binary.BigEndian.Uint64(b); got < uint64(want) {
					t.Fatalf("reply %d came with %d on disk", want, got)
				}
			}
		}
		conn.Close()
		srv.Close()
		if err := <-served; err != nil {
			t.Fatal(err)
		}
		if s != nil {
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
		}
	}
}
