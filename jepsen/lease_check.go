package jepsen

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// leaseHold is one granted lease lock and what became of its holder.
type leaseHoldInfo struct {
	hold
	// maxRenewInvoke is the latest invoke of an ok renewal (0: none);
	// the server restarted the ttl after it.
	maxRenewInvoke int64
	// aliveUpper is the latest time the holder may have renewed before
	// it died: its last ok renewal's (or the acquire's) completion, or the
	// death itself after a renewal of unknown outcome.
	aliveUpper int64
	// death is when the holder stopped renewing or was reaped after
	// SIGKILL (0: it did neither); fate says which.
	death int64
	fate  string
	// released reports a release attempt (then the lock was not left to
	// expire, and there is no takeover to measure).
	released bool
}

// checkLease checks the lease workload's history:
//
//  1. Safety (no early grant): in fence order, no grant returns before
//     every earlier hold could have ended. A hold ends no earlier than its
//     ok release's invoke, or else than ttl*(1-ClockDrift) after the
//     later of its acquire's invoke and its last ok renewal's invoke: the
//     server restarts a lock's ttl on each renewal it receives, and it
//     received each after the harness recorded its invoke. A zombie's
//     renewal that succeeded after the next grant is such an early grant
//     too. Fences are also unique and grow in real-time order.
//  2. Liveness (takeover): a holder that died (killed, or stopped
//     renewing) with its lock has the lock granted to the next holder at
//     most ttl*(1+ClockDrift) + ElectionTimeout after it could last have
//     renewed. This is judged only when no fault was in place from an
//     election timeout before that renewal to the next grant (faults may
//     legitimately delay a takeover longer), and when no grant of unknown
//     outcome may have come in between (the next known fence is the dead
//     holder's plus one, or no acquire of unknown outcome was pending);
//     late takeovers during faults are counted. The takeover latency (next
//     grant minus the death) is reported either way.
func checkLease(ctx context.Context, pairs []Pair, opts CheckOptions) (res Result) {
	start := time.Now()
	res = Result{Checker: "lease: no early grant, takeover in time", Verdict: Valid, Stats: map[string]int64{}}
	defer func() { res.Elapsed = time.Since(start) }()
	holds, acquires, err := leaseHolds(pairs, opts.ClockDrift, res.Stats)
	if err != nil {
		res.Verdict, res.Reason = Inconclusive, err.Error()
		return res
	}
	byName := map[string][]*leaseHoldInfo{}
	for _, h := range holds {
		byName[h.name] = append(byName[h.name], h)
	}
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range byName {
			if !yield(n) {
				return
			}
		}
	})
	res.Stats["names"] = int64(len(names))
	var tk takeovers
	for _, name := range names {
		if ctx.Err() != nil {
			res.Verdict, res.Reason = Inconclusive, ctx.Err().Error()
			return res
		}
		hs := byName[name]
		sort.Slice(hs, func(i, j int) bool { return hs[i].fence < hs[j].fence })
		plain := make([]hold, len(hs))
		for i, h := range hs {
			plain[i] = h.hold
		}
		checkFencesUnique(&res, name, plain)
		checkFenceOrder(&res, name, plain)
		checkEarlyGrants(&res, name, hs, opts.ClockDrift)
		tk.check(&res, name, hs, acquires[name], opts)
	}
	tk.report(&res, opts)
	res.requireOK("successful acquires", res.Stats["acquire ok"], opts.MinOK)
	res.requireOK("successful renewals", res.Stats["renew ok"], opts.MinOK)
	res.requireOK("measured takeovers", res.Stats["takeovers"], 1)
	return res
}

// leaseHolds builds the holds of a lease history, and lists each name's
// acquires that did not succeed (for takeovers that never came).
func leaseHolds(pairs []Pair, drift float64, stats map[string]int64) ([]*leaseHoldInfo, map[string][]Pair, error) {
	byHolder := map[int]*leaseHoldInfo{}
	others := map[string][]Pair{}
	var holds []*leaseHoldInfo
	args := make([]leaseArgs, len(pairs))
	for i, p := range pairs {
		switch p.Invoke.F {
		case fAcquire, fRenew, fRelease, fStop, fKill:
		default:
			continue
		}
		if err := decodeValue(p.Invoke, &args[i]); err != nil {
			return nil, nil, err
		}
		stats[p.Invoke.F+" "+string(p.Type())]++
		if p.Invoke.F != fAcquire {
			continue
		}
		if p.Type() != OK {
			others[p.Invoke.Key] = append(others[p.Invoke.Key], p)
			continue
		}
		var r lockResult
		if err := decodeValue(p.Complete, &r); err != nil {
			return nil, nil, err
		}
		h := &leaseHoldInfo{hold: hold{name: p.Invoke.Key, process: args[i].Holder, fence: r.Fence, ttl: r.TTL,
			acqInvoke: p.Invoke.Time, acqReturn: p.Complete.Time}, aliveUpper: p.Complete.Time}
		byHolder[args[i].Holder] = h
		holds = append(holds, h)
	}
	// Deaths and releases first: a renewal counts toward the holder's life
	// only if it began before the death (a zombie's later one does not).
	release := map[*leaseHoldInfo]Pair{}
	for i, p := range pairs {
		h := byHolder[args[i].Holder]
		if h == nil || p.Invoke.Key != h.name {
			continue
		}
		switch p.Invoke.F {
		case fStop, fKill:
			h.fate, h.death = p.Invoke.F, p.Complete.Time
			if p.Type() != OK {
				// A kill that did not finish: the holder may live on.
				h.fate, h.death = p.Invoke.F+" (unfinished)", p.Invoke.Time
			}
		case fRelease:
			h.released = true
			release[h] = p
		}
	}
	for i, p := range pairs {
		h := byHolder[args[i].Holder]
		if p.Invoke.F != fRenew || h == nil || p.Invoke.Key != h.name {
			continue
		}
		beforeDeath := h.death == 0 || p.Invoke.Time < h.death
		switch p.Type() {
		case OK:
			h.maxRenewInvoke = max(h.maxRenewInvoke, p.Invoke.Time)
			if beforeDeath {
				h.aliveUpper = max(h.aliveUpper, p.Complete.Time)
			}
		case Info:
			if !beforeDeath {
				break
			}
			// A renewal of unknown outcome may land until the holder is
			// gone, and at any time if it lives on.
			if h.death != 0 && !strings.HasSuffix(h.fate, "(unfinished)") {
				h.aliveUpper = max(h.aliveUpper, h.death)
			} else {
				h.aliveUpper = Never
			}
		}
	}
	for _, h := range holds {
		from, how := h.acqInvoke, "acquired from"
		if h.maxRenewInvoke > from {
			from, how = h.maxRenewInvoke, "renewed (ok) from"
		}
		expiryLow := from + int64(float64(h.ttl)*(1-drift))
		rel, released := release[h]
		switch {
		case released && rel.Type() == OK:
			h.endLow, h.how = rel.Invoke.Time, "released from"
		case released && rel.Type() == Info && rel.Invoke.Time < expiryLow:
			h.endLow, h.how = rel.Invoke.Time, "released (outcome unknown) from"
		default:
			h.endLow, h.how = expiryLow, fmt.Sprintf("%s %s, so held by its ttl until", how, time.Duration(from))
		}
	}
	stats["holds"] = int64(len(holds))
	return holds, others, nil
}

// checkEarlyGrants walks the holds of one name in fence order, keeping the
// latest earliest-end of the holds before each: a grant that returned
// before it is an early grant.
func checkEarlyGrants(res *Result, name string, hs []*leaseHoldInfo, drift float64) {
	var latest *leaseHoldInfo
	for _, h := range hs {
		if latest != nil && h.acqReturn < latest.endLow {
			res.anomaly("lock %s: early grant: holder %d was granted fence %d by %s, but fence %d (holder %d, ttl %s, %s) was %s %s: %s too early (clock drift %.0f%% allowed)",
				name, h.process, h.fence, time.Duration(h.acqReturn), latest.fence, latest.process, latest.ttl,
				fateString(latest), latest.how, time.Duration(latest.endLow), time.Duration(latest.endLow-h.acqReturn), drift*100)
		}
		if latest == nil || h.endLow > latest.endLow {
			latest = h
		}
	}
}

func fateString(h *leaseHoldInfo) string {
	switch {
	case h.fate != "":
		return fmt.Sprintf("%s at %s", h.fate, time.Duration(h.death))
	case h.released:
		return "released"
	}
	return "renewals ended"
}

// takeovers gathers the takeover latencies of dead holders.
type takeovers struct {
	// all are next grant minus death; faultFree those judged.
	all, faultFree   []time.Duration
	lateDuringFaults int
}

// check measures the takeover of each dead holder of one name (hs in
// fence order); failed is the name's acquires that did not succeed.
func (t *takeovers) check(res *Result, name string, hs []*leaseHoldInfo, failed []Pair, opts CheckOptions) {
	bound := time.Duration(0)
	for i, h := range hs {
		if h.death == 0 || h.released {
			continue
		}
		bound = time.Duration(float64(h.ttl)*(1+opts.ClockDrift)) + opts.ElectionTimeout
		// An unknown grant between the death and the next known one makes
		// the next grant's wait not the dead holder's doing. Fences grow
		// with every grant, so consecutive fences rule one out; otherwise
		// any acquire of unknown outcome invoked before the next grant
		// might have been it.
		var next *leaseHoldInfo
		if i+1 < len(hs) {
			next = hs[i+1]
		}
		unknownGrant := false
		if next == nil || next.fence != h.fence+1 {
			for _, p := range failed {
				if p.Type() == Info && (next == nil || p.Invoke.Time < next.acqReturn) && p.ReturnTime() > h.acqInvoke {
					unknownGrant = true
				}
			}
		}
		if h.aliveUpper == Never || unknownGrant {
			res.Stats["takeovers unjudged"]++
			continue
		}
		if next == nil {
			// Nobody got the lock again: wrong if a holder asked for it
			// long enough, and the server said no, with no fault about.
			for _, p := range failed {
				var args leaseArgs
				_ = decodeValue(p.Invoke, &args)
				if p.Type() != Fail || p.Invoke.Time < h.death || time.Duration(p.Complete.Time-h.aliveUpper) <= bound {
					continue
				}
				if f := opts.faultDuring(h.aliveUpper-int64(opts.ElectionTimeout), p.Complete.Time); f != "" {
					t.lateDuringFaults++
					break
				}
				res.anomaly("lock %s: never taken over: holder %d (fence %d) %s, could last have renewed by %s; holder %d waited for it from %s to %s (more than ttl %s + election %s after) and was refused",
					name, h.process, h.fence, fateString(h), time.Duration(h.aliveUpper), args.Holder,
					time.Duration(p.Invoke.Time), time.Duration(p.Complete.Time), h.ttl, opts.ElectionTimeout)
				break
			}
			res.Stats["takeovers not seen"]++
			continue
		}
		latency := time.Duration(next.acqReturn - h.death)
		t.all = append(t.all, latency)
		res.Stats["takeovers"]++
		after := time.Duration(next.acqReturn - h.aliveUpper)
		fault := opts.faultDuring(h.aliveUpper-int64(opts.ElectionTimeout), next.acqReturn)
		switch {
		case fault == "":
			t.faultFree = append(t.faultFree, latency)
			if after > bound {
				res.anomaly("lock %s: late takeover: holder %d (fence %d) %s, could last have renewed by %s; the next grant (fence %d, holder %d) came at %s, %s later: more than ttl %s*(1+%.2f) + election %s = %s, with no fault in place",
					name, h.process, h.fence, fateString(h), time.Duration(h.aliveUpper), next.fence, next.process,
					time.Duration(next.acqReturn), after, h.ttl, opts.ClockDrift, opts.ElectionTimeout, bound)
			}
		case after > bound:
			t.lateDuringFaults++
		}
	}
}

// report adds the latency figures to res.
func (t *takeovers) report(res *Result, opts CheckOptions) {
	res.Stats["takeovers late during faults"] = int64(t.lateDuringFaults)
	if len(t.all) == 0 {
		return
	}
	q := func(ds []time.Duration) string {
		s := slices.Clone(ds)
		slices.Sort(s)
		at := func(f float64) time.Duration { return s[min(len(s)-1, int(f*float64(len(s))))].Round(time.Millisecond) }
		return fmt.Sprintf("min %s  p50 %s  p90 %s  max %s", s[0].Round(time.Millisecond), at(0.5), at(0.9), s[len(s)-1].Round(time.Millisecond))
	}
	res.Notes = append(res.Notes, fmt.Sprintf("takeover after a holder died (next grant - death): %d measured: %s", len(t.all), q(t.all)))
	if len(t.faultFree) > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("  of which %d with no fault in place: %s", len(t.faultFree), q(t.faultFree)))
	}
	s := slices.Clone(t.all)
	slices.Sort(s)
	res.Stats["takeover p50 ms"] = s[len(s)/2].Milliseconds()
	res.Stats["takeover max ms"] = s[len(s)-1].Milliseconds()
}
