package countdbin

import (
	"maps"
	"slices"
	"testing"
)

func TestParseUsage(t *testing.T) {
	usage := "Usage: countd [flags]\n\nEvery flag also reads COUNTD_<FLAG> (e.g. -x).\n\n" +
		"  -advertise address\n    \taddress other nodes use (default 127.0.0.1:<port>)\n" +
		"  -data-dir string\n    \twhere the node keeps its state\n  -memory\n    \tkeep no state on disk\n"
	flags, err := ParseUsage([]byte(usage))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := slices.Sorted(maps.Keys(flags)), []string{"advertise", "data-dir", "memory"}; !slices.Equal(got, want) {
		t.Errorf("flags %q, want %q", got, want)
	}
	if _, err := ParseUsage([]byte("Usage: countd [flags]\n")); err == nil {
		t.Error("a usage text with no flag parsed")
	}
}

func TestEnvNames(t *testing.T) {
	for _, flag := range []string{"port", "data-dir", "cluster-key-file"} {
		env := EnvName(flag)
		if back, ok := FlagOfEnv(env); !ok || back != flag {
			t.Errorf("EnvName(%q) = %q, and FlagOfEnv of that = %q, %v", flag, env, back, ok)
		}
	}
	if EnvName("data-dir") != "COUNTD_DATA_DIR" {
		t.Errorf("EnvName(data-dir) = %q", EnvName("data-dir"))
	}
	for _, env := range []string{"POD_IP", "COUNTD_", "GOMEMLIMIT"} {
		if f, ok := FlagOfEnv(env); ok {
			t.Errorf("FlagOfEnv(%q) = %q, want none", env, f)
		}
	}
}
