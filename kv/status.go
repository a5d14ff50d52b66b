package kv

import (
	"context"
	"strconv"

	"github.com/opencluster/opencluster/rpc/ocpb"
)

// Status implements rpc/server.Backend.
func (n *Node) Status(ctx context.Context, _ *ocpb.StatusRequest) (*ocpb.StatusResponse, error) {
	now, err := n.tso.now(ctx)
	if err != nil {
		return nil, err
	}
	id := strconv.FormatUint(n.id, 10)
	out := &ocpb.StatusResponse{
		NodeId: id, ClusterId: n.cluster, BucketCount: uint32(n.buckets), Now: uint64(now),
		Members: []*ocpb.Member{{Id: id, Addr: n.cfg.AdvertiseAddr, Alive: true}},
	}
	for _, r := range n.replicas[:n.buckets] {
		r.mu.Lock()
		applied, leader := r.mu.applied, r.mu.leader
		r.mu.Unlock()
		bs := &ocpb.BucketStatus{Bucket: uint32(r.bucket), Replicas: []string{id}, Applied: applied}
		if leader {
			bs.Leader = id
		}
		out.Buckets = append(out.Buckets, bs)
	}
	return out, nil
}
