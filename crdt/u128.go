package crdt

import (
	"math"
	"math/bits"
)

// u128 is an unsigned 128-bit integer: a counter's ΣP or ΣN, which can pass
// 2^64 when many replicas each hold large totals.
type u128 struct{ hi, lo uint64 }

func (a u128) add(b uint64) u128 {
	lo, carry := bits.Add64(a.lo, b, 0)
	return u128{hi: a.hi + carry, lo: lo}
}

func (a u128) less(b u128) bool {
	return a.hi < b.hi || a.hi == b.hi && a.lo < b.lo
}

// sub returns a−b as an int64, and false if it does not fit.
func (a u128) sub(b u128) (int64, bool) {
	if !a.less(b) {
		lo, borrow := bits.Sub64(a.lo, b.lo, 0)
		hi := a.hi - b.hi - borrow
		if hi != 0 || lo > math.MaxInt64 {
			return 0, false
		}
		return int64(lo), true
	}
	lo, borrow := bits.Sub64(b.lo, a.lo, 0)
	hi := b.hi - a.hi - borrow
	if hi != 0 || lo > 1<<63 {
		return 0, false
	}
	return int64(-lo), true // -(1<<63) wraps to MinInt64, as intended
}

// subU returns a−b; b must not exceed a.
func (a u128) subU(b uint64) u128 {
	lo, borrow := bits.Sub64(a.lo, b, 0)
	return u128{hi: a.hi - borrow, lo: lo}
}

func (a u128) isZero() bool { return a.hi == 0 && a.lo == 0 }

// subSat returns a−b, or 0 if b exceeds a.
func (a u128) subSat(b u128) u128 {
	if a.less(b) {
		return u128{}
	}
	lo, borrow := bits.Sub64(a.lo, b.lo, 0)
	return u128{hi: a.hi - b.hi - borrow, lo: lo}
}
