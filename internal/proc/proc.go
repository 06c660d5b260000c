// Package proc runs countd (and helper servers) as child processes, for the
// tests and tools that treat the node as its users do: e2e and
// cmd/countd-bench. It builds the binary (Build), starts a process with a
// clean environment and keeps what it writes to stderr (Start, Output),
// notices its exit (Done, Exited), waits for a node to say where it listens
// and to answer GET /health (WaitListening, WaitHealthy), and ends it by its
// own PID, never by name (Stop: SIGTERM, then SIGKILL; Kill; Close).
package proc

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Spec is a process to start.
type Spec struct {
	Name string   // for messages; the binary's path if empty
	Path string   // the binary
	Args []string // its arguments
	// Wrapper is a command that execs Path in place, such as `ip netns exec
	// NAME`: the wrapper's PID becomes the process's, so signals still reach
	// it.
	Wrapper []string
	// Env is added to the environment, which has no COUNTD_* variables of
	// this process's.
	Env    []string
	Stdin  io.Reader
	Stdout io.Writer // nil: discarded
	Stderr io.Writer // gets stderr besides Output, if set
}

// Proc is a child process this program started and owns. Its environment
// has no COUNTD_* variables, so only its flags configure it; it runs in a
// process group of its own (so a Ctrl-C at the terminal reaches only its
// parent, which then stops it in order) and, on Linux, gets SIGKILL if its
// parent dies.
type Proc struct {
	Name    string
	Args    []string
	Output  *Output   // everything it wrote to stderr
	Started time.Time // when it was started

	cmd     *exec.Cmd
	done    chan struct{} // closed once the process is reaped
	waitErr error         // cmd.Wait's result; read only after done
	ended   atomic.Bool   // Stop or Kill signalled it
}

// Start starts the process.
func Start(s Spec) (*Proc, error) {
	name := s.Name
	if name == "" {
		name = s.Path
	}
	p := &Proc{Name: name, Args: slices.Clone(s.Args), Output: NewOutput(), done: make(chan struct{})}
	argv := append(append(slices.Clone(s.Wrapper), s.Path), s.Args...)
	p.cmd = exec.Command(argv[0], argv[1:]...)
	p.cmd.Stdin, p.cmd.Stdout = s.Stdin, s.Stdout
	p.cmd.Stderr = p.Output
	if s.Stderr != nil {
		p.cmd.Stderr = io.MultiWriter(p.Output, s.Stderr)
	}
	p.cmd.Env = append(envWithout("COUNTD_"), s.Env...)
	// A child of the process that outlives it keeps its stderr open; do not
	// wait for that after the process itself has exited.
	p.cmd.WaitDelay = time.Second
	p.cmd.SysProcAttr = sysProcAttr()
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p.Started = time.Now()
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// envWithout returns this process's environment less the variables whose
// names start with prefix.
func envWithout(prefix string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, prefix) {
			env = append(env, kv)
		}
	}
	return env
}

// PID is the process id.
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Done is closed once the process has exited and been reaped.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited and been reaped.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Err is how the process exited (nil for status 0), once Done is closed.
func (p *Proc) Err() error {
	if !p.Exited() {
		return nil
	}
	return p.waitErr
}

// State is the exited process's state, once Done is closed.
func (p *Proc) State() *os.ProcessState {
	if !p.Exited() {
		return nil
	}
	return p.cmd.ProcessState
}

func (p *Proc) String() string { return fmt.Sprintf("%s (pid %d)", p.Name, p.PID()) }

// ErrExited is returned for a signal to a process that has exited on its
// own.
var ErrExited = errors.New("exited on its own")

// Signal sends sig to the process, unless it has exited.
func (p *Proc) Signal(sig os.Signal) error {
	if p.Exited() {
		return fmt.Errorf("%v to %s: %w (%v)", sig, p, ErrExited, p.waitErr)
	}
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("%v to %s: %w", sig, p, err)
	}
	return nil
}

// Wait waits up to timeout for the process to exit.
func (p *Proc) Wait(timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.done:
		return nil
	case <-t.C:
		return fmt.Errorf("%s still running after %v", p, timeout)
	}
}

// Stop ends the process gracefully: SIGTERM, then up to timeout for it to
// exit. It returns an error if the process had exited on its own before,
// had to be killed (SIGKILL after timeout), or exited with a status other
// than 0. Once Stop or Kill has ended it, Stop returns nil.
func (p *Proc) Stop(timeout time.Duration) error {
	if p.Exited() && p.ended.Load() {
		return nil
	}
	if err := p.end(syscall.SIGTERM); err != nil {
		return err
	}
	if err := p.Wait(timeout); err != nil {
		p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s still running %v after SIGTERM; killed", p, timeout)
	}
	if p.waitErr != nil {
		return fmt.Errorf("%s after SIGTERM: %v, want exit status 0", p, p.waitErr)
	}
	return nil
}

// Kill sends SIGKILL and waits up to timeout for the process to be reaped.
// It returns an error if the process had exited on its own before. Once
// Stop or Kill has ended it, Kill returns nil.
func (p *Proc) Kill(timeout time.Duration) error {
	if p.Exited() && p.ended.Load() {
		return nil
	}
	if err := p.end(syscall.SIGKILL); err != nil {
		return err
	}
	return p.Wait(timeout)
}

// end sends sig for Stop or Kill, or returns the error naming the exit of
// a process that exited on its own.
func (p *Proc) end(sig os.Signal) error {
	if p.Exited() {
		return p.Signal(sig)
	}
	p.ended.Store(true)
	return p.Signal(sig)
}

// Close kills the process if it is still running and waits up to timeout
// for it to be reaped: the clean-up after anything else.
func (p *Proc) Close(timeout time.Duration) error {
	if p.Exited() {
		return nil
	}
	p.ended.Store(true)
	p.cmd.Process.Kill()
	if err := p.Wait(timeout); err != nil {
		return fmt.Errorf("%s not reaped %v after SIGKILL", p, timeout)
	}
	return nil
}

// Output collects a process's output. It is safe for the copying goroutine
// of os/exec and readers to use at once, and lets a waiter block until more
// output arrives instead of polling.
type Output struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{} // closed and replaced on every write
}

// NewOutput returns an empty Output.
func NewOutput() *Output { return &Output{changed: make(chan struct{})} }

func (o *Output) Write(b []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	n, err := o.buf.Write(b)
	close(o.changed)
	o.changed = make(chan struct{})
	return n, err
}

// Snapshot returns the output so far and a channel closed at the next write.
func (o *Output) Snapshot() (string, <-chan struct{}) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String(), o.changed
}

func (o *Output) String() string {
	s, _ := o.Snapshot()
	return s
}

// Lines returns the complete lines written so far.
func (o *Output) Lines() []string {
	s := o.String()
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return strings.Split(s[:i], "\n")
	}
	return nil
}

// Tail returns the last n bytes of the output at most, trimmed, for
// messages.
func (o *Output) Tail(n int) string {
	s := o.String()
	if len(s) > n {
		s = s[len(s)-n:]
	}
	return strings.TrimSpace(s)
}
