package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"countd/internal/testcerts"
)

// TestTLSAndTokensProcesses runs three countd processes with TLS (a test
// CA) and client tokens: a change made on one reaches the others over
// https; a request without the token gets 401 and one over plain HTTP
// gets nothing; SIGHUP makes a node take a rewritten token file.
func TestTLSAndTokensProcesses(t *testing.T) {
	ca := testcerts.NewCA(t, "e2e CA")
	tokens := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(tokens, []byte("first-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ports := freePorts(t, 3)
	nodes := make([]*node, 3)
	for i := range nodes {
		files := ca.Issue(t, "node"+strconv.Itoa(i))
		var peers []string
		for j, p := range ports {
			if j != i {
				peers = append(peers, strconv.Itoa(p))
			}
		}
		nodes[i] = spawn(t, "-port="+strconv.Itoa(ports[i]), "-memory", "-peers="+strings.Join(peers, ","),
			"-tls-cert-file="+files.CertFile, "-tls-key-file="+files.KeyFile, "-tls-ca-file="+ca.File,
			"-client-token-file="+tokens, "-heartbeat-interval=100ms")
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12}}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr, Timeout: requestTimeout}
	for _, n := range nodes {
		n.waitStarted()
		n.url = "https://" + n.addr
		if err := n.WaitHealthy(context.Background(), client, n.url, startTimeout); err != nil {
			t.Fatal(err)
		}
	}

	send := func(method, url, token string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, url, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	if code, body := send("POST", nodes[0].url+"/counters/c/increment?by=3", "first-token"); code != 200 {
		t.Fatalf("increment: %d %s", code, body)
	}
	for _, n := range nodes[1:] {
		ok := poll(startTimeout, func() bool {
			code, body := send("GET", n.url+"/counters/c", "first-token")
			var r struct{ Value int64 }
			return code == 200 && json.Unmarshal([]byte(body), &r) == nil && r.Value == 3
		})
		if !ok {
			t.Fatalf("%s never read c=3", n.url)
		}
	}
	if code, _ := send("POST", nodes[1].url+"/counters/c/increment", ""); code != http.StatusUnauthorized {
		t.Errorf("increment without a token: %d, want 401", code)
	}
	plain := &http.Client{Transport: &http.Transport{}, Timeout: requestTimeout}
	t.Cleanup(plain.CloseIdleConnections)
	if resp, err := plain.Post("http://"+nodes[1].addr+"/counters/c/increment", "", nil); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Errorf("increment over plain HTTP: 200, want it refused")
		}
	}

	// SIGHUP reloads the token file.
	if err := os.WriteFile(tokens, []byte("second-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := nodes[2].Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if !poll(startTimeout, func() bool { code, _ := send("GET", nodes[2].url+"/counters", "second-token"); return code == 200 }) {
		t.Fatalf("the new token is refused after SIGHUP")
	}
	if code, _ := send("GET", nodes[2].url+"/counters", "first-token"); code != http.StatusUnauthorized {
		t.Errorf("the old token after SIGHUP: %d, want 401", code)
	}
	// A node not signalled keeps the tokens it loaded.
	if code, _ := send("GET", nodes[0].url+"/counters", "first-token"); code != 200 {
		t.Errorf("the old token on a node not signalled: %d, want 200", code)
	}
}
