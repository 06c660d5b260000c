package dnstest

import (
	"context"
	"errors"
	"net"
	"slices"
	"testing"
)

func TestServerAnswersGoResolver(t *testing.T) {
	s := Start(t)
	s.SetHost("n1.countd.test", "127.0.0.2", "::1")
	s.SetSRV("_countd._tcp.countd.test", net.SRV{Target: "n1.countd.test", Port: 8081})
	r := s.Resolver()
	ctx := context.Background()

	ips, err := r.LookupHost(ctx, "N1.countd.test")
	slices.Sort(ips)
	if err != nil || !slices.Equal(ips, []string{"127.0.0.2", "::1"}) {
		t.Fatalf("LookupHost = %q, %v", ips, err)
	}
	_, srvs, err := r.LookupSRV(ctx, "", "", "_countd._tcp.countd.test")
	if err != nil || len(srvs) != 1 || srvs[0].Target != "n1.countd.test." || srvs[0].Port != 8081 {
		t.Fatalf("LookupSRV = %+v, %v", srvs, err)
	}
	var dnsErr *net.DNSError
	if _, err := r.LookupHost(ctx, "missing.countd.test"); !errors.As(err, &dnsErr) || !dnsErr.IsNotFound {
		t.Fatalf("LookupHost of a missing name: %v, want not found", err)
	}
	s.SetHost("n1.countd.test") // records removed: the name is still known, with none
	if ips, err := r.LookupHost(ctx, "n1.countd.test"); len(ips) != 0 || err == nil {
		t.Fatalf("LookupHost after removal = %q, %v", ips, err)
	}
	if s.Queries() == 0 {
		t.Fatal("no queries counted")
	}
}
