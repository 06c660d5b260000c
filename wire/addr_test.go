package wire_test

import (
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"unicode"

	"countd/wire"
)

func TestParseAddr(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string // "" means an error wrapping ErrBadAddr
	}{
		{"bare port", "8081", "127.0.0.1:8081"},
		{"bare port 1", "1", "127.0.0.1:1"},
		{"bare port 65535", "65535", "127.0.0.1:65535"},
		{"bare port with leading zero", "08081", "127.0.0.1:8081"},
		{"bare port with spaces", " 8081 ", "127.0.0.1:8081"},
		{"host:port", "localhost:8081", "localhost:8081"},
		{"ip:port", "10.0.0.7:9000", "10.0.0.7:9000"},
		{"host is lowercased", "Node-A.Example:80", "node-a.example:80"},
		{"port with leading zero", "h:0080", "h:80"},
		{"http url", "http://h:1", "h:1"},
		{"http url with slash", "http://h:1/", "h:1"},
		{"http bare port", "http://8081", "127.0.0.1:8081"},
		{"ipv6 literal", "[::1]:8081", "[::1]:8081"},
		{"ipv6 http url", "http://[::1]:8081/", "[::1]:8081"},
		{"brackets around a name are dropped", "[h]:1", "h:1"},

		{"port 0", "0", ""},
		{"port 65536", "65536", ""},
		{"huge port", "99999999999999999999", ""},
		{"empty", "", ""},
		{"blank", "   ", ""},
		{"no port", "h:", ""},
		{"no host", ":80", ""},
		{"only http", "http://", ""},
		{"only http slash", "http:///", ""},
		{"host only", "h", ""},
		{"slash in host", "a/b:1", ""},
		{"two colons", "h:1:2", ""},
		{"negative port", "h:-1", ""},
		{"port 0 with host", "h:0", ""},
		{"port 65536 with host", "h:65536", ""},
		{"word port", "h:http", ""},
		{"https url", "https://h:1", ""},
		{"url with path", "http://h:1/x", ""},
		{"url with two slashes", "http://h:1//", ""},
		{"url with user", "http://u@h:1", ""},
		{"url with query", "http://h:1?x", ""},
		{"ipv6 without brackets", "::1:8081", ""},
		{"ipv6 without port", "[::1]", ""},
		{"ipv6 zone", "[fe80::1%eth0]:1", ""},
		{"space in host", "a b:1", ""},
		{"tab in host", "a\tb:1", ""},
		{"tab after scheme", "http://\th:1", ""},
		{"newline in host", "a\nb:1", ""},
		{"backslash in host", `a\b:1`, ""},
		{"hash in host", "a#b:1", ""},
		{"comma", "h:1,h:2", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := wire.ParseAddr(tt.in)
			if tt.want == "" {
				if err == nil {
					t.Fatalf("ParseAddr(%q) = %q, want an error", tt.in, got)
				}
				if !errors.Is(err, wire.ErrBadAddr) {
					t.Errorf("ParseAddr(%q) error %v does not wrap ErrBadAddr", tt.in, err)
				}
				if got != "" {
					t.Errorf("ParseAddr(%q) = %q with an error, want \"\"", tt.in, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseAddr(%q) = error %v, want %q", tt.in, err, tt.want)
			}
			if got != tt.want {
				t.Errorf("ParseAddr(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// TestParseAddrUppercaseScheme pins what "HTTP://h:1" gives. URL schemes
// are case-insensitive (RFC 3986 §3.1), so "h:1" would be right; today it is
// refused. Either is acceptable; any other address is not.
func TestParseAddrUppercaseScheme(t *testing.T) {
	for _, in := range []string{"HTTP://h:1", "Http://h:1/"} {
		got, err := wire.ParseAddr(in)
		switch {
		case err == nil && got != "h:1":
			t.Errorf("ParseAddr(%q) = %q, want h:1 or an error", in, got)
		case err != nil && !errors.Is(err, wire.ErrBadAddr):
			t.Errorf("ParseAddr(%q) error %v does not wrap ErrBadAddr", in, err)
		}
	}
}

func TestParseAddrList(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []string
		wantErr bool
	}{
		{name: "empty", in: "", want: nil},
		{name: "only commas and blanks", in: " , ,, ", want: nil},
		{name: "one", in: "8081", want: []string{"127.0.0.1:8081"}},
		{
			name: "every form, in order",
			in:   "8081,localhost:8082,http://127.0.0.1:8083",
			want: []string{"127.0.0.1:8081", "localhost:8082", "127.0.0.1:8083"},
		},
		{
			name: "empty items dropped",
			in:   ",8081,, ,8082,",
			want: []string{"127.0.0.1:8081", "127.0.0.1:8082"},
		},
		{
			name: "duplicates after normalising dropped, first kept",
			in:   "8081,127.0.0.1:8081,http://127.0.0.1:8081/, 8081 ,8082,H:1,h:1",
			want: []string{"127.0.0.1:8081", "127.0.0.1:8082", "h:1"},
		},
		{
			name: "leading zero is the same port",
			in:   "8081,08081,127.0.0.1:08081",
			want: []string{"127.0.0.1:8081"},
		},
		{name: "one bad item fails the list", in: "8081,foo/bar,8082", wantErr: true},
		{name: "bad last item", in: "8081,0", wantErr: true},
		{name: "bad first item", in: "h:,8081", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := wire.ParseAddrList(tt.in)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("ParseAddrList(%q) = %q, want an error", tt.in, got)
				}
				if !errors.Is(err, wire.ErrBadAddr) {
					t.Errorf("ParseAddrList(%q) error %v does not wrap ErrBadAddr", tt.in, err)
				}
				if got != nil {
					t.Errorf("ParseAddrList(%q) = %q with an error, want nil", tt.in, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseAddrList(%q) = error %v", tt.in, err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("ParseAddrList(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func FuzzParseAddr(f *testing.F) {
	for _, s := range []string{
		"8081", "08081", "0", "65536", "", " ", "localhost:8081", "http://h:1/", "HTTP://h:1",
		"[::1]:8081", "[h]:1", "h:", ":80", "http://", "a/b:1", "h:1:2", "h:-1", "H:0080",
		"http://\th:1", "a\tb:1", "[a:b]:1", "http://http://h:1", "É:1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out, err := wire.ParseAddr(in)
		if err != nil {
			if !errors.Is(err, wire.ErrBadAddr) {
				t.Fatalf("ParseAddr(%q) error %v does not wrap ErrBadAddr", in, err)
			}
			return
		}
		// A normalised address is its own normal form, so a peer named two
		// ways is registered once.
		again, err := wire.ParseAddr(out)
		if err != nil {
			t.Fatalf("ParseAddr(%q) = %q, which does not parse again: %v", in, out, err)
		}
		if again != out {
			t.Fatalf("ParseAddr(%q) = %q, but ParseAddr(%q) = %q", in, out, out, again)
		}
		host, port, err := net.SplitHostPort(out)
		if err != nil || host == "" || port == "" {
			t.Fatalf("ParseAddr(%q) = %q, not host:port (%v)", in, out, err)
		}
		if strings.IndexFunc(host, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
			t.Fatalf("ParseAddr(%q) = %q: host holds a space or control character", in, out)
		}
	})
}
