package jepsen

import (
	"context"
	"sort"
	"time"
)

// Fenced operation names.
const (
	fFencedWrite = "fenced-write"
	fFencedRead  = "fenced-read"
)

// fencedArgs is the value of a fenced-write invoke.
type fencedArgs struct {
	// Value is unique in the run.
	Value string `json:"value"`
	// Lock and Fence are the named lock guarding the key and the fence its
	// holder got (sent with the write unless the run is the unfenced
	// control).
	Lock  string `json:"lock"`
	Fence uint64 `json:"fence"`
	// Zombie marks a write by a holder whose lock had expired.
	Zombie bool `json:"zombie,omitempty"`
	// Forged marks a write by no holder, with a token the lock never
	// granted; the store must refuse it.
	Forged bool `json:"forged,omitempty"`
}

// fencedResult is the value of an ok fenced-write or fenced-read.
type fencedResult struct {
	Found   bool   `json:"found,omitempty"`
	Value   string `json:"value,omitempty"`
	Version uint64 `json:"version,omitempty"`
}

// fencedWrite is one write as the checker sees it.
type fencedWrite struct {
	process       int
	args          fencedArgs
	version       uint64
	invoke, reply int64
}

// checkFenced checks fenced writes (each key guarded by one named lock):
//
//  1. In the store's order (versions), the fences of accepted writes
//     never go down: once a holder's write landed, no write of an earlier
//     holder is accepted. A decrease is a lost update: a holder whose
//     lock had expired overwrote its successor.
//  2. The value read after healing is the last acknowledged write's (or
//     that of a later write with an unknown outcome): no acknowledged
//     write is lost.
//  3. No forged write (a token the lock never granted) is acknowledged,
//     nor read after healing.
//
// It cannot require every acknowledged update to survive: the store
// checks fences on writes only, so an expired holder's write that lands
// before its successor's first write is accepted, and then overwritten.
func checkFenced(ctx context.Context, pairs []Pair, opts CheckOptions) (res Result) {
	start := time.Now()
	res = Result{Checker: "fenced writes", Verdict: Valid}
	defer func() { res.Elapsed = time.Since(start) }()
	stats := map[string]int64{}
	res.Stats = stats
	written := map[string][]fencedWrite{}
	unknown := map[string]map[string]bool{} // key → values of info writes
	forged := map[string]bool{}             // values of forged writes
	finals := map[string]fencedResult{}
	for _, p := range pairs {
		switch p.Invoke.F {
		case fFencedWrite:
			var args fencedArgs
			if err := decodeValue(p.Invoke, &args); err != nil {
				res.Verdict, res.Reason = Inconclusive, err.Error()
				return res
			}
			kind := "write "
			if args.Zombie {
				kind = "zombie write "
			}
			if args.Forged {
				stats["forged write "+string(p.Type())]++
				forged[args.Value] = true
				if p.Type() == OK {
					res.anomaly("key %s: process %d's write %s with token %d, which %s never granted, was acknowledged",
						p.Invoke.Key, p.Invoke.Process, args.Value, args.Fence, args.Lock)
				}
				continue
			}
			stats[kind+string(p.Type())]++
			switch p.Type() {
			case OK:
				var r fencedResult
				if err := decodeValue(p.Complete, &r); err != nil {
					res.Verdict, res.Reason = Inconclusive, err.Error()
					return res
				}
				written[p.Invoke.Key] = append(written[p.Invoke.Key],
					fencedWrite{p.Invoke.Process, args, r.Version, p.Invoke.Time, p.Complete.Time})
			case Info:
				if unknown[p.Invoke.Key] == nil {
					unknown[p.Invoke.Key] = map[string]bool{}
				}
				unknown[p.Invoke.Key][args.Value] = true
			}
		case fFencedRead:
			if p.Type() == OK {
				var r fencedResult
				if err := decodeValue(p.Complete, &r); err != nil {
					res.Verdict, res.Reason = Inconclusive, err.Error()
					return res
				}
				finals[p.Invoke.Key] = r
			}
		}
	}
	keys := make([]string, 0, len(written))
	for k := range written {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, key := range keys {
		if ctx.Err() != nil {
			res.Verdict, res.Reason = Inconclusive, ctx.Err().Error()
			return res
		}
		ws := written[key]
		sort.Slice(ws, func(i, j int) bool { return ws[i].version < ws[j].version })
		var highest *fencedWrite
		for i := range ws {
			w := &ws[i]
			if highest != nil && w.args.Fence < highest.args.Fence {
				res.anomaly("key %s: lost update: process %d's write %s with fence %d of %s (zombie %t) was accepted at version %d, after process %d's write %s with fence %d at version %d",
					key, w.process, w.args.Value, w.args.Fence, w.args.Lock, w.args.Zombie, w.version,
					highest.process, highest.args.Value, highest.args.Fence, highest.version)
			}
			if highest == nil || w.args.Fence > highest.args.Fence {
				highest = w
			}
		}
		last := ws[len(ws)-1]
		final, read := finals[key]
		switch {
		case !read:
			stats["keys without final read"]++
		case !final.Found:
			res.anomaly("key %s: acknowledged write %s (version %d) lost: the final read found nothing", key, last.args.Value, last.version)
		case forged[final.Value]:
			res.anomaly("key %s: the final read found forged write %s (version %d), whose token its lock never granted", key, final.Value, final.Version)
		case final.Value != last.args.Value && !unknown[key][final.Value]:
			res.anomaly("key %s: acknowledged write %s (version %d) lost: the final read found %s at version %d",
				key, last.args.Value, last.version, final.Value, final.Version)
		}
	}
	stats["keys"] = int64(len(keys))
	if stats["keys without final read"] > 0 && res.Verdict != Invalid {
		res.Verdict, res.Reason = Inconclusive, "some keys had no successful final read"
	}
	res.requireOK("acknowledged fenced writes", stats["write ok"], opts.MinOK)
	return res
}
