package jepsen

import (
	"testing"
	"time"
)

const (
	ms       = int64(time.Millisecond)
	leaseTTL = 2 * time.Second
)

// leaseHistory builds lease histories by hand: every operation is on
// process = holder, lock "L", times in milliseconds.
type leaseHistory struct{ history }

func (h *leaseHistory) acquire(holder int, from, to int64, typ OpType, fence uint64) *leaseHistory {
	h.add(holder, fAcquire, "L", leaseArgs{Holder: holder, TTL: leaseTTL, Wait: 6 * time.Second}, from*ms, to*ms, typ,
		lockResult{Fence: fence, TTL: leaseTTL})
	return h
}

func (h *leaseHistory) op(f string, holder int, from, to int64, typ OpType) *leaseHistory {
	h.add(holder, f, "L", leaseArgs{Holder: holder}, from*ms, to*ms, typ, lockResult{TTL: leaseTTL})
	return h
}

// fault adds a nemesis window.
func (h *leaseHistory) fault(from, to int64) *leaseHistory {
	f := Fault{Nemesis: "partition", Shape: ShapeOne, Detail: "n1 | n2,n3"}
	h.ops = append(h.ops,
		Op{Process: NemesisProcess, Type: Info, F: "partition", Value: mustJSON(nemesisEvent{Phase: "start", Fault: f}), Time: from * ms},
		Op{Process: NemesisProcess, Type: Info, F: "partition", Value: mustJSON(nemesisEvent{Phase: "stop", Fault: f}), Time: to * ms})
	return h
}

func (h *leaseHistory) check(t *testing.T) Result {
	t.Helper()
	return h.history.check(t, "lease", CheckOptions{ElectionTimeout: 3 * time.Second})
}

// killedAndTakenOver: holder 1 takes the lock at 0–10ms, renews at
// 600–610ms, is killed at 700–710ms; holder 2 waits from 720ms and gets it
// at grant (ms).
func killedAndTakenOver(grant int64) *leaseHistory {
	h := &leaseHistory{}
	return h.acquire(1, 0, 10, OK, 1).
		op(fRenew, 1, 600, 610, OK).
		op(fKill, 1, 700, 710, OK).
		acquire(2, 720, grant, OK, 2).
		op(fRelease, 2, grant+10, grant+20, OK)
}

func TestLeaseCheckerValidTakeover(t *testing.T) {
	res := killedAndTakenOver(2620).check(t)
	wantVerdict(t, res, Valid)
	if res.Stats["takeovers"] != 1 || res.Stats["takeover max ms"] != 2620-710 || len(res.Notes) == 0 {
		t.Errorf("stats %v notes %q", res.Stats, res.Notes)
	}
}

// A grant before the killed holder's last renewal + ttl(1-drift) is
// early: 610+... no: the renewal's invoke (600ms) + 1.9s = 2.5s.
func TestLeaseCheckerEarlyGrantAfterRenewal(t *testing.T) {
	res := killedAndTakenOver(2400).check(t)
	wantVerdict(t, res, Invalid, "early grant", "fence 2", "renewed (ok) from 600ms", "kill at 710ms")
}

// Without the renewal, the same grant is early only against the acquire.
func TestLeaseCheckerEarlyGrantAfterAcquire(t *testing.T) {
	h := &leaseHistory{}
	h.acquire(1, 0, 10, OK, 1).op(fStop, 1, 50, 50, OK).acquire(2, 60, 1800, OK, 2).op(fRelease, 2, 1810, 1820, OK)
	wantVerdict(t, h.check(t), Invalid, "early grant", "acquired from 0s", "100ms too early")
}

// A renewal of unknown outcome (in flight when its holder was killed)
// does not extend the lease for the safety check.
func TestLeaseCheckerUnknownRenewalDoesNotExtend(t *testing.T) {
	h := &leaseHistory{}
	h.acquire(1, 0, 10, OK, 1).
		op(fRenew, 1, 300, 310, OK).
		op(fRenew, 1, 600, 700, Info).
		op(fKill, 1, 700, 710, OK).
		acquire(2, 720, 2300, OK, 2). // before 600+1900, after 300+1900
		op(fRelease, 2, 2310, 2320, OK)
	res := h.check(t)
	wantVerdict(t, res, Valid)
}

// A zombie: holder 1 stopped renewing, holder 2 got the lock in time,
// and then holder 1's renewal succeeded: two holders.
func TestLeaseCheckerZombieRenewal(t *testing.T) {
	h := &leaseHistory{}
	h.acquire(1, 0, 10, OK, 1).
		op(fStop, 1, 20, 20, OK).
		acquire(2, 30, 2100, OK, 2).
		op(fRenew, 1, 2200, 2210, OK).
		op(fRelease, 2, 2300, 2310, OK)
	wantVerdict(t, h.check(t), Invalid, "early grant", "renewed (ok) from 2.2s")
}

// A released lock may be granted at once.
func TestLeaseCheckerRelease(t *testing.T) {
	h := &leaseHistory{}
	h.acquire(1, 0, 10, OK, 1).
		op(fRelease, 1, 100, 110, OK).
		acquire(2, 90, 105, OK, 2).
		op(fRelease, 2, 200, 210, OK)
	res := h.check(t)
	if res.Verdict != Inconclusive || res.Stats["takeovers"] != 0 {
		t.Fatalf("verdict %s (%s), stats %v: want no early grant and no takeover to judge", res.Verdict, res.Reason, res.Stats)
	}
	// A release of unknown outcome may have released it too.
	h = &leaseHistory{}
	h.acquire(1, 0, 10, OK, 1).op(fRelease, 1, 100, 3000, Info).acquire(2, 90, 105, OK, 2)
	if res := h.check(t); res.Verdict == Invalid {
		t.Fatalf("unknown release: %q", res.Anomalies)
	}
	// One refused (the lock was already lost) does not end it.
	h = &leaseHistory{}
	h.acquire(1, 0, 10, OK, 1).op(fRelease, 1, 100, 110, Fail).acquire(2, 90, 105, OK, 2)
	wantVerdict(t, h.check(t), Invalid, "early grant")
}

func TestLeaseCheckerLateTakeover(t *testing.T) {
	// ttl 2s*(1.05) + election 3s = 5.1s after the renewal's answer (610ms).
	wantVerdict(t, killedAndTakenOver(6000).check(t), Invalid, "late takeover", "with no fault in place")
	// The same delay while a partition was in place is only counted.
	h := killedAndTakenOver(6000)
	h.fault(1000, 4000)
	res := h.check(t)
	wantVerdict(t, res, Valid)
	if res.Stats["takeovers late during faults"] != 1 {
		t.Errorf("stats %v", res.Stats)
	}
}

func TestLeaseCheckerNeverTakenOver(t *testing.T) {
	h := &leaseHistory{}
	h.acquire(1, 0, 10, OK, 1).
		op(fRenew, 1, 600, 610, OK).
		op(fKill, 1, 700, 710, OK).
		acquire(2, 720, 6720, Fail, 0)
	wantVerdict(t, h.check(t), Invalid, "never taken over", "holder 2 waited for it")
}

func TestLeaseCheckerFences(t *testing.T) {
	h := &leaseHistory{}
	h.acquire(1, 0, 10, OK, 5).op(fRelease, 1, 100, 110, OK).
		acquire(2, 200, 210, OK, 5).op(fRelease, 2, 300, 310, OK)
	wantVerdict(t, h.check(t), Invalid, "fence 5 granted twice")
}

func TestLeaseCheckerNeedsOperations(t *testing.T) {
	h := &leaseHistory{}
	h.acquire(1, 0, 10, OK, 1).op(fRelease, 1, 100, 110, OK)
	res := h.history.check(t, "lease", CheckOptions{MinOK: 5, ElectionTimeout: 3 * time.Second})
	wantVerdict(t, res, Inconclusive)
}

// An acquire of unknown outcome may have been granted between the death
// and the next known grant: unless the fences are consecutive, the
// takeover is not judged.
func TestLeaseCheckerUnknownGrantInBetween(t *testing.T) {
	late := func(nextFence uint64) Result {
		h := &leaseHistory{}
		h.acquire(1, 0, 10, OK, 1).
			op(fRenew, 1, 600, 610, OK).
			op(fKill, 1, 700, 710, OK).
			acquire(3, 650, 5000, Info, 0).
			acquire(2, 720, 7000, OK, nextFence).
			op(fRelease, 2, 7010, 7020, OK)
		return h.check(t)
	}
	wantVerdict(t, late(2), Invalid, "late takeover")
	res := late(3)
	if res.Verdict == Invalid || res.Stats["takeovers unjudged"] != 1 {
		t.Fatalf("verdict %s, stats %v: a fence gap and an unknown acquire make the takeover unjudged", res.Verdict, res.Stats)
	}
}
