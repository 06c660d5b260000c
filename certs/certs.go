// Package certs holds a node's TLS material: its certificate and key, and
// the CA its peers' certificates must be signed by. A Store reads them from
// files and reloads them on demand (SIGHUP), and gives the tls.Configs of
// the node's server and of its peer transport, which read the Store's
// current material on every handshake, so a reload needs no restart.
package certs

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
)

// ErrFiles is the kind of every error about the TLS files. Its text
// starts the error's, which main prints as it is.
var ErrFiles = errors.New("TLS")

// Files names a node's TLS files.
type Files struct {
	// Cert and Key are the node's certificate (PEM, leaf first, then any
	// intermediates) and its private key (PEM). Both are needed.
	Cert, Key string
	// CA, if set, is the PEM bundle of the CA that signs the cluster's node
	// certificates. The node then verifies its peers' server certificates
	// against it (instead of the system's roots) and requires node-to-node
	// requests to come with a client certificate it signed.
	CA string
}

// material is one loading of Files.
type material struct {
	cert *tls.Certificate
	ca   *x509.CertPool // nil: no CA file
}

// Store is a node's TLS material, reloadable while in use.
type Store struct {
	files Files
	cur   atomic.Pointer[material]
}

// Load reads files.
func Load(files Files) (*Store, error) {
	if files.Cert == "" || files.Key == "" {
		return nil, fmt.Errorf("%w: -tls-cert-file and -tls-key-file go together; give both", ErrFiles)
	}
	s := &Store{files: files}
	if err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// Reload reads the files again. On error the material in force stays.
func (s *Store) Reload() error {
	cert, err := tls.LoadX509KeyPair(s.files.Cert, s.files.Key)
	if err != nil {
		return fmt.Errorf("%w: -tls-cert-file %s with -tls-key-file %s: %v", ErrFiles, s.files.Cert, s.files.Key, err)
	}
	m := &material{cert: &cert}
	if s.files.CA != "" {
		pem, err := os.ReadFile(s.files.CA)
		if err != nil {
			return fmt.Errorf("%w: -tls-ca-file: %v", ErrFiles, err)
		}
		m.ca = x509.NewCertPool()
		if !m.ca.AppendCertsFromPEM(pem) {
			return fmt.Errorf("%w: -tls-ca-file %s holds no PEM certificate", ErrFiles, s.files.CA)
		}
	}
	s.cur.Store(m)
	return nil
}

// VerifiesPeers reports whether a CA file is set, so that node-to-node
// requests must carry a client certificate it signed.
func (s *Store) VerifiesPeers() bool { return s.files.CA != "" }

// ServerConfig returns the config of the node's listener: TLS 1.2 at least,
// the current certificate, and, with a CA, client certificates verified
// against it when given (VerifyClientCertIfGiven: clients of the API and
// probes of /health need none; the node-to-node routes check that one was
// verified).
func (s *Store) ServerConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			m := s.cur.Load()
			c := &tls.Config{
				MinVersion:   tls.VersionTLS12,
				Certificates: []tls.Certificate{*m.cert},
				NextProtos:   []string{"http/1.1"},
			}
			if m.ca != nil {
				c.ClientAuth = tls.VerifyClientCertIfGiven
				c.ClientCAs = m.ca
			}
			return c, nil
		},
	}
}

// ClientConfig returns the config of the node's peer transport: TLS 1.2 at
// least, the current certificate presented as a client certificate, and
// the peer's certificate verified for the address dialled, against the
// current CA (the system's roots when there is no CA file).
func (s *Store) ClientConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return s.cur.Load().cert, nil
		},
		// The chain is verified in VerifyConnection instead, against the
		// CA of the moment rather than one fixed when the transport was
		// made, so that SIGHUP reloads it too.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			return s.verifyServer(cs)
		},
	}
}

// verifyServer checks a peer's server certificate as crypto/tls would,
// against the current CA.
func (s *Store) verifyServer(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return fmt.Errorf("%w: the peer sent no certificate", ErrFiles)
	}
	opts := x509.VerifyOptions{
		Roots:         s.cur.Load().ca, // nil: the system's roots
		DNSName:       cs.ServerName,
		Intermediates: x509.NewCertPool(),
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, c := range cs.PeerCertificates[1:] {
		opts.Intermediates.AddCert(c)
	}
	_, err := cs.PeerCertificates[0].Verify(opts)
	return err
}
