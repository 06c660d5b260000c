package discovery

import (
	"errors"
	"strings"
	"testing"
)

func TestParseSpec(t *testing.T) {
	tests := []struct {
		name, in string
		want     Spec
	}{
		{"a name", "dns+countd.default.svc:8080", Spec{A, "countd.default.svc", 8080}},
		{"a name, upper case, trailing dot", " DNS+Countd.Example.:80 ", Spec{A, "countd.example", 80}},
		{"one label", "dns+localhost:8081", Spec{A, "localhost", 8081}},
		{"an IPv4 address", "dns+10.0.0.1:8080", Spec{A, "10.0.0.1", 8080}},
		{"an IPv6 address", "dns+[::1]:8080", Spec{A, "::1", 8080}},
		{"an IPv4-mapped IPv6 address", "dns+[::ffff:10.0.0.1]:8080", Spec{A, "10.0.0.1", 8080}},
		{"srv", "dnssrv+_http._tcp.countd.default.svc.cluster.local", Spec{SRV, "_http._tcp.countd.default.svc.cluster.local", 0}},
		{"srv, trailing dot", "dnssrv+_countd._tcp.example.", Spec{SRV, "_countd._tcp.example", 0}},
		{"srv without addresses", "dnssrvnoa+_countd._tcp.countd.svc", Spec{SRVNoA, "_countd._tcp.countd.svc", 0}},
		{"underscores and hyphens", "dns+my_host.x-1.example:1", Spec{A, "my_host.x-1.example", 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !IsSpec(tt.in) {
				t.Errorf("IsSpec(%q) = false", tt.in)
			}
			got, err := ParseSpec(tt.in)
			if err != nil || got != tt.want {
				t.Fatalf("ParseSpec(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
			}
			again, err := ParseSpec(got.String())
			if err != nil || again != got {
				t.Fatalf("ParseSpec(%q) = %+v, %v; want it back", got.String(), again, err)
			}
		})
	}
}

func TestParseSpecErrors(t *testing.T) {
	long := strings.Repeat("a", 64)
	longer := strings.Repeat(strings.Repeat("a", 50)+".", 6)
	tests := []struct{ name, in, want string }{
		{"unknown prefix", "dnsa+x:80", `bad DNS peer spec "dnsa+x:80": unknown prefix "dnsa+"; want ` + Forms},
		{"no port", "dns+countd", `bad DNS peer spec "dns+countd": want dns+HOST:PORT`},
		{"empty", "dns+", `bad DNS peer spec "dns+": want dns+HOST:PORT`},
		{"empty host", "dns+:80", `bad DNS peer spec "dns+:80": empty name`},
		{"port 0", "dns+x:0", `bad DNS peer spec "dns+x:0": port "0" is not a number from 1 to 65535`},
		{"port too big", "dns+x:65536", `bad DNS peer spec "dns+x:65536": port "65536" is not a number from 1 to 65535`},
		{"port not a number", "dns+x:http", `bad DNS peer spec "dns+x:http": port "http" is not a number from 1 to 65535`},
		{"signed port", "dns+x:+80", `bad DNS peer spec "dns+x:+80": port "+80" is not a number from 1 to 65535`},
		{"bad character", "dns+a/b:80", `bad DNS peer spec "dns+a/b:80": bad name "a/b": want letters, digits, '-', '_' and dots`},
		{"space", "dns+a b:80", `bad DNS peer spec "dns+a b:80": bad name "a b": want letters, digits, '-', '_' and dots`},
		{"empty label", "dns+a..b:80", `bad DNS peer spec "dns+a..b:80": bad name "a..b": every label (between dots) must have 1 to 63 characters`},
		{"label too long", "dns+" + long + ":80", `bad DNS peer spec "dns+` + long + `:80": bad name "` + long + `": every label (between dots) must have 1 to 63 characters`},
		{"name too long", "dns+" + longer + "x:80", `bad DNS peer spec "dns+` + longer + `x:80": name longer than 253 characters`},
		{"leading hyphen", "dns+-a:80", `bad DNS peer spec "dns+-a:80": bad name "-a": a label may not begin or end with '-'`},
		{"IPv6 with a zone", "dns+[fe80::1%eth0]:80", `bad DNS peer spec "dns+[fe80::1%eth0]:80": bad name "fe80::1%eth0": want letters, digits, '-', '_' and dots`},
		{"srv with a port", "dnssrv+_c._tcp.x:8080", `bad DNS peer spec "dnssrv+_c._tcp.x:8080": an SRV name takes no port ("8080"): its records give the ports`},
		{"srv without service", "dnssrv+countd.svc", `bad DNS peer spec "dnssrv+countd.svc": want dnssrv+_SERVICE._tcp.DOMAIN`},
		{"srv over udp", "dnssrv+_c._udp.x", `bad DNS peer spec "dnssrv+_c._udp.x": want dnssrv+_SERVICE._tcp.DOMAIN`},
		{"srv without domain", "dnssrvnoa+_c._tcp", `bad DNS peer spec "dnssrvnoa+_c._tcp": want dnssrvnoa+_SERVICE._tcp.DOMAIN`},
		{"srv bare underscore", "dnssrv+_._tcp.x", `bad DNS peer spec "dnssrv+_._tcp.x": want dnssrv+_SERVICE._tcp.DOMAIN`},
		{"srv empty", "dnssrv+", `bad DNS peer spec "dnssrv+": empty name`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !IsSpec(tt.in) {
				t.Errorf("IsSpec(%q) = false", tt.in)
			}
			got, err := ParseSpec(tt.in)
			if err == nil {
				t.Fatalf("ParseSpec(%q) = %+v, want an error", tt.in, got)
			}
			if !errors.Is(err, ErrBadSpec) || err.Error() != tt.want {
				t.Fatalf("ParseSpec(%q) error\n got %v\nwant %s", tt.in, err, tt.want)
			}
		})
	}
}

func TestIsSpecLeavesAddressesAlone(t *testing.T) {
	for _, s := range []string{"8081", "127.0.0.1:8081", "dns.example:53", "http://dns:80", "dnsmasq:53", "x+dns:80", "d+x:80"} {
		if IsSpec(s) {
			t.Errorf("IsSpec(%q) = true, want an address", s)
		}
	}
}

// FuzzParseSpec checks that ParseSpec never panics, that what it accepts
// it prints back in a form it reads the same, and that a name it accepts
// holds only what DNS names hold.
func FuzzParseSpec(f *testing.F) {
	for _, s := range []string{
		"dns+countd:8080", "dns+[::1]:80", "dnssrv+_a._tcp.b", "dnssrvnoa+_a._tcp.b.", "dns+:80",
		"DNS+x.Y.:65535", "dnssrv+_a._tcp.b:1", "dns+a..b:1", "dnsx+y", "dns+[fe80::1%25e]:1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		spec, err := ParseSpec(s)
		if err != nil {
			if !errors.Is(err, ErrBadSpec) {
				t.Fatalf("ParseSpec(%q) error %v does not wrap ErrBadSpec", s, err)
			}
			return
		}
		if spec.Kind == A && (spec.Port < 1 || spec.Port > 65535) {
			t.Fatalf("ParseSpec(%q) = %+v: port out of range", s, spec)
		}
		if spec.Kind != A && spec.Port != 0 {
			t.Fatalf("ParseSpec(%q) = %+v: an SRV spec with a port", s, spec)
		}
		if spec.Name == "" || strings.ContainsAny(spec.Name, " /%@?#\\\x00") || spec.Name != strings.ToLower(spec.Name) {
			t.Fatalf("ParseSpec(%q) = %+v: bad name", s, spec)
		}
		again, err := ParseSpec(spec.String())
		if err != nil || again != spec {
			t.Fatalf("ParseSpec(%q) = %+v, but ParseSpec(%q) = %+v, %v", s, spec, spec.String(), again, err)
		}
	})
}
