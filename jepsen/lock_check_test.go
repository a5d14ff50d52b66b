package jepsen

import (
	"testing"
	"time"
)

// The lock checker's tests. Each hold is an acquire [a0,a1] and a release
// [r0,r1] by one process; ttl is 1000ns unless a test says otherwise.

const testTTL = 1000 * time.Nanosecond

type holdSpec struct {
	p        int
	name     string
	fence    uint64
	a0, a1   int64
	r0, r1   int64
	release  OpType // "" : never released
	lostSeen bool   // the handle reported the lock lost before release
}

func addHold(h *history, s holdSpec) {
	h.add(s.p, fAcquire, s.name, lockArgs{TTL: testTTL}, s.a0, s.a1, OK, lockResult{Fence: s.fence, TTL: testTTL})
	if s.release != "" {
		h.add(s.p, fRelease, s.name, lockArgs{Fence: s.fence, Lost: s.lostSeen}, s.r0, s.r1, s.release, nil)
	}
}

func TestLockValid(t *testing.T) {
	h := &history{}
	addHold(h, holdSpec{p: 0, name: "L", fence: 1, a0: 0, a1: 10, r0: 20, r1: 30, release: OK})
	// Invoked while 0 held it, granted once 0 started releasing.
	addHold(h, holdSpec{p: 1, name: "L", fence: 2, a0: 5, a1: 25, r0: 40, r1: 50, release: OK})
	// A waiter whose wait timed out on the server.
	h.add(2, fAcquire, "L", lockArgs{TTL: testTTL}, 6, 16, Fail, nil)
	// Another name is independent: same fence, overlapping.
	addHold(h, holdSpec{p: 3, name: "M", fence: 1, a0: 0, a1: 10, r0: 20, r1: 30, release: OK})
	// A release with an unknown outcome: the next grant may come once it
	// was sent.
	addHold(h, holdSpec{p: 0, name: "L", fence: 3, a0: 60, a1: 70, r0: 80, r1: 90, release: Info})
	addHold(h, holdSpec{p: 4, name: "L", fence: 4, a0: 75, a1: 85, r0: 100, r1: 110, release: OK})
	// A holder that lost its lock: the next grant is fine once its ttl
	// (less the drift allowance) after its acquire's invoke has passed.
	addHold(h, holdSpec{p: 0, name: "L", fence: 5, a0: 200, a1: 210, r0: 300, r1: 310, release: Fail, lostSeen: true})
	addHold(h, holdSpec{p: 1, name: "L", fence: 6, a0: 220, a1: 1200, r0: 1300, r1: 1310, release: OK})
	wantVerdict(t, h.check(t, "lock", CheckOptions{}), Valid)
}

// Two processes hold the lock at once: the second was granted before the
// first even began to release.
func TestLockTwoHolders(t *testing.T) {
	h := &history{}
	addHold(h, holdSpec{p: 0, name: "L", fence: 1, a0: 0, a1: 10, r0: 50, r1: 60, release: OK})
	addHold(h, holdSpec{p: 1, name: "L", fence: 2, a0: 20, a1: 30, r0: 70, r1: 80, release: OK})
	wantVerdict(t, h.check(t, "lock", CheckOptions{}), Invalid,
		"lock L: two holders: process 1 was granted fence 2 by 30ns, but fence 1 (process 0, acquired from 0s) was released from 50ns")
}

// A holder whose process took a new id between acquire and release (an
// operation in between ended in info) names its acquire's process: the
// release still ends the hold. Without Holder the hold would last its ttl.
func TestLockReleaseUnderNewProcessID(t *testing.T) {
	for _, named := range []bool{true, false} {
		h := &history{}
		h.add(0, fAcquire, "L", lockArgs{TTL: testTTL}, 0, 10, OK, lockResult{Fence: 1, TTL: testTTL})
		args := lockArgs{Fence: 1}
		if named {
			holder := 0
			args.Holder = &holder
		}
		h.add(10, fRelease, "L", args, 50, 60, OK, nil)
		addHold(h, holdSpec{p: 1, name: "L", fence: 2, a0: 55, a1: 70, r0: 80, r1: 90, release: OK})
		if named {
			wantVerdict(t, h.check(t, "lock", CheckOptions{}), Valid)
		} else {
			wantVerdict(t, h.check(t, "lock", CheckOptions{}), Invalid, "held by its ttl until")
		}
	}
}

// A lock lost by its holder may go to another only after its ttl: a
// grant earlier than that is an early expiry.
func TestLockEarlyExpiry(t *testing.T) {
	h := &history{}
	addHold(h, holdSpec{p: 0, name: "L", fence: 1, a0: 0, a1: 10, r0: 600, r1: 610, release: Fail, lostSeen: true})
	addHold(h, holdSpec{p: 1, name: "L", fence: 2, a0: 20, a1: 500, r0: 700, r1: 710, release: OK})
	wantVerdict(t, h.check(t, "lock", CheckOptions{}), Invalid, "held by its ttl until 950ns")
}

func TestLockDuplicateFence(t *testing.T) {
	h := &history{}
	addHold(h, holdSpec{p: 0, name: "L", fence: 7, a0: 0, a1: 10, r0: 20, r1: 30, release: OK})
	addHold(h, holdSpec{p: 1, name: "L", fence: 7, a0: 40, a1: 50, r0: 60, r1: 70, release: OK})
	wantVerdict(t, h.check(t, "lock", CheckOptions{}), Invalid, "fence 7 granted twice")
}

// A later grant (in real time) with a smaller fence: fences must grow.
func TestLockFenceGoesBack(t *testing.T) {
	h := &history{}
	addHold(h, holdSpec{p: 0, name: "L", fence: 5, a0: 0, a1: 10, r0: 20, r1: 30, release: OK})
	addHold(h, holdSpec{p: 1, name: "L", fence: 4, a0: 40, a1: 50, r0: 60, r1: 70, release: OK})
	wantVerdict(t, h.check(t, "lock", CheckOptions{}), Invalid, "fences must grow")
}

func TestLockInconclusive(t *testing.T) {
	h := &history{}
	addHold(h, holdSpec{p: 0, name: "L", fence: 1, a0: 0, a1: 10, r0: 20, r1: 30, release: OK})
	h.add(1, fAcquire, "L", lockArgs{TTL: testTTL}, 0, 40, Info, nil)
	wantVerdict(t, h.check(t, "lock", CheckOptions{MinOK: 3}), Inconclusive, "only 1 successful acquires (need 3)")
}
