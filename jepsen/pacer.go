package jepsen

import (
	"context"
	"sync"
	"time"
)

// pacer spaces operations of all workers evenly at a target rate. A
// worker that was blocked (a paused server) does not bank slots: a slot
// in the past is moved to now, so recovery brings no burst.
type pacer struct {
	interval time.Duration
	mu       struct {
		sync.Mutex
		// next is the time of the next free slot.
		next time.Time
	}
}

func newPacer(rate float64) *pacer {
	p := &pacer{}
	if rate > 0 {
		p.interval = time.Duration(float64(time.Second) / rate)
	}
	return p
}

// wait blocks until the caller's slot; it returns ctx's error if ctx
// ends first.
func (p *pacer) wait(ctx context.Context) error {
	if p.interval == 0 {
		return ctx.Err()
	}
	p.mu.Lock()
	now := time.Now()
	slot := p.mu.next
	if slot.Before(now) {
		slot = now
	}
	p.mu.next = slot.Add(p.interval)
	p.mu.Unlock()
	t := time.NewTimer(time.Until(slot))
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
