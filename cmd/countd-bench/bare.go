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
// per batch of requests, the least any durable server pays. With
// -bare-resp either speaks the Redis protocol instead of HTTP, on redcon
// as countd's RESP port does (the resp mode's yardsticks).

// fsyncFile is the name of the fsync yardstick's file in its directory.
const fsyncFile = "yardstick"

// yardstick is a server a yardstick process runs: an http.Server or a
// redcon.Server. Serve returns nil once Close stopped it.
type yardstick interface {
	Serve(net.Listener) error
	Close() error
}

// httpYardstick serves h over HTTP, or over HTTPS with certFile and keyFile
// if set (TLS 1.2 at least, as countd).
type httpYardstick struct {
	srv               *http.Server
	certFile, keyFile string
}

func newHTTPYardstick(h http.Handler, certFile, keyFile string) *httpYardstick {
	return &httpYardstick{
		srv: &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second,
			TLSConfig: &tls.Config{MinVersion: tls.VersionTLS12}},
		certFile: certFile, keyFile: keyFile,
	}
}

func (y *httpYardstick) Serve(ln net.Listener) error {
	var err error
	if y.certFile != "" {
		err = y.srv.ServeTLS(ln, y.certFile, y.keyFile)
	} else {
		err = y.srv.Serve(ln)
	}
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

func (y *httpYardstick) Close() error { return y.srv.Close() }

// serveBare runs this process as the bare server (-bare-server): over
// RESP if resp, else over HTTP, or HTTPS if certFile and keyFile are set.
func serveBare(resp bool, certFile, keyFile string, stdin io.Reader, stdout, stderr io.Writer) int {
	var y yardstick = newHTTPYardstick(bare.Handler(), certFile, keyFile)
	if resp {
		y = bare.RESPServer(nil)
	}
	return serveYardstick("-bare-server", y, stdin, stdout, stderr)
}

// serveFsync runs this process as the fsync yardstick (-fsync-server=path),
// over RESP if resp, else over HTTP: it creates (or truncates) the file at
// path and answers each add once it is written and flushed there.
func serveFsync(path string, resp bool, stdin io.Reader, stdout, stderr io.Writer) int {
	s, err := bare.NewSyncing(path)
	if err != nil {
		fmt.Fprintln(stderr, "countd-bench -fsync-server:", err)
		return 1
	}
	var y yardstick = newHTTPYardstick(s.Handler(), "", "")
	if resp {
		y = bare.RESPServer(s)
	}
	code := serveYardstick("-fsync-server", y, stdin, stdout, stderr)
	if err := s.Close(); err != nil {
		fmt.Fprintln(stderr, "countd-bench -fsync-server:", err)
		code = 1
	}
	return code
}

// serveYardstick serves y on a free port of 127.0.0.1: it writes the
// address as the first line of stdout, and serves until SIGTERM or SIGINT,
// or until stdin ends (the tool that started it is gone). flag names the
// mode in error messages.
func serveYardstick(flag string, y yardstick, stdin io.Reader, stdout, stderr io.Writer) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintf(stderr, "countd-bench %s: %v\n", flag, err)
		return 1
	}
	ctx, stop := stopContext(stdin)
	defer stop()
	go func() {
		<-ctx.Done()
		y.Close()
	}()
	fmt.Fprintln(stdout, ln.Addr().String())
	if err := y.Serve(ln); err != nil {
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

// startBareRESP starts the bare server over RESP.
func startBareRESP(ctx context.Context, stopTimeout time.Duration) (*yardstickProc, error) {
	return startYardstick(ctx, "bare RESP server", []string{"-bare-server", "-bare-resp"}, stopTimeout)
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
	return startFsyncOver(ctx, "fsync yardstick", nil, stopTimeout)
}

// startFsyncRESP starts the fsync yardstick over RESP, as startFsync.
func startFsyncRESP(ctx context.Context, stopTimeout time.Duration) (*yardstickProc, error) {
	return startFsyncOver(ctx, "fsync RESP yardstick", []string{"-bare-resp"}, stopTimeout)
}

// startFsyncOver starts the fsync yardstick named name with its file in a
// new temporary directory and these more flags.
func startFsyncOver(ctx context.Context, name string, more []string, stopTimeout time.Duration) (*yardstickProc, error) {
	dir, err := os.MkdirTemp("", "countd-bench-fsync-")
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	y, err := startYardstick(ctx, name,
		append([]string{"-fsync-server=" + filepath.Join(dir, fsyncFile)}, more...), stopTimeout)
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
