package node

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"countd/internal/poll"
	"countd/internal/testcerts"
)

// openTLSCluster opens n nodes serving HTTPS with certificates of ca, each
// the others' peer, verifying peers against ca.
func openTLSCluster(t *testing.T, ca *testcerts.CA, n int) []*Node {
	t.Helper()
	lns := make([]net.Listener, n)
	addrs := make([]string, n)
	for i := range lns {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns[i], addrs[i] = ln, ln.Addr().String()
	}
	nodes := make([]*Node, n)
	for i := range nodes {
		files := ca.Issue(t, fmt.Sprintf("node%d", i))
		cfg := TestConfig()
		cfg.Logger = discard()
		cfg.Listener = lns[i]
		cfg.TLSCertFile, cfg.TLSKeyFile, cfg.TLSCAFile = files.CertFile, files.KeyFile, ca.File
		for j, a := range addrs {
			if j != i {
				cfg.Peers = append(cfg.Peers, a)
			}
		}
		nd, err := Open(cfg)
		if err != nil {
			for _, ln := range lns[i+1:] {
				ln.Close()
			}
			t.Fatal(err)
		}
		nodes[i] = nd
		t.Cleanup(func() { nd.Close() })
	}
	return nodes
}

// httpsClient trusts ca and presents cert, if any, as its client
// certificate whatever CAs the server asks for (as a node's transport does;
// Go's client would otherwise send none that the server does not name).
func httpsClient(t *testing.T, ca *testcerts.CA, cert ...tls.Certificate) *http.Client {
	t.Helper()
	cfg := &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12}
	if len(cert) > 0 {
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert[0], nil }
	}
	tr := &http.Transport{TLSClientConfig: cfg}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 5 * time.Second}
}

// call sends one request and returns its status and body.
func call(c *http.Client, method, url, body string) (int, string, error) {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// valueAt reads counter c on nd through client.
func valueAt(client *http.Client, nd *Node, c string) (int64, error) {
	code, body, err := call(client, http.MethodGet, nd.URL()+"/counters/"+c, "")
	if err != nil {
		return 0, err
	}
	if code != http.StatusOK {
		return 0, fmt.Errorf("status %d: %s", code, body)
	}
	var v struct{ Value int64 }
	return v.Value, json.Unmarshal([]byte(body), &v)
}

func TestTLSClusterReplicates(t *testing.T) {
	ca := testcerts.NewCA(t, "cluster CA")
	nodes := openTLSCluster(t, ca, 3)
	client := httpsClient(t, ca)
	if !strings.HasPrefix(nodes[0].URL(), "https://") {
		t.Fatalf("URL = %s, want https", nodes[0].URL())
	}
	for i, nd := range nodes {
		if code, body, err := call(client, http.MethodPost, nd.URL()+"/counters/c/increment?by="+fmt.Sprint(i+1), ""); err != nil || code != 200 {
			t.Fatalf("increment on node %d: %d %s %v", i, code, body, err)
		}
	}
	for i, nd := range nodes {
		_, err := poll.Until(context.Background(), 10*time.Second, 10*time.Millisecond, fmt.Sprintf("node %d reads c=6", i),
			func() (bool, string) {
				v, err := valueAt(client, nd, "c")
				return err == nil && v == 6, fmt.Sprintf("%d (%v)", v, err)
			})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestTLSRefusesStrangers checks a node with a CA refuses node-to-node
// requests from a client whose certificate another CA signed (at the
// handshake) or with no certificate (403), keeps /health and the client API
// open to clients without one, and gives nothing to plain HTTP.
func TestTLSRefusesStrangers(t *testing.T) {
	ca := testcerts.NewCA(t, "cluster CA")
	nd := openTLSCluster(t, ca, 1)[0]
	push := `{"from":"127.0.0.1:1","replica":"00000000000000ab","entries":[{"counter":"c","replica":"00000000000000ab","p":99,"n":0}]}`

	other := testcerts.NewCA(t, "other CA")
	stranger := httpsClient(t, ca, other.Issue(t, "stranger").KeyPair(t))
	if code, body, err := call(stranger, http.MethodPost, nd.URL()+"/replicate", push); err == nil {
		t.Errorf("push with another CA's certificate: %d %s, want the handshake refused", code, body)
	}

	anonymous := httpsClient(t, ca)
	for _, r := range []struct{ method, path, body string }{
		{"POST", "/replicate", push}, {"POST", "/peers", `{"addr":"127.0.0.1:1"}`}, {"DELETE", "/peers/127.0.0.1:1", ""},
	} {
		if code, body, err := call(anonymous, r.method, nd.URL()+r.path, r.body); err != nil || code != http.StatusForbidden {
			t.Errorf("%s %s without a client certificate: %d %s %v, want 403", r.method, r.path, code, body, err)
		}
	}
	for _, path := range []string{"/health", "/counters"} {
		if code, body, err := call(anonymous, http.MethodGet, nd.URL()+path, ""); err != nil || code != http.StatusOK {
			t.Errorf("GET %s without a client certificate: %d %s %v, want 200", path, code, body, err)
		}
	}

	plain := &http.Client{Transport: &http.Transport{}, Timeout: 5 * time.Second}
	t.Cleanup(plain.CloseIdleConnections)
	plainURL := "http://" + strings.TrimPrefix(nd.URL(), "https://")
	if code, _, err := call(plain, http.MethodPost, plainURL+"/counters/c/increment", ""); err == nil && code == http.StatusOK {
		t.Errorf("increment over plain HTTP: 200, want it refused")
	}

	member := httpsClient(t, ca, ca.Issue(t, "member").KeyPair(t))
	if code, body, err := call(member, http.MethodPost, nd.URL()+"/replicate", push); err != nil || code != http.StatusOK {
		t.Errorf("push with the cluster CA's certificate: %d %s %v, want 200", code, body, err)
	}
	// Only the member's push counted: the stranger's, the anonymous one
	// and the plain-HTTP increment changed nothing.
	if v, err := valueAt(anonymous, nd, "c"); err != nil || v != 99 {
		t.Errorf("c = %d (%v), want 99", v, err)
	}
}

// TestTLSReload checks Reload takes a new certificate for new connections.
func TestTLSReload(t *testing.T) {
	ca := testcerts.NewCA(t, "first CA")
	nd := openTLSCluster(t, ca, 1)[0]
	if code, _, err := call(httpsClient(t, ca), http.MethodGet, nd.URL()+"/health", ""); err != nil || code != 200 {
		t.Fatalf("health: %d %v", code, err)
	}
	next := testcerts.NewCA(t, "second CA")
	files := next.Issue(t, "renewed")
	for from, to := range map[string]string{files.CertFile: nd.cfg.TLSCertFile, files.KeyFile: nd.cfg.TLSKeyFile} {
		b, err := os.ReadFile(from)
		if err == nil {
			err = os.WriteFile(to, b, 0o600)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := nd.Reload(); err != nil {
		t.Fatal(err)
	}
	_, _, err := call(httpsClient(t, ca), http.MethodGet, nd.URL()+"/health", "")
	var unknown x509.UnknownAuthorityError
	if err == nil || !errors.As(err, &unknown) {
		t.Errorf("health trusting the first CA after reload: %v, want the new certificate (unknown authority)", err)
	}
	if code, _, err := call(httpsClient(t, next), http.MethodGet, nd.URL()+"/health", ""); err != nil || code != 200 {
		t.Errorf("health trusting the second CA after reload: %d %v, want 200", code, err)
	}
}

// TestTLSPeerFromAnotherCA checks a node whose certificate another CA
// signed cannot push into a TLS cluster, even when it trusts the cluster's
// CA: the cluster's node refuses its client certificate, so its health
// checks fail, it marks the node down, and its change never arrives.
func TestTLSPeerFromAnotherCA(t *testing.T) {
	ca := testcerts.NewCA(t, "cluster CA")
	nd := openTLSCluster(t, ca, 1)[0]

	other := testcerts.NewCA(t, "other CA")
	files := other.Issue(t, "rogue")
	cfg := TestConfig()
	cfg.Logger = discard()
	cfg.TLSCertFile, cfg.TLSKeyFile, cfg.TLSCAFile = files.CertFile, files.KeyFile, ca.File // trusts the cluster
	cfg.Peers = []string{nd.Addr()}
	rogue, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rogue.Close() })

	rogueClient := httpsClient(t, other)
	if code, body, err := call(rogueClient, http.MethodPost, rogue.URL()+"/counters/c/increment?by=7", ""); err != nil || code != 200 {
		t.Fatalf("increment on the rogue node: %d %s %v", code, body, err)
	}
	_, err = poll.Until(context.Background(), 10*time.Second, 10*time.Millisecond, "the rogue node marks the cluster's node down",
		func() (bool, string) {
			_, body, err := call(rogueClient, http.MethodGet, rogue.URL()+"/peers", "")
			return err == nil && strings.Contains(body, `"state":"down"`), fmt.Sprintf("%s (%v)", body, err)
		})
	if err != nil {
		t.Fatal(err)
	}
	client := httpsClient(t, ca)
	if v, err := valueAt(client, nd, "c"); err != nil || v != 0 {
		t.Errorf("c on the cluster's node = %d (%v), want 0: the rogue's change got in", v, err)
	}
	if _, body, err := call(client, http.MethodGet, nd.URL()+"/peers", ""); err != nil || strings.Contains(body, rogue.Addr()) {
		t.Errorf("the cluster's node lists the rogue node: %s (%v)", body, err)
	}
}
