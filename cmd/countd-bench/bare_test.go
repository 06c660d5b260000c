package main

import (
	"context"
	"encoding/binary"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"countd/internal/apiclient"
)

// TestYardstickServers starts each yardstick server as a child process (the
// test binary stands in for the tool, see TestMain), sends it three adds,
// and checks the answers, that the fsync yardstick has each answered value
// on disk by the time the answer arrives, and that Close stops the process
// and leaves nothing in the temporary directory.
func TestYardstickServers(t *testing.T) {
	tests := []struct {
		name   string
		start  func(context.Context, time.Duration) (*yardstickProc, error)
		onDisk bool
	}{
		{"bare", startBare, false},
		{"fsync", startFsync, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tmp := t.TempDir()
			t.Setenv("TMPDIR", tmp)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			y, err := tc.start(ctx, 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer y.Close(10 * time.Second)
			if tc.onDisk != (y.dir != "") {
				t.Fatalf("dir %q: want one only for the fsync yardstick", y.dir)
			}
			if tc.onDisk && filepath.Dir(y.dir) != tmp {
				t.Errorf("fsync yardstick dir %s is not in the temporary directory %s", y.dir, tmp)
			}
			client := &http.Client{Timeout: 10 * time.Second}
			defer client.CloseIdleConnections()
			api := apiclient.Client{HTTP: client}
			for want := int64(1); want <= 3; want++ {
				r := api.Change("http://"+y.addr, "default", 1)
				if r.Status != http.StatusOK || r.Err != nil {
					t.Fatalf("status %d: %v", r.Status, r.Err)
				}
				if r.Value != want {
					t.Fatalf("value %d, want %d", r.Value, want)
				}
				if !tc.onDisk {
					continue
				}
				b, err := os.ReadFile(filepath.Join(y.dir, fsyncFile))
				if err != nil {
					t.Fatal(err)
				}
				if len(b) < 8 || int64(binary.BigEndian.Uint64(b)) < want {
					t.Fatalf("answered %d before it was in the file (%d bytes)", want, len(b))
				}
			}
			if err := y.Close(10 * time.Second); err != nil {
				t.Errorf("close: %v", err)
			}
			if !y.Exited() {
				t.Errorf("the %s server still runs after Close", tc.name)
			}
			if left, _ := filepath.Glob(filepath.Join(tmp, "*")); len(left) > 0 {
				t.Errorf("left behind after Close: %v", left)
			}
		})
	}
}

// TestFsyncServerBadFile checks that the fsync yardstick that cannot create
// its file fails at once, saying why, instead of serving.
func TestFsyncServerBadFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing", fsyncFile)
	var stdout, stderr strings.Builder
	code := run([]string{"-fsync-server=" + path}, strings.NewReader(""), &stdout, &stderr)
	if code != 1 || stdout.Len() > 0 || !strings.Contains(stderr.String(), "-fsync-server") {
		t.Fatalf("exit %d, stdout %q, stderr %q; want 1, nothing, an error", code, stdout.String(), stderr.String())
	}
}
