package wire

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"unicode"
)

// ErrBadAddr means a peer address is not a port, host:port or http://host:port.
var ErrBadAddr = errors.New("bad peer address")

// ParseAddr normalises a peer address to host:port. It accepts a bare port
// ("8081", meaning 127.0.0.1:8081), "host:port", and "http://host:port" with
// at most a trailing slash.
func ParseAddr(s string) (string, error) {
	in := s
	s = strings.TrimSpace(s)
	if rest, ok := strings.CutPrefix(s, "http://"); ok {
		s = strings.TrimSuffix(rest, "/")
	}
	if s == "" {
		return "", fmt.Errorf("%w: empty", ErrBadAddr)
	}
	if isDigits(s) {
		p, err := parsePort(s)
		if err != nil {
			return "", fmt.Errorf("%w %q: %v", ErrBadAddr, in, err)
		}
		return net.JoinHostPort("127.0.0.1", strconv.Itoa(p)), nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", fmt.Errorf("%w %q: want a port, host:port or http://host:port", ErrBadAddr, in)
	}
	if host == "" || strings.ContainsAny(host, "/?#@ %\\") ||
		strings.IndexFunc(host, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
		return "", fmt.Errorf("%w %q: bad host", ErrBadAddr, in)
	}
	p, err := parsePort(port)
	if err != nil {
		return "", fmt.Errorf("%w %q: %v", ErrBadAddr, in, err)
	}
	return net.JoinHostPort(strings.ToLower(host), strconv.Itoa(p)), nil
}

// ParseAddrList parses a comma-separated list of peer addresses, dropping
// empty items and duplicates.
func ParseAddrList(s string) ([]string, error) {
	var out []string
	seen := make(map[string]bool)
	for _, item := range strings.Split(s, ",") {
		if strings.TrimSpace(item) == "" {
			continue
		}
		a, err := ParseAddr(item)
		if err != nil {
			return nil, err
		}
		if !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	return out, nil
}

func parsePort(s string) (int, error) {
	if !isDigits(s) || len(s) > 5 {
		return 0, fmt.Errorf("port %q is not a number from 1 to 65535", s)
	}
	p, _ := strconv.Atoi(s)
	if p < 1 || p > 65535 {
		return 0, fmt.Errorf("port %q is not a number from 1 to 65535", s)
	}
	return p, nil
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
