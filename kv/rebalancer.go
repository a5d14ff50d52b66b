package kv

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/opencluster/opencluster/mvcc"
	"github.com/opencluster/opencluster/rebalance"
	"github.com/opencluster/opencluster/rpc/cmdpb"
)

// The rebalancer runs on the meta group's leader when Config.Rebalance is
// set: every RebalanceInterval it builds a rebalance.View from the
// registry (draining and removed nodes included), the failure detector and
// the placement table, asks the planner for moves and runs them a few at a
// time (moveReplica and its parts), each recorded in the meta state while
// it runs (Status "moves"). It owns bucket placement and leader balance
// then; the simple growth and leader preferences of maintain step aside.
// The meta group still grows in maintain, off draining and removed nodes.

// rebalancerState is what the rebalancer remembers between rounds.
type rebalancerState struct {
	// downSince is when each down node was first seen down.
	downSince map[uint64]time.Time
	// recent are the buckets moved lately: busy for a round.
	recent map[uint32]time.Time
	// expected is what this executor's own moves left, by bucket. The
	// placement table hears of a new leader or configuration only when
	// the bucket's leader reports it, a moment later; a plan made on the
	// stale report would count a leadership on the node it just left and
	// move leaderships back and forth.
	expected map[uint32]expectedPlacement
}

// expectedPlacement is a bucket's state after one of this executor's
// moves, and the placement table's term for the bucket when it ended: a
// report at a later term is newer than the move.
type expectedPlacement struct {
	state *cmdpb.BucketChangeResponse
	term  uint64
	at    time.Time
}

// rebalanceLoop is the rebalancer's goroutine.
func (n *Node) rebalanceLoop() {
	planner, err := rebalance.NewPlanner(rebalance.Config{
		Replicas: n.cfg.Replicas, DeadAfter: n.cfg.DeadAfter, MaxMoves: 16, MaxMovesPerNode: 4,
	})
	if err != nil {
		n.log.Error("rebalancer disabled", "err", err)
		return
	}
	rs := &rebalancerState{
		downSince: make(map[uint64]time.Time),
		recent:    make(map[uint32]time.Time),
		expected:  make(map[uint32]expectedPlacement),
	}
	t := time.NewTicker(n.cfg.RebalanceInterval)
	defer t.Stop()
	moved := false
	for {
		if !moved { // after a productive round, plan again at once
			select {
			case <-n.stopper:
				return
			case <-t.C:
			}
		}
		moved = false
		if !n.tso.isReady() {
			n.dropStaleMoves(true)
			clear(rs.downSince) // a new meta leader starts the clocks afresh: never early
			clear(rs.expected)
			continue
		}
		view := n.rebalanceView(rs)
		plan, err := planner.Plan(view)
		if err != nil {
			n.log.Warn("planning moves", "err", err)
			continue
		}
		n.dropStaleMoves(false)
		moved = n.runMoves(plan.Moves, rs) > 0
	}
}

// maxConcurrentMoves bounds the moves the rebalancer runs at once; the
// planner bounds them per node (MaxMovesPerNode) and in all (MaxMoves).
const maxConcurrentMoves = 8

// runMoves runs a plan's moves, a few at a time, and returns how many
// succeeded. The moves of one plan touch distinct buckets, so they may run
// in any order.
func (n *Node) runMoves(moves []rebalance.Move, rs *rebalancerState) int {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		ok   int
		sema = make(chan struct{}, maxConcurrentMoves)
	)
loop:
	for _, m := range moves {
		select {
		case <-n.stopper:
			break loop
		case sema <- struct{}{}:
		}
		wg.Go(func() {
			defer func() { <-sema }()
			ctx, cancel := context.WithTimeout(n.bg, 2*moveTimeout)
			defer cancel()
			done := n.trackMove(ctx, moveRecord(m))
			st, err := n.runMove(ctx, m)
			done()
			b := uint32(m.Bucket)
			mu.Lock()
			defer mu.Unlock()
			rs.recent[b] = time.Now()
			if err != nil {
				n.log.Warn("rebalancing", "move", m.String(), "err", err)
				return
			}
			rs.expected[b] = expectedPlacement{state: st, term: n.placementTable()[b].GetTerm(), at: time.Now()}
			n.log.Info("rebalanced", "move", m.String())
			ok++
		})
	}
	wg.Wait()
	return ok
}

// moveRecord describes a planned move for Status.
func moveRecord(m rebalance.Move) *cmdpb.MoveRecord {
	rec := &cmdpb.MoveRecord{Bucket: uint32(m.Bucket), From: uint64(m.From), To: uint64(m.To), Reason: m.Reason.String()}
	switch m.Kind {
	case rebalance.MoveReplica:
		rec.Kind = "move"
	case rebalance.AddReplica:
		rec.Kind = "add"
	case rebalance.RemoveReplica:
		rec.Kind = "remove"
	case rebalance.TransferLeader:
		rec.Kind = "transfer-leader"
	}
	return rec
}

// rebalanceView reads the cluster as the planner sees it: the registry,
// the failure detector, and the placement table corrected by what this
// executor's own moves left (rs.expected) until the table catches up.
func (n *Node) rebalanceView(rs *rebalancerState) *rebalance.View {
	now := time.Now()
	v := &rebalance.View{}
	for _, rec := range n.registry() {
		id := rec.GetNodeId()
		node := rebalance.Node{ID: rebalance.NodeID(id), Live: n.alive(id), Draining: rec.GetDraining()}
		if rec.GetRemoved() {
			// Gone for good: dead now, whatever the failure detector says.
			node.Live, node.DownFor = false, n.cfg.DeadAfter
			v.Nodes = append(v.Nodes, node)
			continue
		}
		if node.Live {
			delete(rs.downSince, id)
		} else {
			if _, ok := rs.downSince[id]; !ok {
				rs.downSince[id] = now
			}
			node.DownFor = now.Sub(rs.downSince[id])
		}
		v.Nodes = append(v.Nodes, node)
	}
	moving := make(map[uint32]bool) // moves in progress, by any executor
	for _, m := range n.metaView().state.GetMoves() {
		moving[m.GetBucket()] = true
	}
	table := n.placementTable()
	expectFor := max(10*n.cfg.RebalanceInterval, 5*time.Second)
	for b := range n.buckets {
		p := table[uint32(b)]
		var voters, learners []uint64
		var leader uint64
		if p != nil {
			voters, learners, leader = p.GetVoters(), p.GetLearners(), p.GetLeader()
		}
		if e, ok := rs.expected[uint32(b)]; ok {
			switch {
			case now.Sub(e.at) > expectFor || p.GetEpoch() >= e.state.GetEpoch() && p.GetTerm() > e.term:
				delete(rs.expected, uint32(b)) // the table caught up (or never will)
			default:
				if p.GetEpoch() < e.state.GetEpoch() {
					voters, learners = e.state.GetVoters(), e.state.GetLearners()
				}
				if p.GetTerm() <= e.term {
					leader = e.state.GetLeader()
				}
			}
		}
		if voters == nil {
			continue // not reported yet: leave it to its leader
		}
		bk := rebalance.Bucket{ID: rebalance.BucketID(b), Leader: rebalance.NodeID(leader)}
		for _, id := range voters {
			bk.Replicas = append(bk.Replicas, rebalance.Replica{Node: rebalance.NodeID(id)})
		}
		for _, id := range learners {
			if !slices.Contains(voters, id) {
				bk.Replicas = append(bk.Replicas, rebalance.Replica{Node: rebalance.NodeID(id), Learner: true})
			}
		}
		// A bucket moved in the last round rests for one (rs.expected
		// stands in for its report meanwhile), so that a failed move is
		// not retried at once.
		if at, ok := rs.recent[uint32(b)]; moving[uint32(b)] || ok && now.Sub(at) < n.cfg.RebalanceInterval/2 {
			bk.Busy = true
		}
		v.Buckets = append(v.Buckets, bk)
	}
	return v
}

// runMove carries out one planned move and returns the bucket's state
// after it, as its leader reported it.
func (n *Node) runMove(ctx context.Context, m rebalance.Move) (*cmdpb.BucketChangeResponse, error) {
	b := mvcc.Bucket(m.Bucket)
	if int(b) >= n.buckets {
		return nil, fmt.Errorf("%w: no bucket %d", ErrInvalid, b)
	}
	switch m.Kind {
	case rebalance.MoveReplica:
		return n.moveReplica(ctx, b, uint64(m.From), uint64(m.To), uint64(m.NewLeader))
	case rebalance.AddReplica:
		return n.addReplica(ctx, b, uint64(m.To))
	case rebalance.RemoveReplica:
		return n.removeReplica(ctx, b, uint64(m.From), uint64(m.NewLeader))
	case rebalance.TransferLeader:
		return n.bucketChange(ctx, b, &cmdpb.BucketChangeRequest{TransferTo: uint64(m.To)})
	}
	return nil, fmt.Errorf("%w: move kind %v", ErrInvalid, m.Kind)
}

// addReplica adds a voter on node to: learner, catch-up, promotion.
func (n *Node) addReplica(ctx context.Context, b mvcc.Bucket, to uint64) (*cmdpb.BucketChangeResponse, error) {
	st, err := n.bucketChange(ctx, b, &cmdpb.BucketChangeRequest{})
	if err != nil {
		return nil, err
	}
	if slices.Contains(st.GetVoters(), to) {
		return st, nil
	}
	if _, err := n.addCaughtUpLearner(ctx, b, to, st); err != nil {
		return nil, err
	}
	return n.bucketChange(ctx, b, confChange(b, raftpb.ConfChangeAddNode, to))
}

// removeReplica removes node from's replica, handing leadership to
// newLeader first if from leads.
func (n *Node) removeReplica(ctx context.Context, b mvcc.Bucket, from, newLeader uint64) (*cmdpb.BucketChangeResponse, error) {
	st, err := n.bucketChange(ctx, b, &cmdpb.BucketChangeRequest{})
	if err != nil {
		return nil, err
	}
	if st.GetLeader() == from && newLeader != 0 {
		if _, err := n.bucketChange(ctx, b, &cmdpb.BucketChangeRequest{TransferTo: newLeader}); err != nil {
			return nil, err
		}
	}
	return n.bucketChange(ctx, b, confChange(b, raftpb.ConfChangeRemoveNode, from))
}
