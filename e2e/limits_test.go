package e2e

import (
	"context"
	"maps"
	"net/http"
	"testing"

	"countd/internal/apiclient"
)

// TestCounterLimitRefusesWith507 is issue 11's done-means (e) with a real
// process: a node at -max-counters refuses a change that would create one
// more counter with 507 and changes nothing, while the counters it has keep
// working.
func TestCounterLimitRefusesWith507(t *testing.T) {
	n := startNode(t, "-port=0", "-memory", "-max-counters=2")
	c := apiclient.Client{HTTP: newClient(t, 1)}
	ctx := context.Background()
	post := func(path string) int {
		t.Helper()
		resp, err := c.HTTP.Post(n.URL()+path, "", nil)
		if err != nil {
			t.Fatalf("POST %s: %v", path, err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, path := range []string{"/counters/a/increment", "/counters/b/increment"} {
		if code := post(path); code != http.StatusOK {
			t.Fatalf("POST %s: %d, want 200", path, code)
		}
	}
	before, err := c.Counters(ctx, n.URL())
	if err != nil {
		t.Fatal(err)
	}
	if code := post("/counters/c/increment"); code != http.StatusInsufficientStorage {
		t.Fatalf("a third counter past -max-counters=2: %d, want 507", code)
	}
	if after, err := c.Counters(ctx, n.URL()); err != nil || !maps.Equal(after, before) {
		t.Fatalf("after the refused change the counters are %v (%v), want %v unchanged", after, err, before)
	}
	if code := post("/counters/a/increment"); code != http.StatusOK {
		t.Fatalf("an existing counter at the limit: %d, want 200", code)
	}
}
