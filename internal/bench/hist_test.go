package bench

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// exactQuantile is the naive model: nearest rank over sorted values.
func exactQuantile(sorted []time.Duration, q float64) time.Duration {
	rank := int(math.Ceil(q * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

// TestHistogramQuantiles checks the histogram against exact nearest-rank
// quantiles of the same samples: within 1/128 of the value (plus the 1µs
// resolution), and the maximum exactly.
func TestHistogramQuantiles(t *testing.T) {
	const seed = 42
	rng := rand.New(rand.NewPCG(seed, 0))
	dists := []struct {
		name string
		next func() time.Duration
	}{
		{"uniform 0-5ms", func() time.Duration { return time.Duration(rng.Int64N(int64(5 * time.Millisecond))) }},
		{"exponential 2ms", func() time.Duration { return time.Duration(rng.ExpFloat64() * float64(2*time.Millisecond)) }},
		{"bimodal", func() time.Duration {
			return time.Duration(100+rng.IntN(50))*time.Microsecond + time.Duration(rng.IntN(2))*100*time.Millisecond
		}},
		{"tiny", func() time.Duration { return time.Duration(rng.IntN(200)) * time.Microsecond }},
	}
	for _, d := range dists {
		name, next := d.name, d.next
		t.Run(name, func(t *testing.T) {
			var h Histogram
			var vals []time.Duration
			for range 20000 {
				v := next().Truncate(time.Microsecond)
				vals = append(vals, v)
				h.Record(v)
			}
			slices.Sort(vals)
			for _, q := range []float64{0.01, 0.5, 0.9, 0.99, 0.999, 1} {
				got, want := h.Quantile(q), exactQuantile(vals, q)
				if diff := (got - want).Abs(); diff > want/128+time.Microsecond {
					t.Errorf("seed %d q=%v: got %s, want %s (±%s)", seed, q, got, want, want/128+time.Microsecond)
				}
			}
			if h.Max() != vals[len(vals)-1] || h.Count() != uint64(len(vals)) {
				t.Errorf("max %s count %d, want %s %d", h.Max(), h.Count(), vals[len(vals)-1], len(vals))
			}
		})
	}
}

// TestHistogramMerge: merging per-client histograms equals recording
// everything in one.
func TestHistogramMerge(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 0))
	var all, a, b, empty Histogram
	for i := range 5000 {
		v := time.Duration(rng.Int64N(int64(time.Second)))
		all.Record(v)
		if i%3 == 0 {
			a.Record(v)
		} else {
			b.Record(v)
		}
	}
	var m Histogram
	m.Merge(&a)
	m.Merge(&empty)
	m.Merge(&b)
	for _, q := range []float64{0.5, 0.99, 1} {
		if m.Quantile(q) != all.Quantile(q) {
			t.Errorf("q=%v: merged %s, single %s", q, m.Quantile(q), all.Quantile(q))
		}
	}
	if m.Count() != all.Count() || m.Max() != all.Max() {
		t.Errorf("merged count %d max %s, single %d %s", m.Count(), m.Max(), all.Count(), all.Max())
	}
}

func TestHistogramEdges(t *testing.T) {
	var h Histogram
	if h.Quantile(0.5) != 0 || h.Max() != 0 || h.Count() != 0 {
		t.Fatal("empty histogram is not all zero")
	}
	h.Record(-time.Second) // clock steps must not panic
	h.Record(400 * 24 * time.Hour)
	if h.Quantile(0.01) != 0 || h.Max() != 400*24*time.Hour {
		t.Fatalf("q.01 %s max %s", h.Quantile(0.01), h.Max())
	}
}

// TestBucketBounds checks the bucket invariant on every bucket edge.
func TestBucketBounds(t *testing.T) {
	for i := range nBucket - 1 {
		lo, w := lowOf(i), widthOf(i)
		for _, v := range []uint64{lo, lo + w - 1} {
			if got := bucketOf(v); got != i {
				t.Fatalf("bucketOf(%d) = %d, want %d (bucket [%d, %d))", v, got, i, lo, lo+w)
			}
		}
		if lowOf(i+1) != lo+w {
			t.Fatalf("bucket %d ends at %d, bucket %d starts at %d", i, lo+w, i+1, lowOf(i+1))
		}
	}
}
