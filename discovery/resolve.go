package discovery

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Resolver looks names up. *net.Resolver implements it; tests use a fake,
// or a net.Resolver whose Dial reaches a DNS server of their own.
type Resolver interface {
	LookupHost(ctx context.Context, host string) ([]string, error)
	LookupSRV(ctx context.Context, service, proto, name string) (string, []*net.SRV, error)
}

var _ Resolver = (*net.Resolver)(nil)

// Resolve looks spec up and returns the peer addresses its records name,
// host:port, sorted and without duplicates. IP addresses are in their
// canonical form. If some lookups fail (an SRV target without addresses),
// it returns the addresses the others gave, and an error naming the
// failures.
func Resolve(ctx context.Context, r Resolver, spec Spec) ([]string, error) {
	var addrs []string
	var errs []error
	switch spec.Kind {
	case A:
		ips, err := hostIPs(ctx, r, spec.Name, spec.Port)
		if err != nil {
			return nil, fmt.Errorf("discovery: %s: %w", spec, err)
		}
		addrs = ips
	case SRV, SRVNoA:
		_, srvs, err := r.LookupSRV(ctx, "", "", spec.Name)
		if err != nil && len(srvs) == 0 {
			return nil, fmt.Errorf("discovery: %s: %w", spec, err)
		}
		if err != nil { // some records were malformed; the rest are good
			errs = append(errs, err)
		}
		for _, srv := range srvs {
			target := strings.ToLower(strings.TrimSuffix(srv.Target, "."))
			if target == "" || srv.Port == 0 {
				continue // "." means no service here (RFC 2782)
			}
			if spec.Kind == SRVNoA {
				addrs = append(addrs, net.JoinHostPort(target, strconv.Itoa(int(srv.Port))))
				continue
			}
			ips, err := hostIPs(ctx, r, target, int(srv.Port))
			if err != nil {
				errs = append(errs, err)
			}
			addrs = append(addrs, ips...)
		}
	default:
		return nil, fmt.Errorf("discovery: %s: unknown kind", spec)
	}
	slices.Sort(addrs)
	addrs = slices.Compact(addrs)
	if len(errs) > 0 {
		return addrs, fmt.Errorf("discovery: %s: %w", spec, errors.Join(errs...))
	}
	return addrs, nil
}

// hostIPs looks host up and returns ip:port for each of its addresses.
func hostIPs(ctx context.Context, r Resolver, host string, port int) ([]string, error) {
	found, err := r.LookupHost(ctx, host)
	if err != nil {
		return nil, err
	}
	addrs := make([]string, 0, len(found))
	for _, s := range found {
		ip, err := netip.ParseAddr(s)
		if err != nil || ip.Zone() != "" {
			continue // a zone names a link of this host, meaningless to a peer
		}
		addrs = append(addrs, net.JoinHostPort(ip.Unmap().String(), strconv.Itoa(port)))
	}
	return addrs, nil
}
