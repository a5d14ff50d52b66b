package ts

import (
	"sync"
	"time"
)

// Clock is the seam through which every lease, ttl, deadline and timestamp
// computation reads time, so tests (and the Jepsen harness, through the
// test-only admin surface) can move it.
//
// Now must be safe for concurrent use.
type Clock interface {
	Now() time.Time
}

// RealClock reads the system clock.
type RealClock struct{}

// Now implements Clock.
func (RealClock) Now() time.Time { return time.Now() }

var _ Clock = RealClock{}

// SkewedClock wraps a clock with an offset and a rate, for fault injection:
// Now = base + offset + (elapsed since anchor) * rate. Safe for concurrent
// use; Set may be called at any time.
type SkewedClock struct {
	base Clock
	mu   struct {
		sync.Mutex
		anchor   time.Time // base time when Set was last called
		anchored time.Time // skewed time at anchor
		rate     float64
	}
}

// NewSkewedClock returns a clock that reads base until Set is called.
func NewSkewedClock(base Clock) *SkewedClock {
	c := &SkewedClock{base: base}
	now := base.Now()
	c.mu.anchor, c.mu.anchored, c.mu.rate = now, now, 1
	return c
}

// Now implements Clock.
func (c *SkewedClock) Now() time.Time {
	now := c.base.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	elapsed := now.Sub(c.mu.anchor)
	return c.mu.anchored.Add(time.Duration(float64(elapsed) * c.mu.rate))
}

// Set makes the clock read base+offset from now on, advancing at rate
// (1 = real time).
func (c *SkewedClock) Set(offset time.Duration, rate float64) {
	now := c.base.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.mu.anchor, c.mu.anchored, c.mu.rate = now, now.Add(offset), rate
}

var _ Clock = (*SkewedClock)(nil)
