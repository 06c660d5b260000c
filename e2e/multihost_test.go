//go:build linux

package e2e

// Many hosts, as network namespaces (netns_test.go): every node has an
// address of its own, binds it with a cluster key, and finds the others
// only through DNS, from a real DNS server (github.com/miekg/dns) that
// serves A and SRV records on the namespaces' network. Each node's
// namespace gets /etc/netns/<ns>/resolv.conf naming that server, which
// `ip netns exec` mounts over /etc/resolv.conf: the node resolves through
// the system resolver, as it would on a host.

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

const (
	dnsZone    = "countd.test."
	dnsService = "_countd._tcp." + dnsZone
	// dnsInterval is the nodes' -dns-interval.
	dnsInterval = time.Second
)

// dnsServer serves the zone's A and SRV records, which tests change while
// it runs.
type dnsServer struct {
	mu    sync.Mutex
	hosts map[string]string // n<i>.countd.test. -> IPv4
	srv   *dns.Server
	addr  string // ip:53 on the hub's bridge
}

// add publishes node i at addr (host:port): its A record and an SRV record
// of the service.
func (d *dnsServer) add(i int, addr string) {
	host, _, _ := strings.Cut(addr, ":")
	d.mu.Lock()
	d.hosts[fmt.Sprintf("n%d.%s", i, dnsZone)] = host
	d.mu.Unlock()
}

func (d *dnsServer) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	d.mu.Lock()
	for _, q := range req.Question {
		name := strings.ToLower(q.Name)
		switch {
		case q.Qtype == dns.TypeA && d.hosts[name] != "":
			m.Answer = append(m.Answer, &dns.A{
				Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 0},
				A:   net.ParseIP(d.hosts[name]).To4(),
			})
		case q.Qtype == dns.TypeSRV && name == dnsService:
			for host := range d.hosts {
				m.Answer = append(m.Answer, &dns.SRV{
					Hdr:    dns.RR_Header{Name: q.Name, Rrtype: dns.TypeSRV, Class: dns.ClassINET, Ttl: 0},
					Port:   netnsPort,
					Target: host,
				})
			}
		case d.hosts[name] == "" && name != dnsService:
			m.Rcode = dns.RcodeNameError
		}
	}
	d.mu.Unlock()
	w.WriteMsg(m)
}

// startDNS gives the hub's bridge the address <subnet>.254 and serves the
// zone there over UDP, from a socket opened inside the hub namespace.
func startDNS(t *testing.T, c *netnsCluster) *dnsServer {
	t.Helper()
	host := c.subnet + "254"
	c.ip("-n", c.hub, "addr", "add", host+"/24", "dev", "br0")
	d := &dnsServer{hosts: map[string]string{}, addr: net.JoinHostPort(host, "53")}
	var pc net.PacketConn
	err := inNetns("/var/run/netns/"+c.hub, func() (err error) {
		pc, err = net.ListenPacket("udp", d.addr)
		return err
	})
	if err != nil {
		t.Fatalf("dns server: %v", err)
	}
	d.srv = &dns.Server{PacketConn: pc, Handler: d}
	started := make(chan struct{})
	d.srv.NotifyStartedFunc = func() { close(started) }
	go d.srv.ActivateAndServe()
	<-started
	t.Cleanup(func() { d.srv.Shutdown() })
	return d
}

// useDNS makes node i's namespace resolve through d: `ip netns exec` mounts
// /etc/netns/<ns>/resolv.conf over /etc/resolv.conf. The directory is the
// test's own and is removed at the end.
func useDNS(t *testing.T, c *netnsCluster, i int, d *dnsServer) {
	t.Helper()
	dir := filepath.Join("/etc/netns", fmt.Sprintf("%s-n%d", c.prefix, i))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Skipf("multi-host: skipped: cannot write %s: %v", dir, err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	host, _, _ := net.SplitHostPort(d.addr)
	conf := "nameserver " + host + "\noptions timeout:1 attempts:2\n"
	if err := os.WriteFile(filepath.Join(dir, "resolv.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestMultiHostDNS: five nodes on five "hosts" find each other through
// DNS SRV records alone; a sixth, started with no peers, joins every node
// once its records are added, within about one -dns-interval; then a
// rolling restart of the five (SIGTERM, restart on the same data dir, one
// at a time) under load loses no acknowledged change and counts none
// twice, and each node is back and in sync within a measured time.
func TestMultiHostDNS(t *testing.T) {
	c := newNetns(t)
	d := startDNS(t, c)
	spec := "-peers=dnssrv+" + strings.TrimSuffix(dnsService, ".")
	for i := range netnsNodes {
		useDNS(t, c, i, d)
		d.add(i, c.addrOf(i))
		c.addNode(i, spec, "-dns-interval="+dnsInterval.String())
	}
	began := time.Now()
	startAll(t, c.nodes...)
	c.awaitViews("the start, through DNS alone", allAliveViews(netnsNodes)...)
	t.Logf("five nodes found each other through DNS %v after the first start", time.Since(began).Round(time.Millisecond))

	// A sixth node with no peers: only its records make the others find it.
	useDNS(t, c, netnsNodes, d)
	sixth := c.addNode(netnsNodes)
	startAll(t, sixth)
	added := time.Now()
	d.add(netnsNodes, c.addrOf(netnsNodes))
	c.awaitViews("the sixth node's records added", allAliveViews(netnsNodes+1)...)
	// A figure for the record (speed is a benchmark here, not an
	// assertion): awaitViews fails the test only past faultTimeout.
	t.Logf("sixth node alive on every node %v after its records were added (-dns-interval %v)",
		time.Since(added).Round(time.Millisecond), dnsInterval)

	// A rolling restart of the first five under load on every node.
	l := newClusterLoad(t, clusterCounters)
	for _, n := range c.nodes {
		l.addClients(n, 1)
	}
	c.awaitNodeAcks(l, nil, 20, "before the rolling restart")
	for i := range netnsNodes {
		n := c.nodes[i]
		stopped := time.Now()
		n.proc.Stop() // SIGTERM: a graceful stop, exit status 0
		startAll(t, n)
		back := c.awaitViews(n.name+" restarted", allAliveViews(netnsNodes+1)...)
		t.Logf("%s: stopped with SIGTERM and back alive on every node after %v (%v from its start)",
			n.name, time.Since(stopped).Round(time.Millisecond), back.Round(time.Millisecond))
	}
	c.awaitNodeAcks(l, c.stats(l), 20, "after the rolling restart")
	l.stop()
	stopped := time.Now()
	values := awaitAgreement(t, c.nodes, l)
	t.Logf("agreement %v after the load stopped; load: %s", time.Since(stopped).Round(time.Millisecond), l)
	l.checkBounds(t, values)
}
