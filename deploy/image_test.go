// Package deploy_test checks the container image that the Containerfile
// at the repository's root builds. It needs podman; without it the test
// skips and says so.
package deploy_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"countd/deploy/internal/countdbin"
	"countd/internal/apiclient"
	"countd/internal/poll"
	"countd/internal/proc"
)

// maxImageBytes bounds the image: a static binary on scratch is about
// 17 MB. A base image slipping in (a shell, libc) would pass it.
const maxImageBytes = 40 << 20

// The image's user, as the Containerfile and the Kubernetes manifests set it.
const uid, gid = 65532, 65532

// TestImage builds the image from a countd it has just built (the
// Containerfile's prebuilt stage, so no registry is needed and nothing
// runs in a container during the build), then checks what the image
// declares and holds. Where containers can run it also starts three of them
// as a cluster; where they cannot, that part skips and says why.
func TestImage(t *testing.T) {
	if _, err := exec.LookPath("podman"); err != nil {
		t.Skip("podman is not installed; .ci/run installs it (apt-get install podman)")
	}
	ctxDir := t.TempDir()
	bin := countdbin.Build(t, "..", ctxDir)
	if err := os.Mkdir(filepath.Join(ctxDir, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	checkStatic(t, bin)
	flags := countdbin.Flags(t, bin)

	image := "localhost/countd-test:" + randomHex(t)
	t.Cleanup(func() { _, _ = podmanErr("rmi", "-f", image) })
	podman(t, "build", "--build-arg", "BINARY=prebuilt",
		"-f", filepath.Join("..", "Containerfile"), "-t", image, ctxDir)

	var inspected []struct {
		Size   int64
		Config struct {
			User         string
			Entrypoint   []string
			Cmd          []string
			Env          []string
			Volumes      map[string]struct{}
			ExposedPorts map[string]struct{}
		}
	}
	if err := json.Unmarshal(podman(t, "image", "inspect", image), &inspected); err != nil || len(inspected) != 1 {
		t.Fatalf("podman image inspect: %v (%d images)", err, len(inspected))
	}
	img := inspected[0]
	cfg := img.Config
	t.Logf("image size %d bytes (%.1f MB)", img.Size, float64(img.Size)/1e6)
	if img.Size > maxImageBytes {
		t.Errorf("image is %d bytes, want at most %d: is it still countd alone on scratch?", img.Size, maxImageBytes)
	}
	if !slices.Equal(cfg.Entrypoint, []string{"/countd"}) || len(cfg.Cmd) != 0 {
		t.Errorf("entrypoint %q, cmd %q; want [/countd] and no cmd, so that arguments are flags", cfg.Entrypoint, cfg.Cmd)
	}
	if want := fmt.Sprintf("%d:%d", uid, gid); cfg.User != want {
		t.Errorf("user %q, want %q (numeric, so that Kubernetes' runAsNonRoot can check it)", cfg.User, want)
	}
	if _, ok := cfg.Volumes["/data"]; !ok || len(cfg.Volumes) != 1 {
		t.Errorf("volumes %v, want /data alone", cfg.Volumes)
	}
	if _, ok := cfg.ExposedPorts["8080/tcp"]; !ok || len(cfg.ExposedPorts) != 1 {
		t.Errorf("exposed ports %v, want 8080/tcp alone", cfg.ExposedPorts)
	}
	env := make(map[string]string)
	for _, kv := range cfg.Env {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
		if f, ok := countdbin.FlagOfEnv(k); ok && !flags[f] {
			t.Errorf("the image sets %s, but countd has no flag -%s", k, f)
		}
	}
	for k, want := range map[string]string{"COUNTD_BIND": "0.0.0.0", "COUNTD_PORT": "8080", "COUNTD_DATA_DIR": "/data"} {
		if env[k] != want {
			t.Errorf("env %s=%q, want %q", k, env[k], want)
		}
	}

	checkFiles(t, image)
	t.Run("cluster", func(t *testing.T) { testCluster(t, image) })
}

// checkStatic fails unless bin is a statically linked ELF: on scratch
// there is no dynamic loader nor libc.
func checkStatic(t *testing.T, bin string) {
	t.Helper()
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Fatalf("%s has a program interpreter: it is not static (CGO_ENABLED=0?)", bin)
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Fatalf("%s needs shared libraries %v", bin, libs)
	}
}

// checkFiles reads the image's layers (podman save) and checks its whole
// file tree: /countd, executable, and /data, an empty directory the
// node's user owns, so that a fresh volume, which takes the image
// directory's owner, is writable by the node.
func checkFiles(t *testing.T, image string) {
	t.Helper()
	archive := filepath.Join(t.TempDir(), "image.tar")
	podman(t, "save", "--format", "docker-archive", "-o", archive, image)
	files := layerFiles(t, archive)
	var names []string
	for name := range files {
		names = append(names, name)
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"countd", "data"}) {
		t.Errorf("the image holds %q; want countd and data alone", names)
	}
	if h, ok := files["countd"]; !ok || h.Typeflag != tar.TypeReg || h.Mode&0o001 == 0 {
		t.Errorf("/countd is not a file anyone may run: %+v", h)
	}
	if h, ok := files["data"]; !ok || h.Typeflag != tar.TypeDir || h.Uid != uid || h.Gid != gid || h.Mode&0o700 != 0o700 {
		t.Errorf("/data is not a directory that %d:%d owns and may write: %+v", uid, gid, h)
	}
}

// layerFiles returns every path in the image's layers, later layers over
// earlier ones, without the leading slash or a trailing one.
func layerFiles(t *testing.T, archive string) map[string]*tar.Header {
	t.Helper()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	entries := make(map[string][]byte)
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg && (h.Name == "manifest.json" || strings.HasSuffix(h.Name, ".tar")) {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			entries[h.Name] = b
		}
	}
	var manifest []struct{ Layers []string }
	if err := json.Unmarshal(entries["manifest.json"], &manifest); err != nil || len(manifest) != 1 {
		t.Fatalf("docker-archive manifest.json: %v (%d images)", err, len(manifest))
	}
	files := make(map[string]*tar.Header)
	for _, layer := range manifest[0].Layers {
		b, ok := entries[layer]
		if !ok {
			t.Fatalf("layer %s missing from the archive", layer)
		}
		lr := tar.NewReader(bytes.NewReader(b))
		for {
			h, err := lr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("layer %s: %v", layer, err)
			}
			name := strings.Trim(path.Clean("/"+h.Name), "/")
			if name != "" {
				files[name] = h
			}
		}
	}
	return files
}

// testCluster starts three containers of the image on the host's network,
// each on its own loopback port, and checks that they form a cluster and
// converge. Each keeps its state in its own /data volume as user 65532.
func testCluster(t *testing.T, image string) {
	// A container that only prints the help tells whether containers can
	// run here at all.
	if out, err := podmanErr("run", "--rm", "--network=none", image, "-h"); err != nil {
		t.Skipf("containers cannot run on this machine, so the 3-node cluster is not started: podman run: %v: %s",
			err, strings.TrimSpace(string(out)))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	prefix := "countd-test-" + randomHex(t)
	var urls []string
	for i := range 3 {
		name := fmt.Sprintf("%s-%d", prefix, i)
		var peers []string
		for _, u := range urls {
			peers = append(peers, strings.TrimPrefix(u, "http://"))
		}
		// The node listens on loopback only (no key needed), on a port it
		// picks; its anonymous /data volume goes with the container.
		podman(t, "run", "-d", "--name", name, "--network=host",
			"-e", "COUNTD_BIND=127.0.0.1", "-e", "COUNTD_PORT=0", "-e", "COUNTD_LOG_FORMAT=json",
			"-e", "COUNTD_HEARTBEAT_INTERVAL=200ms", "-e", "COUNTD_PEERS="+strings.Join(peers, ","), image)
		t.Cleanup(func() {
			if t.Failed() {
				out, _ := podmanErr("logs", name)
				t.Logf("logs of %s:\n%s", name, out)
			}
			_, _ = podmanErr("rm", "-f", "-v", name)
		})
		var addr string
		if _, err := poll.Until(ctx, 30*time.Second, 100*time.Millisecond, name+` logs "node started"`, func() (bool, string) {
			out, err := podmanErr("logs", name)
			if err != nil {
				return false, fmt.Sprintf("podman logs: %v", err)
			}
			var ok bool
			addr, ok = proc.ListenAddr(string(out))
			return ok, "not yet"
		}); err != nil {
			t.Fatal(err)
		}
		urls = append(urls, "http://"+addr)
	}

	c := apiclient.Client{}
	if r := c.ChangeContext(ctx, urls[0], "visits", 5); r.Outcome != apiclient.OK {
		t.Fatalf("increment on %s: %v", urls[0], r)
	}
	if r := c.ChangeContext(ctx, urls[2], "visits", 7); r.Outcome != apiclient.OK {
		t.Fatalf("increment on %s: %v", urls[2], r)
	}
	for _, u := range urls {
		if _, err := poll.Until(ctx, 30*time.Second, 100*time.Millisecond, u+" has visits=12 and 2 alive peers", func() (bool, string) {
			counters, err := c.Counters(ctx, u)
			if err != nil {
				return false, err.Error()
			}
			rows, err := c.Peers(ctx, u)
			if err != nil {
				return false, err.Error()
			}
			alive := 0
			for _, state := range apiclient.PeerStates(rows, nil) {
				if state == "alive" {
					alive++
				}
			}
			return counters["visits"] == 12 && alive == 2, fmt.Sprintf("visits=%d, peers %s", counters["visits"], apiclient.DescribePeers(rows, nil))
		}); err != nil {
			t.Fatal(err)
		}
	}
}

// podman runs podman with args and returns its standard output; it fails
// the test with standard error if podman fails.
func podman(t *testing.T, args ...string) []byte {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command("podman", args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("podman %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.Bytes()
}

// podmanErr runs podman with args and returns its output, both streams.
func podmanErr(args ...string) ([]byte, error) {
	return exec.Command("podman", args...).CombinedOutput()
}

func randomHex(t *testing.T) string {
	t.Helper()
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
