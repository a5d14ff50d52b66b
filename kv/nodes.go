package kv

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/opencluster/opencluster/mvcc"
	"github.com/opencluster/opencluster/rpc/cmdpb"
	"github.com/opencluster/opencluster/rpc/ocpb"
)

// Operator commands on nodes and leaderships, and the record of moves in
// progress. A node's state lives in its registry record (meta group):
// draining nodes receive nothing and are emptied by the rebalancer;
// removed nodes count as dead at once and may never rejoin. Moves in
// progress are recorded in the meta state too, so that every node's
// Status can show them; a record whose executor died is dropped by the
// rebalancer (the planner then finishes or undoes the move's remains).

// NodeState is a registry node's operator state, as Status names it.
func nodeState(rec *cmdpb.NodeRecord) string {
	switch {
	case rec.GetRemoved():
		return "removed"
	case rec.GetDraining():
		return "draining"
	}
	return "active"
}

// parseNodeID reads a node id as Status prints it.
func parseNodeID(s, what string) (uint64, error) {
	id, err := strconv.ParseUint(s, 10, 64)
	if err != nil || id == 0 {
		return 0, fmt.Errorf("%w: %s %q is not a node id", ErrInvalid, what, s)
	}
	return id, nil
}

// record returns the registry record of node id, or nil.
func (n *Node) record(id uint64) *cmdpb.NodeRecord {
	for _, rec := range n.registry() {
		if rec.GetNodeId() == id {
			return rec
		}
	}
	return nil
}

// DrainNode implements rpc/server.Backend.
func (n *Node) DrainNode(ctx context.Context, req *ocpb.DrainNodeRequest) (*ocpb.DrainNodeResponse, error) {
	if resp, done, err := onPrimary[*ocpb.DrainNodeResponse](ctx, n, "DrainNode", req); done {
		return resp, err
	}
	id, rec, err := n.member(req.GetNodeId())
	if err != nil {
		return nil, err
	}
	if rec.GetRemoved() {
		return nil, fmt.Errorf("%w: node %d was removed", ErrInvalid, id)
	}
	cmd := &cmdpb.SetNodeState{NodeId: id, Draining: !req.GetUndo()}
	if err := n.setNodeState(ctx, cmd); err != nil {
		return nil, err
	}
	n.log.Info("node state set", "node", id, "draining", cmd.Draining)
	return &ocpb.DrainNodeResponse{}, nil
}

// RemoveNode implements rpc/server.Backend. A live node must hold no
// replica (drain it first): removing it otherwise would cut the
// replication of its buckets for no reason. A down node may be removed as
// it is: its replicas are lost already, and removal re-creates them now
// instead of after DeadAfter.
func (n *Node) RemoveNode(ctx context.Context, req *ocpb.RemoveNodeRequest) (*ocpb.RemoveNodeResponse, error) {
	if resp, done, err := onPrimary[*ocpb.RemoveNodeResponse](ctx, n, "RemoveNode", req); done {
		return resp, err
	}
	id, rec, err := n.member(req.GetNodeId())
	if err != nil {
		return nil, err
	}
	if rec.GetRemoved() {
		return &ocpb.RemoveNodeResponse{}, nil
	}
	if n.alive(id) {
		var held []string
		for _, p := range n.Placement() {
			if slices.Contains(p.GetVoters(), id) || slices.Contains(p.GetLearners(), id) {
				held = append(held, fmt.Sprint("bucket ", p.GetBucket()))
			}
		}
		if _, voters, learners := n.meta.membership(); slices.Contains(voters, id) || slices.Contains(learners, id) {
			held = append(held, "the meta group")
		}
		if !rec.GetDraining() || len(held) > 0 {
			return nil, fmt.Errorf("%w: node %d is alive and holds %d replicas %v (draining: %v); drain it first (`node drain %d`) and remove it once it is empty",
				ErrPrecondition, id, len(held), held, rec.GetDraining(), id)
		}
	}
	if err := n.setNodeState(ctx, &cmdpb.SetNodeState{NodeId: id, Draining: true, Removed: true}); err != nil {
		return nil, err
	}
	n.log.Info("node removed", "node", id)
	return &ocpb.RemoveNodeResponse{}, nil
}

// member returns the registry record of the node with id s (as Status
// prints it), or ErrInvalid.
func (n *Node) member(s string) (uint64, *cmdpb.NodeRecord, error) {
	id, err := parseNodeID(s, "node")
	if err != nil {
		return 0, nil, err
	}
	rec := n.record(id)
	if rec == nil {
		return 0, nil, fmt.Errorf("%w: node %d is not a member", ErrInvalid, id)
	}
	return id, rec, nil
}

// setNodeState records an operator's node state in the registry.
func (n *Node) setNodeState(ctx context.Context, c *cmdpb.SetNodeState) error {
	_, err := n.metaPropose(ctx, &cmdpb.Command{Body: &cmdpb.Command_SetNodeState{SetNodeState: c}})
	return err
}

// applySetNodeState applies SetNodeState (meta group).
func applySetNodeState(state *cmdpb.MetaState, c *cmdpb.SetNodeState) {
	for _, rec := range state.Nodes {
		if rec.NodeId == c.NodeId && !rec.Removed {
			rec.Draining, rec.Removed = c.Draining || c.Removed, c.Removed
		}
	}
}

// TransferLeader implements rpc/server.Backend.
func (n *Node) TransferLeader(ctx context.Context, req *ocpb.TransferLeaderRequest) (*ocpb.TransferLeaderResponse, error) {
	to, err := parseNodeID(req.GetTo(), "to")
	if err != nil {
		return nil, err
	}
	if int(req.GetBucket()) >= n.buckets {
		return nil, fmt.Errorf("%w: bucket %d, the cluster has %d", ErrInvalid, req.GetBucket(), n.buckets)
	}
	b := mvcc.Bucket(req.GetBucket())
	ctx, cancel := context.WithTimeout(ctx, moveTimeout)
	defer cancel()
	st, err := n.bucketChange(ctx, b, &cmdpb.BucketChangeRequest{})
	if err != nil {
		return nil, err
	}
	if !slices.Contains(st.GetVoters(), to) {
		return nil, fmt.Errorf("%w: node %d holds no voter of bucket %d (voters %v)", ErrInvalid, to, b, st.GetVoters())
	}
	if !n.alive(to) {
		return nil, fmt.Errorf("%w: node %d is down", ErrUnavailable, to)
	}
	done := n.trackMove(ctx, &cmdpb.MoveRecord{Bucket: uint32(b), Kind: "transfer-leader", From: st.GetLeader(), To: to, Reason: "manual"})
	defer done()
	if st, err = n.bucketChange(ctx, b, &cmdpb.BucketChangeRequest{TransferTo: to}); err != nil {
		return nil, err
	}
	return &ocpb.TransferLeaderResponse{Leader: idString(st.GetLeader())}, nil
}

// moveSeq numbers this node's move records.
var moveSeq atomic.Uint64

// trackMove records a move in progress in the meta state, and returns the
// function that drops the record. Both are best effort: a move does not
// fail because its record could not be written.
func (n *Node) trackMove(ctx context.Context, rec *cmdpb.MoveRecord) (done func()) {
	rec.StartedUnixMs = time.Now().UnixMilli()
	rec.Id = fmt.Sprintf("%d-%d-%d", n.id, rec.StartedUnixMs, moveSeq.Add(1))
	rec.Executor = n.id
	n.runningMoves.Lock()
	if n.runningMoves.ids == nil {
		n.runningMoves.ids = make(map[string]bool)
	}
	n.runningMoves.ids[rec.Id] = true
	n.runningMoves.Unlock()
	record := func(ctx context.Context, c *cmdpb.RecordMove) {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if _, err := n.metaPropose(ctx, &cmdpb.Command{Body: &cmdpb.Command_RecordMove{RecordMove: c}}); err != nil {
			n.log.Debug("recording a move", "move", rec.GetId(), "err", err)
		}
	}
	record(ctx, &cmdpb.RecordMove{Start: rec})
	return func() {
		n.runningMoves.Lock()
		delete(n.runningMoves.ids, rec.GetId())
		n.runningMoves.Unlock()
		n.goBackground(func(ctx context.Context) { record(ctx, &cmdpb.RecordMove{Done: []string{rec.GetId()}}) })
	}
}

// applyRecordMove applies RecordMove (meta group).
func applyRecordMove(state *cmdpb.MetaState, c *cmdpb.RecordMove) {
	state.Moves = slices.DeleteFunc(state.Moves, func(m *cmdpb.MoveRecord) bool { return slices.Contains(c.GetDone(), m.GetId()) })
	if s := c.GetStart(); s != nil {
		state.Moves = append(state.Moves, s)
	}
}

// staleMoves returns the ids of recorded moves that no executor will
// finish: those whose executor is this node and that it is not running
// (it restarted since, or the meta group was unavailable when the move
// ended and its Done was lost), and, unless ownOnly, those whose executor
// is down. The meta leader drops both kinds; every other node drops only
// its own, since the leader cannot tell another live node's finished move
// from one still running.
func (n *Node) staleMoves(ownOnly bool) []string {
	n.runningMoves.Lock()
	defer n.runningMoves.Unlock()
	var out []string
	for _, m := range n.metaView().state.GetMoves() {
		own := m.GetExecutor() == n.id && !n.runningMoves.ids[m.GetId()]
		if own || !ownOnly && !n.alive(m.GetExecutor()) {
			out = append(out, m.GetId())
		}
	}
	return out
}

// dropStaleMoves proposes the removal of the records staleMoves returns.
func (n *Node) dropStaleMoves(ownOnly bool) {
	stale := n.staleMoves(ownOnly)
	if len(stale) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(n.bg, 2*time.Second)
	defer cancel()
	if _, err := n.metaPropose(ctx, &cmdpb.Command{Body: &cmdpb.Command_RecordMove{RecordMove: &cmdpb.RecordMove{Done: stale}}}); err != nil {
		n.log.Debug("dropping stale move records", "err", err)
	}
}
