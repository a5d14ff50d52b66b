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
	// Dir is where checkers write artefacts (porcupine's HTML); empty:
	// none.
	Dir string
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
	var results []Result
	for _, check := range spec.checkers {
		results = append(results, check(ctx, pairs, opts))
	}
	return results, nil
}
