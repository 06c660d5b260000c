package main

import (
	"bytes"
	"io"
	"math"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestSmokeLevels runs the levels mode on three durable nodes with 1 and 2
// clients for a short while and checks that each run has a row per level,
// in the order asked, with requests answered at every level, ratios to
// local for the others, a count the nodes agree on, and the summary table
// of every level; and that the results file holds the rows.
func TestSmokeLevels(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs countd")
	}
	path := filepath.Join(t.TempDir(), "r.json")
	rep, stdout, _ := smokeRun(t, "-levels=local,quorum,all", "-nodes=3", "-clients=1,2",
		"-duration=600ms", "-chunk=200ms", "-json="+path)
	if len(rep.Runs) != 2 {
		t.Fatalf("%d runs, want 2", len(rep.Runs))
	}
	for _, r := range rep.Runs {
		if r.Mode != modeLevels || r.Bare != nil || r.Fsync != nil {
			t.Errorf("run %+v: want a levels run with no yardstick", r)
		}
		var got []string
		var ok int64
		for _, l := range r.Levels {
			got = append(got, l.Level)
			s := l.Side
			if s.Requests == 0 || s.OK != s.Requests || s.Latency.P50MS <= 0 || s.Latency.P50MS > s.Latency.P99MS {
				t.Errorf("%d clients, wait=%s: %d requests, %d ok, latency %+v, errors %v",
					r.Clients, l.Level, s.Requests, s.OK, s.Latency, s.Errors)
			}
			if (l.Level == "local") != (l.P50ToLocal == nil) || (l.Level == "local") != (l.P99ToLocal == nil) {
				t.Errorf("wait=%s: ratios to local %v, %v; want them for every level but local", l.Level, l.P50ToLocal, l.P99ToLocal)
			}
			ok += s.OK
		}
		if !slices.Equal(got, writeLevels) {
			t.Errorf("%d clients: levels %v, want %v", r.Clients, got, writeLevels)
		}
		if r.Countd.OK != ok || r.Counted == nil || *r.Counted != ok {
			t.Errorf("%d clients: countd side %d ok, counted %v; want both the levels' %d", r.Clients, r.Countd.OK, r.Counted, ok)
		}
	}
	rows := regexp.MustCompile(`(?m)^ *3 +durable +[12] +(local|quorum|all) `).FindAllString(stdout, -1)
	if !strings.Contains(stdout, "write levels") || len(rows) != 6 {
		t.Errorf("the summary has %d rows of levels, want 6:\n%s", len(rows), stdout)
	}
	back, err := readReport(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(back.Runs) != 2 || !reflect.DeepEqual(back.Runs[0].Levels, rep.Runs[0].Levels) {
		t.Errorf("results file does not hold the levels: %+v", back.Runs)
	}
}

func TestLevelSides(t *testing.T) {
	leg := func(level string, lat ...int) *levelLeg {
		l := &levelLeg{level: level}
		for _, ms := range lat {
			l.stats.Hist.Record(time.Duration(ms) * time.Millisecond)
		}
		return l
	}
	got := levelSides([]*levelLeg{leg("quorum", 4, 8), leg("local", 2, 2), leg("all", 6, 20)})
	want := []struct {
		level    string
		p50, p99 float64 // 0: none
	}{{"quorum", 2, 4}, {"local", 0, 0}, {"all", 3, 10}}
	for i, w := range want {
		g := got[i]
		val := func(p *float64) float64 {
			if p == nil {
				return 0
			}
			return *p
		}
		// The histogram's buckets are within 0.8% of each value.
		near := func(a, b float64) bool { return math.Abs(a-b) <= 0.02*b }
		if g.Level != w.level || !near(val(g.P50ToLocal), w.p50) || !near(val(g.P99ToLocal), w.p99) {
			t.Errorf("row %d: %s p50/local %v p99/local %v, want %s %v %v",
				i, g.Level, val(g.P50ToLocal), val(g.P99ToLocal), w.level, w.p50, w.p99)
		}
	}
	for _, s := range levelSides([]*levelLeg{leg("quorum", 1), leg("all", 1)}) {
		if s.P50ToLocal != nil || s.P99ToLocal != nil {
			t.Errorf("without local, %s has ratios %v %v", s.Level, s.P50ToLocal, s.P99ToLocal)
		}
	}
}

func TestLevelsFlag(t *testing.T) {
	cfg, err := parseFlags([]string{"-levels=local, all", "-nodes=3,5", "-clients=1,16"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.mode() != modeLevels || !slices.Equal(cfg.Levels, []string{"local", "all"}) {
		t.Fatalf("parsed mode %s, levels %v", cfg.mode(), cfg.Levels)
	}
	for _, args := range [][]string{
		{"-levels=local,local"}, {"-levels=majority"}, {"-levels="},
		{"-levels=local", "-rounds=3"}, {"-levels=local", "-png=x.png"},
	} {
		var stderr bytes.Buffer
		if code := run(args, strings.NewReader(""), io.Discard, &stderr); code != 2 || strings.Count(stderr.String(), "\n") != 1 {
			t.Errorf("%v: exit %d, stderr %q; want 2 and one line", args, code, stderr.String())
		}
	}
	u := withWait(incrementURLs([]string{"http://h:1"}, 0), "quorum")
	if s, ok := u(0, 0); s != "http://h:1/increment?wait=quorum" || !ok {
		t.Errorf("withWait gave %q %v", s, ok)
	}
}
