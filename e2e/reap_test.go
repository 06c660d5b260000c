package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	pollpkg "countd/internal/poll"
)

// TestDownNodeIsReapedEverywhere is issue 11's new user: a node that ran
// for a moment with -peers stayed listed as down on every node, for good.
// With -reap-after=1s it leaves every other node's /peers a second after
// it went down, and when it starts again it is a member again everywhere.
func TestDownNodeIsReapedEverywhere(t *testing.T) {
	nodes := meshNodes(t, freePorts(t, 3))
	for _, n := range nodes {
		n.args = append(n.args, "-reap-after=1s")
	}
	startAll(t, nodes...)
	c := newClient(t, len(nodes))
	c.Timeout = pollTimeout
	gone, others := nodes[2], nodes[:2]
	waitStates := func(what string, cond func(n int, states map[string]string) bool, ns ...int) {
		t.Helper()
		_, err := pollpkg.Until(context.Background(), agreeTimeout, pollInterval, what, func() (bool, string) {
			desc := ""
			for _, i := range ns {
				states, err := peerStates(c, nodes[i])
				if err != nil {
					return false, err.Error()
				}
				desc += fmt.Sprintf("%s: %v; ", nodes[i].name, states)
				if !cond(i, states) {
					return false, desc
				}
			}
			return true, desc
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	waitStates("every node lists the others alive", func(i int, s map[string]string) bool {
		return len(s) == 2 && s[nodes[(i+1)%3].addr] == "alive" && s[nodes[(i+2)%3].addr] == "alive"
	}, 0, 1, 2)

	gone.proc.Kill() // a graceful stop would show it left: reaped alike, but not this test's case
	stopped := time.Now()
	waitStates(gone.name+" down on the others", func(_ int, s map[string]string) bool { return s[gone.addr] == "down" }, 0, 1)
	waitStates(gone.name+" no longer listed by the others", func(i int, s map[string]string) bool {
		_, listed := s[gone.addr]
		return !listed && s[others[1-i].addr] == "alive"
	}, 0, 1)
	if d := time.Since(stopped); d < time.Second {
		t.Fatalf("%s reaped %v after it stopped, before -reap-after", gone.name, d)
	}

	startAll(t, gone)
	waitStates("every node lists the others alive again", func(i int, s map[string]string) bool {
		return len(s) == 2 && s[nodes[(i+1)%3].addr] == "alive" && s[nodes[(i+2)%3].addr] == "alive"
	}, 0, 1, 2)
	for _, n := range nodes {
		n.proc.Stop()
	}
}
