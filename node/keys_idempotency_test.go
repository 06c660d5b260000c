package node_test

import (
	"context"
	"log/slog"
	"net"
	"testing"
	"time"

	"countd/actors"
	"countd/internal/poll"
	"countd/node"
)

// TestKeyedChangeAcrossNodesAndRestart: the same keyed change accepted on
// two nodes counts once once they have replicated, is a replay on either,
// and is still known (from the data file) after a restart.
func TestKeyedChangeAcrossNodesAndRestart(t *testing.T) {
	ctx := context.Background()
	listen := func() net.Listener {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		return ln
	}
	lnA, lnB := listen(), listen()
	dirA := t.TempDir()
	open := func(ln net.Listener, peer, dir string) *node.Node {
		cfg := node.TestConfig()
		cfg.Listener, cfg.Peers, cfg.Logger = ln, []string{peer}, slog.New(slog.DiscardHandler)
		if dir != "" {
			cfg.Memory, cfg.DataDir = false, dir
		}
		n, err := node.Open(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		return n
	}
	a := open(lnA, lnB.Addr().String(), dirA)
	b := open(lnB, lnA.Addr().String(), "")

	ch := actors.Change{Counter: "pay", By: 7, Key: "order-1"}
	for _, n := range []*node.Node{a, b} {
		if r, err := n.Counters().Apply(ctx, ch); err != nil || r.Replayed {
			t.Fatalf("first acceptance on %s: %+v, %v", n.Addr(), r, err)
		}
	}
	if _, err := poll.Until(ctx, 10*time.Second, 5*time.Millisecond, "both nodes count the change once", func() (bool, string) {
		va, _ := a.Counters().Value(ctx, "pay")
		vb, _ := b.Counters().Value(ctx, "pay")
		return va == 7 && vb == 7, ""
	}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []*node.Node{a, b} {
		if r, err := n.Counters().Apply(ctx, ch); err != nil || !r.Replayed || r.Value != 7 {
			t.Fatalf("retry on %s: %+v, %v; want a replay of 7", n.Addr(), r, err)
		}
	}
	a.Close()
	a = open(listen(), lnB.Addr().String(), dirA)
	if r, err := a.Counters().Apply(ctx, ch); err != nil || !r.Replayed || r.Value != 7 {
		t.Fatalf("retry after a restart: %+v, %v; want a replay of 7", r, err)
	}
}
