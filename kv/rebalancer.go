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

// rebalanceLoop is the rebalancer's goroutine.
func (n *Node) rebalanceLoop() {
	planner, err := rebalance.NewPlanner(rebalance.Config{
		Replicas: n.cfg.Replicas, DeadAfter: n.cfg.DeadAfter, MaxMoves: 16, MaxMovesPerNode: 4,
	})
	if err != nil {
		n.log.Error("rebalancer disabled", "err", err)
		return
	}
	downSince := make(map[uint64]time.Time)
	recent := make(map[uint32]time.Time) // buckets moved lately: their placement report may lag
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
			clear(downSince) // a new meta leader starts the clocks afresh: never early
			continue
		}
		view := n.rebalanceView(downSince, recent)
		plan, err := planner.Plan(view)
		if err != nil {
			n.log.Warn("planning moves", "err", err)
			continue
		}
		if stale := n.staleMoves(); len(stale) > 0 {
			ctx, cancel := context.WithTimeout(n.bg, 2*time.Second)
			if _, err := n.metaPropose(ctx, &cmdpb.Command{Body: &cmdpb.Command_RecordMove{RecordMove: &cmdpb.RecordMove{Done: stale}}}); err != nil {
				n.log.Debug("dropping stale move records", "err", err)
			}
			cancel()
		}
		moved = n.runMoves(plan.Moves, recent) > 0
	}
}

// maxConcurrentMoves bounds the moves the rebalancer runs at once; the
// planner bounds them per node (MaxMovesPerNode) and in all (MaxMoves).
const maxConcurrentMoves = 8

// runMoves runs a plan's moves, a few at a time, and returns how many
// succeeded. The moves of one plan touch distinct buckets, so they may run
// in any order.
func (n *Node) runMoves(moves []rebalance.Move, recent map[uint32]time.Time) int {
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
			err := n.runMove(ctx, m)
			done()
			mu.Lock()
			defer mu.Unlock()
			recent[uint32(m.Bucket)] = time.Now()
			if err != nil {
				n.log.Warn("rebalancing", "move", m.String(), "err", err)
				return
			}
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

// rebalanceView reads the cluster as the planner sees it.
func (n *Node) rebalanceView(downSince map[uint64]time.Time, recent map[uint32]time.Time) *rebalance.View {
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
			delete(downSince, id)
		} else {
			if _, ok := downSince[id]; !ok {
				downSince[id] = now
			}
			node.DownFor = now.Sub(downSince[id])
		}
		v.Nodes = append(v.Nodes, node)
	}
	moving := make(map[uint32]bool) // moves in progress, by any executor
	for _, m := range n.metaView().state.GetMoves() {
		moving[m.GetBucket()] = true
	}
	table := n.placementTable()
	for b := range n.buckets {
		p := table[uint32(b)]
		if p == nil {
			continue // not reported yet: leave it to its leader
		}
		bk := rebalance.Bucket{ID: rebalance.BucketID(b), Leader: rebalance.NodeID(p.GetLeader())}
		for _, id := range p.GetVoters() {
			bk.Replicas = append(bk.Replicas, rebalance.Replica{Node: rebalance.NodeID(id)})
		}
		for _, id := range p.GetLearners() {
			bk.Replicas = append(bk.Replicas, rebalance.Replica{Node: rebalance.NodeID(id), Learner: true})
		}
		if at, ok := recent[uint32(b)]; moving[uint32(b)] || ok && now.Sub(at) < 3*n.cfg.RebalanceInterval {
			bk.Busy = true
		}
		v.Buckets = append(v.Buckets, bk)
	}
	return v
}

// runMove carries out one planned move.
func (n *Node) runMove(ctx context.Context, m rebalance.Move) error {
	b := mvcc.Bucket(m.Bucket)
	if int(b) >= n.buckets {
		return fmt.Errorf("%w: no bucket %d", ErrInvalid, b)
	}
	switch m.Kind {
	case rebalance.MoveReplica:
		_, err := n.moveReplica(ctx, b, uint64(m.From), uint64(m.To))
		return err
	case rebalance.AddReplica:
		return n.addReplica(ctx, b, uint64(m.To))
	case rebalance.RemoveReplica:
		return n.removeReplica(ctx, b, uint64(m.From), uint64(m.NewLeader))
	case rebalance.TransferLeader:
		_, err := n.bucketChange(ctx, b, &cmdpb.BucketChangeRequest{TransferTo: uint64(m.To)})
		return err
	}
	return fmt.Errorf("%w: move kind %v", ErrInvalid, m.Kind)
}

// addReplica adds a voter on node to: learner, catch-up, promotion.
func (n *Node) addReplica(ctx context.Context, b mvcc.Bucket, to uint64) error {
	st, err := n.bucketChange(ctx, b, &cmdpb.BucketChangeRequest{})
	if err != nil {
		return err
	}
	if slices.Contains(st.GetVoters(), to) {
		return nil
	}
	if _, err := n.addCaughtUpLearner(ctx, b, to, st); err != nil {
		return err
	}
	_, err = n.bucketChange(ctx, b, confChange(b, raftpb.ConfChangeAddNode, to))
	return err
}

// removeReplica removes node from's replica, handing leadership to
// newLeader first if from leads.
func (n *Node) removeReplica(ctx context.Context, b mvcc.Bucket, from, newLeader uint64) error {
	st, err := n.bucketChange(ctx, b, &cmdpb.BucketChangeRequest{})
	if err != nil {
		return err
	}
	if st.GetLeader() == from && newLeader != 0 {
		if _, err := n.bucketChange(ctx, b, &cmdpb.BucketChangeRequest{TransferTo: newLeader}); err != nil {
			return err
		}
	}
	_, err = n.bucketChange(ctx, b, confChange(b, raftpb.ConfChangeRemoveNode, from))
	return err
}
