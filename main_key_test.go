package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"countd/internal/poll"
)

// writeKeyFile writes content to a fresh file and returns its path.
func writeKeyFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "cluster.key")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

const goodKey = "c29tZSByYW5kb20gYnl0ZXMgZm9yIGEgY2x1c3RlciBrZXk=\n"

// A bad key file, or a non-loopback -bind without a key, exits 2 with one
// line naming -cluster-key-file.
func TestRunBadClusterKey(t *testing.T) {
	safe := []string{"-memory", "-port=0"}
	missing := filepath.Join(t.TempDir(), "missing.key")
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"missing file", []string{"-cluster-key-file=" + missing}, nil, "no such file"},
		{"empty file", []string{"-cluster-key-file=" + writeKeyFile(t, "\n\n")}, nil, "no key in it"},
		{"short key", []string{"-cluster-key-file=" + writeKeyFile(t, goodKey+"\nshort\n")}, nil, "line 3: the key is 5 bytes"},
		{"env", nil, map[string]string{"COUNTD_CLUSTER_KEY_FILE": writeKeyFile(t, "short")}, "line 1"},
		{"open bind", []string{"-bind=0.0.0.0"}, nil, "-bind 0.0.0.0"},
		{"every interface", []string{"-bind="}, nil, "every interface"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out := runBounded(t, append(append([]string{}, safe...), tt.args...), tt.env)
			if code != 2 {
				t.Errorf("run = %d, want 2", code)
			}
			if strings.Count(out, "\n") != 1 || !strings.HasPrefix(out, "countd: ") {
				t.Errorf("stderr = %q, want exactly one line starting countd:", out)
			}
			if !strings.Contains(out, "-cluster-key-file") || !strings.Contains(out, tt.want) {
				t.Errorf("stderr = %q, want it to name -cluster-key-file and say %q", out, tt.want)
			}
		})
	}
}

func TestParseConfigClusterKey(t *testing.T) {
	key := writeKeyFile(t, goodKey)
	tests := []struct {
		name     string
		args     []string
		keyed    bool
		insecure bool
	}{
		{"seed: loopback, no key", []string{"-port=8080", "-peers=8081,8082", "-newnode=8083"}, false, false},
		{"localhost", []string{"-bind=localhost"}, false, false},
		{"v6 loopback", []string{"-bind=::1"}, false, false},
		{"open bind, insecure", []string{"-bind=0.0.0.0", "-insecure"}, false, true},
		{"open bind, key", []string{"-bind=0.0.0.0", "-cluster-key-file=" + key}, true, false},
		{"loopback, key", []string{"-cluster-key-file=" + key}, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := parseConfig(append([]string{"-memory"}, tt.args...), envOf(nil), &strings.Builder{})
			if err != nil {
				t.Fatal(err)
			}
			if (cfg.ClusterKeys != nil) != tt.keyed || cfg.Insecure != tt.insecure {
				t.Fatalf("keyed %v insecure %v, want %v %v", cfg.ClusterKeys != nil, cfg.Insecure, tt.keyed, tt.insecure)
			}
			if tt.keyed && cfg.ClusterKeys.Path() != key {
				t.Fatalf("key file %q, want %q", cfg.ClusterKeys.Path(), key)
			}
		})
	}
}

// lockedBuffer is a log sink a running node and the test share.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestRunReloadsKeyOnSIGHUP runs a node with a key file and sends this
// process SIGHUP: a bad file is logged and the keys stay, a good one is
// taken. run has caught SIGHUP, SIGINT and SIGTERM before the node logs
// that it started, so the signals reach it and not the test binary.
func TestRunReloadsKeyOnSIGHUP(t *testing.T) {
	path := writeKeyFile(t, goodKey)
	var logs lockedBuffer
	done := make(chan int, 1)
	go func() {
		done <- run([]string{"-memory", "-port=0", "-cluster-key-file=" + path}, envOf(nil), &logs)
	}()
	waitLog := func(what string, n int) {
		t.Helper()
		_, err := poll.Until(context.Background(), 10*time.Second, 10*time.Millisecond, "log says "+what, func() (bool, string) {
			return strings.Count(logs.String(), what) >= n, logs.String()
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	waitLog(`msg="node started"`, 1)
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("short\n")
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	waitLog("reload failed", 1)
	write(goodKey + strings.Repeat("n", 40) + "\n")
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	waitLog(`msg="cluster key reloaded"`, 1)
	// The reload names both keys of the new file, the signing one first.
	if !regexp.MustCompile(`msg="cluster key reloaded".*cluster_keys="\[[0-9a-f]{16} [0-9a-f]{16}\]"`).MatchString(logs.String()) {
		t.Fatalf("no reload of two keys in the log:\n%s", logs.String())
	}
	syscall.Kill(os.Getpid(), syscall.SIGTERM)
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("run = %d after SIGTERM; logs:\n%s", code, logs.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after SIGTERM")
	}
}
