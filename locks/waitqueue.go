package locks

import (
	"context"
	"sync"
)

// WaitQueues are the leader's in-memory wait queues, one per resource (a
// named lock, a restrictive-lock name, or a key). They are not replicated:
// after a leadership change, clients re-send and queue again.
//
// A FIFO waiter only tries when it is at the head of its queue, so grants go
// in arrival order; watchers (readers) are woken by every change. The
// protocol avoids lost wake-ups: Join before checking the state, then Wait.
type WaitQueues struct {
	mu struct {
		sync.Mutex
		// queues maps a resource to its waiters; an entry exists only while
		// it has waiters.
		queues map[string]*queue
	}
}

type queue struct {
	fifo     []*Waiter
	watchers []*Waiter
}

// Waiter is one caller's place in a queue.
type Waiter struct {
	q        *WaitQueues
	resource string
	fifo     bool
	// ch has room for one wake-up, so a wake-up before Wait is not lost.
	ch chan struct{}
}

// NewWaitQueues returns empty queues.
func NewWaitQueues() *WaitQueues {
	w := &WaitQueues{}
	w.mu.queues = make(map[string]*queue)
	return w
}

// Join enters the FIFO queue of resource. The caller checks the resource
// after joining, tries only while IsHead, and calls Leave when done.
func (w *WaitQueues) Join(resource string) *Waiter {
	return w.join(resource, true)
}

// Watch registers a watcher woken by every Notify of resource. The caller
// checks after registering and calls Leave when done.
func (w *WaitQueues) Watch(resource string) *Waiter {
	return w.join(resource, false)
}

func (w *WaitQueues) join(resource string, fifo bool) *Waiter {
	wt := &Waiter{q: w, resource: resource, fifo: fifo, ch: make(chan struct{}, 1)}
	w.mu.Lock()
	defer w.mu.Unlock()
	q := w.mu.queues[resource]
	if q == nil {
		q = &queue{}
		w.mu.queues[resource] = q
	}
	if fifo {
		q.fifo = append(q.fifo, wt)
	} else {
		q.watchers = append(q.watchers, wt)
	}
	return wt
}

// IsHead reports whether the waiter is first in its FIFO queue (watchers
// always are).
func (wt *Waiter) IsHead() bool {
	if !wt.fifo {
		return true
	}
	wt.q.mu.Lock()
	defer wt.q.mu.Unlock()
	q := wt.q.mu.queues[wt.resource]
	return q != nil && len(q.fifo) > 0 && q.fifo[0] == wt
}

// Wait blocks until the waiter is woken or ctx ends.
func (wt *Waiter) Wait(ctx context.Context) error {
	select {
	case <-wt.ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Leave removes the waiter from its queue; if it was the head, the next
// waiter is woken to try. Leave is idempotent.
func (wt *Waiter) Leave() {
	w := wt.q
	w.mu.Lock()
	defer w.mu.Unlock()
	q := w.mu.queues[wt.resource]
	if q == nil {
		return
	}
	if wt.fifo {
		for i, x := range q.fifo {
			if x == wt {
				q.fifo = append(q.fifo[:i], q.fifo[i+1:]...)
				if i == 0 && len(q.fifo) > 0 {
					wake(q.fifo[0])
				}
				break
			}
		}
	} else {
		for i, x := range q.watchers {
			if x == wt {
				q.watchers = append(q.watchers[:i], q.watchers[i+1:]...)
				break
			}
		}
	}
	if len(q.fifo) == 0 && len(q.watchers) == 0 {
		delete(w.mu.queues, wt.resource)
	}
}

// Wake wakes this waiter alone (for example when something was handed to
// it directly).
func (wt *Waiter) Wake() { wake(wt) }

func wake(wt *Waiter) {
	select {
	case wt.ch <- struct{}{}:
	default:
	}
}

// Notify reports that resource changed: the head of the FIFO queue and every
// watcher are woken.
func (w *WaitQueues) Notify(resource string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	q := w.mu.queues[resource]
	if q == nil {
		return
	}
	if len(q.fifo) > 0 {
		wake(q.fifo[0])
	}
	for _, x := range q.watchers {
		wake(x)
	}
}

// NotifyAll wakes every waiter of every resource (on a leadership change,
// so they retry and find out).
func (w *WaitQueues) NotifyAll() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, q := range w.mu.queues {
		if len(q.fifo) > 0 {
			wake(q.fifo[0])
		}
		for _, x := range q.watchers {
			wake(x)
		}
	}
}

// Len returns the number of FIFO waiters of resource.
func (w *WaitQueues) Len(resource string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	if q := w.mu.queues[resource]; q != nil {
		return len(q.fifo)
	}
	return 0
}

// Watching reports whether resource has watchers (Watch).
func (w *WaitQueues) Watching(resource string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	q := w.mu.queues[resource]
	return q != nil && len(q.watchers) > 0
}
