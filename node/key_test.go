package node

import (
	"bytes"
	"log/slog"
	"net"
	"strings"
	"testing"
)

// A node bound to every interface with -insecure and no key warns once at
// start; a loopback node does not. The listener stays on loopback: Bind
// only decides the check.
func TestInsecureWarnsOnce(t *testing.T) {
	for _, tt := range []struct {
		bind  string
		warns int
	}{{"0.0.0.0", 1}, {"127.0.0.1", 0}} {
		t.Run(tt.bind, func(t *testing.T) {
			var logs bytes.Buffer
			cfg := TestConfig()
			cfg.Bind, cfg.Insecure = tt.bind, true
			cfg.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			cfg.Listener = ln
			n, err := Open(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if err := n.Close(); err != nil {
				t.Fatal(err)
			}
			if got := strings.Count(logs.String(), "-insecure"); got != tt.warns {
				t.Fatalf("%d -insecure warnings, want %d; logs:\n%s", got, tt.warns, logs.String())
			}
		})
	}
}

// Without -insecure or a key, a non-loopback bind is refused before
// anything starts.
func TestOpenBindNeedsKey(t *testing.T) {
	for _, bind := range []string{"0.0.0.0", "", "192.0.2.1", "example.com"} {
		cfg := TestConfig()
		cfg.Bind = bind
		if _, err := Open(cfg); err == nil || !strings.Contains(err.Error(), "-cluster-key-file") {
			t.Errorf("Open with -bind %q and no key: %v, want an error naming -cluster-key-file", bind, err)
		}
	}
	cfg := TestConfig()
	cfg.Bind, cfg.TLSCAFile = "0.0.0.0", "ca.pem" // peers prove themselves by certificate
	if err := cfg.Validate(); err != nil {
		t.Errorf("Validate with -bind 0.0.0.0 and -tls-ca-file: %v", err)
	}
	for _, bind := range []string{"127.0.0.1", "127.0.0.2", "::1", "localhost"} {
		if !loopbackBind(bind) {
			t.Errorf("loopbackBind(%q) = false", bind)
		}
	}
}
