package main

import (
	"errors"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSmokeIdlePeer runs idle mode with -idle-peer=memberlist and -detect
// on 3 nodes: countd's run first, then memberlist's, each with every
// node's CPU and memory read from /proc, the time until all were alive,
// and the time until a SIGKILLed member was dead on the other two; both
// in the idle summary, and no process or directory left.
func TestSmokeIdlePeer(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs countd and memberlist nodes")
	}
	rep, stdout, _ := smokeRun(t, "-memory", "-nodes=3", "-idle=1s", "-idle-peer=memberlist", "-detect")
	if len(rep.Runs) != 2 {
		t.Fatalf("%d runs, want 2 (countd, then memberlist)", len(rep.Runs))
	}
	if p := rep.Runs[0].Peer; p != "" {
		t.Errorf("the first run is of %q, want countd", p)
	}
	r := rep.Runs[1]
	if !strings.HasPrefix(r.Peer, "memberlist ") || r.Mode != modeIdle || r.Nodes != 3 {
		t.Fatalf("the second run is %s of %d nodes of %q, want idle of 3 memberlist nodes", r.Mode, r.Nodes, r.Peer)
	}
	if len(r.NodeStats) != 3 {
		t.Fatalf("node stats %+v, want 3", r.NodeStats)
	}
	for _, ns := range r.NodeStats {
		if ns.PID <= 0 || ns.Source != "proc" || ns.CPUSeconds == nil || ns.RSSBytes == nil || *ns.RSSBytes < 1e6 {
			t.Errorf("memberlist node %+v: want its pid, CPU and RSS from /proc", ns)
		}
		if !errors.Is(syscall.Kill(ns.PID, 0), syscall.ESRCH) {
			t.Errorf("memberlist node pid %d still exists", ns.PID)
		}
	}
	id := r.Idle
	if id == nil || id.CPUPercentOfCore == nil || id.Seconds < 0.9 || id.ReadySeconds <= 0 {
		t.Fatalf("memberlist idle result %+v", id)
	}
	// memberlist's DefaultLANConfig declares a member dead after a failed
	// probe (1 s period, 500 ms timeout) and its suspicion timeout (4 × 1 s
	// for 3 nodes): some seconds, not none and not the ready timeout.
	if d := id.DetectSeconds; d == nil || *d < 1 || *d > 60 {
		t.Errorf("memberlist detection %s s, want a few seconds", fmtFloat(d, "%.1f"))
	}
	if !strings.Contains(stdout, "idle summary") || !strings.Contains(stdout, "memberlist v") {
		t.Errorf("no idle summary naming memberlist:\n%s", stdout)
	}
}

// TestMemberCounts checks how the tool reads its memberlist nodes' lines.
func TestMemberCounts(t *testing.T) {
	m := &memberCounts{count: make([]int, 3), at: make([]time.Time, 3)}
	for i, line := range []string{"members 3", "members 3", "members 2"} {
		m.record(i, line)
	}
	m.record(0, "garbage")
	m.record(1, "members x")
	if ok, _, _ := m.all(3, 3); ok {
		t.Error("all 3 list 3 alive although node 2 lists 2")
	}
	ok, at, saw := m.all(2, 3)
	if !ok || at.IsZero() {
		t.Errorf("nodes 0 and 1 do not list 3 alive (%s), or no time", saw)
	}
	m.record(0, "members 2")
	if ok, _, saw := m.all(2, 3); ok || !strings.Contains(saw, "node 0 lists 2") {
		t.Errorf("a later line did not replace the count: ok %v, %s", ok, saw)
	}
}
