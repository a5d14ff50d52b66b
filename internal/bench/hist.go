package bench

import (
	"math"
	"math/bits"
	"time"
)

// Histogram records latencies in microseconds in log-linear buckets: the
// values below 2^subBits each have a bucket of their own, and every
// power-of-two range above is split into 2^subBits equal buckets. A
// recorded value is known to within 1/2^subBits of itself (0.8 %), the
// maximum exactly. The zero value is ready; it is not safe for concurrent
// use (each client goroutine has its own, merged at the end).
type Histogram struct {
	// counts[i] counts the values of bucket i (see bucketOf).
	counts []uint64
	n      uint64
	// maxUS is the largest value recorded, exactly.
	maxUS uint64
}

const (
	subBits  = 7
	subCount = 1 << subBits
	// maxExp bounds the values: 2^(maxExp+subBits) µs is about 13 days.
	maxExp  = 33
	nBucket = subCount + (maxExp+1)*subCount
)

// bucketOf returns the bucket of a value in µs.
// Invariant: lowOf(bucketOf(v)) <= v < lowOf(bucketOf(v)) + widthOf(bucketOf(v)).
func bucketOf(us uint64) int {
	if us < subCount {
		return int(us)
	}
	e := bits.Len64(us) - subBits - 1 // us>>e is in [subCount, 2*subCount)
	if e > maxExp {
		return nBucket - 1
	}
	return subCount + e*subCount + int(us>>e) - subCount
}

// lowOf returns the smallest value of bucket i, and widthOf its width.
func lowOf(i int) uint64 {
	if i < subCount {
		return uint64(i)
	}
	e := (i - subCount) / subCount
	return uint64(subCount+(i-subCount)%subCount) << e
}

func widthOf(i int) uint64 {
	if i < subCount {
		return 1
	}
	return 1 << ((i - subCount) / subCount)
}

// Record adds one latency (negative ones count as 0).
func (h *Histogram) Record(d time.Duration) {
	us := uint64(max(d.Microseconds(), 0))
	if h.counts == nil {
		h.counts = make([]uint64, nBucket)
	}
	h.counts[bucketOf(us)]++
	h.n++
	h.maxUS = max(h.maxUS, us)
}

// Merge adds every value of o to h.
func (h *Histogram) Merge(o *Histogram) {
	if o.n == 0 {
		return
	}
	if h.counts == nil {
		h.counts = make([]uint64, nBucket)
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.maxUS = max(h.maxUS, o.maxUS)
}

// Count returns how many values were recorded.
func (h *Histogram) Count() uint64 { return h.n }

// Max returns the largest value recorded.
func (h *Histogram) Max() time.Duration { return time.Duration(h.maxUS) * time.Microsecond }

// Quantile returns the nearest-rank q-quantile (0 < q <= 1): the value
// below or at which ceil(q*n) of the values lie, as the middle of its
// bucket (never above the maximum). It returns 0 for an empty histogram.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = min(max(rank, 1), h.n)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			mid := lowOf(i) + (widthOf(i)-1)/2
			return time.Duration(min(mid, h.maxUS)) * time.Microsecond
		}
	}
	return h.Max() // unreachable: the counts add up to n
}
