package jepsen

import (
	"context"
	"fmt"
	"sort"
	"time"
)

// Lock operation names.
const (
	fAcquire = "acquire"
	fRelease = "release"
)

// lockArgs is the value of a lock invoke.
type lockArgs struct {
	// TTL is the ttl an acquire asks for.
	TTL time.Duration `json:"ttl_ns,omitempty"`
	// Fence names the hold a release ends.
	Fence uint64 `json:"fence,omitempty"`
	// Lost reports that the holder's handle said the lock was lost before
	// the release was sent.
	Lost bool `json:"lost,omitempty"`
	// Holder is the process id the release's hold was acquired under,
	// when the releasing process has since taken a new one (an operation
	// between the two ended in info).
	Holder *int `json:"holder,omitempty"`
}

// lockResult is the value of an ok acquire.
type lockResult struct {
	Fence uint64 `json:"fence"`
	// TTL is the ttl the server granted.
	TTL time.Duration `json:"ttl_ns"`
}

// hold is one granted lock, from its acquire to its end.
type hold struct {
	name    string
	process int
	fence   uint64
	ttl     time.Duration
	// acqInvoke and acqReturn bound the grant.
	acqInvoke, acqReturn int64
	// endLow is the earliest time the hold can have ended (invariant 3):
	// the release's invoke when the release is known to have released
	// it, else the earliest the server may expire it (or the release's
	// invoke, if a release with an unknown outcome came first).
	endLow int64
	// how says how endLow was found, for anomaly messages.
	how string
}

// lockHolds builds the holds of a history: every ok acquire, with the
// release that names its fence.
func lockHolds(pairs []Pair, drift float64) ([]hold, map[string]int64, error) {
	stats := map[string]int64{}
	type release struct {
		p    Pair
		args lockArgs
	}
	// releases by lock name, fence and process: the acquire that got a
	// fence and the release that ends it share a process id (or the
	// release names the acquire's, in Holder, if an info in between
	// changed it), and a duplicated fence must not pair a hold with
	// another's release.
	type holdID struct {
		name    string
		fence   uint64
		process int
	}
	releases := map[holdID]release{}
	for _, p := range pairs {
		if p.Invoke.F != fRelease {
			continue
		}
		var args lockArgs
		if err := decodeValue(p.Invoke, &args); err != nil {
			return nil, nil, err
		}
		holder := p.Invoke.Process
		if args.Holder != nil {
			holder = *args.Holder
		}
		releases[holdID{p.Invoke.Key, args.Fence, holder}] = release{p, args}
		stats["release "+string(p.Type())]++
		if args.Lost {
			stats["lost holds"]++
		}
	}
	var holds []hold
	for _, p := range pairs {
		if p.Invoke.F != fAcquire {
			continue
		}
		stats["acquire "+string(p.Type())]++
		if p.Type() != OK {
			continue
		}
		var res lockResult
		if err := decodeValue(p.Complete, &res); err != nil {
			return nil, nil, err
		}
		h := hold{
			name: p.Invoke.Key, process: p.Invoke.Process, fence: res.Fence, ttl: res.TTL,
			acqInvoke: p.Invoke.Time, acqReturn: p.Complete.Time,
		}
		expiryLow := h.acqInvoke + int64(float64(h.ttl)*(1-drift))
		rel, released := releases[holdID{h.name, h.fence, h.process}]
		switch {
		case released && rel.p.Type() == OK:
			h.endLow, h.how = rel.p.Invoke.Time, "released from"
		case released && rel.p.Type() == Info && !rel.args.Lost:
			h.endLow, h.how = min(rel.p.Invoke.Time, expiryLow), "released (outcome unknown) from"
		default:
			h.endLow, h.how = expiryLow, "held by its ttl until"
		}
		holds = append(holds, h)
	}
	return holds, stats, nil
}

// checkLock checks named locks as mutexes with fences:
//
//  1. fences of one name are unique;
//  2. fences grow in real-time order: an acquire that completed before
//     another was invoked has the smaller fence;
//  3. mutual exclusion: no acquire returned before the end of a hold with
//     a smaller fence could have happened.
//
// 3 needs only the fence order and invariant 3's bounds: if F_A < F_B,
// the server granted B after A, so A must have ended before B's grant.
func checkLock(ctx context.Context, pairs []Pair, opts CheckOptions) (res Result) {
	start := time.Now()
	res = Result{Checker: "lock mutex with fences", Verdict: Valid}
	defer func() { res.Elapsed = time.Since(start) }()
	holds, stats, err := lockHolds(pairs, opts.ClockDrift)
	if err != nil {
		res.Verdict, res.Reason = Inconclusive, err.Error()
		return res
	}
	res.Stats = stats
	byName := map[string][]hold{}
	for _, h := range holds {
		byName[h.name] = append(byName[h.name], h)
	}
	names := make([]string, 0, len(byName))
	for n := range byName {
		names = append(names, n)
	}
	sort.Strings(names)
	stats["names"] = int64(len(names))
	for _, name := range names {
		if ctx.Err() != nil {
			res.Verdict, res.Reason = Inconclusive, ctx.Err().Error()
			return res
		}
		hs := byName[name]
		checkFencesUnique(&res, name, hs)
		checkFenceOrder(&res, name, hs)
		checkExclusion(&res, name, hs)
	}
	res.requireOK("successful acquires", stats["acquire ok"], opts.MinOK)
	res.requireOK("successful releases", stats["release ok"], opts.MinOK)
	return res
}

func checkFencesUnique(res *Result, name string, hs []hold) {
	seen := map[uint64]hold{}
	for _, h := range hs {
		if prev, dup := seen[h.fence]; dup {
			res.anomaly("lock %s: fence %d granted twice (processes %d and %d)", name, h.fence, prev.process, h.process)
		}
		seen[h.fence] = h
	}
}

// checkFenceOrder sweeps the holds by acquire invoke, keeping the largest
// fence of the acquires that had completed before it.
func checkFenceOrder(res *Result, name string, hs []hold) {
	byInvoke := append([]hold(nil), hs...)
	sort.Slice(byInvoke, func(i, j int) bool { return byInvoke[i].acqInvoke < byInvoke[j].acqInvoke })
	byReturn := append([]hold(nil), hs...)
	sort.Slice(byReturn, func(i, j int) bool { return byReturn[i].acqReturn < byReturn[j].acqReturn })
	var best *hold
	next := 0
	for _, h := range byInvoke {
		for next < len(byReturn) && byReturn[next].acqReturn < h.acqInvoke {
			if best == nil || byReturn[next].fence > best.fence {
				best = &byReturn[next]
			}
			next++
		}
		if best != nil && h.fence <= best.fence {
			res.anomaly("lock %s: process %d got fence %d at %s, after process %d had got fence %d by %s: fences must grow",
				name, h.process, h.fence, time.Duration(h.acqInvoke), best.process, best.fence, time.Duration(best.acqReturn))
		}
	}
}

// checkExclusion walks the holds in fence order, keeping the latest
// earliest-end of the holds before each. Each hold that was still held
// when later ones were granted is reported once, with the first such
// grant and a count of the others.
func checkExclusion(res *Result, name string, hs []hold) {
	byFence := append([]hold(nil), hs...)
	sort.Slice(byFence, func(i, j int) bool { return byFence[i].fence < byFence[j].fence })
	type overlap struct {
		first *hold
		more  int
	}
	overlaps := map[*hold]*overlap{}
	var order []*hold // holders in the order they were first overlapped
	var latest *hold
	for i := range byFence {
		h := &byFence[i]
		if latest != nil && h.acqReturn < latest.endLow {
			if o := overlaps[latest]; o != nil {
				o.more++
			} else {
				overlaps[latest] = &overlap{first: h}
				order = append(order, latest)
			}
		}
		if latest == nil || h.endLow > latest.endLow {
			latest = h
		}
	}
	for _, held := range order {
		o := overlaps[held]
		msg := fmt.Sprintf("lock %s: two holders: process %d was granted fence %d by %s, but fence %d (process %d, acquired from %s) was %s %s",
			name, o.first.process, o.first.fence, time.Duration(o.first.acqReturn), held.fence, held.process,
			time.Duration(held.acqInvoke), held.how, time.Duration(held.endLow))
		if o.more > 0 {
			msg += fmt.Sprintf(" (and %d more grants before then)", o.more)
		}
		res.anomaly("%s", msg)
	}
}
