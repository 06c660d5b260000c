package node

import (
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"countd/internal/bare"
)

// BenchmarkHTTPIncrement measures POST /increment over a real listener with
// 64 concurrent keep-alive clients, against a bare net/http handler doing one
// atomic add, in the same run: the two alternate in chunks so that machine
// noise hits both alike. It reports each side's rate and their ratio.
//
//	go test -run=^$ -bench=HTTPIncrement -benchtime=40000x ./node/
func BenchmarkHTTPIncrement(b *testing.B) {
	for _, mode := range []string{"memory", "durable"} {
		b.Run(mode, func(b *testing.B) {
			cfg := TestConfig()
			cfg.Logger = discard()
			if mode == "durable" {
				cfg.Memory = false
				cfg.DataDir = b.TempDir()
			}
			n, err := Open(cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer n.Close()
			compareWithBare(b, n.URL())
		})
	}
}

// compareWithBare drives b.N POST /increment at base with 64 concurrent
// keep-alive clients, and as many at a bare net/http handler doing one
// atomic add, alternating in chunks so that machine noise hits both alike.
// It reports both rates and their ratio. reset runs after the warm-up.
func compareWithBare(b *testing.B, base string, reset ...func()) {
	bare := startBare(b)
	const clients, chunk = 64, 2000
	client := &http.Client{Transport: &http.Transport{
		MaxIdleConns: 2 * clients, MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients,
	}}
	defer client.CloseIdleConnections()
	nodeURL, bareURL := base+"/increment", bare+"/increment"
	// Warm both up: connections, allocations.
	drive(b, client, bareURL, clients, 2*clients)
	drive(b, client, nodeURL, clients, 2*clients)
	for _, f := range reset {
		f()
	}

	var tNode, tBare time.Duration
	b.ResetTimer()
	for done := 0; done < b.N; done += chunk {
		k := min(chunk, b.N-done)
		tBare += drive(b, client, bareURL, clients, k)
		tNode += drive(b, client, nodeURL, clients, k)
	}
	b.StopTimer()
	rNode := float64(b.N) / tNode.Seconds()
	rBare := float64(b.N) / tBare.Seconds()
	b.ReportMetric(rNode, "req/s")
	b.ReportMetric(rBare, "bare-req/s")
	b.ReportMetric(rNode/rBare, "ratio-to-bare")
	b.ReportMetric(0, "ns/op") // includes the bare half; the rates say it better
}

// drive sends total POSTs from clients goroutines and returns the wall time.
func drive(b *testing.B, c *http.Client, url string, clients, total int) time.Duration {
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(total) {
				resp, err := c.Post(url, "", nil)
				if err != nil {
					b.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					b.Errorf("%s: status %d", url, resp.StatusCode)
					return
				}
			}
		}()
	}
	wg.Wait()
	return time.Since(start)
}

// startBare serves a bare net/http handler that does one atomic add and
// answers in the same shape as countd.
func startBare(b *testing.B) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: bare.Handler()}
	go srv.Serve(ln)
	b.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

// countingTransport counts the pushes (POST /replicate) a node sends.
type countingTransport struct {
	base   http.RoundTripper
	pushes *atomic.Int64
}

func (c countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Path == "/replicate" {
		c.pushes.Add(1)
	}
	return c.base.RoundTrip(r)
}

// BenchmarkClusterIncrement loads one node of a three-node cluster with 64
// concurrent keep-alive clients, alternating with a bare net/http atomic add
// as in BenchmarkHTTPIncrement, and reports the throughput ratio and the
// pushes each change caused (all nodes' pushes over the changes made).
//
//	go test -run=^$ -bench=ClusterIncrement -benchtime=40000x ./node/
func BenchmarkClusterIncrement(b *testing.B) {
	for _, mode := range []string{"memory", "durable"} {
		b.Run(mode, func(b *testing.B) {
			var pushes atomic.Int64
			var lns []net.Listener
			var addrs []string
			for i := 0; i < 3; i++ {
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					b.Fatal(err)
				}
				lns = append(lns, ln)
				addrs = append(addrs, ln.Addr().String())
			}
			var nodes []*Node
			for i, ln := range lns {
				cfg := DefaultConfig()
				cfg.Logger = discard()
				cfg.Listener = ln
				cfg.Memory = mode == "memory"
				cfg.DataDir = b.TempDir()
				cfg.RoundTripper = countingTransport{base: &http.Transport{MaxIdleConnsPerHost: 4}, pushes: &pushes}
				for j, a := range addrs {
					if j != i {
						cfg.Peers = append(cfg.Peers, a)
					}
				}
				n, err := Open(cfg)
				if err != nil {
					b.Fatal(err)
				}
				defer n.Close()
				nodes = append(nodes, n)
			}
			compareWithBare(b, nodes[0].URL(), func() { pushes.Store(0) })
			b.ReportMetric(float64(pushes.Load())/float64(b.N), "pushes/change")
		})
	}
}
