package main

import (
	"io"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseFlags(t *testing.T) {
	cfg, err := parseFlags([]string{"-nodes=1,3,5", "-clients=1,8,64", "-duration=3s", "-target=all",
		"-node-flag=-flush-delay=5ms", "-node-flag=-heartbeat-interval=200ms", "-memory", "-json=/tmp/x.json"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cfg.Nodes, []int{1, 3, 5}) || !slices.Equal(cfg.Clients, []int{1, 8, 64}) ||
		cfg.Duration != 3*time.Second || cfg.Target != "all" || !cfg.Memory || cfg.mode() != modeLoad ||
		!slices.Equal(cfg.NodeFlags, []string{"-flush-delay=5ms", "-heartbeat-interval=200ms"}) {
		t.Fatalf("parsed %+v", cfg)
	}

	cfg, err = parseFlags([]string{"-addrs=127.0.0.1:8080,http://localhost:8081", "-idle=5s"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cfg.Addrs, []string{"127.0.0.1:8080", "localhost:8081"}) || !slices.Equal(cfg.Nodes, []int{2}) ||
		cfg.mode() != modeIdle {
		t.Fatalf("parsed %+v", cfg)
	}
	if cfg, _ := parseFlags([]string{"-rounds=100", "-nodes=5"}, io.Discard); cfg.mode() != modeRounds {
		t.Errorf("-rounds: mode %s", cfg.mode())
	}
	if cfg, _ := parseFlags([]string{"-create-counters=100000"}, io.Discard); cfg.mode() != modeCreate {
		t.Errorf("-create-counters: mode %s", cfg.mode())
	}
	cfg, err = parseFlags([]string{"-churn-counters=1000", "-ttl=60,0", "-sample=2s", "-png=c.png"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.mode() != modeChurn || !slices.Equal(cfg.TTLs, []int{60, 0}) || cfg.Sample != 2*time.Second ||
		cfg.churnTail() != 4*time.Minute {
		t.Errorf("-churn-counters: parsed %+v, tail %v", cfg, cfg.churnTail())
	}
	cfg, err = parseFlags([]string{"-resp", "-clients=16,64", "-resp-requests=5000", "-resp-rounds=2", "-resp-pipeline=8"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.mode() != modeRESP || cfg.RESPRequests != 5000 || cfg.RESPRounds != 2 || cfg.RESPPipeline != 8 ||
		!slices.Equal(cfg.Clients, []int{16, 64}) {
		t.Errorf("-resp: parsed %+v", cfg)
	}
	if cfg, _ := parseFlags([]string{"-churn-counters=10", "-ttl=0", "-tail=5s"}, io.Discard); cfg.churnTail() != 5*time.Second {
		t.Errorf("-tail=5s: tail %v", cfg.churnTail())
	}
}

// TestBadFlags checks that every bad command line is one clear line naming
// the problem, and exit status 2.
func TestBadFlags(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"-clients=0"}, "-clients"},
		{[]string{"-clients=1,,2"}, "-clients"},
		{[]string{"-nodes=x"}, "-nodes"},
		{[]string{"-nodes=1000"}, "-nodes"},
		{[]string{"-target=some"}, "-target"},
		{[]string{"-duration=0s"}, "-duration"},
		{[]string{"-duration=fast"}, "-duration"},
		{[]string{"-rounds=5", "-idle=1s"}, "at most one"},
		{[]string{"-rounds=-1"}, "negative"},
		{[]string{"-rounds=3", "-png=x.png"}, "-png"},
		{[]string{"-churn-counters=5", "-idle=1s"}, "at most one"},
		{[]string{"-churn-counters=5", "-ttl=-1"}, "-ttl"},
		{[]string{"-churn-counters=5", "-sample=0s"}, "-sample"},
		{[]string{"-ttl=60"}, "-churn-counters"},
		{[]string{"-tail=1m"}, "-churn-counters"},
		{[]string{"-addrs=nohost"}, "-addrs"},
		{[]string{"-addrs=h:99999"}, "-addrs"},
		{[]string{"-addrs=h:1", "-nodes=3"}, "-nodes"},
		{[]string{"-addrs=h:1", "-node-flag=-memory"}, "-node-flag"},
		{[]string{"-node-flag=memory"}, "-node-flag"},
		{[]string{"-create-counters=99999999"}, "-create-counters"},
		{[]string{"-idle=1s", "-idle-peer=consul"}, "-idle-peer"},
		{[]string{"-idle-peer=memberlist"}, "applies to -idle"},
		{[]string{"-addrs=h:1", "-idle=1s", "-idle-peer=memberlist"}, "-addrs"},
		{[]string{"-restart-node"}, "-restart-node"},
		{[]string{"-create-counters=5", "-restart-node", "-memory"}, "-restart-node"},
		{[]string{"-resp", "-keys=5"}, "at most one"},
		{[]string{"-resp", "-memory"}, "-memory"},
		{[]string{"-resp", "-nodes=3"}, "-nodes"},
		{[]string{"-resp", "-addrs=h:1"}, "-addrs"},
		{[]string{"-resp", "-resp-pipeline=1"}, "-resp-pipeline"},
		{[]string{"-resp", "-resp-requests=0"}, "-resp-requests"},
		{[]string{"-resp-rounds=2"}, "-resp"},
		{[]string{"stray"}, "stray"},
		{[]string{"-no-such-flag"}, "no-such-flag"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var stderr strings.Builder
			code := run(tc.args, strings.NewReader(""), io.Discard, &stderr)
			out := stderr.String()
			if code != 2 || strings.Count(out, "\n") != 1 || !strings.Contains(out, tc.want) {
				t.Fatalf("exit %d, stderr %q; want 2 and one line naming %q", code, out, tc.want)
			}
		})
	}
}

// TestMeasureFsync checks when load runs measure the fsync yardstick: by
// default, and never with -memory, -addrs, -bare=false or -fsync=false.
func TestMeasureFsync(t *testing.T) {
	tests := []struct {
		args []string
		want bool
	}{
		{nil, true},
		{[]string{"-nodes=3", "-fsync"}, true},
		{[]string{"-memory"}, false},
		{[]string{"-fsync=false"}, false},
		{[]string{"-bare=false"}, false},
		{[]string{"-addrs=127.0.0.1:8080"}, false},
	}
	for _, tc := range tests {
		name := strings.Join(tc.args, " ")
		if name == "" {
			name = "defaults"
		}
		t.Run(name, func(t *testing.T) {
			cfg, err := parseFlags(tc.args, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.measureFsync(); got != tc.want {
				t.Errorf("measureFsync() = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestHelp(t *testing.T) {
	var stderr strings.Builder
	if code := run([]string{"-h"}, strings.NewReader(""), io.Discard, &stderr); code != 0 {
		t.Fatalf("-h: exit %d", code)
	}
	out := stderr.String()
	if !strings.Contains(out, "-clients list") || !strings.Contains(out, "  -fsync\n") ||
		strings.Contains(out, "bare-server") || strings.Contains(out, "fsync-server") {
		t.Fatalf("help shows the wrong flags:\n%s", out)
	}
}
