package jepsen

import (
	"context"
	"fmt"
	"time"

	"github.com/opencluster/opencluster/rpc/client"
)

// lockWorkload has every process acquire one of a few named locks, hold
// it briefly and release it. The ttl is long against the faults (the
// client keeps the lock alive), so a correct server never lets a lock go
// to another process while its holder still holds it.
type lockWorkload struct {
	cfg   *Config
	names []string
}

func newLockWorkload(cfg *Config) workload {
	w := &lockWorkload{cfg: cfg}
	for i := range cfg.LockNames {
		w.names = append(w.names, fmt.Sprintf("jepsen/lock/%d", i))
	}
	return w
}

func (w *lockWorkload) Setup(context.Context, *process) error { return nil }

func (w *lockWorkload) Final(context.Context, *process) {}

// retryContext bounds the retries of a lock operation with an unknown
// outcome (same request id) before it is recorded as info.
func (w *lockWorkload) retryContext(ctx context.Context, p *process) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, 3*p.OpTimeout+w.cfg.LockWait)
}

func (w *lockWorkload) Step(ctx context.Context, p *process) {
	name := w.names[p.Rand.IntN(len(w.names))]
	holdFor := time.Duration(p.Rand.Int64N(int64(w.cfg.LockHold) + 1))

	inv := p.invoke(fAcquire, name, lockArgs{TTL: w.cfg.LockTTL})
	var l *client.Lock
	requestID := newRequestID()
	rctx, cancel := w.retryContext(ctx, p)
	err := retryAmbiguous(rctx, func(ctx context.Context) error {
		actx, cancel := p.opContext(ctx, w.cfg.LockWait)
		defer cancel()
		var err error
		l, err = p.Client.Lock(actx, name, w.cfg.LockTTL,
			client.WithLockWait(w.cfg.LockWait), client.WithRequestID(requestID))
		return err
	})
	cancel()
	if err != nil {
		// Info: a grant we never learned of holds the lock until its ttl
		// runs out, without keep-alives.
		p.complete(inv, outcome(err), nil, err)
		return
	}
	p.complete(inv, OK, lockResult{Fence: l.Fence(), TTL: l.TTL()}, nil)

	// Hold it: the hold ends early only if the handle reports the lock
	// lost. ctx is not the time limit, so the hold always finishes.
	t := time.NewTimer(holdFor)
	select {
	case <-t.C:
	case <-l.Lost():
	case <-ctx.Done():
	}
	t.Stop()
	lost := isClosed(l.Lost())

	rinv := p.invoke(fRelease, name, lockArgs{Fence: l.Fence(), Lost: lost})
	// Unlock reuses one request id for every attempt, so retrying is safe.
	rctx, cancel = w.retryContext(ctx, p)
	err = retryAmbiguous(rctx, func(ctx context.Context) error {
		uctx, cancel := p.opContext(ctx, 0)
		defer cancel()
		return l.Unlock(uctx)
	})
	cancel()
	p.complete(rinv, outcome(err), nil, err)
}

// isClosed reports whether ch is closed.
func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
