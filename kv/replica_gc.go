package kv

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/opencluster/opencluster/kv/raftlog"
	"github.com/opencluster/opencluster/mvcc"
	"github.com/opencluster/opencluster/rpc/cmdpb"
)

// Replica GC. A move removes a replica from its bucket's group, but the
// node it left keeps the bucket's data, and may never hear that it left:
// the leader stops talking to a replica as soon as the change that removes
// it commits. So each node looks, every replicaGCInterval, for bucket
// replicas that hold data but that no configuration it knows of counts,
// asks the bucket's leader (the authority) whether the group still counts
// this node, and if not deletes the bucket's span and the group's Raft
// state, keeping only its term and vote: the replica is then like a new
// node's, and a snapshot brings the bucket back should it be added again.
//
// Safety: the deletion runs on the scheduler goroutine, and only if the
// replica's Raft state (last index, applied index, commit, term) is as it
// was before the leader was asked. A group that takes this node back
// reaches it through Raft messages, which change that state before this
// node acknowledges anything, so a replica that acknowledged entries to a
// group counting it is never wiped; and a removed replica keeps its vote,
// so it never votes twice in a term.

// replicaGCInterval is how often a node looks for removed replicas.
func (n *Node) replicaGCInterval() time.Duration {
	return 10 * time.Duration(n.cfg.ElectionTicks) * n.cfg.TickInterval
}

// replicaGCLoop is the replica GC's goroutine.
func (n *Node) replicaGCLoop() {
	t := time.NewTicker(n.replicaGCInterval())
	defer t.Stop()
	for {
		select {
		case <-n.stopper:
			return
		case <-t.C:
		}
		for _, r := range n.replicas[:n.buckets] {
			if !n.looksRemoved(r) {
				continue
			}
			ctx, cancel := context.WithTimeout(n.bg, 5*time.Second)
			if err := n.collectReplica(ctx, r); err != nil {
				n.log.Debug("replica GC", "bucket", r.bucket, "err", err)
			}
			cancel()
		}
	}
}

// looksRemoved reports whether r holds data (it applied something) while
// neither its own configuration nor a newer one in the placement table
// counts this node.
func (n *Node) looksRemoved(r *replica) bool {
	r.mu.Lock()
	applied, epoch := r.mu.applied, r.mu.epoch
	member := slices.Contains(r.mu.voters, n.id) || slices.Contains(r.mu.learners, n.id)
	r.mu.Unlock()
	if applied == 0 {
		return false // never initialized, or collected already
	}
	if !member {
		return true
	}
	// A replica removed in a joint configuration may never learn that
	// the group left it: the table, reported by the leader, knows.
	p := n.placementTable()[uint32(r.bucket)]
	return p != nil && p.GetEpoch() > epoch && !slices.Contains(p.GetVoters(), n.id) && !slices.Contains(p.GetLearners(), n.id)
}

// raftMark is the part of a replica's Raft state that any message from a
// group that counts the replica changes before the replica acknowledges
// anything.
type raftMark struct{ last, lastTerm, applied, commit, term uint64 }

func (r *replica) mark() raftMark {
	last, _ := r.storage.LastIndex()
	lastTerm, _ := r.storage.Term(last)
	st := r.rn.BasicStatus()
	return raftMark{last: last, lastTerm: lastTerm, applied: r.storage.Applied(), commit: st.GetCommit(), term: st.GetTerm()}
}

// collectReplica deletes r's data and Raft state if the bucket's leader
// confirms that the group no longer counts this node.
func (n *Node) collectReplica(ctx context.Context, r *replica) error {
	var before raftMark
	if err := n.onScheduler(ctx, func() error { before = r.mark(); return nil }); err != nil {
		return err
	}
	st, err := n.bucketChange(ctx, r.bucket, &cmdpb.BucketChangeRequest{})
	if err != nil {
		return err
	}
	if leader := st.GetLeader(); leader == 0 || leader == n.id || slices.Contains(st.GetVoters(), n.id) || slices.Contains(st.GetLearners(), n.id) {
		return nil // still a member, or no clear answer
	}
	// The answer must come from a leader that committed everything this
	// replica holds: a deposed leader (partitioned, still in its lease)
	// could have missed the group taking this node back.
	if st.GetCommit() < before.last {
		return nil
	}
	return n.onScheduler(ctx, func() error {
		if r.mark() != before {
			return nil // the group talked to it meanwhile: look again later
		}
		return n.forgetReplica(r)
	})
}

// forgetReplica deletes r's bucket span and Raft state (but its term and
// vote) and restarts it as an uninitialized replica (scheduler goroutine).
func (n *Node) forgetReplica(r *replica) error {
	db := n.eng.DB()
	b := db.NewBatch()
	defer b.Close()
	start, end := mvcc.BucketSpan(r.bucket)
	if err := b.DeleteRange(start, end, nil); err != nil {
		return err
	}
	if err := r.storage.Forget(b); err != nil {
		return err
	}
	r.invalidateCache()
	if err := b.Commit(pebble.Sync); err != nil {
		return err
	}
	st, err := raftlog.Load(db, r.group, raftlog.Config{})
	if err != nil {
		return fmt.Errorf("kv: reload group %d after replica GC: %w", r.group, err)
	}
	rn, err := r.newRawNode(st)
	if err != nil {
		return err
	}
	r.setLeader(false, 0) // it led nothing (collectReplica checked); keep that true
	r.storage, r.rn = st, rn
	r.mu.Lock()
	r.mu.applied, r.mu.epoch, r.mu.leaderID, r.mu.reported = 0, 0, 0, 0
	r.mu.voters, r.mu.learners = nil, nil
	// None should wait: a bucket's proposals are never forwarded (propose)
	// and losing the leadership failed those it had appended. Any left is
	// answered as ambiguous, as those were.
	for id, p := range r.mu.waiting {
		p.done <- proposalResult{err: fmt.Errorf("%w: replica of bucket %d removed", ErrUnavailable, r.bucket)}
		delete(r.mu.waiting, id)
	}
	r.mu.Unlock()
	n.log.Info("collected a removed replica", "bucket", r.bucket)
	return nil
}

// LocalKeys counts the engine keys of bucket b's span on this node: what
// its replica holds, whether or not the group still counts it (tests and
// tools).
func (n *Node) LocalKeys(b uint32) (int, error) {
	start, end := mvcc.BucketSpan(mvcc.Bucket(b))
	it, err := n.eng.DB().NewIter(&pebble.IterOptions{LowerBound: start, UpperBound: end})
	if err != nil {
		return 0, err
	}
	keys := 0
	for valid := it.First(); valid; valid = it.Next() {
		keys++
	}
	return keys, errors.Join(it.Error(), it.Close())
}
