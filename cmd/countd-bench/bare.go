package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"countd/internal/bare"
	"countd/internal/proc"
	"countd/internal/testcerts"
)

// The yardsticks countd is compared with run as child processes of this
// tool, so that they compete with the load generator for the CPU as the
// nodes do. Both come from internal/bare, the handlers the Go benchmarks use
// too: the bare server (-bare-server) does one atomic add per request; the
// fsync yardstick (-fsync-server=FILE) does the same but answers only once
// the value is on disk in FILE, with one group-committed pwrite+fdatasync
// per batch of requests, the least any durable server pays.

// fsyncFile is the name of the fsync yardstick's file in its directory.
const fsyncFile = "yardstick"

// serveBare runs this process as the bare server (-bare-server), over
// HTTPS if certFile and keyFile are set.
func serveBare(certFile, keyFile string, stdin io.Reader, stdout, stderr io.Writer) int {
	return serveYardstick("-bare-server", bare.Handler(), certFile, keyFile, stdin, stdout, stderr)
}

// serveFsync runs this process as the fsync yardstick (-fsync-server=path):
// it creates (or truncates) the file at path and answers each add once it
// is written and flushed there.
func serveFsync(path string, stdin io.Reader, stdout, stderr io.Writer) int {
	s, err := bare.NewSyncing(path)
	if err != nil {
		fmt.Fprintln(stderr, "countd-bench -fsync-server:", err)
		return 1
	}
	code := serveYardstick("-fsync-server", s.Handler(), "", "", stdin, stdout, stderr)
	if err := s.Close(); err != nil {
		fmt.Fprintln(stderr, "countd-bench -fsync-server:", err)
		code = 1
	}
	return code
}

// serveYardstick serves h on a free port of 127.0.0.1 (over HTTPS with
// certFile and keyFile if set, TLS 1.2 at least as countd): it writes the
// address as the first line of stdout, and serves until SIGTERM or SIGINT,
// or until stdin ends (the tool that started it is gone). flag names the
// mode in error messages.
func serveYardstick(flag string, h http.Handler, certFile, keyFile string, stdin io.Reader, stdout, stderr io.Writer) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintf(stderr, "countd-bench %s: %v\n", flag, err)
		return 1
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second,
		TLSConfig: &tls.Config{MinVersion: tls.VersionTLS12}}
	ctx, stop := stopContext(stdin)
	defer stop()
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	fmt.Fprintln(stdout, ln.Addr().String())
	serve := func() error { return srv.Serve(ln) }
	if certFile != "" {
		serve = func() error { return srv.ServeTLS(ln, certFile, keyFile) }
	}
	if err := serve(); !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintf(stderr, "countd-bench %s: %v\n", flag, err)
		return 1
	}
	return 0
}

// stopContext returns a context that ends on SIGTERM or SIGINT, or when
// stdin ends (the tool that started this process is gone): how a process
// the tool started from its own binary knows to stop.
func stopContext(stdin io.Reader) (context.Context, context.CancelFunc) {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	go func() {
		io.Copy(io.Discard, stdin)
		stop()
	}()
	return ctx, stop
}

// yardstickProc is a process started from this tool's own binary (a
// yardstick server, or a peer's node) that printed its address first.
type yardstickProc struct {
	*proc.Proc
	addr  string
	stdin io.Closer // closing it tells the server to exit
	// dir is the temporary directory of the fsync yardstick's file, which
	// Close removes; "" for the bare server.
	dir string
}

// startBare starts the bare server.
func startBare(ctx context.Context, stopTimeout time.Duration) (*yardstickProc, error) {
	return startYardstick(ctx, "bare server", []string{"-bare-server"}, stopTimeout)
}

// startBareTLS returns a start function for the bare server over HTTPS,
// with a certificate from ca like the nodes'.
func startBareTLS(ca *testcerts.CA) func(context.Context, time.Duration) (*yardstickProc, error) {
	return func(ctx context.Context, stopTimeout time.Duration) (*yardstickProc, error) {
		n, err := ca.IssueFiles("bare")
		if err != nil {
			return nil, fmt.Errorf("start bare TLS server: %w", err)
		}
		return startYardstick(ctx, "bare TLS server",
			[]string{"-bare-server", "-bare-tls-cert=" + n.CertFile, "-bare-tls-key=" + n.KeyFile}, stopTimeout)
	}
}

// startFsync starts the fsync yardstick with its file in a new temporary
// directory. The directory sits beside the nodes' data dirs (both are made
// in os.TempDir), so the yardstick flushes to the same filesystem as they
// do.
func startFsync(ctx context.Context, stopTimeout time.Duration) (*yardstickProc, error) {
	dir, err := os.MkdirTemp("", "countd-bench-fsync-")
	if err != nil {
		return nil, fmt.Errorf("start fsync yardstick: %w", err)
	}
	y, err := startYardstick(ctx, "fsync yardstick",
		[]string{"-fsync-server=" + filepath.Join(dir, fsyncFile)}, stopTimeout)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	y.dir = dir
	return y, nil
}

// startYardstick starts this executable again with args and waits for the
// address it prints.
func startYardstick(ctx context.Context, name string, args []string, stopTimeout time.Duration) (*yardstickProc, error) {
	return startSelf(ctx, name, args, os.Stderr, nil, stopTimeout)
}

// startSelf starts this executable again with args, its stderr copied to
// stderr, and waits for the address it prints as its first line; every
// later line of its stdout goes to lines (if not nil) as it comes.
func startSelf(ctx context.Context, name string, args []string, stderr io.Writer, lines func(string), stopTimeout time.Duration) (*yardstickProc, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	stdinR, stdinW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		stdinR.Close()
		stdinW.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p, err := proc.Start(proc.Spec{Name: name, Path: exe, Args: args, Stdin: stdinR, Stdout: outW, Stderr: stderr})
	stdinR.Close()
	outW.Close()
	if err != nil {
		stdinW.Close()
		outR.Close()
		return nil, err
	}
	y := &yardstickProc{Proc: p, stdin: stdinW}

	line := make(chan string, 1)
	go func() {
		defer outR.Close()
		r := bufio.NewReader(outR)
		s, _ := r.ReadString('\n')
		line <- strings.TrimSpace(s)
		if lines == nil {
			io.Copy(io.Discard, r)
			return
		}
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			lines(sc.Text())
		}
		io.Copy(io.Discard, r)
	}()
	t := time.NewTimer(30 * time.Second)
	defer t.Stop()
	select {
	case y.addr = <-line:
		if _, _, err := net.SplitHostPort(y.addr); err == nil {
			return y, nil
		}
		err = fmt.Errorf("start %s: it printed %q, not an address", name, y.addr)
	case <-t.C:
		err = fmt.Errorf("start %s: no address within 30s", name)
	case <-ctx.Done():
		err = fmt.Errorf("start %s: %w", name, ctx.Err())
	}
	y.Close(stopTimeout)
	return nil, err
}

// Close stops the server and removes its directory, if it has one.
func (y *yardstickProc) Close(timeout time.Duration) error {
	err := y.Stop(timeout)
	y.stdin.Close()
	if y.dir != "" {
		err = errors.Join(err, os.RemoveAll(y.dir))
	}
	return err
}
