package jepsen

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"
)

// Bank operation names.
const (
	fInit     = "init"
	fTransfer = "transfer"
	fBalances = "balances"
)

// Bank read modes.
const (
	// readLatest is a BatchGet of every account at a fresh snapshot.
	readLatest = "latest"
	// readAtVersion is a BatchGet at an older snapshot version.
	readAtVersion = "at-version"
	// readLocked reads every account under a restrictive lock holding
	// them all READ.
	readLocked = "locked"
)

// bankArgs is the value of a bank invoke.
type bankArgs struct {
	// Init: the opening balance of every account.
	Balances []int64 `json:"balances,omitempty"`
	// Transfer: move Amount from account From to account To.
	From     int   `json:"from,omitempty"`
	To       int   `json:"to,omitempty"`
	Amount   int64 `json:"amount,omitempty"`
	Snapshot bool  `json:"snapshot,omitempty"`
	// Balances read: the mode, and the version of an at-version read.
	Mode    string `json:"mode,omitempty"`
	Version uint64 `json:"version,omitempty"`
	// Final marks the read after the cluster healed.
	Final bool `json:"final,omitempty"`
}

// bankResult is the value of an ok bank completion.
type bankResult struct {
	// Version: the snapshot a read saw, or a transfer's commit version.
	Version uint64 `json:"version,omitempty"`
	// Balances of the accounts a read found, by account.
	Balances map[int]int64 `json:"balances,omitempty"`
	// Garbage holds values that are not integers, by account.
	Garbage map[int]string `json:"garbage,omitempty"`
}

// checkBank checks the bank invariants on every ok read: every account
// is present, holds an integer and is not negative, and the balances sum
// to the opening total (a read that sees a partial transfer, or a lost or
// doubled one, breaks the sum). Two BatchGet reads at the same snapshot
// version must agree (repeatable snapshots, design T4). The read after
// healing must succeed.
func checkBank(ctx context.Context, pairs []Pair, opts CheckOptions) (res Result) {
	start := time.Now()
	res = Result{Checker: "bank (conserved total, snapshot reads)", Verdict: Valid}
	defer func() { res.Elapsed = time.Since(start) }()
	stats := map[string]int64{}
	res.Stats = stats

	var accounts int
	var total int64
	initialised := false
	for _, p := range pairs {
		if p.Invoke.F == fInit && p.Type() == OK {
			var args bankArgs
			if err := decodeValue(p.Invoke, &args); err != nil {
				res.Verdict, res.Reason = Inconclusive, err.Error()
				return res
			}
			accounts, total, initialised = len(args.Balances), 0, true
			for _, b := range args.Balances {
				total += b
			}
		}
	}
	if !initialised {
		res.Verdict, res.Reason = Inconclusive, "no successful init: accounts never set up"
		return res
	}
	stats["accounts"], stats["total"] = int64(accounts), total

	type snapshotRead struct {
		balances map[int]int64
		process  int
		at       int64
	}
	bySnapshot := map[uint64]snapshotRead{}
	finalOK := false
	for _, p := range pairs {
		if ctx.Err() != nil {
			res.Verdict, res.Reason = Inconclusive, ctx.Err().Error()
			return res
		}
		switch p.Invoke.F {
		case fTransfer:
			stats["transfer "+string(p.Type())]++
		case fBalances:
			var args bankArgs
			if err := decodeValue(p.Invoke, &args); err != nil {
				res.Verdict, res.Reason = Inconclusive, err.Error()
				return res
			}
			if p.Type() != OK {
				stats["read "+string(p.Type())]++
				continue
			}
			stats["read ok"]++
			stats["read ok "+args.Mode]++
			finalOK = finalOK || args.Final
			var r bankResult
			if err := decodeValue(p.Complete, &r); err != nil {
				res.Verdict, res.Reason = Inconclusive, err.Error()
				return res
			}
			where := fmt.Sprintf("%s read by process %d at %s (snapshot %d)", args.Mode, p.Invoke.Process, time.Duration(p.Invoke.Time), r.Version)
			checkBalances(&res, where, r, accounts, total)
			if args.Mode == readLocked || r.Version == 0 {
				continue
			}
			if prev, seen := bySnapshot[r.Version]; seen && !maps.Equal(prev.balances, r.Balances) {
				res.anomaly("%s: balances %v differ from %v read at the same snapshot by process %d at %s",
					where, sorted(r.Balances), sorted(prev.balances), prev.process, time.Duration(prev.at))
			} else if !seen {
				bySnapshot[r.Version] = snapshotRead{r.Balances, p.Invoke.Process, p.Invoke.Time}
			}
		}
	}
	stats["snapshots"] = int64(len(bySnapshot))
	if !finalOK && res.Verdict != Invalid {
		res.Verdict, res.Reason = Inconclusive, "the final read after healing did not succeed"
	}
	res.requireOK("successful transfers", stats["transfer ok"], opts.MinOK)
	res.requireOK("successful reads", stats["read ok"], opts.MinOK)
	return res
}

// checkBalances checks one read's balances against the bank invariants.
func checkBalances(res *Result, where string, r bankResult, accounts int, total int64) {
	var sum int64
	for a := range accounts {
		b, found := r.Balances[a]
		switch {
		case r.Garbage[a] != "":
			res.anomaly("%s: account %d holds %q, not a balance", where, a, r.Garbage[a])
		case !found:
			res.anomaly("%s: account %d missing", where, a)
		case b < 0:
			res.anomaly("%s: account %d is negative (%d)", where, a, b)
		}
		sum += b
	}
	for a := range r.Balances {
		if a < 0 || a >= accounts {
			res.anomaly("%s: unexpected account %d", where, a)
		}
	}
	if sum != total && len(r.Garbage) == 0 {
		res.anomaly("%s: balances %v sum to %d, not %d", where, sorted(r.Balances), sum, total)
	}
}

// sorted renders balances in account order.
func sorted(b map[int]int64) []int64 {
	out := make([]int64, 0, len(b))
	for _, a := range slices.Sorted(maps.Keys(b)) {
		out = append(out, b[a])
	}
	return out
}
