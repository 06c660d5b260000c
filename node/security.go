package node

import (
	"crypto/tls"
	"errors"

	"countd/certs"
	"countd/httpapi"
)

// loadSecurity reads the client token file and the TLS files, if set.
func (n *Node) loadSecurity() error {
	if n.cfg.ClientTokenFile != "" {
		tokens, err := httpapi.LoadTokens(n.cfg.ClientTokenFile)
		if err != nil {
			return err
		}
		n.tokens = tokens
	}
	if n.cfg.TLSCertFile != "" || n.cfg.TLSKeyFile != "" || n.cfg.TLSCAFile != "" {
		store, err := certs.Load(certs.Files{Cert: n.cfg.TLSCertFile, Key: n.cfg.TLSKeyFile, CA: n.cfg.TLSCAFile})
		if err != nil {
			return err
		}
		n.certs = store
	}
	return nil
}

// serverTLS is the HTTP server's TLS config, nil for plain HTTP.
func (n *Node) serverTLS() *tls.Config {
	if n.certs == nil {
		return nil
	}
	return n.certs.ServerConfig()
}

// Reload reads the client token file, the TLS files and the cluster key
// file again (main calls it on SIGHUP). What fails to load leaves what was in force; the error
// says what failed.
func (n *Node) Reload() error {
	var errs []error
	if n.tokens != nil {
		errs = append(errs, n.tokens.Reload())
	}
	if n.certs != nil {
		errs = append(errs, n.certs.Reload())
	}
	if n.cfg.ClusterKeys != nil {
		errs = append(errs, n.reloadClusterKey())
	}
	return errors.Join(errs...)
}
