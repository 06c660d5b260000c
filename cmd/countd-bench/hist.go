package main

import (
	"math"
	"math/bits"
	"slices"
	"time"
)

// subBits sets the histogram's precision: each power of two is split into
// 2^subBits buckets, so a bucket is at most 1/128 (0.8%) of its values wide.
const subBits = 7

const (
	subCount   = 1 << subBits
	numBuckets = (64 - subBits + 1) * subCount // the bucket of math.MaxUint64 is the last
)

// Histogram records durations in log-linear buckets (as HdrHistogram does):
// values below 256 ns are exact, larger ones fall in buckets 1/128 of their
// power of two wide. Memory is fixed (numBuckets counters) however many
// values it holds. The zero value is empty and ready to use; it is not safe
// for concurrent use, so each client keeps its own and they are merged.
type Histogram struct {
	// Counts holds the number of values per bucket; nil until the first Record.
	Counts []uint64
	// N is the number of values recorded.
	N uint64
	// Sum is the total of the values, for the mean.
	Sum time.Duration
	// Min and Max are the smallest and largest values recorded.
	Min, Max time.Duration
}

// bucketOf returns the bucket index of v nanoseconds.
func bucketOf(v uint64) int {
	if v < 2*subCount {
		return int(v)
	}
	shift := bits.Len64(v) - (subBits + 1)
	return shift*subCount + int(v>>shift)
}

// bucketUpper returns the largest value that falls in bucket i.
func bucketUpper(i int) uint64 {
	if i < 2*subCount {
		return uint64(i)
	}
	shift := i/subCount - 1
	mant := uint64(i%subCount + subCount)
	if shift >= 64-(subBits+1) && mant == 2*subCount-1 {
		return math.MaxUint64 // (mant+1)<<shift would overflow
	}
	return (mant+1)<<shift - 1
}

// Record adds one value; a negative one counts as zero.
func (h *Histogram) Record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	if h.Counts == nil {
		h.Counts = make([]uint64, numBuckets)
	}
	h.Counts[bucketOf(uint64(d))]++
	if h.N == 0 || d < h.Min {
		h.Min = d
	}
	if d > h.Max {
		h.Max = d
	}
	h.N++
	h.Sum += d
}

// Merge adds every value of o to h.
func (h *Histogram) Merge(o *Histogram) {
	if o.N == 0 {
		return
	}
	if h.Counts == nil {
		h.Counts = make([]uint64, numBuckets)
	}
	for i, c := range o.Counts {
		h.Counts[i] += c
	}
	if h.N == 0 || o.Min < h.Min {
		h.Min = o.Min
	}
	h.Max = max(h.Max, o.Max)
	h.N += o.N
	h.Sum += o.Sum
}

// Quantile returns the q-quantile (0 < q <= 1) by the nearest-rank method:
// the upper bound of the bucket holding the ceil(q*N)-th smallest value,
// capped at the largest value recorded. It returns 0 for an empty histogram.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.N == 0 {
		return 0
	}
	rank := nearestRank(q, int(h.N))
	var seen uint64
	for i, c := range h.Counts {
		seen += c
		if seen >= uint64(rank) {
			up := bucketUpper(i)
			if up > uint64(h.Max) {
				return h.Max
			}
			return time.Duration(up)
		}
	}
	return h.Max
}

// Mean returns the average value, or 0 for an empty histogram.
func (h *Histogram) Mean() time.Duration {
	if h.N == 0 {
		return 0
	}
	return h.Sum / time.Duration(h.N)
}

// nearestRank returns the 1-based rank of the q-quantile of n values,
// clamped to [1, n]; a NaN q counts as the median.
func nearestRank(q float64, n int) int {
	if math.IsNaN(q) {
		q = 0.5
	}
	r := int(math.Ceil(q * float64(n)))
	return min(max(r, 1), n)
}

// percentile returns the q-quantile of samples by the nearest-rank method
// (an exact value from the samples, never an interpolation), or 0 if there
// are none. samples is not changed.
func percentile(samples []time.Duration, q float64) time.Duration {
	if len(samples) == 0 {
		return 0
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	return s[nearestRank(q, len(s))-1]
}
