package main

import (
	"testing"
	"time"
)

func TestParseWrk(t *testing.T) {
	const ok = `Running 1s test @ http://127.0.0.1:1/increment
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.01ms    1.10ms  20.00ms   80.00%
  31234 requests in 1.00s, 4.50MB read
Requests/sec:  31200.12
Transfer/sec:      4.50MB
`
	n, d, err := parseWrk([]byte(ok))
	if err != nil || n != 31234 || d != time.Second {
		t.Errorf("got %d in %v, %v; want 31234 in 1s", n, d, err)
	}
	for _, bad := range []string{
		"",
		"Requests/sec: 5\n",
		"  10 requests in 1.00s, 1MB read\n  Non-2xx or 3xx responses: 3\n",
		"  10 requests in 1.00s, 1MB read\n  Socket errors: connect 0, read 1, write 0, timeout 0\n",
		"  x requests in 1.00s, 1MB read\n",
	} {
		if n, d, err := parseWrk([]byte(bad)); err == nil {
			t.Errorf("%q: got %d in %v, want an error", bad, n, d)
		}
	}
}

func TestParseRedisCSV(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		rps      float64
		p50, p99 float64 // 0: absent
		wantErr  bool
	}{
		{"redis 7", `"test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"` + "\n" +
			`"INCR","90131.00","0.650","0.100","0.607","1.000","1.311","3.000"` + "\n", 90131, 0.607, 1.311, false},
		{"old", `"INCR","85690.00"` + "\n", 85690, 0, 0, false},
		{"no INCR", `"test","rps"` + "\n" + `"SET","1.0"` + "\n", 0, 0, 0, true},
		{"bad rps", `"INCR","fast"` + "\n", 0, 0, 0, true},
		{"empty", "", 0, 0, 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := parseRedisCSV([]byte(tc.in))
			if (err != nil) != tc.wantErr {
				t.Fatalf("err %v, want error %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			if p.Throughput != tc.rps {
				t.Errorf("rps %v, want %v", p.Throughput, tc.rps)
			}
			for _, c := range []struct {
				got  *float64
				want float64
			}{{p.P50MS, tc.p50}, {p.P99MS, tc.p99}} {
				if (c.got == nil) != (c.want == 0) || (c.got != nil && *c.got != c.want) {
					t.Errorf("p50 %v, p99 %v; want %v, %v", p.P50MS, p.P99MS, tc.p50, tc.p99)
				}
			}
		})
	}
}
