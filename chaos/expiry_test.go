package chaos

import (
	"context"
	"fmt"
	"testing"
	"time"

	"countd/internal/apiclient"
	"countd/internal/faultnet"
	"countd/internal/poll"
	"countd/internal/testcluster"
)

// TestChangeUnseenBySweepStillExpires: B holds a change A never saw, made
// under the counter's expiry (B cannot reach A). When the expiry passes, A
// sweeps first; that reaches B before B's own sweep. B's change survives
// A's delete (add wins) but must still expire with its window: while a
// delete cleared the expiry, B had no expiry left to sweep and the counter
// never went (docs/invariants.md). Sweeps tick every second at
// a phase of their own on each node, so the test uses eight counters whose
// expiries are spread over a second: whenever B's sweep phase trails A's,
// some of them fall between the two sweeps. It failed about one run in two
// while a delete cleared the expiry; a delete now leaves it, so B's change
// still expires with its window.
func TestChangeUnseenBySweepStillExpires(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{})
	if err := c.Start(2); err != nil {
		t.Fatal(err)
	}
	cl := apiclient.Client{HTTP: c.HTTP()}
	ctx := context.Background()
	const n, ttl, spread = 8, 2, 125 * time.Millisecond
	names := make([]string, n)
	want := map[string]int64{}
	start := time.Now()
	for i := range names {
		names[i] = fmt.Sprintf("brief%d", i)
		want[names[i]] = 1
		if r := cl.ChangeTTL(ctx, c.URL("A"), names[i], 1, ttl); r.Outcome != apiclient.OK {
			t.Fatalf("+1 ttl=%d on A: %v", ttl, r.Err)
		}
		<-time.After(spread) // spreads the expiries: a schedule, not a wait
	}
	if _, err := c.WaitConverged(5*time.Second, want); err != nil {
		t.Fatal(err)
	}
	// B cannot reach A; A still reaches B, so A's sweep gets to B at once.
	c.Net.Set(c.Addr("B"), c.Addr("A"), faultnet.Rule{Cut: true})
	for _, name := range names {
		if r := cl.ChangeTTL(ctx, c.URL("B"), name, 10, ttl); r.Outcome != apiclient.OK {
			t.Fatalf("+10 on B: %v", r.Err)
		}
	}
	if time.Since(start) > ttl*time.Second {
		t.Skip("too slow: an expiry passed before B's changes were made")
	}
	// Every expiry has passed and was swept on both nodes.
	<-time.After(time.Until(start.Add(ttl*time.Second + n*spread + 1100*time.Millisecond)))
	c.Net.Heal()
	var left []string
	poll.Until(ctx, 5*time.Second, testcluster.PollEvery, "every counter gone on A and B", func() (bool, string) {
		left = nil
		for _, node := range []string{"A", "B"} {
			all, err := c.Counters(node)
			if err != nil {
				return false, err.Error()
			}
			for name, v := range all {
				left = append(left, fmt.Sprintf("%s on %s = %d", name, node, v))
			}
		}
		return len(left) == 0, fmt.Sprint(left)
	})
	if len(left) > 0 {
		t.Fatalf("changes made under an expiry outlived it, with no expiry left: %v", left)
	}
}
