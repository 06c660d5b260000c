package node_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"countd/internal/faultnet"
	"countd/internal/poll"
	"countd/internal/testcluster"
	"countd/node"
)

// levelCluster starts three nodes with a short request timeout, so that a
// level not reached is a 504 soon.
func levelCluster(t *testing.T) *testcluster.Cluster {
	t.Helper()
	c := testcluster.New(t, testcluster.Options{Config: func(name string, cfg *node.Config) {
		cfg.RequestTimeout = time.Second
	}})
	if err := c.Start(3); err != nil {
		t.Fatal(err)
	}
	return c
}

// call sends one request to a node and returns its status and body.
func call(t *testing.T, c *testcluster.Cluster, method, name, path string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, c.URL(name)+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.HTTP().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func valueOf(t *testing.T, body string) int64 {
	t.Helper()
	var v struct{ Value *int64 }
	if err := json.Unmarshal([]byte(body), &v); err != nil || v.Value == nil {
		t.Fatalf("body %q has no value", body)
	}
	return *v.Value
}

// localValue reads a counter on one node at wait=local.
func localValue(t *testing.T, c *testcluster.Cluster, name, counter string) int64 {
	t.Helper()
	st, body := call(t, c, "GET", name, "/counters/"+counter)
	if st != http.StatusOK {
		t.Fatalf("GET %s on %s: %d %s", counter, name, st, body)
	}
	return valueOf(t, body)
}

// TestWriteLevelsAcrossAPartition: with A cut off from B and C, a change
// on A at quorum or all is a 504 that says it is applied, and it is; on B
// a quorum (B and C) is reached and all is not; once healed, all is
// reached, and a 200 at all means every node holds the change at once.
func TestWriteLevelsAcrossAPartition(t *testing.T) {
	c := levelCluster(t)
	c.Net.Partition(c.Addrs("A"), c.Addrs("B", "C"))

	for _, tt := range []struct {
		name, wait string
		status     int
	}{
		{"A", "quorum", http.StatusGatewayTimeout},
		{"A", "all", http.StatusGatewayTimeout},
		{"B", "quorum", http.StatusOK},
		{"B", "all", http.StatusGatewayTimeout},
	} {
		st, body := call(t, c, "POST", tt.name, "/counters/w/increment?wait="+tt.wait)
		if st != tt.status {
			t.Fatalf("increment on %s at wait=%s across the partition: %d %s, want %d", tt.name, tt.wait, st, body, tt.status)
		}
		if st == http.StatusGatewayTimeout && !strings.Contains(body, "applied and durable on this node") {
			t.Fatalf("504 body %s does not say the change is applied", body)
		}
	}
	if v := localValue(t, c, "A", "w"); v != 2 {
		t.Fatalf("w on A = %d, want 2: both changes the 504s answered are applied", v)
	}

	c.Net.Heal()
	var value int64
	_, err := poll.Until(t.Context(), 20*time.Second, 10*time.Millisecond, "a change on A reaches all once healed", func() (bool, string) {
		st, body := call(t, c, "POST", "A", "/counters/w/increment?wait=all")
		if st == http.StatusOK {
			value = valueOf(t, body)
		}
		return st == http.StatusOK, body
	})
	if err != nil {
		t.Fatal(err)
	}
	// A 200 at all: every node holds it now, not eventually.
	for _, name := range []string{"B", "C"} {
		if v := localValue(t, c, name, "w"); v < value {
			t.Fatalf("w on %s = %d right after a 200 at wait=all on A answered %d", name, v, value)
		}
	}
}

// TestReadAtAllSeesAChangeNotYetReplicated: B gets no push (A's and C's
// requests to B are cut), so B's own value lacks a change made on A; a
// read at all on B asks A and C and answers the change, and B keeps it.
func TestReadAtAllSeesAChangeNotYetReplicated(t *testing.T) {
	c := levelCluster(t)
	for _, from := range []string{"A", "C"} {
		c.Net.Set(c.Addr(from), c.Addr("B"), faultnet.Rule{Cut: true})
	}
	if st, body := call(t, c, "POST", "A", "/counters/r/increment?by=5&wait=quorum"); st != http.StatusOK {
		t.Fatalf("increment on A at quorum: %d %s", st, body)
	}
	if st, _ := call(t, c, "GET", "B", "/counters/r"); st != http.StatusOK {
		t.Fatalf("local read on B: %d", st)
	}
	if v := localValue(t, c, "B", "r"); v != 0 {
		t.Fatalf("r on B = %d before any read at a level: the test's cut let the change through", v)
	}
	st, body := call(t, c, "GET", "B", "/counters/r?wait=all")
	if st != http.StatusOK || valueOf(t, body) != 5 {
		t.Fatalf("read at all on B: %d %s, want 200 with value 5", st, body)
	}
	if v := localValue(t, c, "B", "r"); v != 5 {
		t.Fatalf("r on B after the read at all = %d, want 5 (merged)", v)
	}

	// Cut B off from A too: all cannot be reached, and the 504 has no value.
	c.Net.Set(c.Addr("B"), c.Addr("A"), faultnet.Rule{Cut: true})
	st, body = call(t, c, "GET", "B", "/counters/r?wait=all")
	if st != http.StatusGatewayTimeout || strings.Contains(body, "value") {
		t.Fatalf("read at all on B cut from A: %d %s, want 504 with no value", st, body)
	}
}
