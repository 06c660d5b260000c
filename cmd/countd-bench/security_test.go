package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseSecurity(t *testing.T) {
	for in, want := range map[string]security{
		"none":          {},
		"key":           {Key: true},
		"tls+token":     {Token: true, TLS: true},
		"token+key+tls": {Key: true, Token: true, TLS: true},
	} {
		got, err := parseSecurity(in)
		if err != nil || got != want {
			t.Errorf("parseSecurity(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	if s := (security{Key: true, Token: true, TLS: true}).String(); s != "key+token+tls" {
		t.Errorf("String() = %q", s)
	}
	for _, bad := range []string{"", "tls+", "mtls", "none+key"} {
		if _, err := parseSecurity(bad); err == nil {
			t.Errorf("parseSecurity(%q) took it", bad)
		}
	}
	cfg, err := parseFlags([]string{"-security=none,key"}, nil)
	if err != nil || len(cfg.Security) != 2 || cfg.Security[0] != (security{}) || !cfg.Security[1].Key {
		t.Errorf("-security=none,key gave %+v, %v", cfg.Security, err)
	}
	if _, err := parseFlags([]string{"-addrs=h:1", "-security=key"}, nil); err == nil {
		t.Error("-security with -addrs was taken")
	}
}

// TestSmokeSecurity runs two -memory nodes that demand everything: a
// cluster key, a client token and TLS. The load, the agreement check
// (GET /counters) and the /metrics scrapes must all get through (every
// request acknowledged, the counted total exact, the nodes pushing to each
// other), the bare server is measured over TLS as well as plain, and the
// secrets go with the temporary directories (smokeRun checks).
func TestSmokeSecurity(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs countd")
	}
	path := filepath.Join(t.TempDir(), "r.json")
	rep, stdout, _ := smokeRun(t, "-memory", "-nodes=2", "-clients=2", "-duration=500ms", "-chunk=250ms",
		"-security=key+token+tls", "-json="+path)
	if len(rep.Runs) != 1 {
		t.Fatalf("%d runs, want 1", len(rep.Runs))
	}
	r := rep.Runs[0]
	c := r.Countd
	if r.Security != "key+token+tls" {
		t.Errorf("security %q", r.Security)
	}
	if c.Requests == 0 || c.OK != c.Requests || len(c.Errors) != 0 {
		t.Errorf("countd: %d requests, %d ok, errors %v (%s)", c.Requests, c.OK, c.Errors, c.FirstError)
	}
	if r.Counted == nil || *r.Counted != c.OK {
		t.Errorf("counted %v for %d acknowledged", r.Counted, c.OK)
	}
	if p := r.Replication.Pushes; p == nil || *p <= 0 {
		t.Errorf("pushes %s: the nodes' /metrics were not read, or they did not replicate", fmtFloat(p, "%.0f"))
	}
	if r.Bare == nil || r.Bare.OK == 0 || r.Ratio == nil {
		t.Errorf("bare side %+v", r.Bare)
	}
	b := r.BareTLS
	if b == nil || b.Requests == 0 || b.OK != b.Requests || r.RatioToBareTLS == nil || *r.RatioToBareTLS <= 0 {
		t.Errorf("bare TLS side %+v, ratio %v", b, r.RatioToBareTLS)
	}
	if !strings.Contains(stdout, "security key+token+tls") || !strings.Contains(stdout, "bare over TLS") {
		t.Errorf("the report does not name the security or the bare TLS server:\n%s", stdout)
	}
	if data, err := os.ReadFile(path); err != nil || !strings.Contains(string(data), `"ratio_to_bare_tls"`) {
		t.Errorf("results file lacks ratio_to_bare_tls (read error %v)", err)
	}
}
