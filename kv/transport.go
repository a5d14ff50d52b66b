package kv

import (
	"bytes"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/opencluster/opencluster/kv/raftlog"
	"github.com/opencluster/opencluster/mvcc"
	"github.com/opencluster/opencluster/rpc/cmdpb"
)

// Transport carries Raft messages between nodes. Send must not block: it
// queues msgs for node to, in order, and drops what it cannot deliver
// (Raft retransmits). The receiving side hands what arrives to
// Node.Deliver.
type Transport interface {
	Send(to uint64, msgs []*cmdpb.GroupMessage)
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
	if n.cfg.Transport == nil {
		return nil // a node without a transport has no peers
	}
	var out map[uint64][]*cmdpb.GroupMessage
	for _, w := range work {
		for _, m := range w.rd.Messages {
			if m.GetType() == raftpb.MsgSnap {
				snap, err := n.groupSnapshot(w.r)
				if err != nil {
					return err
				}
				m.Snapshot = snap
				// The transport owns delivery; Raft learns of a lost
				// snapshot when the follower asks again.
				defer w.r.rn.ReportSnapshot(m.GetTo(), raft.SnapshotFinish)
			}
			data, err := proto.Marshal(m)
			if err != nil {
				return fmt.Errorf("marshal raft message: %w", err)
			}
			if out == nil {
				out = make(map[uint64][]*cmdpb.GroupMessage)
			}
			out[m.GetTo()] = append(out[m.GetTo()], &cmdpb.GroupMessage{Group: w.r.group, Message: data})
		}
	}
	for to, msgs := range out {
		n.cfg.Transport.Send(to, msgs)
	}
	return nil
}

// groupSpan returns the engine span holding a group's replicated state.
func groupSpan(r *replica) (start, end []byte) {
	if r.isMeta() {
		return mvcc.MetaSpan()
	}
	return mvcc.BucketSpan(r.bucket)
}

// groupSnapshot reads a group's state and matching metadata from one
// Pebble snapshot (see raftlog's "Snapshots").
func (n *Node) groupSnapshot(r *replica) (*raftpb.Snapshot, error) {
	snap := n.eng.DB().NewSnapshot()
	defer snap.Close()
	meta, err := raftlog.ReadSnapshotMetadata(snap, r.group)
	if err != nil {
		return nil, err
	}
	start, end := groupSpan(r)
	it, err := snap.NewIter(&pebble.IterOptions{LowerBound: start, UpperBound: end})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	data := &cmdpb.SnapshotData{}
	for valid := it.First(); valid; valid = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			return nil, err
		}
		data.Kvs = append(data.Kvs, &cmdpb.SnapshotKV{Key: append([]byte(nil), it.Key()...), Value: append([]byte(nil), v...)})
	}
	if err := it.Error(); err != nil {
		return nil, err
	}
	raw, err := proto.Marshal(data)
	if err != nil {
		return nil, err
	}
	return &raftpb.Snapshot{Data: raw, Metadata: meta}, nil
}

// applySnapshot replaces a group's state with a received snapshot, staged
// into b before the Ready's entries (scheduler goroutine).
func (n *Node) applySnapshot(b *pebble.Batch, r *replica, snap *raftpb.Snapshot) error {
	data := &cmdpb.SnapshotData{}
	if err := proto.Unmarshal(snap.GetData(), data); err != nil {
		return fmt.Errorf("group %d: corrupt snapshot: %w", r.group, err)
	}
	start, end := groupSpan(r)
	if err := b.DeleteRange(start, end, nil); err != nil {
		return err
	}
	for _, kv := range data.GetKvs() {
		if bytes.Compare(kv.GetKey(), start) < 0 || bytes.Compare(kv.GetKey(), end) >= 0 {
			return fmt.Errorf("group %d: snapshot key %q outside the group's span", r.group, kv.GetKey())
		}
		if err := b.Set(kv.GetKey(), kv.GetValue(), nil); err != nil {
			return err
		}
	}
	return r.storage.ApplySnapshot(b, snap.GetMetadata())
}
