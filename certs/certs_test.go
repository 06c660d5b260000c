package certs

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"countd/internal/testcerts"
)

func TestLoadRefusesBadFiles(t *testing.T) {
	ca := testcerts.NewCA(t, "CA")
	n := ca.Issue(t, "node")
	notPEM := filepath.Join(t.TempDir(), "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		files Files
	}{
		{"cert without key", Files{Cert: n.CertFile}},
		{"key without cert", Files{Key: n.KeyFile}},
		{"CA alone", Files{CA: ca.File}},
		{"key of another certificate", Files{Cert: n.CertFile, Key: ca.Issue(t, "other").KeyFile}},
		{"missing cert", Files{Cert: filepath.Join(t.TempDir(), "missing"), Key: n.KeyFile}},
		{"CA not PEM", Files{Cert: n.CertFile, Key: n.KeyFile, CA: notPEM}},
		{"CA missing", Files{Cert: n.CertFile, Key: n.KeyFile, CA: filepath.Join(t.TempDir(), "missing")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Load(tc.files); !errors.Is(err, ErrFiles) {
				t.Errorf("Load(%+v) = %v, want ErrFiles", tc.files, err)
			}
		})
	}
	if s, err := Load(Files{Cert: n.CertFile, Key: n.KeyFile, CA: ca.File}); err != nil || !s.VerifiesPeers() {
		t.Errorf("Load of good files: %v, VerifiesPeers false", err)
	}
}

// TestReloadKeepsMaterialOnError checks a reload that fails leaves the
// certificate in force, and one that succeeds replaces it.
func TestReloadKeepsMaterialOnError(t *testing.T) {
	ca := testcerts.NewCA(t, "CA")
	n := ca.Issue(t, "node")
	s, err := Load(Files{Cert: n.CertFile, Key: n.KeyFile})
	if err != nil {
		t.Fatal(err)
	}
	before := s.cur.Load().cert
	if err := os.WriteFile(n.CertFile, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(); !errors.Is(err, ErrFiles) {
		t.Errorf("Reload of a broken file: %v, want ErrFiles", err)
	}
	if s.cur.Load().cert != before {
		t.Errorf("a failed reload replaced the certificate")
	}
	renewed := ca.Issue(t, "renewed")
	for from, to := range map[string]string{renewed.CertFile: n.CertFile, renewed.KeyFile: n.KeyFile} {
		b, err := os.ReadFile(from)
		if err == nil {
			err = os.WriteFile(to, b, 0o600)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := s.cur.Load().cert.Leaf.Subject.CommonName; got != "renewed" {
		t.Errorf("after reload the certificate is %q, want renewed", got)
	}
}
