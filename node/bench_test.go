package node

import (
	"flag"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"countd/internal/bare"
)

// BenchmarkHTTPIncrement measures POST /increment over a real listener with
// 64 concurrent keep-alive clients (-bench.clients), against a bare net/http handler doing one
// atomic add, in the same run: the two alternate in chunks so that machine
// noise hits both alike. It reports each side's rate and their ratio.
//
// The durable case also runs a third side, the durable yardstick
// (bare.Syncing: the bare handler plus one group-committed fdatasync per
// batch, in the same temp dir as the node's store), and reports its ratio to
// bare (what this machine's disk allows any durable server) and the node's
// ratio to it (what countd's code costs on top).
//
//	go test -run=^$ -bench=HTTPIncrement -benchtime=40000x ./node/
//	go test -run=^$ -bench=HTTPIncrement/durable -benchtime=40000x ./node/ -args -bench.clients=256
func BenchmarkHTTPIncrement(b *testing.B) {
	for _, mode := range []string{"memory", "durable"} {
		b.Run(mode, func(b *testing.B) {
			cfg := TestConfig()
			cfg.Logger = discard()
			var sticks []yardstick
			if mode == "durable" {
				cfg.Memory = false
				cfg.DataDir = b.TempDir()
				sticks = append(sticks, startSyncing(b, cfg.DataDir))
			}
			n, err := Open(cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer n.Close()
			compareWithBare(b, n.URL(), sticks)
		})
	}
}

// benchClients is the number of concurrent clients of the HTTP benchmarks;
// the targets are for 64.
var benchClients = flag.Int("bench.clients", 64, "concurrent keep-alive clients in BenchmarkHTTPIncrement and BenchmarkClusterIncrement")

// A yardstick is a server countd is compared with: its URL and the name its
// figures are reported under.
type yardstick struct{ name, url string }

// compareWithBare drives b.N POST /increment at base with -bench.clients
// concurrent keep-alive clients, and as many at a bare net/http handler
// doing one atomic add (and at each extra yardstick), alternating in chunks
// so that machine noise hits all alike. It reports the rates and the
// ratios. reset runs after the warm-up.
func compareWithBare(b *testing.B, base string, extra []yardstick, reset ...func()) {
	sticks := append([]yardstick{{"bare", startBare(b)}}, extra...)
	clients, chunk := *benchClients, 2000
	client := &http.Client{Transport: &http.Transport{
		MaxIdleConns: (len(sticks) + 1) * clients, MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients,
	}}
	defer client.CloseIdleConnections()
	nodeURL := base + "/increment"
	// Warm all up: connections, allocations.
	for _, s := range sticks {
		drive(b, client, s.url+"/increment", clients, 2*clients)
	}
	drive(b, client, nodeURL, clients, 2*clients)
	for _, f := range reset {
		f()
	}

	var tNode time.Duration
	tSticks := make([]time.Duration, len(sticks))
	b.ResetTimer()
	for done := 0; done < b.N; done += chunk {
		k := min(chunk, b.N-done)
		for i, s := range sticks {
			tSticks[i] += drive(b, client, s.url+"/increment", clients, k)
		}
		tNode += drive(b, client, nodeURL, clients, k)
	}
	b.StopTimer()
	rate := func(t time.Duration) float64 { return float64(b.N) / t.Seconds() }
	rNode, rBare := rate(tNode), rate(tSticks[0])
	b.ReportMetric(rNode, "req/s")
	b.ReportMetric(rBare, "bare-req/s")
	b.ReportMetric(rNode/rBare, "ratio-to-bare")
	for i, s := range sticks[1:] {
		r := rate(tSticks[i+1])
		b.ReportMetric(r, s.name+"-req/s")
		b.ReportMetric(r/rBare, s.name+"-ratio-to-bare")
		b.ReportMetric(rNode/r, "ratio-to-"+s.name)
	}
	b.ReportMetric(0, "ns/op") // includes the yardsticks; the rates say it better
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
func startBare(b *testing.B) string { return serve(b, bare.Handler()) }

// startSyncing serves the durable yardstick with its file in dir.
func startSyncing(b *testing.B, dir string) yardstick {
	s, err := bare.NewSyncing(filepath.Join(dir, "yardstick"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() }) // after the server's Close: cleanups run last first
	return yardstick{"fsync", serve(b, s.Handler())}
}

func serve(b *testing.B, h http.Handler) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: h}
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
			compareWithBare(b, nodes[0].URL(), nil, func() { pushes.Store(0) })
			b.ReportMetric(float64(pushes.Load())/float64(b.N), "pushes/change")
		})
	}
}
