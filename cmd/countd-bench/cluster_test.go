package main

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestStopKillsWhatIgnoresSIGTERM checks the SIGKILL fallback: a process
// that ignores SIGTERM is killed after the stop timeout, and reaped.
func TestStopKillsWhatIgnoresSIGTERM(t *testing.T) {
	// An ignored signal stays ignored across exec, so sleep ignores SIGTERM.
	// The shell says when the trap is set, so SIGTERM cannot come first.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	p, err := startProc("stubborn", "/bin/sh", []string{"-c", `trap "" TERM; echo ready; exec sleep 60`}, nil, w, nil)
	w.Close()
	if err != nil {
		t.Skip("no /bin/sh:", err)
	}
	if line, _ := bufio.NewReader(r).ReadString('\n'); line != "ready\n" {
		p.cmd.Process.Kill()
		t.Fatalf("shell said %q", line)
	}
	err = p.stop(100 * time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("stop = %v, want an error saying it was killed", err)
	}
	if !p.exited() {
		t.Fatal("process still running after stop")
	}
	if err := p.stop(time.Second); err != nil {
		t.Fatalf("second stop = %v", err)
	}
}

func TestStopEndsPolitely(t *testing.T) {
	p, err := startProc("sleeper", "/bin/sh", []string{"-c", "exec sleep 60"}, nil, nil, nil)
	if err != nil {
		t.Skip("no /bin/sh:", err)
	}
	if err := p.stop(10 * time.Second); err != nil {
		t.Fatalf("stop = %v, want a clean SIGTERM stop", err)
	}
}

func TestFreePortsDistinct(t *testing.T) {
	ports, err := freePorts(20)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, p := range ports {
		if p <= 0 || seen[p] {
			t.Fatalf("ports %v", ports)
		}
		seen[p] = true
	}
}

func TestModuleRoot(t *testing.T) {
	root, err := moduleRoot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "main.go")); err != nil {
		t.Fatalf("module root %s has no main.go: %v", root, err)
	}
}

func TestStartClusterReportsANodeThatExits(t *testing.T) {
	// A "countd" that exits at once, with something in its log.
	bin := filepath.Join(t.TempDir(), "fake-countd")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\necho bad flag: $1 >&2\nexit 2\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := defaultConfig()
	cfg.ReadyTimeout = 30 * time.Second
	_, err := startCluster(context.Background(), &cfg, bin, 2)
	if err == nil || !strings.Contains(err.Error(), "exited") || !strings.Contains(err.Error(), "bad flag: -port=") {
		t.Fatalf("err = %v, want one naming the node that exited and its log", err)
	}
}
