package locks

import (
	"sort"
	"sync"
	"time"
)

// LeaseKind tells named locks from restrictive locks in Deadlines.
type LeaseKind uint8

const (
	// Named is a named lock.
	Named LeaseKind = iota
	// Restrictive is a restrictive lock (transaction record).
	Restrictive
)

// LeaseID identifies one grant: a lock and the code it was granted with.
type LeaseID struct {
	Kind LeaseKind
	Name string
	Code string // the code's raw bytes as a string
}

// Deadlines tracks, on a bucket's leader, when each held lock expires unless
// kept alive. Like etcd's lessor it is leader memory: a new leader starts
// every deadline at now + ttl, so a lock is never released early, at the
// cost of reclaiming a dead holder's lock up to one ttl late. Times come from
// the caller (the clock seam). Safe for concurrent use.
type Deadlines struct {
	mu struct {
		sync.Mutex
		leases map[LeaseID]lease
	}
}

type lease struct {
	ttl      time.Duration
	deadline time.Time
	// paused leases never expire (a restrictive lock being acquired or
	// committed by this node).
	paused bool
}

// NewDeadlines returns an empty tracker.
func NewDeadlines() *Deadlines {
	d := &Deadlines{}
	d.mu.leases = make(map[LeaseID]lease)
	return d
}

// Set starts (or restarts) a lease: it expires at now + ttl.
func (d *Deadlines) Set(id LeaseID, ttl time.Duration, now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.mu.leases[id] = lease{ttl: ttl, deadline: now.Add(ttl)}
}

// Pause keeps a lease from expiring until Resume.
func (d *Deadlines) Pause(id LeaseID, ttl time.Duration) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.mu.leases[id] = lease{ttl: ttl, paused: true}
}

// Resume ends a pause; the lease expires at now + ttl.
func (d *Deadlines) Resume(id LeaseID, now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if l, ok := d.mu.leases[id]; ok {
		d.mu.leases[id] = lease{ttl: l.ttl, deadline: now.Add(l.ttl)}
	}
}

// Extend renews a tracked lease to now + ttl and returns its ttl; ok is
// false if the lease is not tracked.
func (d *Deadlines) Extend(id LeaseID, now time.Time) (time.Duration, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	l, ok := d.mu.leases[id]
	if !ok {
		return 0, false
	}
	if !l.paused {
		l.deadline = now.Add(l.ttl)
		d.mu.leases[id] = l
	}
	return l.ttl, true
}

// Remove stops tracking a lease.
func (d *Deadlines) Remove(id LeaseID) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.mu.leases, id)
}

// Remaining returns the time left before the lease expires.
func (d *Deadlines) Remaining(id LeaseID, now time.Time) (time.Duration, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	l, ok := d.mu.leases[id]
	if !ok {
		return 0, false
	}
	if l.paused {
		return l.ttl, true
	}
	return max(0, l.deadline.Sub(now)), true
}

// Expired returns the leases whose deadline has passed at now, oldest
// first. They stay tracked until Remove, so the caller proposes the expiry
// once and removes the lease when it applies.
func (d *Deadlines) Expired(now time.Time) []LeaseID {
	d.mu.Lock()
	defer d.mu.Unlock()
	type exp struct {
		id LeaseID
		at time.Time
	}
	var out []exp
	for id, l := range d.mu.leases {
		if !l.paused && !now.Before(l.deadline) {
			out = append(out, exp{id, l.deadline})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].at.Equal(out[j].at) {
			return out[i].at.Before(out[j].at)
		}
		return out[i].id.Name < out[j].id.Name
	})
	ids := make([]LeaseID, len(out))
	for i, e := range out {
		ids[i] = e.id
	}
	return ids
}

// RemoveIf forgets the leases for which drop is true (the locks of a
// bucket whose leadership this node lost: the new leader tracks them).
func (d *Deadlines) RemoveIf(drop func(LeaseID) bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for id := range d.mu.leases {
		if drop(id) {
			delete(d.mu.leases, id)
		}
	}
}

// Clear forgets every lease (on losing leadership).
func (d *Deadlines) Clear() {
	d.mu.Lock()
	defer d.mu.Unlock()
	clear(d.mu.leases)
}
