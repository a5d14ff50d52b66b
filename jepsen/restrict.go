package jepsen

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/opencluster/opencluster/rpc/client"
)

// restrictor takes the restrictive locks of a transactional workload
// (bank, append): unique names under prefix, the run's ttl and wait, and
// retries of an unknown outcome under one request id, so that a grant is
// never left behind unknown.
type restrictor struct {
	cfg    *Config
	prefix string
	// seq makes lock names unique.
	seq atomic.Uint64
}

// retryContext bounds the retries of a lock request with an unknown
// outcome (same request id).
func (r *restrictor) retryContext(ctx context.Context, p *process) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, 3*p.OpTimeout+r.cfg.LockWait)
}

// restrict takes a restrictive lock with opts.
func (r *restrictor) restrict(ctx context.Context, p *process, opts ...client.RestrictOption) (*client.Tx, error) {
	name := fmt.Sprintf("%s/%d", r.prefix, r.seq.Add(1))
	opts = append(opts, client.TTL(r.cfg.LockTTL), client.Wait(r.cfg.LockWait), client.WithRequestID(newRequestID()))
	var tx *client.Tx
	rctx, cancel := r.retryContext(ctx, p)
	defer cancel()
	err := retryAmbiguous(rctx, func(ctx context.Context) error {
		actx, cancel := p.opContext(ctx, r.cfg.LockWait)
		defer cancel()
		var err error
		tx, err = p.Client.Restrict(actx, name, opts...)
		return err
	})
	return tx, err
}

// commit commits tx, retrying an unknown outcome (the handle reuses its
// request id), and returns the commit version.
func (r *restrictor) commit(ctx context.Context, p *process, tx *client.Tx) (uint64, error) {
	var version uint64
	rctx, cancel := r.retryContext(ctx, p)
	defer cancel()
	err := retryAmbiguous(rctx, func(ctx context.Context) error {
		cctx, cancel := p.opContext(ctx, 0)
		defer cancel()
		var err error
		version, err = tx.Commit(cctx)
		return err
	})
	return version, err
}

// abort aborts tx, best effort: if it fails, the lock expires after its
// ttl, which also discards its writes.
func (r *restrictor) abort(ctx context.Context, p *process, tx *client.Tx) {
	actx, cancel := p.opContext(context.WithoutCancel(ctx), 0)
	defer cancel()
	_ = tx.Abort(actx)
}
