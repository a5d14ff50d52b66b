package kv

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/opencluster/opencluster/mvcc"
	"github.com/opencluster/opencluster/rpc/cmdpb"
	"github.com/opencluster/opencluster/rpc/ocpb"
)

// Replica moves. A move of bucket b from node A to node C (design
// anchors §4.2): C joins as a learner and catches up by snapshot; if A
// leads, leadership goes to another voter; then C and A change places in
// one joint configuration, which Raft leaves by itself. The bucket's
// records (locks, provisional writes, dedup records) are bucket data, so
// they move with it. A then deletes its copy once the bucket's leader
// confirms that the group left it (replica_gc.go).

// moveTimeout bounds each wait of a move (catch-up, a configuration
// change, a leadership transfer).
const moveTimeout = time.Minute

// MoveReplica implements rpc/server.Backend.
func (n *Node) MoveReplica(ctx context.Context, req *ocpb.MoveReplicaRequest) (*ocpb.MoveReplicaResponse, error) {
	from, err1 := strconv.ParseUint(req.GetFrom(), 10, 64)
	to, err2 := strconv.ParseUint(req.GetTo(), 10, 64)
	switch {
	case err1 != nil || err2 != nil || from == 0 || to == 0:
		return nil, fmt.Errorf("%w: from and to must be node ids", ErrInvalid)
	case from == to:
		return nil, fmt.Errorf("%w: from and to are the same node", ErrInvalid)
	case int(req.GetBucket()) >= n.buckets:
		return nil, fmt.Errorf("%w: bucket %d, the cluster has %d", ErrInvalid, req.GetBucket(), n.buckets)
	}
	if n.record(to) == nil || !n.alive(to) {
		return nil, fmt.Errorf("%w: node %d is not a live member", ErrInvalid, to)
	}
	b := mvcc.Bucket(req.GetBucket())
	done := n.trackMove(ctx, &cmdpb.MoveRecord{Bucket: uint32(b), Kind: "move", From: from, To: to, Reason: "manual"})
	defer done()
	st, err := n.moveReplica(ctx, b, from, to, 0)
	if err != nil {
		return nil, err
	}
	return &ocpb.MoveReplicaResponse{Epoch: st.GetEpoch()}, nil
}

// moveReplica moves bucket b's voter on node from to node to and returns
// the bucket's state then. If from leads, leadership goes to newLeader
// when it is a caught-up voter (the planner's choice), else to the first
// caught-up voter; a newLeader that is to itself gets it after the swap.
func (n *Node) moveReplica(ctx context.Context, b mvcc.Bucket, from, to, newLeader uint64) (*cmdpb.BucketChangeResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, 4*moveTimeout)
	defer cancel()
	st, err := n.bucketChange(ctx, b, &cmdpb.BucketChangeRequest{})
	if err != nil {
		return nil, err
	}
	switch {
	case !slices.Contains(st.GetVoters(), from):
		return nil, fmt.Errorf("%w: node %d holds no voter of bucket %d", ErrInvalid, from, b)
	case slices.Contains(st.GetVoters(), to):
		return nil, fmt.Errorf("%w: node %d already holds a voter of bucket %d", ErrInvalid, to, b)
	}
	if st, err = n.addCaughtUpLearner(ctx, b, to, st); err != nil {
		return nil, err
	}
	if st.GetLeader() == from {
		caughtUp := func(v uint64) bool {
			return v != from && slices.Contains(st.GetVoters(), v) && st.GetMatch()[v] >= st.GetCommit()
		}
		var other uint64
		if caughtUp(newLeader) {
			other = newLeader
		}
		for _, v := range st.GetVoters() {
			if other == 0 && caughtUp(v) {
				other = v
			}
		}
		if other == 0 {
			return nil, fmt.Errorf("%w: no caught-up voter to take over bucket %d from node %d", ErrUnavailable, b, from)
		}
		if _, err := n.bucketChange(ctx, b, &cmdpb.BucketChangeRequest{TransferTo: other}); err != nil {
			return nil, err
		}
	}
	swap := &raftpb.ConfChangeV2{Changes: []*raftpb.ConfChangeSingle{
		{Type: raftpb.ConfChangeAddNode.Enum(), NodeId: new(to)},
		{Type: raftpb.ConfChangeRemoveNode.Enum(), NodeId: new(from)},
	}}
	raw, err := proto.Marshal(swap)
	if err != nil {
		return nil, err
	}
	if _, err := n.bucketChange(ctx, b, &cmdpb.BucketChangeRequest{ConfChange: raw}); err != nil {
		return nil, err
	}
	st, err = n.awaitBucket(ctx, b, "the swap to settle", func(st *cmdpb.BucketChangeResponse) bool {
		return !st.GetJoint() && slices.Contains(st.GetVoters(), to) && !slices.Contains(st.GetVoters(), from)
	})
	if err != nil {
		return nil, err
	}
	if newLeader == to && st.GetLeader() != to {
		if st, err = n.bucketChange(ctx, b, &cmdpb.BucketChangeRequest{TransferTo: to}); err != nil {
			return nil, err
		}
	}
	n.log.Info("moved a replica", "bucket", b, "from", from, "to", to, "epoch", st.GetEpoch())
	return st, nil
}

// addCaughtUpLearner adds a learner of bucket b on node to (unless st, the
// bucket's state, has one there) and waits until it caught up, by snapshot
// as the log starts after it. It returns the bucket's state then.
func (n *Node) addCaughtUpLearner(ctx context.Context, b mvcc.Bucket, to uint64, st *cmdpb.BucketChangeResponse) (*cmdpb.BucketChangeResponse, error) {
	if !slices.Contains(st.GetLearners(), to) {
		if _, err := n.bucketChange(ctx, b, confChange(b, raftpb.ConfChangeAddLearnerNode, to)); err != nil {
			return nil, err
		}
	}
	return n.awaitBucket(ctx, b, "the new replica to catch up", func(st *cmdpb.BucketChangeResponse) bool {
		return st.GetMatch()[to] >= st.GetCommit() && st.GetCommit() > 0
	})
}

func confChange(b mvcc.Bucket, typ raftpb.ConfChangeType, node uint64) *cmdpb.BucketChangeRequest {
	raw, err := proto.Marshal(&raftpb.ConfChangeV2{Changes: []*raftpb.ConfChangeSingle{{Type: typ.Enum(), NodeId: new(node)}}})
	if err != nil {
		panic(fmt.Sprintf("kv: marshal conf change: %v", err))
	}
	return &cmdpb.BucketChangeRequest{Group: uint32(b), ConfChange: raw}
}

// awaitBucket polls bucket b's state on its leader until done holds.
func (n *Node) awaitBucket(ctx context.Context, b mvcc.Bucket, what string, done func(*cmdpb.BucketChangeResponse) bool) (*cmdpb.BucketChangeResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, moveTimeout)
	defer cancel()
	for {
		st, err := n.bucketChange(ctx, b, &cmdpb.BucketChangeRequest{})
		if err == nil && done(st) {
			return st, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: bucket %d: waiting for %s: %w (last: %v)", ErrUnavailable, b, what, ctx.Err(), err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// bucketChange runs a BucketChange on bucket b's leader, following the
// leadership while it moves.
func (n *Node) bucketChange(ctx context.Context, b mvcc.Bucket, req *cmdpb.BucketChangeRequest) (*cmdpb.BucketChangeResponse, error) {
	req.Group = uint32(b)
	for {
		r := n.replicas[b]
		leader, err := n.leaderOf(ctx, r)
		var st *cmdpb.BucketChangeResponse
		if err == nil {
			if leader == 0 {
				st, err = n.ServeBucketChange(ctx, req)
			} else {
				st, err = n.cfg.Remote.Change(ctx, leader, req)
			}
		}
		if err == nil || !errors.Is(err, ErrNotApplied) || ctx.Err() != nil {
			return st, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// ServeBucketChange is the leader's half of bucketChange: apply a
// configuration change (and wait until it is applied), or start a
// leadership transfer (and wait until it happened), then report the
// group's state.
func (n *Node) ServeBucketChange(ctx context.Context, req *cmdpb.BucketChangeRequest) (*cmdpb.BucketChangeResponse, error) {
	r, err := n.servedReplica(ctx, req.GetGroup())
	if err != nil {
		return nil, err
	}
	if raw := req.GetConfChange(); len(raw) > 0 {
		cc := &raftpb.ConfChangeV2{}
		if err := proto.Unmarshal(raw, cc); err != nil {
			return nil, fmt.Errorf("%w: corrupt configuration change: %v", ErrInvalid, err)
		}
		if err := n.changeConfig(ctx, r, cc); err != nil {
			return nil, err
		}
	}
	if to := req.GetTransferTo(); to != 0 && to != n.id { // to == n.id: it leads already
		if err := n.transferLeadership(ctx, r, to); err != nil {
			return nil, err
		}
	}
	var out *cmdpb.BucketChangeResponse
	err = n.onScheduler(ctx, func() error {
		st := r.rn.Status()
		out = &cmdpb.BucketChangeResponse{Leader: st.Lead, Joint: len(st.Config.Voters[1]) > 0, Commit: st.GetCommit(), Match: map[uint64]uint64{}}
		out.Voters, out.Learners = configMembers(slices.Collect(maps.Keys(st.Config.Voters[0])), slices.Collect(maps.Keys(st.Config.Voters[1])),
			slices.Collect(maps.Keys(st.Config.Learners)), slices.Collect(maps.Keys(st.Config.LearnersNext)))
		for id, pr := range st.Progress {
			out.Match[id] = pr.Match
		}
		return nil
	})
	r.mu.Lock()
	out.Epoch = r.mu.epoch
	r.mu.Unlock()
	return out, err
}

// changeConfig proposes cc and waits until a configuration change is
// applied. Raft drops a change proposed while another is pending, or
// before a new leader applied its first entry, without a word; so it
// proposes again after a few election timeouts (a change that did apply
// meanwhile makes the retry unnecessary; one still pending makes Raft drop
// the retry).
func (n *Node) changeConfig(ctx context.Context, r *replica, cc *raftpb.ConfChangeV2) error {
	electionTimeout := time.Duration(n.cfg.ElectionTicks) * n.cfg.TickInterval
	deadline := time.Now().Add(moveTimeout)
	r.mu.Lock()
	before := r.mu.epoch
	r.mu.Unlock()
	for {
		if err := n.onScheduler(ctx, func() error { return r.rn.ProposeConfChange(cc) }); err != nil {
			return fmt.Errorf("%w: %w: propose configuration change: %w", ErrUnavailable, ErrNotApplied, err)
		}
		wait := time.Now().Add(3 * electionTimeout)
		for time.Now().Before(wait) {
			r.mu.Lock()
			applied, leader := r.mu.epoch > before, r.mu.leader
			r.mu.Unlock()
			if applied {
				return nil
			}
			if !leader {
				return fmt.Errorf("%w: group %d lost leadership during a configuration change", ErrUnavailable, r.group)
			}
			if err := n.pause(ctx, 5*time.Millisecond); err != nil {
				return err
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: group %d: configuration change not applied within %s", ErrUnavailable, r.group, moveTimeout)
		}
	}
}

// transferLeadership hands r's leadership to voter to. Raft abandons a
// transfer that takes longer than an election timeout (the target was
// behind), so it asks again until leadership has left this node (for to,
// or whoever won), for up to transferTimeout.
func (n *Node) transferLeadership(ctx context.Context, r *replica, to uint64) error {
	const transferTimeout = 10 * time.Second
	electionTimeout := time.Duration(n.cfg.ElectionTicks) * n.cfg.TickInterval
	deadline := time.Now().Add(transferTimeout)
	for {
		if err := n.onScheduler(ctx, func() error { r.rn.TransferLeader(to); return nil }); err != nil {
			return err
		}
		wait := time.Now().Add(2 * electionTimeout)
		for time.Now().Before(wait) {
			r.mu.Lock()
			moved := r.mu.leaderID != 0 && r.mu.leaderID != n.id
			r.mu.Unlock()
			if moved {
				return nil
			}
			if err := n.pause(ctx, 5*time.Millisecond); err != nil {
				return err
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: group %d: leadership did not move to node %d within %s", ErrUnavailable, r.group, to, transferTimeout)
		}
	}
}

// pause waits d, or less if ctx ends or the node stops (then an error).
func (n *Node) pause(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-n.stopper:
		return fmt.Errorf("%w: node stopping", ErrUnavailable)
	case <-time.After(d):
		return nil
	}
}

// onScheduler runs fn on the scheduler goroutine and returns its error.
func (n *Node) onScheduler(ctx context.Context, fn func() error) error {
	done := make(chan error, 1)
	n.submit(func() { done <- fn() })
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-n.stopper:
		return fmt.Errorf("%w: node stopping", ErrUnavailable)
	}
}
