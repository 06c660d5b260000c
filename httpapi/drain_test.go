package httpapi

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestCloseDrainsKeepAliveClients: clients sending on keep-alive
// connections while the server closes each learn from a reply (Connection:
// close) that their connection is done, and then find the port closed; none
// has a request cut off (EOF or reset), which would leave it not knowing
// whether its change was applied. A connection that never carries a request
// does not hold the close up past the drain.
func TestCloseDrainsKeepAliveClients(t *testing.T) {
	f := newFake()
	s := NewServer(Config{Addr: "127.0.0.1:0", Counters: f, Node: testNode, Replica: testReplica})
	if err := s.Open(); err != nil {
		t.Fatal(err)
	}
	base := "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port()))
	idle, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port())))
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()

	const clients = 4
	var (
		started sync.WaitGroup
		done    sync.WaitGroup
		mu      sync.Mutex
		cut     []error // requests that got no reply, and not because the dial was refused
		closes  int     // replies that carried Connection: close
	)
	started.Add(clients)
	for range clients {
		done.Go(func() {
			tr := &http.Transport{}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: specTransport(t, tr), Timeout: 10 * time.Second}
			first := true
			for {
				resp, err := client.Post(base+"/counters/c/increment", "", nil)
				if err != nil {
					if !errors.Is(err, syscall.ECONNREFUSED) {
						mu.Lock()
						cut = append(cut, err)
						mu.Unlock()
					}
					if first {
						started.Done()
					}
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				mu.Lock()
				if resp.Close {
					closes++
				}
				mu.Unlock()
				if first {
					started.Done()
					first = false
				}
			}
		})
	}
	started.Wait()
	if err := s.Close(context.Background()); err != nil {
		t.Errorf("Close = %v, want nil", err)
	}
	done.Wait()
	if len(cut) > 0 {
		t.Errorf("%d requests were cut off by the close, want none: %v", len(cut), cut)
	}
	if closes < clients {
		t.Errorf("%d replies carried Connection: close, want one per client (%d)", closes, clients)
	}
	idle.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := idle.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("the connection that never carried a request: read = %v, want it closed", err)
	}
}
