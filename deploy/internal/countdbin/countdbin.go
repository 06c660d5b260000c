// Package countdbin builds the countd binary for the deploy tests and reads
// its flags, so that what the image and the manifests configure is checked
// against the program itself rather than a list kept by hand.
package countdbin

import (
	"bufio"
	"bytes"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Build compiles countd as the image ships it (static: CGO_ENABLED=0,
// -trimpath) into dir and returns the binary's path. moduleRoot is the
// directory of countd's go.mod.
func Build(t testing.TB, moduleRoot, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "countd")
	cmd := exec.Command("go", "build", "-trimpath", "-o", bin, ".")
	cmd.Dir = moduleRoot
	cmd.Env = append(cmd.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build countd: %v\n%s", err, out)
	}
	return bin
}

// Flags runs bin -h and returns the names of the flags it lists, without
// the dash.
func Flags(t testing.TB, bin string) map[string]bool {
	t.Helper()
	out, err := exec.Command(bin, "-h").CombinedOutput()
	if err != nil {
		t.Fatalf("%s -h: %v\n%s", bin, err, out)
	}
	flags, err := ParseUsage(out)
	if err != nil {
		t.Fatalf("%s -h: %v\n%s", bin, err, out)
	}
	return flags
}

// ParseUsage reads the flag names from countd's -h output: each flag's
// line starts with two spaces and a dash ("  -port int").
func ParseUsage(usage []byte) (map[string]bool, error) {
	flags := make(map[string]bool)
	sc := bufio.NewScanner(bytes.NewReader(usage))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "  -")
		if !ok {
			continue
		}
		name, _, _ := strings.Cut(rest, " ")
		flags[name] = true
	}
	if len(flags) == 0 {
		return nil, fmt.Errorf("no flag in the usage text")
	}
	return flags, nil
}

// EnvName is the environment variable countd reads for a flag:
// COUNTD_ and the name in capitals, dashes as underscores.
func EnvName(flag string) string {
	return "COUNTD_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// FlagOfEnv is the flag an environment variable COUNTD_X sets, and whether
// the name has that form at all.
func FlagOfEnv(env string) (string, bool) {
	rest, ok := strings.CutPrefix(env, "COUNTD_")
	if !ok || rest == "" {
		return "", false
	}
	return strings.ToLower(strings.ReplaceAll(rest, "_", "-")), true
}
