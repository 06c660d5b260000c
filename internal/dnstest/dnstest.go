// Package dnstest is a DNS server for tests: it answers A, AAAA and SRV
// queries over UDP from records the test sets and changes while it runs,
// so that a node's discovery can be tested with Go's own resolver
// (Resolver, or /etc/resolv.conf pointed at it) instead of a fake.
package dnstest

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"golang.org/x/net/dns/dnsmessage"
)

// Server is a DNS server on UDP. It is authoritative for every name: a
// name with no records at all is NXDOMAIN; one with records of another
// type gets an empty answer.
type Server struct {
	conn net.PacketConn
	done chan struct{}

	mu      sync.Mutex
	hosts   map[string][]netip.Addr // by lower-case name with a trailing dot
	srvs    map[string][]net.SRV
	queries int
}

// Start starts a server on a free UDP port of 127.0.0.1; the test's
// cleanup stops it.
func Start(t testing.TB) *Server {
	t.Helper()
	return StartOn(t, "127.0.0.1:0")
}

// StartOn starts a server on addr (host:port, UDP).
func StartOn(t testing.TB, addr string) *Server {
	t.Helper()
	conn, err := net.ListenPacket("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{conn: conn, done: make(chan struct{}), hosts: map[string][]netip.Addr{}, srvs: map[string][]net.SRV{}}
	go s.serve()
	t.Cleanup(func() {
		conn.Close()
		<-s.done
	})
	return s
}

// Addr returns the server's address, host:port.
func (s *Server) Addr() string { return s.conn.LocalAddr().String() }

// Resolver returns Go's resolver (PreferGo) sending every query to s.
func (s *Server) Resolver() *net.Resolver {
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "udp", s.Addr())
		},
	}
}

// SetHost sets the A and AAAA records of name to ips (none: no records).
func (s *Server) SetHost(name string, ips ...string) {
	addrs := make([]netip.Addr, len(ips))
	for i, ip := range ips {
		addrs[i] = netip.MustParseAddr(ip)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hosts[fqdn(name)] = addrs
}

// SetSRV sets the SRV records of name (such as _countd._tcp.countd.test).
func (s *Server) SetSRV(name string, records ...net.SRV) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.srvs[fqdn(name)] = records
}

// Queries returns how many queries the server has answered.
func (s *Server) Queries() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queries
}

func fqdn(name string) string {
	return strings.ToLower(strings.TrimSuffix(name, ".")) + "."
}

func (s *Server) serve() {
	defer close(s.done)
	buf := make([]byte, 1500)
	for {
		n, from, err := s.conn.ReadFrom(buf)
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			continue
		}
		if reply, err := s.answer(buf[:n]); err == nil {
			s.conn.WriteTo(reply, from)
		}
	}
}

// answer builds the reply to one query.
func (s *Server) answer(query []byte) ([]byte, error) {
	var p dnsmessage.Parser
	h, err := p.Start(query)
	if err != nil {
		return nil, err
	}
	q, err := p.Question()
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.queries++
	name := strings.ToLower(q.Name.String())
	hosts, isHost := s.hosts[name]
	srvs, isSRV := s.srvs[name]
	rh := dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired}
	if !isHost && !isSRV {
		rh.RCode = dnsmessage.RCodeNameError
	}
	b := dnsmessage.NewBuilder(make([]byte, 0, 512), rh)
	b.EnableCompression()
	if err := b.StartQuestions(); err != nil {
		return nil, err
	}
	if err := b.Question(q); err != nil {
		return nil, err
	}
	if err := b.StartAnswers(); err != nil {
		return nil, err
	}
	res := dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 0}
	switch q.Type {
	case dnsmessage.TypeA, dnsmessage.TypeAAAA:
		for _, ip := range hosts {
			switch {
			case q.Type == dnsmessage.TypeA && ip.Is4():
				err = b.AResource(res, dnsmessage.AResource{A: ip.As4()})
			case q.Type == dnsmessage.TypeAAAA && ip.Is6():
				err = b.AAAAResource(res, dnsmessage.AAAAResource{AAAA: ip.As16()})
			}
			if err != nil {
				return nil, err
			}
		}
	case dnsmessage.TypeSRV:
		for _, r := range srvs {
			target, err := dnsmessage.NewName(fqdn(r.Target))
			if err != nil {
				return nil, err
			}
			srv := dnsmessage.SRVResource{Priority: r.Priority, Weight: r.Weight, Port: r.Port, Target: target}
			if err := b.SRVResource(res, srv); err != nil {
				return nil, err
			}
		}
	}
	return b.Finish()
}
