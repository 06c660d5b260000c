package main

import (
	"bytes"
	"io"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// TestSmokeKeys runs the keys mode on one durable node: 300 changes over
// 10 counters, unkeyed on one fresh node and keyed on another, with a 5 s
// window. It checks that every change was counted once on both, that the
// node held one key per keyed change (held or, on a machine so slow that
// the changes took longer than the window, already retired: the report
// then says so), that the keys then all retired and
// were forgotten (held 0, retired 300) with the counters unchanged, that
// memory and the data file were read at each point after a forced GC,
// that the cost per key was worked out from them, and that the results
// file holds it all. No figure is checked against a bound: they depend
// on the machine.
func TestSmokeKeys(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs countd")
	}
	const n = 300
	path := filepath.Join(t.TempDir(), "r.json")
	rep, stdout, _ := smokeRun(t, "-keys=300", "-counters=10", "-clients=4", "-idempotency-window=5s", "-json="+path)
	if len(rep.Runs) != 1 || rep.Runs[0].Keys == nil {
		t.Fatalf("runs %+v: want one keys run", rep.Runs)
	}
	r := rep.Runs[0]
	kr := r.Keys
	if r.Mode != modeKeys || kr.Keys != n || kr.Counters != 10 || kr.WindowSeconds != 5 {
		t.Errorf("run %s of %d keys over %d counters, window %gs", r.Mode, kr.Keys, kr.Counters, kr.WindowSeconds)
	}
	if r.Countd.OK != n || kr.Unkeyed.OK != n {
		t.Errorf("%d keyed and %d unkeyed changes answered 200, want %d each (errors %v, %v)",
			r.Countd.OK, kr.Unkeyed.OK, n, r.Countd.Errors, kr.Unkeyed.Errors)
	}
	for name, c := range map[string]*int64{"unkeyed": kr.CountedUnkeyed, "held": kr.CountedHeld, "retired": kr.CountedRetired} {
		if c == nil || *c != n {
			t.Errorf("counted %s: %v, want %d", name, c, n)
		}
	}
	if len(kr.Baseline) != 1 || len(kr.Held) != 1 || len(kr.Retired) != 1 || len(kr.PerKey) != 1 {
		t.Fatalf("figures for %d, %d, %d nodes, %d per key; want 1 each: %+v", len(kr.Baseline), len(kr.Held), len(kr.Retired), len(kr.PerKey), kr)
	}
	keys := func(f KeyFigures) (held, retired float64) {
		if f.Keys == nil || f.KeysRetired == nil {
			t.Fatalf("no key counts in %+v", f)
		}
		return *f.Keys, *f.KeysRetired
	}
	if h, _ := keys(kr.Baseline[0]); h != 0 {
		t.Errorf("the unkeyed node holds %v keys", h)
	}
	if h, ret := keys(kr.Held[0]); h+ret != n || (ret > 0) != slices.ContainsFunc(r.Notes, func(s string) bool { return strings.Contains(s, "had retired") }) {
		t.Errorf("after the keyed changes: %v keys held, %v retired, notes %q; want %d in all, and a note if any retired", h, ret, r.Notes, n)
	}
	if h, ret := keys(kr.Retired[0]); h != 0 || ret != n {
		t.Errorf("at the end: %v keys held, %v retired; want 0, %d", h, ret, n)
	}
	for _, f := range []KeyFigures{kr.Baseline[0], kr.Held[0], kr.Retired[0]} {
		if !f.GCForced || f.RSSBytes == nil || f.HeapInuseBytes == nil || f.FileBytes == nil || f.BoltInUseBytes == nil {
			t.Errorf("figures not all read after a forced GC: %+v", f)
		}
	}
	if p := kr.PerKey[0]; p.HeldRSS == nil || p.HeldHeap == nil || p.HeldFile == nil || p.RetiredFile == nil {
		t.Errorf("cost per key not worked out: %+v", p)
	}
	if kr.RetiredAfterSeconds == nil || *kr.RetiredAfterSeconds <= 0 {
		t.Errorf("keys gone %v s after the last change; want a time", kr.RetiredAfterSeconds)
	}
	for _, want := range []string{"keys held", "retired", "bytes per key"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("the report lacks %q", want)
		}
	}
	back, err := readReport(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(back.Runs) != 1 || !reflect.DeepEqual(back.Runs[0].Keys, kr) {
		t.Errorf("results file does not hold the keys run: %+v", back.Runs)
	}
}

func TestKeysFlags(t *testing.T) {
	cfg, err := parseFlags([]string{"-keys=1000", "-idempotency-window=90s", "-nodes=1,3"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.mode() != modeKeys || cfg.Keys != 1000 || cfg.Window.Seconds() != 90 {
		t.Fatalf("parsed mode %s, keys %d, window %v", cfg.mode(), cfg.Keys, cfg.Window)
	}
	for _, args := range [][]string{
		{"-keys=-1"}, {"-keys=10", "-levels=local"}, {"-idempotency-window=1m"},
		{"-keys=10", "-idempotency-window=0s"}, {"-keys=10", "-addrs=127.0.0.1:1"}, {"-keys=10", "-png=x.png"},
	} {
		var stderr bytes.Buffer
		if code := run(args, strings.NewReader(""), io.Discard, &stderr); code != 2 || strings.Count(stderr.String(), "\n") != 1 {
			t.Errorf("%v: exit %d, stderr %q; want 2 and one line", args, code, stderr.String())
		}
	}
	u := keysURLs([]string{"http://a:1", "http://b:2"}, "p", "k", 3, 4)
	var got []string
	for {
		url, key, ok := u(0, 0)
		if !ok {
			break
		}
		got = append(got, url+" "+key)
	}
	want := []string{"http://a:1/counters/p-0/increment k-0", "http://b:2/counters/p-1/increment k-1",
		"http://a:1/counters/p-2/increment k-2", "http://b:2/counters/p-0/increment k-3"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("keysURLs gave %q, want %q", got, want)
	}
	if _, key, _ := keysURLs([]string{"http://a:1"}, "p", "", 3, 1)(0, 0); key != "" {
		t.Errorf("unkeyed request with key %q", key)
	}
}
