package discovery

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// ErrBadSpec means a peer spec is not one of the DNS forms.
var ErrBadSpec = errors.New("bad DNS peer spec")

// Kind is how a Spec's name is looked up.
type Kind int

const (
	// A is dns+HOST:PORT: every A and AAAA record of HOST, at PORT.
	A Kind = iota + 1
	// SRV is dnssrv+_SERVICE._tcp.DOMAIN: the SRV records of the name,
	// each target looked up for its A and AAAA records, at the record's
	// port (as in Thanos and Grafana's dskit).
	SRV
	// SRVNoA is dnssrvnoa+_SERVICE._tcp.DOMAIN: the SRV records of the
	// name, each target name kept as it is, at the record's port (for nodes
	// that advertise their DNS names, such as a StatefulSet's pods).
	SRVNoA
)

// prefixes maps each spec prefix to its kind.
var prefixes = []struct {
	prefix string
	kind   Kind
}{{"dns+", A}, {"dnssrv+", SRV}, {"dnssrvnoa+", SRVNoA}}

// Forms names the spec forms, for error and help texts.
const Forms = "dns+HOST:PORT, dnssrv+_SERVICE._tcp.DOMAIN or dnssrvnoa+_SERVICE._tcp.DOMAIN"

// Spec is a DNS name whose records name peers.
type Spec struct {
	Kind Kind
	// Name is the name looked up: lower case, with no trailing dot. For A
	// it may be an IP address.
	Name string
	// Port is the peers' port, for A; SRV records carry their own.
	Port int
}

// String returns the spec as ParseSpec takes it.
func (s Spec) String() string {
	switch s.Kind {
	case A:
		return "dns+" + net.JoinHostPort(s.Name, strconv.Itoa(s.Port))
	case SRV:
		return "dnssrv+" + s.Name
	case SRVNoA:
		return "dnssrvnoa+" + s.Name
	}
	return fmt.Sprintf("Spec(%d)%s", s.Kind, s.Name)
}

// IsSpec reports whether s is meant as a DNS spec rather than an address:
// it starts with letters beginning "dns" and then a "+". ParseSpec says
// what is wrong with one that is not well formed.
func IsSpec(s string) bool {
	scheme, _, ok := strings.Cut(strings.TrimSpace(s), "+")
	scheme = strings.ToLower(scheme)
	return ok && strings.HasPrefix(scheme, "dns") &&
		strings.IndexFunc(scheme, func(r rune) bool { return r < 'a' || r > 'z' }) < 0
}

// ParseSpec parses a DNS peer spec: dns+HOST:PORT, dnssrv+_SERVICE._tcp.DOMAIN
// or dnssrvnoa+_SERVICE._tcp.DOMAIN. The prefix may be in any case.
func ParseSpec(s string) (Spec, error) {
	in := s
	s = strings.TrimSpace(s)
	scheme, rest, _ := strings.Cut(s, "+")
	scheme = strings.ToLower(scheme) + "+"
	bad := func(format string, args ...any) (Spec, error) {
		return Spec{}, fmt.Errorf("%w %q: %s", ErrBadSpec, in, fmt.Sprintf(format, args...))
	}
	var kind Kind
	for _, p := range prefixes {
		if scheme == p.prefix {
			kind = p.kind
		}
	}
	switch kind {
	case 0:
		return bad("unknown prefix %q; want %s", scheme, Forms)
	case A:
		host, port, err := net.SplitHostPort(rest)
		if err != nil {
			return bad("want dns+HOST:PORT")
		}
		p, err := strconv.Atoi(port)
		if err != nil || p < 1 || p > 65535 || len(port) > 5 || strings.Trim(port, "0123456789") != "" {
			return bad("port %q is not a number from 1 to 65535", port)
		}
		if ip, err := netip.ParseAddr(host); err == nil && ip.Zone() == "" {
			return Spec{Kind: A, Name: ip.Unmap().String(), Port: p}, nil
		}
		name, err := domainName(host)
		if err != nil {
			return bad("%v", err)
		}
		return Spec{Kind: A, Name: name, Port: p}, nil
	default:
		if _, port, err := net.SplitHostPort(rest); err == nil {
			return bad("an SRV name takes no port (%q): its records give the ports", port)
		}
		name, err := domainName(rest)
		if err != nil {
			return bad("%v", err)
		}
		labels := strings.Split(name, ".")
		if len(labels) < 3 || len(labels[0]) < 2 || labels[0][0] != '_' || labels[1] != "_tcp" {
			return bad("want %s_SERVICE._tcp.DOMAIN", scheme)
		}
		return Spec{Kind: kind, Name: name}, nil
	}
}

// domainName checks that s is a DNS name the resolver will look up, and
// returns it in lower case without a trailing dot. Labels hold letters,
// digits, '-' (not at either end) and '_' (SRV names begin with one).
func domainName(s string) (string, error) {
	name := strings.ToLower(strings.TrimSuffix(s, "."))
	if name == "" {
		return "", errors.New("empty name")
	}
	if len(name) > 253 {
		return "", fmt.Errorf("name longer than 253 characters")
	}
	for label := range strings.SplitSeq(name, ".") {
		if label == "" || len(label) > 63 {
			return "", fmt.Errorf("bad name %q: every label (between dots) must have 1 to 63 characters", s)
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return "", fmt.Errorf("bad name %q: a label may not begin or end with '-'", s)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return "", fmt.Errorf("bad name %q: want letters, digits, '-', '_' and dots", s)
			}
		}
	}
	return name, nil
}
