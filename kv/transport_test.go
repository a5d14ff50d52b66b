package kv

import (
	"context"
	"testing"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/opencluster/opencluster/rpc/cmdpb"
)

// discardTransport drops what it is given.
type discardTransport struct{}

func (discardTransport) Send(uint64, []*cmdpb.GroupMessage) {}
func (discardTransport) SendSnapshot(context.Context, uint64, *cmdpb.GroupMessage, func() ([]*cmdpb.SnapshotKV, error)) error {
	return nil
}

// TestConfChangeCommitIsAnnounced checks the bookkeeping behind
// commitsConfChange: a message is the first news of a committed
// configuration change to a follower until an append or heartbeat with a
// commit index at or past the change has gone to that follower, and a
// restarted replica takes its last log entry for a change.
func TestConfChangeCommitIsAnnounced(t *testing.T) {
	n, r := newBenchGroup(t)
	n.cfg.Transport = discardTransport{}
	last, err := r.storage.LastIndex()
	if err != nil {
		t.Fatal(err)
	}
	if r.confIndex != last {
		t.Fatalf("a new replica's confIndex is %d, want its last index %d", r.confIndex, last)
	}
	cc := last + 2
	r.noteConfEntries([]*raftpb.Entry{
		{Index: new(last + 1), Type: raftpb.EntryNormal.Enum()},
		{Index: new(cc), Type: raftpb.EntryConfChangeV2.Enum()},
		{Index: new(last + 3), Type: raftpb.EntryNormal.Enum()},
	})
	if r.confIndex != cc {
		t.Fatalf("confIndex %d after appending a change at %d", r.confIndex, cc)
	}
	msg := func(typ raftpb.MessageType, to, commit uint64) *raftpb.Message {
		return &raftpb.Message{Type: typ.Enum(), To: new(to), From: new(n.id), Commit: new(commit)}
	}
	send := func(m *raftpb.Message) {
		t.Helper()
		if _, _, err := n.outgoing(nil, r, []*raftpb.Message{m}, false); err != nil {
			t.Fatal(err)
		}
	}
	if r.commitsConfChange(msg(raftpb.MsgApp, 2, cc-1)) {
		t.Error("a commit index below the change announces it")
	}
	send(msg(raftpb.MsgApp, 2, cc-1))
	if !r.commitsConfChange(msg(raftpb.MsgApp, 2, cc)) {
		t.Fatal("the first append whose commit reaches the change does not announce it")
	}
	send(msg(raftpb.MsgApp, 2, cc))
	if r.commitsConfChange(msg(raftpb.MsgApp, 2, cc+1)) {
		t.Error("the change is announced to follower 2 twice")
	}
	if !r.commitsConfChange(msg(raftpb.MsgApp, 3, cc+1)) {
		t.Error("follower 3 was never told, yet the change counts as announced to it")
	}
	send(msg(raftpb.MsgHeartbeat, 3, cc+1))
	if r.commitsConfChange(msg(raftpb.MsgApp, 3, cc+1)) {
		t.Error("a heartbeat carrying the commit did not count as telling follower 3")
	}
	// A later change needs announcing again.
	r.noteConfEntries([]*raftpb.Entry{{Index: new(cc + 5), Type: raftpb.EntryConfChange.Enum()}})
	if !r.commitsConfChange(msg(raftpb.MsgApp, 2, cc+5)) {
		t.Error("a second change is not announced")
	}
}
