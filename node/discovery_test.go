package node_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"countd/internal/apiclient"
	"countd/internal/dnstest"
	"countd/node"
)

// logBuffer is a log sink a running node and the test share.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func openNode(t *testing.T, tune func(*node.Config)) *node.Node {
	t.Helper()
	cfg := node.TestConfig()
	cfg.Logger = slog.New(slog.DiscardHandler)
	if tune != nil {
		tune(&cfg)
	}
	n, err := node.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

func port(t *testing.T, n *node.Node) uint16 {
	t.Helper()
	_, p, _ := net.SplitHostPort(n.Addr())
	v, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return uint16(v)
}

// TestDNSDiscovery runs a node S that finds its peers through a DNS server
// in the test process, with Go's resolver: an SRV name that lists S itself
// and A, and a dns+ name that has no record yet. S registers A (never
// itself); a record added for B, and the dns+ name's record for C, make
// them members within a few -dns-interval with no restart; a peer removed
// with DELETE /peers, and a name of S's own that answers as S, stay out
// though DNS still names them.
func TestDNSDiscovery(t *testing.T) {
	const interval = 50 * time.Millisecond
	dns := dnstest.Start(t)
	a, b, c := openNode(t, nil), openNode(t, nil), openNode(t, nil)
	dns.SetHost("a.countd.test", "127.0.0.1")
	dns.SetHost("b.countd.test", "127.0.0.1")
	dns.SetHost("s.countd.test", "127.0.0.1")

	// S's port must be in DNS before S starts: take a listener first.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sPort := uint16(ln.Addr().(*net.TCPAddr).Port)
	const srv, alias = "_countd._tcp.countd.test", "_alias._tcp.countd.test"
	// A name for S that S cannot tell is its own before it asks.
	dns.SetSRV(alias, net.SRV{Target: "s.countd.test", Port: sPort})
	aliasAddr := fmt.Sprintf("s.countd.test:%d", sPort)
	dns.SetSRV(srv, net.SRV{Target: "s.countd.test", Port: sPort}, net.SRV{Target: "a.countd.test", Port: port(t, a)})
	var logs logBuffer
	s := openNode(t, func(cfg *node.Config) {
		cfg.Listener = ln
		cfg.DNSPeers = []string{"dnssrv+" + srv, fmt.Sprintf("dns+c.countd.test:%d", port(t, c)), "dnssrvnoa+" + alias}
		cfg.DNSInterval = interval
		cfg.Resolver = dns.Resolver()
		// S reaches names through the test's DNS server too, as a node
		// reaches them through the system resolver.
		cfg.RoundTripper = &http.Transport{DialContext: (&net.Dialer{Resolver: dns.Resolver()}).DialContext}
		cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})

	ctl := apiclient.Client{}
	peers := func() map[string]string {
		rows, err := ctl.Peers(context.Background(), s.URL())
		if err != nil {
			return map[string]string{"error": err.Error()}
		}
		return apiclient.PeerStates(rows, nil)
	}
	describe := func(m map[string]string) string { return fmt.Sprint(m) }

	waitFor(t, 5*time.Second, "S lists A alive, and not itself", func() (bool, string) {
		p := peers()
		_, self := p[s.Addr()]
		return p[a.Addr()] == "alive" && !self, describe(p)
	})
	waitFor(t, 5*time.Second, "S warns that c.countd.test has no record", func() (bool, string) {
		return strings.Contains(logs.String(), "DNS discovery failed"), ""
	})

	dns.SetSRV(srv, net.SRV{Target: "s.countd.test", Port: sPort}, net.SRV{Target: "a.countd.test", Port: port(t, a)},
		net.SRV{Target: "b.countd.test", Port: port(t, b)})
	added := time.Now()
	waitFor(t, 5*time.Second, "S registers B, added to the SRV records", func() (bool, string) {
		p := peers()
		_, ok := p[b.Addr()]
		return ok, describe(p)
	})
	d := time.Since(added)
	t.Logf("B registered %v after its record was added (-dns-interval %v)", d, interval)
	if d > 2*interval+time.Second {
		t.Errorf("B was registered %v after its record was added, with -dns-interval %v", d, interval)
	}
	dns.SetHost("c.countd.test", "127.0.0.1")
	waitFor(t, 5*time.Second, "S registers C once its A record exists", func() (bool, string) {
		p := peers()
		_, ok := p[c.Addr()]
		return ok, describe(p)
	})

	waitFor(t, 5*time.Second, "S drops its alias, which answers as S", func() (bool, string) {
		return strings.Contains(logs.String(), "peer address is this node"), ""
	})

	if err := ctl.RemovePeer(context.Background(), s.URL(), b.Addr()); err != nil {
		t.Fatal(err)
	}
	queries := dns.Queries()
	holdFor(t, 10*interval, "S keeps B removed, and its alias out, while DNS still names them", func() (bool, string) {
		p := peers()
		_, removed := p[b.Addr()]
		_, self := p[aliasAddr]
		return !removed && !self, describe(p)
	})
	if dns.Queries() <= queries {
		t.Fatal("S stopped resolving: the hold above proves nothing")
	}
}
