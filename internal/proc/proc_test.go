package proc

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// sh starts /bin/sh -c script, skipping the test without a shell, and
// kills it when the test ends.
func sh(t *testing.T, script string, stdout *os.File) *Proc {
	t.Helper()
	s := Spec{Name: "sh", Path: "/bin/sh", Args: []string{"-c", script}}
	if stdout != nil {
		s.Stdout = stdout
	}
	p, err := Start(s)
	if err != nil {
		t.Skip("no /bin/sh:", err)
	}
	t.Cleanup(func() {
		if err := p.Close(10 * time.Second); err != nil {
			t.Error(err)
		}
	})
	return p
}

// ready starts script, which must print "ready" once its traps are set, and
// waits for that line, so a signal cannot come before the trap.
func ready(t *testing.T, script string) *Proc {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	p := sh(t, script, w)
	w.Close()
	if line, _ := bufio.NewReader(r).ReadString('\n'); line != "ready\n" {
		t.Fatalf("shell said %q", line)
	}
	return p
}

// TestStopKillsWhatIgnoresSIGTERM checks the SIGKILL fallback: a process
// that ignores SIGTERM is killed after the stop timeout, and reaped.
func TestStopKillsWhatIgnoresSIGTERM(t *testing.T) {
	// An ignored signal stays ignored across exec, so sleep ignores SIGTERM.
	p := ready(t, `trap "" TERM; echo ready; exec sleep 60`)
	err := p.Stop(100 * time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("stop = %v, want an error saying it was killed", err)
	}
	if !p.Exited() {
		t.Fatal("process still running after stop")
	}
	if err := p.Stop(time.Second); err != nil {
		t.Fatalf("second stop = %v", err)
	}
}

// TestMain lets the test binary stand in for a node that exits 0 on
// SIGTERM (PROC_TEST_CHILD=polite).
func TestMain(m *testing.M) {
	if os.Getenv("PROC_TEST_CHILD") == "polite" {
		c := make(chan os.Signal, 1)
		signal.Notify(c, syscall.SIGTERM)
		fmt.Println("ready")
		<-c
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestStopEndsPolitely: a process that exits 0 on SIGTERM stops cleanly.
func TestStopEndsPolitely(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("PROC_TEST_CHILD", "polite")
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	p, err := Start(Spec{Name: "polite", Path: exe, Stdout: w})
	w.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(10 * time.Second)
	if line, _ := bufio.NewReader(r).ReadString('\n'); line != "ready\n" {
		t.Fatalf("child said %q", line)
	}
	if err := p.Stop(10 * time.Second); err != nil {
		t.Fatalf("stop = %v, want a clean SIGTERM stop", err)
	}
	if st := p.State(); st == nil || st.ExitCode() != 0 {
		t.Fatalf("state %v, want exit status 0", st)
	}
}

// TestStopWantsExitStatus0: a node must exit 0 after SIGTERM; one killed by
// it did not shut down gracefully.
func TestStopWantsExitStatus0(t *testing.T) {
	p := ready(t, `echo ready; exec sleep 60`)
	if err := p.Stop(10 * time.Second); err == nil || !strings.Contains(err.Error(), "want exit status 0") {
		t.Fatalf("stop = %v, want an error naming the exit status", err)
	}
}

func TestStopAndKillReportAnExitOfItsOwn(t *testing.T) {
	p := sh(t, "exit 3", nil)
	if err := p.Wait(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := p.Stop(time.Second); !errors.Is(err, ErrExited) || !strings.Contains(err.Error(), "exit status 3") {
		t.Fatalf("stop = %v, want ErrExited with its status", err)
	}
	if err := p.Kill(time.Second); !errors.Is(err, ErrExited) {
		t.Fatalf("kill = %v, want ErrExited", err)
	}
	if err := p.Signal(syscall.SIGSTOP); !errors.Is(err, ErrExited) {
		t.Fatalf("signal = %v, want ErrExited", err)
	}
}

func TestKill(t *testing.T) {
	p := ready(t, `trap "" TERM; echo ready; exec sleep 60`)
	if err := p.Kill(10 * time.Second); err != nil || !p.Exited() {
		t.Fatalf("kill = %v, exited %v", err, p.Exited())
	}
	if st := p.State(); st.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("state %v, want killed by SIGKILL", st)
	}
	if err := p.Kill(time.Second); err != nil {
		t.Fatalf("second kill = %v", err)
	}
}

func TestEnvironmentHasNoCountdVariables(t *testing.T) {
	t.Setenv("COUNTD_PORT", "1")
	t.Setenv("PROC_TEST_KEEP", "yes")
	p := sh(t, `echo "port=$COUNTD_PORT keep=$PROC_TEST_KEEP" >&2`, nil)
	if err := p.Wait(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if got := p.Output.String(); got != "port= keep=yes\n" {
		t.Fatalf("stderr %q", got)
	}
	p, err := Start(Spec{Path: "/bin/sh", Args: []string{"-c", `echo "port=$COUNTD_PORT" >&2`}, Env: []string{"COUNTD_PORT=2"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if got := p.Output.String(); got != "port=2\n" {
		t.Fatalf("with Env: stderr %q", got)
	}
}

func TestWaitListening(t *testing.T) {
	line := `{"msg":"node started","listen":"127.0.0.1:4242"}`
	p := sh(t, `echo '{"msg":"hello"}' >&2; sleep 0.05; echo '`+line+`' >&2; exec sleep 60`, nil)
	addr, err := p.WaitListening(10 * time.Second)
	if err != nil || addr != "127.0.0.1:4242" {
		t.Fatalf("WaitListening = %q, %v", addr, err)
	}

	p = sh(t, `echo 'bad flag' >&2; exit 2`, nil)
	if _, err := p.WaitListening(10 * time.Second); err == nil || !strings.Contains(err.Error(), "exited before") {
		t.Fatalf("WaitListening of a process that exits = %v", err)
	}
	if l := p.Output.Lines(); len(l) != 1 || l[0] != "bad flag" || !strings.Contains(p.Output.Tail(100), "bad flag") {
		t.Fatalf("output %q", p.Output.String())
	}
}

func TestWaitHealthy(t *testing.T) {
	healthy := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-healthy:
		default:
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		if r.URL.Path != "/health" {
			t.Errorf("got %s", r.URL.Path)
		}
	}))
	defer srv.Close()
	p := sh(t, `exec sleep 60`, nil)
	time.AfterFunc(20*time.Millisecond, func() { close(healthy) })
	if err := p.WaitHealthy(t.Context(), srv.Client(), srv.URL, 10*time.Second); err != nil {
		t.Fatal(err)
	}

	p = sh(t, `exit 1`, nil)
	if err := p.WaitHealthy(t.Context(), srv.Client(), "http://127.0.0.1:1", 10*time.Second); err == nil ||
		!strings.Contains(err.Error(), "exited") {
		t.Fatalf("WaitHealthy of a process that exits = %v", err)
	}
}

func TestFreePortsDistinct(t *testing.T) {
	ports, err := FreePorts(20)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, p := range ports {
		if p <= 0 || seen[p] {
			t.Fatalf("ports %v", ports)
		}
		seen[p] = true
	}
}

// TestFreePortsOutsideEphemeral checks that the ports lie below the kernel's
// ephemeral range, where no outgoing connection can take one first.
func TestFreePortsOutsideEphemeral(t *testing.T) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		t.Skipf("no ephemeral range to compare with: %v", err)
	}
	var first, last int
	if _, err := fmt.Sscan(string(b), &first, &last); err != nil {
		t.Fatalf("ip_local_port_range %q: %v", b, err)
	}
	ports, err := FreePorts(10)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ports {
		if p >= first && p <= last {
			t.Errorf("port %d is in the ephemeral range %d-%d", p, first, last)
		}
	}
}

// TestFreePortsReservedAcrossProcesses checks that a port one process got
// from FreePorts cannot be reserved by another: a second test binary tries.
func TestFreePortsReservedAcrossProcesses(t *testing.T) {
	if list := os.Getenv("COUNTD_PROC_RESERVE"); list != "" {
		for _, f := range strings.Split(list, ",") {
			var port int
			fmt.Sscan(f, &port)
			if reserve(port) {
				fmt.Printf("reserved %d\n", port)
			}
		}
		return
	}
	if runtime.GOOS != "linux" {
		t.Skip("ports are reserved across processes only on Linux (fcntl locks)")
	}
	ports, err := FreePorts(5)
	if err != nil {
		t.Fatal(err)
	}
	list := strings.Trim(strings.Join(strings.Fields(fmt.Sprint(ports)), ","), "[]")
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestFreePortsReservedAcrossProcesses$")
	cmd.Env = append(os.Environ(), "COUNTD_PROC_RESERVE="+list)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("second process: %v\n%s", err, out)
	}
	if strings.Contains(string(out), "reserved") {
		t.Fatalf("a second process reserved ports this one holds (%s):\n%s", list, out)
	}
}

func TestModuleRoot(t *testing.T) {
	root, err := ModuleRoot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "main.go")); err != nil {
		t.Fatalf("module root %s has no main.go: %v", root, err)
	}
}
