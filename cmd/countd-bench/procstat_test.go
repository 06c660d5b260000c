package main

import (
	"os"
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want time.Duration
		bad  bool
	}{
		{
			name: "plain",
			in:   "1234 (countd) S 1 1234 1234 0 -1 4194560 1000 0 0 0 250 75 0 0 20 0 9 0 100 1000000 5000 18446744073709551615\n",
			want: 3250 * time.Millisecond,
		},
		{
			name: "command name with spaces and parentheses",
			in:   "42 (a) b (c) R 1 42 42 0 -1 0 0 0 0 0 7 3 0 0 20 0 1 0 5 100 10 0\n",
			want: 100 * time.Millisecond,
		},
		{name: "no parenthesis", in: "1234 countd S 1 2 3", bad: true},
		{name: "too few fields", in: "1 (x) S 1 2 3\n", bad: true},
		{name: "not a number", in: "1 (x) S 1 1 1 0 -1 0 0 0 0 0 abc 3 0 0\n", bad: true},
		{name: "empty", in: "", bad: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseStat([]byte(tc.in))
			if tc.bad {
				if err == nil {
					t.Fatalf("parseStat(%q) = %v, want an error", tc.in, got)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("parseStat = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

func TestParseStatus(t *testing.T) {
	in := "Name:\tcountd\nVmPeak:\t  900000 kB\nVmHWM:\t   30000 kB\nVmRSS:\t   25000 kB\n" +
		"RssAnon:\t   20000 kB\nRssFile:\t    4000 kB\nRssShmem:\t    1000 kB\nThreads:\t9\n"
	ps, err := parseStatus([]byte(in))
	want := procStat{RSS: 25000 * 1024, PeakRSS: 30000 * 1024, Anon: 20000 * 1024, File: 4000 * 1024}
	if err != nil || ps != want {
		t.Fatalf("parseStatus = %+v, %v; want %+v", ps, err, want)
	}
	for _, bad := range []string{
		"Name:\tx\n",                     // a kernel thread has neither
		"VmHWM:\t 1 kB\n",                // no VmRSS
		"VmHWM:\t x kB\nVmRSS:\t 1 kB\n", // not a number
		"VmHWM:\t 1 MB\nVmRSS:\t 1 kB\n", // unknown unit
	} {
		if _, err := parseStatus([]byte(bad)); err == nil {
			t.Errorf("parseStatus(%q) gave no error", bad)
		}
	}
}

func TestReadProcSelf(t *testing.T) {
	ps, err := readProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if ps.RSS < 1<<20 || ps.PeakRSS < ps.RSS || ps.CPU < 0 {
		t.Fatalf("implausible figures for this test process: %+v", ps)
	}
	if _, err := readProc(-1); err == nil {
		t.Fatalf("readProc(-1) gave no error")
	}
}
