package main

import (
	"context"
	"countd/internal/proc"
	"countd/internal/testcerts"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// cluster is the set of nodes a run talks to: processes this tool started,
// or (with -addrs) a cluster that was already running.
type cluster struct {
	// addrs are the nodes' host:port, in order; the first is the target of
	// -target=one.
	addrs []string
	// respAddrs are the nodes' RESP ports (host:port), in the order of
	// addrs; only in resp mode.
	respAddrs []string
	// procs are the node processes started by the tool, in the order of
	// addrs; nil for an external cluster. specs are what they were started
	// with, for a restart.
	procs []*proc.Proc
	specs []proc.Spec
	// dataDirs are the started nodes' data dirs, in the order of addrs;
	// nil for -memory nodes and an external cluster.
	dataDirs []string
	// auth is how clients reach the nodes (scheme, CA, token), and http
	// the client that polls them (/health, /peers, /counters, /metrics).
	auth        clientAuth
	http        *http.Client
	sec         security
	dir         string // temporary directory of data dirs and logs; "" if none
	keep        bool
	stopTimeout time.Duration
	readyAfter  time.Duration // from the first start until every node saw every other alive
	// peer names the system the nodes run when it is not countd (idle
	// mode's -idle-peer), "" for countd; such nodes serve no HTTP, and
	// members is what they print about their membership.
	peer    string
	members *memberCounts
	// closers are closed once the processes have stopped (the pipes to
	// a peer's nodes).
	closers   []io.Closer
	closeOnce sync.Once
	closeErr  error
}

// external returns a cluster of nodes the tool did not start.
func external(addrs []string) *cluster {
	return &cluster{addrs: addrs, http: newPollClient(clientAuth{})}
}

// newPollClient returns the client that polls nodes reached with auth.
func newPollClient(auth clientAuth) *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: auth.transport(&http.Transport{MaxIdleConnsPerHost: 2})}
}

// startCluster starts n nodes of bin on free ports of 127.0.0.1, each with
// every other as a peer and the security sec (its key, token file and
// certificates made fresh in the cluster's directory, the certificates
// signed by ca, which must be set if sec asks for TLS), and waits until
// every node sees all the others alive. On any error it stops what it
// started.
func startCluster(ctx context.Context, cfg *Config, bin string, n int, sec security, ca *testcerts.CA) (_ *cluster, err error) {
	dir, err := os.MkdirTemp("", fmt.Sprintf("countd-bench-%dnodes-", n))
	if err != nil {
		return nil, fmt.Errorf("start cluster: %w", err)
	}
	c := &cluster{dir: dir, keep: cfg.Keep, stopTimeout: cfg.StopTimeout, sec: sec}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	secs, err := makeSecrets(dir, sec, ca)
	if err != nil {
		return nil, fmt.Errorf("start cluster: %w", err)
	}
	c.auth = secs.auth
	c.http = newPollClient(c.auth)
	resp := cfg.mode() == modeRESP
	nPorts := n
	if resp {
		nPorts = 2 * n // an HTTP and a RESP port each
	}
	ports, err := proc.FreePorts(nPorts)
	if err != nil {
		return nil, fmt.Errorf("start cluster: %w", err)
	}
	respPorts := ports[n:]
	ports = ports[:n]
	for _, p := range ports {
		c.addrs = append(c.addrs, "127.0.0.1:"+strconv.Itoa(p))
	}
	began := time.Now()
	for i, port := range ports {
		args := []string{"-port=" + strconv.Itoa(port), "-log-level=warn"}
		if resp {
			args = append(args, "-resp-port="+strconv.Itoa(respPorts[i]))
			c.respAddrs = append(c.respAddrs, "127.0.0.1:"+strconv.Itoa(respPorts[i]))
		}
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
			dd := filepath.Join(dir, "node-"+strconv.Itoa(port))
			c.dataDirs = append(c.dataDirs, dd)
			args = append(args, "-data-dir="+dd)
		}
		secArgs, err := secs.nodeArgs("node-" + strconv.Itoa(port))
		if err != nil {
			return nil, fmt.Errorf("start cluster: %w", err)
		}
		args = append(args, secArgs...)
		if cfg.mode() == modeKeys {
			// -pprof, so the tool can force a GC before it reads memory.
			args = append(args, "-idempotency-window="+cfg.Window.String(), "-pprof")
		}
		args = append(args, cfg.NodeFlags...) // last, so they win
		c.specs = append(c.specs, proc.Spec{Name: "node " + c.addrs[i], Path: bin, Args: args})
		p, err := c.startNode(i)
		if err != nil {
			return nil, fmt.Errorf("start cluster: %w", err)
		}
		c.procs = append(c.procs, p)
	}
	if err := waitReady(ctx, c, cfg.ReadyTimeout); err != nil {
		return nil, fmt.Errorf("start cluster of %d: %w", n, err)
	}
	c.readyAfter = time.Since(began)
	return c, nil
}

// startNode starts node i as specs[i] says, its log appended to a file
// beside its data dir (kept with -keep).
func (c *cluster) startNode(i int) (*proc.Proc, error) {
	name := "node-" + strings.TrimPrefix(c.addrs[i], "127.0.0.1:") + ".log"
	return startLogged(filepath.Join(c.dir, name), func(logf io.Writer) (*proc.Proc, error) {
		spec := c.specs[i]
		spec.Stdout, spec.Stderr = logf, logf
		return proc.Start(spec)
	})
}

// startLogged opens the log file at path (appending) and calls start with
// it; the file is closed once the process start started has ended (its
// output is copied into the file until then), or at once if start fails.
func startLogged(path string, start func(log io.Writer) (*proc.Proc, error)) (*proc.Proc, error) {
	logf, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	p, err := start(logf)
	if err != nil {
		logf.Close()
		return nil, err
	}
	go func() {
		<-p.Done()
		logf.Close()
	}()
	return p, nil
}

// restart stops node i (SIGTERM, SIGKILL after the stop timeout), starts
// it again with the same flags and data dir, and waits until the cluster
// is ready. stopErr says how the stop went wrong (the node is restarted
// all the same: a node killed after the timeout restarts from its log);
// stopped is when the old process had ended.
func (c *cluster) restart(ctx context.Context, i int, readyTimeout time.Duration) (stopped time.Time, stopErr, err error) {
	stopErr = c.procs[i].Stop(c.stopTimeout)
	stopped = time.Now()
	p, err := c.startNode(i)
	if err != nil {
		return stopped, stopErr, fmt.Errorf("restart %s: %w", c.addrs[i], err)
	}
	c.procs[i] = p
	if err := waitReady(ctx, c, readyTimeout); err != nil {
		return stopped, stopErr, fmt.Errorf("restart %s: %w", c.addrs[i], err)
	}
	return stopped, stopErr, nil
}

// exitedNode returns an error naming the first started node that has
// already ended, with the end of its log; nil if all are running.
func (c *cluster) exitedNode() error {
	for _, p := range c.procs {
		if p.Exited() {
			return fmt.Errorf("%s exited (%v); its log ends:\n%s", p.Name, p.Err(), p.Output.Tail(1500))
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
			wg.Go(func() { errs[i] = p.Stop(c.stopTimeout) })
		}
		wg.Wait()
		for _, cl := range c.closers {
			errs = append(errs, cl.Close())
		}
		if c.dir != "" && !c.keep {
			errs = append(errs, os.RemoveAll(c.dir))
		}
		c.closeErr = errors.Join(errs...)
		if c.http != nil {
			c.http.CloseIdleConnections()
		}
	})
	return c.closeErr
}
