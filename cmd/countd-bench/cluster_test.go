package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The process helper's own tests (SIGTERM then SIGKILL, free ports, the
// module root) are in internal/proc.

func TestStartClusterReportsANodeThatExits(t *testing.T) {
	// A "countd" that exits at once, with something in its log.
	bin := filepath.Join(t.TempDir(), "fake-countd")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\necho bad flag: $1 >&2\nexit 2\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := defaultConfig()
	cfg.ReadyTimeout = 30 * time.Second
	_, err := startCluster(context.Background(), &cfg, bin, 2, security{}, nil)
	if err == nil || !strings.Contains(err.Error(), "exited") || !strings.Contains(err.Error(), "bad flag: -port=") {
		t.Fatalf("err = %v, want one naming the node that exited and its log", err)
	}
}
