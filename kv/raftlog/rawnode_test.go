package raftlog

import (
	"fmt"
	"math"
	"slices"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/opencluster/opencluster/mvcc"
)

// testNode drives one replica of a group the way the scheduler does: each
// Ready is staged into one batch (snapshot, entries and HardState, applied
// entries and the applied index), committed with Sync, then Advance.
type testNode struct {
	t     *testing.T
	id    uint64
	group uint32
	fs    vfs.FS
	eng   *mvcc.Engine
	s     *Storage
	rn    *raft.RawNode
	// applied holds the data of the applied normal entries that have data.
	applied []string
	// sent holds the messages of the Readies, by recipient.
	sent map[uint64][]*raftpb.Message
	// compactKeep, if > 0, compacts the log to applied-compactKeep after
	// each Ready.
	compactKeep uint64
}

func newTestNode(t *testing.T, fs vfs.FS, id uint64, group uint32) *testNode {
	n := &testNode{t: t, id: id, group: group, fs: fs, sent: map[uint64][]*raftpb.Message{}}
	n.eng = openEngine(t, fs)
	n.s = mustLoad(t, n.eng.DB(), group, Config{CacheBytes: 2 << 10})
	return n
}

// start creates the RawNode on the node's Storage.
func (n *testNode) start() {
	n.t.Helper()
	rn, err := raft.NewRawNode(&raft.Config{
		ID:              n.id,
		ElectionTick:    10,
		HeartbeatTick:   1,
		Storage:         n.s,
		Applied:         n.s.Applied(),
		MaxSizePerMsg:   4 << 10,
		MaxInflightMsgs: 64,
		Logger:          discardLogger(),
	})
	if err != nil {
		n.t.Fatal(err)
	}
	n.rn = rn
}

// restart closes the DB, reopens it and reloads the Storage and RawNode.
func (n *testNode) restart() {
	n.t.Helper()
	if err := n.eng.Close(); err != nil {
		n.t.Fatal(err)
	}
	n.eng = openEngine(n.t, n.fs)
	n.s = mustLoad(n.t, n.eng.DB(), n.group, Config{CacheBytes: 2 << 10})
	n.start()
}

// handleReady processes Readies until there are none.
func (n *testNode) handleReady() {
	n.t.Helper()
	for n.rn.HasReady() {
		rd := n.rn.Ready()
		b := n.eng.DB().NewBatch()
		if !raft.IsEmptySnap(rd.Snapshot) {
			// The bucket data would be ingested here.
			if err := n.s.ApplySnapshot(b, rd.Snapshot.GetMetadata()); err != nil {
				n.t.Fatal(err)
			}
		}
		if err := n.s.Append(b, rd.Entries, rd.HardState); err != nil {
			n.t.Fatal(err)
		}
		for _, e := range rd.CommittedEntries {
			switch e.GetType() {
			case raftpb.EntryType_EntryNormal:
				if len(e.GetData()) > 0 {
					n.applied = append(n.applied, string(e.GetData()))
				}
			case raftpb.EntryType_EntryConfChange:
				var cc raftpb.ConfChange
				if err := proto.Unmarshal(e.GetData(), &cc); err != nil {
					n.t.Fatal(err)
				}
				if err := n.s.SetConfState(b, n.rn.ApplyConfChange(&cc)); err != nil {
					n.t.Fatal(err)
				}
			default:
				n.t.Fatalf("unexpected entry type %v", e.GetType())
			}
		}
		if k := len(rd.CommittedEntries); k > 0 {
			if err := n.s.SetApplied(b, rd.CommittedEntries[k-1].GetIndex()); err != nil {
				n.t.Fatal(err)
			}
		}
		if n.compactKeep > 0 && n.s.Applied() > n.compactKeep {
			if err := n.s.Compact(b, n.s.Applied()-n.compactKeep); err != nil {
				n.t.Fatal(err)
			}
		}
		if err := b.Commit(pebble.Sync); err != nil {
			n.t.Fatal(err)
		}
		if err := b.Close(); err != nil {
			n.t.Fatal(err)
		}
		for _, m := range rd.Messages {
			n.sent[m.GetTo()] = append(n.sent[m.GetTo()], m)
		}
		n.rn.Advance(rd)
		if err := n.s.check(); err != nil {
			n.t.Fatal(err)
		}
	}
}

func (n *testNode) propose(data string) {
	n.t.Helper()
	if err := n.rn.Propose([]byte(data)); err != nil {
		n.t.Fatal(err)
	}
}

// logOf returns the node's whole log from its Storage.
func (n *testNode) logOf() []*raftpb.Entry {
	n.t.Helper()
	first, _ := n.s.FirstIndex()
	last, _ := n.s.LastIndex()
	if last < first {
		return nil
	}
	ents, err := n.s.Entries(first, last+1, math.MaxUint64)
	if err != nil {
		n.t.Fatal(err)
	}
	return ents
}

// TestRawNode drives a single-voter group with a real raft.RawNode:
// bootstrap at (10, 5) as CockroachDB does, campaign, propose entries
// (with compactions and a conf change adding a learner, whose MsgApps
// read entries back from the Storage), restart from the DB, and check that
// the RawNode comes back with the same log, HardState, ConfState and
// applied index, re-applies nothing, and goes on committing.
func TestRawNode(t *testing.T) {
	fs := vfs.NewMem()
	n := newTestNode(t, fs, 1, 42)
	defer func() { _ = n.eng.Close() }()
	stage(t, n.eng.DB(), false, func(b *pebble.Batch) error {
		return n.s.Bootstrap(b, &raftpb.ConfState{Voters: []uint64{1}}, 10, 5)
	})
	n.start()
	if err := n.rn.Campaign(); err != nil {
		t.Fatal(err)
	}
	n.handleReady()
	if st := n.rn.BasicStatus(); st.RaftState != raft.StateLeader || st.HardState.GetTerm() != 6 {
		t.Fatalf("after campaign: %v at term %d, want leader at term 6", st.RaftState, st.HardState.GetTerm())
	}

	const N = 120
	var want []string
	n.compactKeep = 30
	for i := range N {
		want = append(want, fmt.Sprintf("entry %d %s", i, make([]byte, i%50)))
		n.propose(want[i])
		if i%7 == 0 {
			n.handleReady()
		}
	}
	n.handleReady()
	cc := &raftpb.ConfChange{Type: raftpb.ConfChangeType_ConfChangeAddLearnerNode.Enum(), NodeId: new(uint64(2))}
	if err := n.rn.ProposeConfChange(cc); err != nil {
		t.Fatal(err)
	}
	n.handleReady()
	if !slices.Equal(n.applied, want) {
		t.Fatalf("applied %d entries, want %d: %q", len(n.applied), len(want), n.applied)
	}
	if len(n.sent[2]) == 0 {
		t.Fatal("the leader sent nothing to the new learner")
	}

	st := n.rn.BasicStatus()
	// 10 (bootstrap) + 1 (empty entry of term 6) + N + 1 (conf change).
	if wantLast := uint64(10 + 1 + N + 1); st.HardState.GetCommit() != wantLast || st.Applied != wantLast {
		t.Fatalf("commit %d applied %d, want %d", st.HardState.GetCommit(), st.Applied, wantLast)
	}
	if fi, _ := n.s.FirstIndex(); fi != st.Applied-n.compactKeep+1 {
		t.Fatalf("FirstIndex %d, want %d after compactions", fi, st.Applied-n.compactKeep+1)
	}
	logBefore := n.logOf()
	hsBefore := proto.Clone(st.HardState).(*raftpb.HardState)

	n.restart()
	n.applied = nil
	n.handleReady()
	if len(n.applied) != 0 {
		t.Fatalf("re-applied %d entries after restart", len(n.applied))
	}
	st = n.rn.BasicStatus()
	if !proto.Equal(st.HardState, hsBefore) || st.Applied != hsBefore.GetCommit() {
		t.Fatalf("after restart: HardState %v applied %d; want %v applied %d",
			st.HardState, st.Applied, hsBefore, hsBefore.GetCommit())
	}
	if !equalEntries(n.logOf(), logBefore) {
		t.Fatalf("log after restart %v, want %v", entryIndices(n.logOf()), entryIndices(logBefore))
	}
	if _, cs, _ := n.s.InitialState(); !slices.Equal(cs.GetLearners(), []uint64{2}) {
		t.Fatalf("ConfState after restart %v, want learner 2", cs)
	}
	cfg := n.rn.Status().Config
	_, voter1 := cfg.Voters.IDs()[1]
	if _, learner2 := cfg.Learners[2]; !voter1 || !learner2 || len(cfg.Learners) != 1 {
		t.Fatalf("config after restart %v, want voter 1 and learner 2", cfg)
	}

	if err := n.rn.Campaign(); err != nil {
		t.Fatal(err)
	}
	n.handleReady()
	for i := range 10 {
		n.propose(fmt.Sprintf("after restart %d", i))
	}
	n.handleReady()
	if len(n.applied) != 10 || n.applied[0] != "after restart 0" {
		t.Fatalf("applied after restart: %q", n.applied)
	}
	if st := n.rn.BasicStatus(); st.HardState.GetTerm() != 7 || st.Applied != hsBefore.GetCommit()+1+10 {
		t.Fatalf("after re-election: term %d applied %d", st.HardState.GetTerm(), st.Applied)
	}
}

// TestRawNodeSnapshot sends a snapshot from a leader whose log is
// compacted to a learner that was never bootstrapped, the way the
// transport will: it reads the metadata with ReadSnapshotMetadata from a
// Pebble snapshot of the leader, and replaces raft's placeholder. The
// learner applies it, restarts, then catches up from MsgApps.
func TestRawNodeSnapshot(t *testing.T) {
	leader := newTestNode(t, vfs.NewMem(), 1, 7)
	defer func() { _ = leader.eng.Close() }()
	stage(t, leader.eng.DB(), false, func(b *pebble.Batch) error {
		return leader.s.Bootstrap(b, &raftpb.ConfState{Voters: []uint64{1}, Learners: []uint64{2}}, 10, 5)
	})
	leader.start()
	if err := leader.rn.Campaign(); err != nil {
		t.Fatal(err)
	}
	leader.handleReady()
	leader.compactKeep = 5
	for i := range 30 {
		leader.propose(fmt.Sprintf("entry %d", i))
	}
	leader.handleReady()

	// The leader's first probe of 2 at its last index gets rejected; raft
	// then wants to send a snapshot.
	learner := newTestNode(t, vfs.NewMem(), 2, 7)
	defer func() { _ = learner.eng.Close() }()
	learner.start()
	deliver := func(from, to *testNode) (snaps int) {
		t.Helper()
		for len(from.sent[to.id]) > 0 {
			msgs := from.sent[to.id]
			from.sent[to.id] = nil
			for _, m := range msgs {
				if m.GetType() == raftpb.MessageType_MsgSnap {
					snaps++
					psnap := m.GetSnapshot().GetMetadata()
					ps := from.eng.DB().NewSnapshot()
					meta, err := ReadSnapshotMetadata(ps, from.group)
					_ = ps.Close()
					if err != nil {
						t.Fatal(err)
					}
					if meta.GetIndex() < psnap.GetIndex() {
						t.Fatalf("snapshot at %d below raft's placeholder at %d", meta.GetIndex(), psnap.GetIndex())
					}
					m = proto.Clone(m).(*raftpb.Message)
					m.Snapshot = &raftpb.Snapshot{Metadata: meta}
				}
				if err := to.rn.Step(m); err != nil {
					t.Fatal(err)
				}
			}
			to.handleReady()
			from, to = to, from
		}
		return snaps
	}
	leader.sent[2] = nil
	if err := leader.rn.Propose([]byte("wake")); err != nil {
		t.Fatal(err)
	}
	leader.handleReady()
	snaps := 0
	for range 10 {
		snaps += deliver(leader, learner)
		leader.rn.Tick()
		leader.handleReady()
	}
	if snaps != 1 {
		t.Fatalf("%d snapshots sent, want 1", snaps)
	}
	if !learner.s.Initialized() {
		t.Fatal("learner not initialized by the snapshot")
	}
	lst, ldr := learner.rn.BasicStatus(), leader.rn.BasicStatus()
	if lst.HardState.GetCommit() != ldr.HardState.GetCommit() || lst.Applied != ldr.Applied {
		t.Fatalf("learner commit %d applied %d, leader commit %d applied %d",
			lst.HardState.GetCommit(), lst.Applied, ldr.HardState.GetCommit(), ldr.Applied)
	}
	learner.restart()
	learner.handleReady()
	if st := learner.rn.BasicStatus(); st.HardState.GetCommit() != ldr.HardState.GetCommit() || st.Applied != ldr.Applied {
		t.Fatalf("learner after restart: commit %d applied %d", st.HardState.GetCommit(), st.Applied)
	}
	leader.propose("after snapshot")
	leader.handleReady()
	for range 3 {
		deliver(leader, learner)
		leader.rn.Tick()
		leader.handleReady()
	}
	if n := len(learner.applied); n == 0 || learner.applied[n-1] != "after snapshot" {
		t.Fatalf("learner applied %q, want it to end with the new entry", learner.applied)
	}
	// The logs agree where both hold entries, and end at the same index.
	got, want := learner.logOf(), leader.logOf()
	k := min(len(got), len(want))
	if k == 0 || !equalEntries(got[len(got)-k:], want[len(want)-k:]) {
		t.Fatalf("learner log %v and leader log %v disagree", entryIndices(got), entryIndices(want))
	}
}
