package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
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
		resp   bool
	}{
		{"bare", startBare, false, false},
		{"fsync", startFsync, true, false},
		{"bare RESP", startBareRESP, false, true},
		{"fsync RESP", startFsyncRESP, true, true},
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
			add := httpAdd(t, y.addr)
			if tc.resp {
				add = respAdd(t, y.addr)
			}
			for want := int64(1); want <= 3; want++ {
				if v := add(); v != want {
					t.Fatalf("value %d, want %d", v, want)
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

// httpAdd returns a function that adds 1 at the HTTP yardstick at addr and
// returns the new value.
func httpAdd(t *testing.T, addr string) func() int64 {
	client := &http.Client{Timeout: 10 * time.Second}
	t.Cleanup(client.CloseIdleConnections)
	api := apiclient.Client{HTTP: client}
	return func() int64 {
		r := api.Change("http://"+addr, "default", 1)
		if r.Status != http.StatusOK || r.Err != nil {
			t.Fatalf("status %d: %v", r.Status, r.Err)
		}
		return r.Value
	}
}

// respAdd returns a function that sends INCR to the RESP yardstick at addr,
// on one connection, and returns the new value.
func respAdd(t *testing.T, addr string) func() int64 {
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	r := bufio.NewReader(conn)
	return func() int64 {
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := conn.Write([]byte("INCR default\r\n")); err != nil {
			t.Fatal(err)
		}
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		v, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimPrefix(line, ":"), "\r\n"), 10, 64)
		if err != nil {
			t.Fatalf("reply %q: %v", line, err)
		}
		return v
	}
}
