package kv

import (
	"context"

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
// Every ResolveKeys is therefore proposed on the bucket's leader, through
// bucketPropose (locally, or by RPC to it): a follower could forward it
// through Raft more cheaply, but its proposer would not see the leader's
// waiters, which would then take the keys in a round of their own.
//
// A waiter that gives up (its wait timed out, its request was cancelled)
// still takes what it was handed before it returns, since reclaim waits
// for the claim's outcome; its error then aborts the restrictive lock,
// and the abort resolves every key of its record, the handed ones
// included. A grant whose proposal outcome its proposer never learned (an
// error, so the offer settled as not granted) is an orphan the orphan
// sweeper releases, as for a LockKeys whose coordinator gave up.

// proposeLed proposes cmd on r, a group this node leads. A ResolveKeys
// that carries no handoffs yet takes the offers of the keys it releases.
func (n *Node) proposeLed(ctx context.Context, r *replica, cmd *cmdpb.Command) (*cmdpb.Result, error) {
	body, ok := cmd.Body.(*cmdpb.Command_ResolveKeys)
	if !ok || len(body.ResolveKeys.Handoffs) > 0 {
		return r.propose(ctx, cmd)
	}
	var offers []*handoffOffer[*cmdpb.LockKeys]
	for _, k := range body.ResolveKeys.Keys {
		if o := n.keyHandoffs.claim(string(k)); o != nil {
			offers = append(offers, o)
		}
	}
	if len(offers) == 0 {
		return r.propose(ctx, cmd)
	}
	rk := body.ResolveKeys
	with := &cmdpb.ResolveKeys{Name: rk.Name, Code: rk.Code, Keys: rk.Keys, Commit: rk.Commit, CommitTs: rk.CommitTs, Writes: rk.Writes}
	for _, o := range offers {
		with.Handoffs = append(with.Handoffs, o.request)
	}
	res, err := r.propose(ctx, &cmdpb.Command{Body: &cmdpb.Command_ResolveKeys{ResolveKeys: with}})
	for i, o := range offers {
		var grant *cmdpb.Result
		if err == nil && i < len(res.KeyHandoffs) {
			grant = res.KeyHandoffs[i]
			if grant.Count > 0 {
				n.metrics.keyHandoffs.Inc()
			}
		}
		o.settle(grant)
	}
	return res, err
}
