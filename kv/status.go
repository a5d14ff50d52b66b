package kv

import (
	"context"
	"slices"
	"strconv"

	"github.com/opencluster/opencluster/mvcc/ts"
	"github.com/opencluster/opencluster/rpc/ocpb"
)

// Status implements rpc/server.Backend: the registry and every group's
// configuration as this node last applied them. Now is a fresh timestamp
// on the primary and 0 elsewhere.
func (n *Node) Status(ctx context.Context, _ *ocpb.StatusRequest) (*ocpb.StatusResponse, error) {
	var now ts.Timestamp
	if local, _, _ := n.Route(); local {
		var err error
		if now, err = n.tso.now(ctx); err != nil {
			return nil, err
		}
	}
	out := &ocpb.StatusResponse{
		NodeId: idString(n.id), ClusterId: n.cluster, BucketCount: uint32(n.buckets), Now: uint64(now),
	}
	for _, rec := range n.registry() {
		addr := rec.GetAddr()
		if rec.GetNodeId() == n.id && n.cfg.AdvertiseAddr != "" {
			addr = n.cfg.AdvertiseAddr
		}
		m := &ocpb.Member{Id: idString(rec.GetNodeId()), Addr: addr, Alive: n.alive(rec.GetNodeId()), State: nodeState(rec)}
		if n.cfg.Directory != nil {
			m.GossipAddr = n.cfg.Directory.GossipAddr(rec.GetNodeId())
		}
		out.Members = append(out.Members, m)
	}
	for _, m := range n.metaView().state.GetMoves() {
		ms := &ocpb.MoveStatus{
			Bucket: m.GetBucket(), Kind: m.GetKind(), Reason: m.GetReason(),
			Executor: idString(m.GetExecutor()), StartedUnixMs: m.GetStartedUnixMs(),
		}
		if m.GetFrom() != 0 {
			ms.From = idString(m.GetFrom())
		}
		if m.GetTo() != 0 {
			ms.To = idString(m.GetTo())
		}
		out.Moves = append(out.Moves, ms)
	}
	leader, voters, _ := n.meta.membership()
	n.meta.mu.Lock()
	out.Meta = &ocpb.BucketStatus{Bucket: metaGroup, Applied: n.meta.mu.applied, Epoch: n.meta.mu.epoch}
	n.meta.mu.Unlock()
	for _, v := range voters {
		out.Meta.Replicas = append(out.Meta.Replicas, idString(v))
	}
	if leader != 0 {
		out.Meta.Leader = idString(leader)
	}
	table := n.placementTable()
	for _, r := range n.replicas[:n.buckets] {
		leader, voters, _ := r.membership()
		r.mu.Lock()
		applied, epoch := r.mu.applied, r.mu.epoch
		r.mu.Unlock()
		// The placement table is the cluster's record. This node's own
		// replica knows better only while it is a voter that has seen a
		// configuration at least as new: a replica moved away keeps the
		// leader and voters it knew when it left.
		if p := table[uint32(r.bucket)]; p != nil {
			member := slices.Contains(voters, n.id)
			switch {
			case p.GetEpoch() > epoch || !member:
				voters, epoch, leader = p.GetVoters(), p.GetEpoch(), p.GetLeader()
			case leader == 0:
				leader = p.GetLeader()
			}
		}
		bs := &ocpb.BucketStatus{Bucket: uint32(r.bucket), Applied: applied, Epoch: epoch}
		for _, v := range voters {
			bs.Replicas = append(bs.Replicas, idString(v))
		}
		if leader != 0 {
			bs.Leader = idString(leader)
		}
		out.Buckets = append(out.Buckets, bs)
	}
	return out, nil
}

func idString(id uint64) string { return strconv.FormatUint(id, 10) }
