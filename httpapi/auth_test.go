package httpapi

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"countd/auth"
)

var (
	clusterKeys = mustKeys("cluster-key-cluster-key-cluster-key-0001")
	strangeKeys = mustKeys("another-key-another-key-another-key-0002")
)

func mustKeys(k string) *auth.Keyring {
	ring, err := auth.New([]byte(k))
	if err != nil {
		panic(err)
	}
	return ring
}

const (
	remoteClient = "192.0.2.1:40000" // not loopback
	peerToDelete = "127.0.0.1:9009"
)

// nodeRequest is a request to one of the node-to-node routes.
type nodeRequest struct{ method, target, body string }

var nodeRequests = []nodeRequest{
	{http.MethodPost, "/replicate", goodPush},
	{http.MethodPost, "/leave", `{"from":"` + peerToDelete + `","replica":"00000000000000ab"}`},
	{http.MethodPost, "/peers", `{"addr":"9005"}`},
	{http.MethodDelete, "/peers/" + peerToDelete, ""},
}

// signer makes the signature header of a request, or none.
type signer func(r *http.Request, body []byte)

func signedWith(k *auth.Keyring, at time.Duration) signer {
	return func(r *http.Request, body []byte) { k.Sign(r, body, time.Now().Add(at)) }
}

// send makes req from remote, signed by sign (nil: unsigned), to s.
func send(t *testing.T, s *Server, req nodeRequest, remote string, sign signer) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(req.method, req.target, strings.NewReader(req.body))
	r.RemoteAddr = remote
	if sign != nil {
		sign(r, []byte(req.body))
	}
	return serve(t, s, r)
}

// clusterState is what a node-to-node request could change in the fake.
func clusterState(c *fakeCluster) (peers map[string]string, pushes int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	peers = map[string]string{}
	for a, s := range c.peers {
		peers[a] = s
	}
	return peers, len(c.replicated)
}

func keyedServer(c *fakeCluster, cfg Config) *Server {
	cfg.Counters, cfg.Cluster, cfg.Node, cfg.Replica = newFake(), c, testNode, testReplica
	return NewServer(cfg)
}

// With a key, the node-to-node routes take only requests signed with it,
// from anywhere; anything else gets 401 and changes nothing.
func TestNodeRoutesNeedSignature(t *testing.T) {
	tamper := func(r *http.Request, body []byte) {
		clusterKeys.Sign(r, append([]byte(" "), body...), time.Now())
	}
	refused := []struct {
		name   string
		remote string
		sign   signer
		want   string
	}{
		{"anonymous", remoteClient, nil, "no Countd-Signature header"},
		{"anonymous from loopback", loopbackClient, nil, "no Countd-Signature header"},
		{"another key", remoteClient, signedWith(strangeKeys, 0), "a key it does not have"},
		{"body changed", remoteClient, tamper, "does not match"},
		{"too old", remoteClient, signedWith(clusterKeys, -auth.Window-time.Minute), "check the clocks"},
		{"garbled", remoteClient, func(r *http.Request, _ []byte) { r.Header.Set(auth.Header, "nonsense") }, "is not t=UNIX"},
	}
	for _, req := range nodeRequests {
		for _, tt := range refused {
			t.Run(req.method+" "+req.target+" "+tt.name, func(t *testing.T) {
				c := newFakeCluster()
				c.peers[peerToDelete] = "alive"
				s := keyedServer(c, Config{Keys: clusterKeys})
				rec := send(t, s, req, tt.remote, tt.sign)
				if rec.Code != http.StatusUnauthorized {
					t.Fatalf("status %d, want 401; body %s", rec.Code, rec.Body)
				}
				assertError(t, rec, http.StatusUnauthorized)
				if !strings.Contains(rec.Body.String(), tt.want) {
					t.Errorf("body %s does not say %q", rec.Body, tt.want)
				}
				if peers, pushes := clusterState(c); len(peers) != 1 || peers[peerToDelete] != "alive" || pushes != 0 {
					t.Errorf("refused request changed the cluster: peers %v, pushes %d", peers, pushes)
				}
			})
		}
		t.Run(req.method+" "+req.target+" signed", func(t *testing.T) {
			c := newFakeCluster()
			c.peers[peerToDelete] = "alive"
			s := keyedServer(c, Config{Keys: clusterKeys})
			rec := send(t, s, req, remoteClient, signedWith(clusterKeys, 0))
			if rec.Code >= 300 {
				t.Fatalf("signed request: status %d; body %s", rec.Code, rec.Body)
			}
			if peers, pushes := clusterState(c); len(peers) == 1 && peers[peerToDelete] == "alive" && pushes == 0 {
				t.Errorf("signed request changed nothing")
			}
		})
	}
}

// With no key, the node-to-node routes take only loopback clients, unless
// the node is insecure.
func TestNodeRoutesWithoutKey(t *testing.T) {
	for _, req := range nodeRequests {
		for _, tt := range []struct {
			name     string
			remote   string
			insecure bool
			want     int
		}{
			{"remote", remoteClient, false, http.StatusForbidden},
			{"remote, mapped v6", "[::ffff:192.0.2.1]:40000", false, http.StatusForbidden},
			{"remote, insecure", remoteClient, true, 0},
			{"loopback v4", loopbackClient, false, 0},
			{"loopback v4, other", "127.8.9.10:40000", false, 0},
			{"loopback v6", "[::1]:40000", false, 0},
			{"no address", "", false, http.StatusForbidden},
		} {
			t.Run(req.method+" "+req.target+" "+tt.name, func(t *testing.T) {
				c := newFakeCluster()
				c.peers[peerToDelete] = "alive"
				s := keyedServer(c, Config{Insecure: tt.insecure})
				rec := send(t, s, req, tt.remote, nil)
				peers, pushes := clusterState(c)
				unchanged := len(peers) == 1 && peers[peerToDelete] == "alive" && pushes == 0
				if tt.want == 0 {
					if rec.Code >= 300 || unchanged {
						t.Fatalf("status %d, unchanged %v; want it taken; body %s", rec.Code, unchanged, rec.Body)
					}
					return
				}
				assertError(t, rec, tt.want)
				if !strings.Contains(rec.Body.String(), "-cluster-key-file") {
					t.Errorf("403 body %s does not name -cluster-key-file", rec.Body)
				}
				if !unchanged {
					t.Errorf("refused request changed the cluster: peers %v, pushes %d", peers, pushes)
				}
			})
		}
	}
}

// GET /health is open to probes; a signed check must be signed right.
func TestHealthSignedIfSigned(t *testing.T) {
	health := nodeRequest{http.MethodGet, "/health", ""}
	for _, tt := range []struct {
		name string
		keys *auth.Keyring
		sign signer
		want int
	}{
		{"probe, keyed node", clusterKeys, nil, http.StatusOK},
		{"signed, keyed node", clusterKeys, signedWith(clusterKeys, 0), http.StatusOK},
		{"another key, keyed node", clusterKeys, signedWith(strangeKeys, 0), http.StatusUnauthorized},
		{"signed, node without key", nil, signedWith(strangeKeys, 0), http.StatusOK},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := keyedServer(newFakeCluster(), Config{Keys: tt.keys})
			if rec := send(t, s, health, remoteClient, tt.sign); rec.Code != tt.want {
				t.Fatalf("status %d, want %d; body %s", rec.Code, tt.want, rec.Body)
			}
		})
	}
}

// Profiles: signed only with a key, loopback only without.
func TestPprofGuarded(t *testing.T) {
	prof := nodeRequest{http.MethodGet, "/debug/pprof/cmdline", ""}
	for _, tt := range []struct {
		name   string
		keys   *auth.Keyring
		remote string
		sign   signer
		want   int
	}{
		{"keyed, anonymous loopback", clusterKeys, loopbackClient, nil, http.StatusUnauthorized},
		{"keyed, signed", clusterKeys, remoteClient, signedWith(clusterKeys, 0), http.StatusOK},
		{"no key, remote", nil, remoteClient, nil, http.StatusForbidden},
		{"no key, loopback", nil, loopbackClient, nil, http.StatusOK},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := keyedServer(newFakeCluster(), Config{Keys: tt.keys, Pprof: true})
			if rec := send(t, s, prof, tt.remote, tt.sign); rec.Code != tt.want {
				t.Fatalf("status %d, want %d; body %.200s", rec.Code, tt.want, rec.Body)
			}
		})
	}
}

// Without a key, a client certificate the node's CA verified is proof
// enough, from any address; with PeerCerts off it is not looked at.
func TestNodeRoutesTakeCertifiedPeers(t *testing.T) {
	certified := func(r *http.Request, _ []byte) {
		r.TLS = &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{{}}}}
	}
	for _, tt := range []struct {
		name      string
		peerCerts bool
		req       nodeRequest
		want      int
	}{
		{"push", true, nodeRequests[0], http.StatusOK},
		{"profiles", true, nodeRequest{http.MethodGet, "/debug/pprof/cmdline", ""}, http.StatusOK},
		{"profiles, CA off", false, nodeRequest{http.MethodGet, "/debug/pprof/cmdline", ""}, http.StatusForbidden},
		{"push, CA off", false, nodeRequests[0], http.StatusForbidden},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := keyedServer(newFakeCluster(), Config{PeerCerts: tt.peerCerts, Pprof: true})
			if rec := send(t, s, tt.req, remoteClient, certified); rec.Code != tt.want {
				t.Fatalf("status %d, want %d; body %.200s", rec.Code, tt.want, rec.Body)
			}
		})
	}
}
