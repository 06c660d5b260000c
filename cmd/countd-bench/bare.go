package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"countd/internal/bare"
)

// serveBare runs this process as the bare server (-bare-server): it listens
// on a free port of 127.0.0.1, writes the address as the first line of
// stdout, and serves until SIGTERM or SIGINT, or until stdin ends (the tool
// that started it is gone).
func serveBare(stdin io.Reader, stdout, stderr io.Writer) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(stderr, "countd-bench -bare-server:", err)
		return 1
	}
	// The yardstick is internal/bare, the handler the Go benchmarks use too.
	srv := &http.Server{Handler: bare.Handler(), ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		io.Copy(io.Discard, stdin)
		stop()
	}()
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	fmt.Fprintln(stdout, ln.Addr().String())
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintln(stderr, "countd-bench -bare-server:", err)
		return 1
	}
	return 0
}

// bareProc is the bare server running as a child process.
type bareProc struct {
	*proc
	addr  string
	stdin io.Closer // closing it tells the server to exit
}

// startBare starts this executable again as the bare server and waits for
// its address.
func startBare(ctx context.Context, stopTimeout time.Duration) (*bareProc, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("start bare server: %w", err)
	}
	stdinR, stdinW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("start bare server: %w", err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		stdinR.Close()
		stdinW.Close()
		return nil, fmt.Errorf("start bare server: %w", err)
	}
	p, err := startProc("bare server", exe, []string{"-bare-server"}, stdinR, outW, os.Stderr)
	stdinR.Close()
	outW.Close()
	if err != nil {
		stdinW.Close()
		outR.Close()
		return nil, err
	}
	b := &bareProc{proc: p, stdin: stdinW}

	line := make(chan string, 1)
	go func() {
		defer outR.Close()
		s, _ := bufio.NewReader(outR).ReadString('\n')
		line <- strings.TrimSpace(s)
		io.Copy(io.Discard, outR)
	}()
	t := time.NewTimer(30 * time.Second)
	defer t.Stop()
	select {
	case b.addr = <-line:
		if _, _, err := net.SplitHostPort(b.addr); err == nil {
			return b, nil
		}
		err = fmt.Errorf("start bare server: it printed %q, not an address", b.addr)
	case <-t.C:
		err = errors.New("start bare server: no address within 30s")
	case <-ctx.Done():
		err = fmt.Errorf("start bare server: %w", ctx.Err())
	}
	b.Close(stopTimeout)
	return nil, err
}

// Close stops the bare server.
func (b *bareProc) Close(timeout time.Duration) error {
	b.stdin.Close()
	return b.stop(timeout)
}
