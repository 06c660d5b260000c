package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is a child process the tool started and owns: only it is ever
// signalled, by its own PID.
type proc struct {
	name    string
	cmd     *exec.Cmd
	done    chan struct{} // closed once the process has exited and been reaped
	waitErr error         // how it exited; read after done
	logPath string        // where its stdout and stderr go, if a file
}

// startProc starts bin with args in its own process group (so a Ctrl-C at
// the terminal reaches only this tool, which then stops its children in
// order) and with SIGKILL as its parent-death signal (so it cannot outlive
// this tool). COUNTD_* variables are dropped from its environment, so that
// only the flags given here configure it.
func startProc(name, bin string, args []string, stdin io.Reader, stdout, stderr io.Writer) (*proc, error) {
	cmd := exec.Command(bin, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
	cmd.Env = envWithout("COUNTD_")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// pid returns the process id.
func (p *proc) pid() int { return p.cmd.Process.Pid }

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, waits up to timeout, then sends SIGKILL and waits for
// the exit. It is safe to call on a process that has already ended. It
// returns an error if the process had to be killed.
func (p *proc) stop(timeout time.Duration) error {
	if p.exited() {
		return nil
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stop %s: %w", p.name, err)
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.done:
		return nil
	case <-t.C:
	}
	p.cmd.Process.Kill()
	<-p.done
	return fmt.Errorf("stop %s: still running %v after SIGTERM; killed", p.name, timeout)
}

// logTail returns the last few lines of the process's log file, for error
// messages.
func (p *proc) logTail() string {
	if p.logPath == "" {
		return ""
	}
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return ""
	}
	const keep = 1500
	if len(b) > keep {
		b = b[len(b)-keep:]
	}
	return strings.TrimSpace(string(b))
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

// cluster is the set of nodes a run talks to: processes this tool started,
// or (with -addrs) a cluster that was already running.
type cluster struct {
	// addrs are the nodes' host:port, in order; the first is the target of
	// -target=one.
	addrs []string
	// procs are the node processes started by the tool, in the order of
	// addrs; nil for an external cluster.
	procs       []*proc
	dir         string // temporary directory of data dirs and logs; "" if none
	keep        bool
	stopTimeout time.Duration
	closeOnce   sync.Once
	closeErr    error
}

// external returns a cluster of nodes the tool did not start.
func external(addrs []string) *cluster {
	return &cluster{addrs: addrs}
}

// startCluster starts n nodes of bin on free ports of 127.0.0.1, each with
// every other as a peer, and waits until every node sees all the others
// alive. On any error it stops what it started.
func startCluster(ctx context.Context, cfg *Config, bin string, n int) (_ *cluster, err error) {
	dir, err := os.MkdirTemp("", fmt.Sprintf("countd-bench-%dnodes-", n))
	if err != nil {
		return nil, fmt.Errorf("start cluster: %w", err)
	}
	c := &cluster{dir: dir, keep: cfg.Keep, stopTimeout: cfg.StopTimeout}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	ports, err := freePorts(n)
	if err != nil {
		return nil, fmt.Errorf("start cluster: %w", err)
	}
	for _, p := range ports {
		c.addrs = append(c.addrs, "127.0.0.1:"+strconv.Itoa(p))
	}
	for i, port := range ports {
		args := []string{"-port=" + strconv.Itoa(port), "-log-level=warn"}
		var peers []string
		for j, p := range ports {
			if j != i {
				peers = append(peers, strconv.Itoa(p))
			}
		}
		if len(peers) > 0 {
			args = append(args, "-peers="+strings.Join(peers, ","))
		}
		if cfg.Memory {
			args = append(args, "-memory")
		} else {
			args = append(args, "-data-dir="+filepath.Join(dir, "node-"+strconv.Itoa(port)))
		}
		args = append(args, cfg.NodeFlags...) // last, so they win
		logPath := filepath.Join(dir, "node-"+strconv.Itoa(port)+".log")
		logf, err := os.Create(logPath)
		if err != nil {
			return nil, fmt.Errorf("start cluster: %w", err)
		}
		p, err := startProc("node "+c.addrs[i], bin, args, nil, logf, logf)
		logf.Close() // the child holds its own descriptor
		if err != nil {
			return nil, fmt.Errorf("start cluster: %w", err)
		}
		p.logPath = logPath
		c.procs = append(c.procs, p)
	}
	if err := waitReady(ctx, c, cfg.ReadyTimeout); err != nil {
		return nil, fmt.Errorf("start cluster of %d: %w", n, err)
	}
	return c, nil
}

// exitedNode returns an error naming the first started node that has
// already ended, with the end of its log; nil if all are running.
func (c *cluster) exitedNode() error {
	for _, p := range c.procs {
		if p.exited() {
			return fmt.Errorf("%s exited (%v); its log ends:\n%s", p.name, p.waitErr, p.logTail())
		}
	}
	return nil
}

// Close stops every node the tool started (SIGTERM, then SIGKILL after the
// stop timeout, all at once) and removes the temporary directory unless
// -keep. It is safe to call twice; it does nothing for an external cluster.
func (c *cluster) Close() error {
	c.closeOnce.Do(func() {
		var wg sync.WaitGroup
		errs := make([]error, len(c.procs))
		for i, p := range c.procs {
			wg.Go(func() { errs[i] = p.stop(c.stopTimeout) })
		}
		wg.Wait()
		if c.dir != "" && !c.keep {
			errs = append(errs, os.RemoveAll(c.dir))
		}
		c.closeErr = errors.Join(errs...)
	})
	return c.closeErr
}

// freePorts returns n distinct ports free on 127.0.0.1 a moment ago. They
// are held open together while picked so they differ; another process could
// still take one before a node binds it, which the node reports by exiting.
func freePorts(n int) ([]int, error) {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// buildCountd builds the countd binary from the root of the module that
// holds the working directory into dir, and returns its path.
func buildCountd(ctx context.Context, dir string) (string, error) {
	root, err := moduleRoot(ctx)
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "countd")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, ".")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build countd in %s: %w\n%s", root, err, strings.TrimSpace(string(out)))
	}
	return bin, nil
}

// moduleRoot returns the directory of the countd module's go.mod, as the go
// command finds it from the working directory.
func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("find the countd module (go env GOMOD): %w; pass -bin", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside the countd module: run from its tree or pass -bin")
	}
	f, err := os.Open(gomod)
	if err != nil {
		return "", fmt.Errorf("find the countd module: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if name, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "module "); ok {
			if strings.Trim(strings.TrimSpace(name), `"`) != "countd" {
				return "", fmt.Errorf("%s is module %s, not countd: run from the countd tree or pass -bin", gomod, name)
			}
			return filepath.Dir(gomod), nil
		}
	}
	return "", fmt.Errorf("%s names no module", gomod)
}
