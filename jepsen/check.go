package jepsen

import (
	"context"
	"fmt"
	"time"
)

// CheckOptions tune the checkers.
type CheckOptions struct {
	// MinOK is the fewest successful operations of each kind a checker
	// needs to pass (invariant 4).
	MinOK int
	// CheckTimeout bounds porcupine's search over all keys; a key it
	// cannot decide in time makes the run Inconclusive.
	CheckTimeout time.Duration
	// ClockDrift bounds how much faster than the harness's clock a
	// server's clock may run (0.05 = 5%): a lock is never expired before
	// ttl*(1-ClockDrift) of harness time after its grant.
	ClockDrift float64
	// ElectionTimeout is the longest a bucket may go without a leader
	// after a fault: the lease checker allows a dead holder's lock
	// ttl*(1+ClockDrift) plus this to be taken over.
	ElectionTimeout time.Duration
	// Dir is where checkers write artefacts (porcupine's HTML); empty:
	// none.
	Dir string

	// faults are the history's fault windows (CheckHistory fills them).
	faults []faultWindow
}

// faultWindow is when a fault was in place: from its injection's start to
// its heal's end (Never if it was not healed).
type faultWindow struct {
	from, to int64
	what     string
}

// faultWindows reads the fault windows of a history's nemesis entries; a
// node crash counts as a fault to the end.
func faultWindows(ops []Op) []faultWindow {
	var out []faultWindow
	open := -1
	for _, op := range ops {
		if op.Process != NemesisProcess {
			continue
		}
		var ev nemesisEvent
		if err := decodeValue(op, &ev); err != nil {
			continue
		}
		switch {
		case op.F == "crash":
			out = append(out, faultWindow{from: op.Time, to: Never, what: "crash"})
		case ev.Phase == "start":
			out = append(out, faultWindow{from: op.Time, to: Never, what: ev.Fault.String()})
			open = len(out) - 1
		case ev.Phase == "stop" && open >= 0:
			out[open].to = op.Time
			open = -1
		}
	}
	return out
}

// faultDuring returns a fault in place at some time in [from, to], or "".
func (o CheckOptions) faultDuring(from, to int64) string {
	for _, w := range o.faults {
		if w.from <= to && from <= w.to {
			return w.what
		}
	}
	return ""
}

// CheckHistory runs the checkers of workload on ops.
func CheckHistory(ctx context.Context, workload string, ops []Op, opts CheckOptions) ([]Result, error) {
	spec, ok := workloads[workload]
	if !ok {
		return nil, fmt.Errorf("%w: unknown workload %q", ErrInvalidConfig, workload)
	}
	pairs, err := Pairs(ops)
	if err != nil {
		return nil, err
	}
	opts.faults = faultWindows(ops)
	var results []Result
	for _, check := range spec.checkers {
		results = append(results, check(ctx, pairs, opts))
	}
	return results, nil
}
