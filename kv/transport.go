package kv

import (
	"bytes"
	"context"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.etcd.io/raft/v3/tracker"
	"google.golang.org/protobuf/proto"

	"github.com/opencluster/opencluster/kv/raftlog"
	"github.com/opencluster/opencluster/mvcc"
	"github.com/opencluster/opencluster/rpc/cmdpb"
)

// Transport carries Raft messages between nodes. The receiving side hands
// what arrives to Node.Deliver (a snapshot after AssembleSnapshot).
type Transport interface {
	// Send queues msgs for node to, in order, without blocking; what
	// cannot be delivered is dropped (Raft retransmits).
	Send(to uint64, msgs []*cmdpb.GroupMessage)
	// SendSnapshot streams a snapshot to node to: header is the MsgSnap
	// without data, and next yields the group's keys in chunks until it
	// returns none. It returns once the receiver has it all, or fails.
	SendSnapshot(ctx context.Context, to uint64, header *cmdpb.GroupMessage, next func() ([]*cmdpb.SnapshotKV, error)) error
}

// snapshotChunkBytes is about how much of a snapshot one chunk carries.
const snapshotChunkBytes = 1 << 20

// snapshotRateBurst is the most snapshot bytes sent at once beyond
// Config.SnapshotRate: a chunk holds at most snapshotChunkBytes plus one
// value (at most 1 MiB).
const snapshotRateBurst = 2*snapshotChunkBytes + 1<<20

// AssembleSnapshot rebuilds the MsgSnap of a streamed snapshot: the header
// with its data set to kvs.
func AssembleSnapshot(header *cmdpb.GroupMessage, kvs []*cmdpb.SnapshotKV) (*cmdpb.GroupMessage, error) {
	m := &raftpb.Message{}
	if err := proto.Unmarshal(header.GetMessage(), m); err != nil {
		return nil, fmt.Errorf("kv: corrupt snapshot header: %w", err)
	}
	if m.GetType() != raftpb.MsgSnap || m.GetSnapshot() == nil {
		return nil, fmt.Errorf("kv: snapshot header is a %v", m.GetType())
	}
	data, err := proto.Marshal(&cmdpb.SnapshotData{Kvs: kvs})
	if err != nil {
		return nil, err
	}
	m.Snapshot.Data = data
	raw, err := proto.Marshal(m)
	if err != nil {
		return nil, err
	}
	return &cmdpb.GroupMessage{Group: header.GetGroup(), Message: raw}, nil
}

// Deliver steps Raft messages from another node into their groups. It
// does not block: the scheduler steps them at its next cycle. Messages for
// a group this node does not know, or addressed to another node, are
// dropped.
func (n *Node) Deliver(from, to uint64, msgs []*cmdpb.GroupMessage) {
	if to != n.id || len(msgs) == 0 {
		return
	}
	n.sched.mu.Lock()
	n.sched.mu.inbox = append(n.sched.mu.inbox, msgs...)
	n.sched.mu.Unlock()
	n.sched.wake()
}

// stepInbox steps delivered messages (scheduler goroutine).
func (n *Node) stepInbox(msgs []*cmdpb.GroupMessage) {
	for _, gm := range msgs {
		r := n.groupReplica(gm.GetGroup())
		if r == nil {
			continue
		}
		m := &raftpb.Message{}
		if err := proto.Unmarshal(gm.GetMessage(), m); err != nil {
			n.log.Warn("dropping a corrupt Raft message", "group", gm.GetGroup(), "err", err)
			continue
		}
		if m.GetType() == raftpb.MsgTimeoutNow && n.draining.Load() {
			continue // a stopping node takes no leadership by transfer
		}
		if isPlainVoteRequest(m) && n.refusesVotes() {
			continue // a leader's read lease may count on this node (lease.go)
		}
		r.touched = true
		if err := r.rn.Step(m); err != nil && err != raft.ErrStepPeerNotFound {
			n.log.Debug("step", "group", r.group, "type", m.GetType(), "err", err)
		}
	}
}

// groupReplica returns the replica of a group id, or nil.
func (n *Node) groupReplica(group uint32) *replica {
	switch {
	case group == metaGroup:
		return n.meta
	case int(group) < n.buckets:
		return n.replicas[group]
	}
	return nil
}

// send hands a round's messages to the transport, grouped per
// destination (scheduler goroutine, after the round's log is durable). A
// MsgSnap's placeholder is replaced by the group's real state.
func (n *Node) send(work []readyWork) error {
	var out map[uint64][]*cmdpb.GroupMessage
	for _, w := range work {
		var err error
		if out, _, err = n.outgoing(out, w.r, w.rd.Messages, true); err != nil {
			return err
		}
	}
	for to, msgs := range out {
		n.cfg.Transport.Send(to, msgs)
	}
	return nil
}

// outgoing adds r's messages to out, by destination, and returns the
// messages it left: snapshots, unless snapshots is set, in which case it
// starts streaming them (sendSnapshot). Without a transport there are no
// peers and every message is dropped.
func (n *Node) outgoing(out map[uint64][]*cmdpb.GroupMessage, r *replica, msgs []*raftpb.Message, snapshots bool) (map[uint64][]*cmdpb.GroupMessage, []*raftpb.Message, error) {
	if n.cfg.Transport == nil {
		return out, nil, nil
	}
	r.voidLeaseBefore(msgs)
	var left []*raftpb.Message
	for _, m := range msgs {
		if !r.isMeta() && r.skipCommitOnly(m) {
			n.metrics.commitAppendsSkipped.Inc()
			continue
		}
		if m.GetType() == raftpb.MsgSnap {
			if !snapshots {
				left = append(left, m)
			} else if err := n.sendSnapshot(r, m); err != nil {
				return out, nil, err
			}
			continue
		}
		data, err := proto.Marshal(m)
		if err != nil {
			return out, nil, fmt.Errorf("marshal raft message: %w", err)
		}
		if out == nil {
			out = make(map[uint64][]*cmdpb.GroupMessage)
		}
		out[m.GetTo()] = append(out[m.GetTo()], &cmdpb.GroupMessage{Group: r.group, Message: data})
	}
	return out, left, nil
}

// Commit-only appends. When a leader's commit index moves, etcd raft
// sends every follower an append with no entries, only to tell it the
// new index sooner; the follower steps it in a cycle of its own and
// answers. A bucket's follower serves no request (reads and writes run
// on its leader), so for bucket groups these are not sent to a follower
// that has acknowledged everything it was sent: it learns the index from
// the next append or heartbeat (HeartbeatTicks), applying in larger
// batches, and a leader it becomes applies all it inherited before it
// serves (isReadyLeader). An empty append is still sent where it may
// carry more than the commit index: to a follower being probed (its
// answer finds where the logs match) or with appends in flight (were
// they lost, its rejection starts the probe that resends them), and
// where it is the first to say that a configuration change committed: a
// follower acts on the configuration it has applied, so until it hears
// of the commit, a learner promoted to voter cannot campaign and a voter
// counts the old voters. Were the leader cut off in that window, which
// heartbeats would stretch from a round trip to HeartbeatTicks, the
// group could not elect a new one (TestPartitionedPrimaryStopsServing
// caught this). The meta group always sends them: every node reads its
// local meta replica.

// isEmptyAppend reports whether m is an append with no entries.
func isEmptyAppend(m *raftpb.Message) bool {
	return m.GetType() == raftpb.MsgApp && len(m.GetEntries()) == 0
}

// skipCommitOnly reports whether m is a commit-only append that a bucket
// leader need not send (above); for a message it sends, it records the
// commit index the message tells its follower (commitsConfChange).
func (r *replica) skipCommitOnly(m *raftpb.Message) bool {
	to := m.GetTo()
	if isEmptyAppend(m) && !r.commitsConfChange(m) && r.caughtUp(to) {
		return true
	}
	if t := m.GetType(); (t == raftpb.MsgApp || t == raftpb.MsgHeartbeat) && m.GetCommit() > r.toldCommit[to] {
		r.toldCommit[to] = m.GetCommit()
	}
	return false
}

// noteConfEntries records the last configuration change among entries
// this replica is about to append (scheduler goroutine). An index whose
// entry a new leader overwrites stays recorded: it only errs towards
// sending.
func (r *replica) noteConfEntries(entries []*raftpb.Entry) {
	for _, e := range entries {
		if t := e.GetType(); t == raftpb.EntryConfChange || t == raftpb.EntryConfChangeV2 {
			r.confIndex = max(r.confIndex, e.GetIndex())
		}
	}
}

// commitsConfChange reports whether m, from r's leader, carries the first
// news to its follower that the last configuration change committed.
func (r *replica) commitsConfChange(m *raftpb.Message) bool {
	return m.GetCommit() >= r.confIndex && r.toldCommit[m.GetTo()] < r.confIndex
}

// caughtUp reports whether follower id of r, a leader, replicates with
// nothing in flight: it has acknowledged every entry sent to it.
func (r *replica) caughtUp(id uint64) bool {
	caughtUp := false
	r.rn.WithProgress(func(peer uint64, _ raft.ProgressType, pr tracker.Progress) {
		if peer == id {
			caughtUp = pr.State == tracker.StateReplicate && pr.Match+1 == pr.Next
		}
	})
	return caughtUp
}

// groupSpan returns the engine span holding a group's replicated state.
func groupSpan(r *replica) (start, end []byte) {
	if r.isMeta() {
		return mvcc.MetaSpan()
	}
	return mvcc.BucketSpan(r.bucket)
}

// sendSnapshot streams a group's state to a follower in the background
// (scheduler goroutine): the state and its metadata come from one Pebble
// snapshot taken now, and Raft hears how it went when the stream ends. The
// iterator over the span is opened here, on the scheduler goroutine, so
// that it pins its view before any later snapshot ingest of this node
// excises the span (snapshot_ingest.go).
func (n *Node) sendSnapshot(r *replica, m *raftpb.Message) error {
	snap := n.eng.DB().NewSnapshot()
	meta, err := raftlog.ReadSnapshotMetadata(snap, r.group)
	if err != nil {
		snap.Close()
		return err
	}
	m.Snapshot = &raftpb.Snapshot{Metadata: meta}
	header, err := proto.Marshal(m)
	if err != nil {
		snap.Close()
		return err
	}
	start, end := groupSpan(r)
	it, err := snap.NewIter(&pebble.IterOptions{LowerBound: start, UpperBound: end})
	if err != nil {
		snap.Close()
		return err
	}
	select {
	case <-n.stopper: // goBackground would not run the stream
		it.Close()
		snap.Close()
		return nil
	default:
	}
	to := m.GetTo()
	n.goBackground(func(ctx context.Context) {
		defer snap.Close()
		defer it.Close()
		status := raft.SnapshotFinish
		if err := n.streamSnapshot(ctx, it, to, &cmdpb.GroupMessage{Group: r.group, Message: header}); err != nil {
			n.log.Warn("sending a snapshot", "group", r.group, "to", to, "err", err)
			status = raft.SnapshotFailure
		}
		n.submit(func() { r.rn.ReportSnapshot(to, status) })
	})
	return nil
}

// streamSnapshot sends the keys of it, an iterator over the group's span,
// in chunks.
func (n *Node) streamSnapshot(ctx context.Context, it *pebble.Iterator, to uint64, header *cmdpb.GroupMessage) error {
	valid := it.First()
	next := func() ([]*cmdpb.SnapshotKV, error) {
		var chunk []*cmdpb.SnapshotKV
		size := 0
		for ; valid && size < snapshotChunkBytes; valid = it.Next() {
			v, err := it.ValueAndErr()
			if err != nil {
				return nil, err
			}
			chunk = append(chunk, &cmdpb.SnapshotKV{Key: append([]byte(nil), it.Key()...), Value: append([]byte(nil), v...)})
			size += len(it.Key()) + len(v)
		}
		if err := it.Error(); err != nil {
			return nil, err
		}
		// Pace the stream (Config.SnapshotRate), shared by every snapshot
		// this node sends.
		if err := n.snapshotRate.WaitN(ctx, min(size, snapshotRateBurst)); err != nil {
			return nil, err
		}
		return chunk, nil
	}
	return n.cfg.Transport.SendSnapshot(ctx, to, header, next)
}

// applySnapshot replaces a group's state with a received snapshot
// (scheduler goroutine), before the Ready's entries are staged. A snapshot
// of at least Config.SnapshotSSTBytes is written to SST files and ingested
// at once, durably, with the group's new Raft state (snapshot_ingest.go,
// which argues the crash order); a smaller one is staged into b, the
// round's log batch, which commits it atomically with the rest of the
// round.
func (n *Node) applySnapshot(b *pebble.Batch, r *replica, snap *raftpb.Snapshot) error {
	r.invalidateCache() // the bucket's records are replaced
	data := &cmdpb.SnapshotData{}
	if err := proto.Unmarshal(snap.GetData(), data); err != nil {
		return fmt.Errorf("group %d: corrupt snapshot: %w", r.group, err)
	}
	start, end := groupSpan(r)
	if size := snapshotBytes(data.GetKvs()); size >= n.cfg.SnapshotSSTBytes {
		n.log.Debug("ingesting a snapshot as SSTs", "group", r.group, "index", snap.GetMetadata().GetIndex(), "bytes", size)
		// Not n.bg: a cancelled ingest would stop the scheduler with an
		// error, and an ingest is atomic, so it may as well finish.
		return ingestSnapshot(context.Background(), n.eng, r.storage, start, end,
			data.GetKvs(), snap.GetMetadata(), snapshotSSTFileBytes)
	}
	return stageSnapshot(b, r.storage, start, end, data.GetKvs(), snap.GetMetadata())
}

// stageSnapshot stages into b the replacement of a group's data span
// [start, end) by kvs and of its Raft state by meta's: the batch path of
// applySnapshot, which ingestSnapshot must match.
func stageSnapshot(b *pebble.Batch, st *raftlog.Storage, start, end []byte, kvs []*cmdpb.SnapshotKV, meta *raftpb.SnapshotMetadata) error {
	if err := b.DeleteRange(start, end, nil); err != nil {
		return err
	}
	for _, kv := range kvs {
		if bytes.Compare(kv.GetKey(), start) < 0 || bytes.Compare(kv.GetKey(), end) >= 0 {
			return fmt.Errorf("group %d: snapshot key %q outside the group's span", st.Group(), kv.GetKey())
		}
		if err := b.Set(kv.GetKey(), kv.GetValue(), nil); err != nil {
			return err
		}
	}
	return st.ApplySnapshot(b, meta)
}
