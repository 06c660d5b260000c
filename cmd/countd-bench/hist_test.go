package main

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	tests := []struct {
		name    string
		samples []time.Duration
		q       float64
		want    time.Duration
	}{
		{"empty", nil, 0.5, 0},
		{"one", ms(7), 0.99, 7 * time.Millisecond},
		{"median of odd", ms(5, 1, 3), 0.5, 3 * time.Millisecond},
		{"median of even takes the lower", ms(4, 1, 3, 2), 0.5, 2 * time.Millisecond},
		{"p99 of 100 is the 99th", ms(seq(1, 100)...), 0.99, 99 * time.Millisecond},
		{"p99 of 10 is the max", ms(seq(1, 10)...), 0.99, 10 * time.Millisecond},
		{"p100 is the max", ms(3, 9, 1), 1, 9 * time.Millisecond},
		{"p0 is the min", ms(3, 9, 1), 0, 1 * time.Millisecond},
		{"q above 1 clamps", ms(3, 9, 1), 2, 9 * time.Millisecond},
		{"NaN is the median", ms(3, 9, 1), math.NaN(), 3 * time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			orig := slices.Clone(tc.samples)
			if got := percentile(tc.samples, tc.q); got != tc.want {
				t.Errorf("percentile(%v, %v) = %v, want %v", tc.samples, tc.q, got, tc.want)
			}
			if !slices.Equal(orig, tc.samples) {
				t.Errorf("percentile reordered its input")
			}
		})
	}
}

func seq(from, to int) []int {
	var out []int
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}

// TestBucketsTile checks that the buckets cover every value once, in order:
// each bucket's upper bound maps back to it and the next value to the next.
func TestBucketsTile(t *testing.T) {
	for i := 0; i < numBuckets-1; i++ {
		up := bucketUpper(i)
		if got := bucketOf(up); got != i {
			t.Fatalf("bucketOf(bucketUpper(%d)=%d) = %d", i, up, got)
		}
		if got := bucketOf(up + 1); got != i+1 {
			t.Fatalf("bucketOf(%d) = %d, want %d", up+1, got, i+1)
		}
	}
	if got := bucketOf(math.MaxUint64); got != numBuckets-1 {
		t.Fatalf("bucketOf(MaxUint64) = %d, want %d", got, numBuckets-1)
	}
	if got := bucketUpper(numBuckets - 1); got != math.MaxUint64 {
		t.Fatalf("bucketUpper(last) = %d", got)
	}
}

// TestHistogramQuantile compares the histogram's quantiles with the exact
// nearest-rank ones over random samples: never below, at most 1/128 above.
func TestHistogramQuantile(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for trial := range 20 {
		n := 1 + rng.IntN(5000)
		samples := make([]time.Duration, n)
		var h Histogram
		for i := range samples {
			// Log-uniform from 1 ns to about 10 s, like real latencies.
			samples[i] = time.Duration(math.Exp(rng.Float64() * math.Log(1e10)))
			h.Record(samples[i])
		}
		for _, q := range []float64{0, 0.5, 0.9, 0.99, 0.999, 1} {
			exact := percentile(samples, q)
			got := h.Quantile(q)
			if got < exact || float64(got) > float64(exact)*(1+1.0/subCount)+1 {
				t.Fatalf("trial %d, n=%d, q=%v: histogram %v, exact %v", trial, n, q, got, exact)
			}
		}
		if h.N != uint64(n) || h.Max != slices.Max(samples) || h.Min != slices.Min(samples) {
			t.Fatalf("trial %d: N=%d Min=%v Max=%v", trial, h.N, h.Min, h.Max)
		}
	}
}

func TestHistogramMerge(t *testing.T) {
	var a, b, all Histogram
	for i := range 1000 {
		d := time.Duration(i*i) * time.Microsecond
		all.Record(d)
		if i%3 == 0 {
			a.Record(d)
		} else {
			b.Record(d)
		}
	}
	var m Histogram
	m.Merge(&a)
	m.Merge(&b)
	m.Merge(&Histogram{}) // empty: no change
	if m.N != all.N || m.Sum != all.Sum || m.Min != all.Min || m.Max != all.Max || !slices.Equal(m.Counts, all.Counts) {
		t.Fatalf("merged histogram differs from the one that saw every value")
	}
	for _, q := range []float64{0.5, 0.99, 0.999} {
		if m.Quantile(q) != all.Quantile(q) {
			t.Errorf("q=%v: merged %v, direct %v", q, m.Quantile(q), all.Quantile(q))
		}
	}
}

func TestHistogramEdges(t *testing.T) {
	var h Histogram
	if h.Quantile(0.99) != 0 || h.Mean() != 0 {
		t.Fatalf("empty histogram: quantile %v, mean %v", h.Quantile(0.99), h.Mean())
	}
	h.Record(-5) // a clock step backwards counts as zero
	h.Record(3 * time.Second)
	if h.Min != 0 || h.Max != 3*time.Second || h.Quantile(1) != 3*time.Second || h.Quantile(0.5) != 0 {
		t.Fatalf("min %v max %v p100 %v p50 %v", h.Min, h.Max, h.Quantile(1), h.Quantile(0.5))
	}
	if h.Mean() != 1500*time.Millisecond {
		t.Fatalf("mean %v", h.Mean())
	}
}
