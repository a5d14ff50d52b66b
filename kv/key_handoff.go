package kv

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/opencluster/opencluster/rpc/cmdpb"
)

// Key-lock handoff (see handoff.go for the offer's life). A LockKeys
// waiting at the head of a key's queue on the key's leader offers itself,
// for the rest of its keys in that bucket; a ResolveKeys that this node
// proposes as the bucket's leader claims the offers of the keys it
// releases and carries them (ResolveKeys.handoffs), so a contended key
// passes from a committed or aborted lock to its next holder in the
// release's own round.
//
// Resolutions are therefore proposed on the bucket's leader, through
// bucketPropose (locally, or by RPC to it): a follower could forward them
// through Raft more cheaply, but it would not see the leader's waiters,
// which would then take the keys in a round of their own. (The orphan
// sweeper, which releases keys no lock accounts for, hands nothing over.)
//
// A waiter whose wait ends (it timed out, its request was cancelled)
// still learns what it was handed before it returns, since reclaim waits
// for the claim's outcome, which handoffTimeout keeps short. Handed all
// its keys, it goes on as if the wait had succeeded; otherwise its error
// aborts the restrictive lock, and the abort resolves every key of its
// record, the handed ones included. A grant whose proposal outcome its
// proposer never learned (an error, so the offer settled as not granted)
// is an orphan the orphan sweeper releases, as for a LockKeys whose
// coordinator gave up.

// proposeLed proposes cmd on r, a group this node leads. A ResolveKeys
// that carries no handoffs yet takes the offers of the keys it releases,
// except where a reader waits for a key the offer would take (a handoff
// would keep the key locked from one holder to the next, and the reader
// waiting until the queue drains) and except its own code's (an abort of
// a lock whose request still waits here must not hand the lock its key
// back).
func (n *Node) proposeLed(ctx context.Context, r *replica, cmd *cmdpb.Command) (*cmdpb.Result, error) {
	body, ok := cmd.Body.(*cmdpb.Command_ResolveKeys)
	if !ok || len(body.ResolveKeys.Handoffs) > 0 {
		return r.propose(ctx, cmd)
	}
	rk := body.ResolveKeys
	var offers []*handoffOffer[*cmdpb.LockKeys]
	claimable := func(lk *cmdpb.LockKeys) bool {
		if bytes.Equal(lk.Code, rk.Code) {
			return false
		}
		for _, spec := range lk.Keys { // any key the handoff would take
			if n.waits.Watching(keyResource(spec.Key)) {
				return false
			}
		}
		return true
	}
	for _, k := range rk.Keys {
		if o := n.keyHandoffs.claimIf(string(k), claimable); o != nil {
			offers = append(offers, o)
		}
	}
	if len(offers) == 0 {
		return r.propose(ctx, cmd)
	}
	var res *cmdpb.Result
	var err error
	defer func() { // settled whatever happens: their waiters wait for it
		for i, o := range offers {
			var grant *cmdpb.Result
			if err == nil && res != nil && i < len(res.KeyHandoffs) {
				grant = res.KeyHandoffs[i]
				if grant.Count > 0 {
					n.metrics.keyHandoffs.Inc()
				}
			}
			o.settle(grant)
		}
	}()
	// A copy: the caller's command may be sent again (a retried RPC) and
	// must not carry offers settled by then.
	with := proto.Clone(rk).(*cmdpb.ResolveKeys)
	for _, o := range offers {
		with.Handoffs = append(with.Handoffs, o.request)
	}
	// The waiters wait for this proposal, and a proposal made just before
	// this node lost the leadership may be dropped without a word: bound
	// it as a waiter's own round would be. A resolution that times out is
	// retried by its caller (or the resolve sweeper), without the offers.
	bound := n.handoffTimeout()
	pctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	res, err = r.propose(pctx, &cmdpb.Command{Body: &cmdpb.Command_ResolveKeys{ResolveKeys: with}})
	if err != nil && pctx.Err() != nil && ctx.Err() == nil {
		// Ambiguous: it may still apply (resolving twice changes nothing).
		err = fmt.Errorf("%w: resolution carrying key handoffs not applied within %v: %w", ErrUnavailable, bound, err)
	}
	return res, err
}

// handoffTimeout bounds a proposal that carries waiters' offers: as long
// as a request waits for a leader (three election timeouts, after which a
// lost leadership is known), and at least a second, so that a slow but
// healthy round on a starved machine is not cut short.
func (n *Node) handoffTimeout() time.Duration {
	return max(n.leaderWait(), time.Second)
}
