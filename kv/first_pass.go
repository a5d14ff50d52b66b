package kv

import "sync"

// firstPassGate decides whether a multi-bucket Restrict first tries every
// bucket at once without waiting (lockKeys). The try takes all the keys
// in one round when none is taken; under contention it mostly falls
// short, and then costs a round and a proposal per later bucket it gives
// back, and its refused tries leave the lock behind the waiters that
// queued meanwhile. So the node keeps a moving average of how often tries
// fell short, and above shortThreshold locks the buckets in order
// straight away, still trying one Restrict in probeEvery so the average
// follows the load back down.
type firstPassGate struct {
	mu        sync.Mutex
	shortRate float64 // moving average of tries that fell short (0..1)
	count     uint64
}

const (
	shortAlpha     = 1.0 / 16
	shortThreshold = 0.25
	probeEvery     = 8
)

// try reports whether the next multi-bucket Restrict should try every
// bucket at once.
func (g *firstPassGate) try() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.count++
	return g.shortRate < shortThreshold || g.count%probeEvery == 0
}

// observe records whether a try fell short.
func (g *firstPassGate) observe(short bool) {
	x := 0.0
	if short {
		x = 1
	}
	g.mu.Lock()
	g.shortRate += shortAlpha * (x - g.shortRate)
	g.mu.Unlock()
}
