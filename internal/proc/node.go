package proc

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"countd/internal/poll"
)

// ListenAddr finds the listen field of the first complete "node started"
// line in a node's JSON log output (-log-format=json).
func ListenAddr(out string) (string, bool) {
	for line := range strings.Lines(out) {
		if !strings.HasSuffix(line, "\n") {
			break // still being written
		}
		var rec struct {
			Msg    string `json:"msg"`
			Listen string `json:"listen"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "node started" && rec.Listen != "" {
			return rec.Listen, true
		}
	}
	return "", false
}

// WaitListening waits up to timeout for a node started with
// -log-format=json (and -port=0, say) to log "node started", and returns
// the address it listens on. It fails at once if the node exits.
func (p *Proc) WaitListening(timeout time.Duration) (string, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		out, more := p.Output.Snapshot()
		if addr, ok := ListenAddr(out); ok {
			return addr, nil
		}
		select {
		case <-more:
		case <-p.done:
			// The last output may have landed just before the exit.
			if addr, ok := ListenAddr(p.Output.String()); ok {
				return "", fmt.Errorf("%s exited (%v) right after starting on %s", p, p.waitErr, addr)
			}
			return "", fmt.Errorf("%s exited before \"node started\": %v", p, p.waitErr)
		case <-deadline.C:
			return "", fmt.Errorf("%s: no \"node started\" log line within %v", p, timeout)
		}
	}
}

// WaitHealthy polls GET baseURL/health with c until it answers 200, for up
// to timeout. It fails at once if the process exits.
func (p *Proc) WaitHealthy(ctx context.Context, c *http.Client, baseURL string, timeout time.Duration) error {
	_, err := poll.Until(ctx, timeout, 10*time.Millisecond, fmt.Sprintf("GET %s/health from %s answers 200", baseURL, p), func() (bool, string) {
		if p.Exited() {
			return true, "" // reported below
		}
		resp, err := c.Get(baseURL + "/health")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status
	})
	if p.Exited() {
		return fmt.Errorf("%s exited while waiting for /health: %v", p, p.waitErr)
	}
	return err
}

// Build builds the countd binary from the root of the countd module into
// dir, with the race detector if race (such a node exits 66 at the end if
// it saw a data race), and returns its path.
func Build(ctx context.Context, dir string, race bool) (string, error) {
	root, err := ModuleRoot(ctx)
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "countd")
	args := []string{"build", "-o", bin}
	if race {
		args = append(args, "-race")
	}
	cmd := exec.CommandContext(ctx, "go", append(args, ".")...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build countd in %s: %w\n%s", root, err, strings.TrimSpace(string(out)))
	}
	return bin, nil
}

// ModuleRoot returns the directory of the countd module's go.mod, as the go
// command finds it from the working directory.
func ModuleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("find the countd module (go env GOMOD): %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside the countd module: run from its tree")
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
				return "", fmt.Errorf("%s is module %s, not countd: run from the countd tree", gomod, name)
			}
			return filepath.Dir(gomod), nil
		}
	}
	return "", fmt.Errorf("%s names no module", gomod)
}
