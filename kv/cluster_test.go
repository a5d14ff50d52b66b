package kv

import (
	"testing"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/quorum"
	"go.etcd.io/raft/v3/raftpb"
	"go.etcd.io/raft/v3/tracker"

	"github.com/opencluster/opencluster/rpc/cmdpb"
)

// TestApplyPlacementKeepsNewest checks that a placement report older than
// the recorded one (a deposed leader's, delayed) never overwrites it.
func TestApplyPlacementKeepsNewest(t *testing.T) {
	state := &cmdpb.MetaState{}
	applyPlacement(state, &cmdpb.BucketPlacement{Bucket: 3, Voters: []uint64{1, 2, 3}, Epoch: 20})
	applyPlacement(state, &cmdpb.BucketPlacement{Bucket: 1, Voters: []uint64{1}, Epoch: 10})
	applyPlacement(state, &cmdpb.BucketPlacement{Bucket: 3, Voters: []uint64{1}, Epoch: 12})
	if len(state.Placement) != 2 || state.Placement[0].GetBucket() != 1 || state.Placement[1].GetBucket() != 3 {
		t.Fatalf("placement not in bucket order: %v", state.Placement)
	}
	if got := state.Placement[1]; got.GetEpoch() != 20 || len(got.GetVoters()) != 3 {
		t.Fatalf("an older report replaced a newer one: %v", got)
	}
	applyPlacement(state, &cmdpb.BucketPlacement{Bucket: 3, Voters: []uint64{2, 3, 4}, Epoch: 25})
	if got := state.Placement[1]; got.GetEpoch() != 25 || got.GetVoters()[2] != 4 {
		t.Fatalf("a newer report was ignored: %v", got)
	}
}

// TestApplyPlacementFollowsLeaders checks that a new leader's report of
// the same configuration updates the leader even at a lower epoch (its
// replica learnt the configuration earlier), unless its term is older.
func TestApplyPlacementFollowsLeaders(t *testing.T) {
	state := &cmdpb.MetaState{}
	applyPlacement(state, &cmdpb.BucketPlacement{Bucket: 0, Voters: []uint64{1, 2, 3}, Epoch: 30, Leader: 1, Term: 5})
	applyPlacement(state, &cmdpb.BucketPlacement{Bucket: 0, Voters: []uint64{1, 2, 3}, Epoch: 20, Leader: 2, Term: 6})
	if got := state.Placement[0]; got.GetLeader() != 2 || got.GetEpoch() != 30 {
		t.Fatalf("a newer term's leader at a lower epoch: %v, want leader 2 at epoch 30", got)
	}
	applyPlacement(state, &cmdpb.BucketPlacement{Bucket: 0, Voters: []uint64{1, 2, 3}, Epoch: 30, Leader: 1, Term: 5})
	if got := state.Placement[0]; got.GetLeader() != 2 {
		t.Fatalf("a deposed leader's late report won: %v", got)
	}
}

// groupStatus builds the raft.Status nextConfChange reads: voters and
// learners with their match indexes, at commit index commit.
func groupStatus(commit uint64, voters, learners map[uint64]uint64) raft.Status {
	st := raft.Status{Progress: map[uint64]tracker.Progress{}}
	st.HardState = &raftpb.HardState{Commit: &commit}
	st.Config.Voters[0] = quorum.MajorityConfig{}
	st.Config.Learners = map[uint64]struct{}{}
	for id, match := range voters {
		st.Config.Voters[0][id] = struct{}{}
		st.Progress[id] = tracker.Progress{Match: match, RecentActive: true}
	}
	for id, match := range learners {
		st.Config.Learners[id] = struct{}{}
		st.Progress[id] = tracker.Progress{Match: match, IsLearner: true}
	}
	return st
}

// TestNextConfChangeLeavingNodes checks how a group steps off draining and
// removed nodes: it grows onto a candidate first, drops a draining voter
// only while more than three voters stay, drops a removed one at once,
// never removes the leader itself, and drops learners on leaving nodes.
func TestNextConfChangeLeavingNodes(t *testing.T) {
	type change struct {
		typ  raftpb.ConfChangeType
		node uint64
	}
	for _, tc := range []struct {
		name       string
		st         raft.Status
		want       int
		candidates []uint64
		leaving    map[uint64]bool
		expect     *change
	}{
		{"grow onto a candidate before dropping a draining voter",
			groupStatus(9, map[uint64]uint64{1: 9, 2: 9, 3: 9}, nil), 3, []uint64{1, 2, 4}, map[uint64]bool{3: false},
			&change{raftpb.ConfChangeAddLearnerNode, 4}},
		{"promote the caught-up learner",
			groupStatus(9, map[uint64]uint64{1: 9, 2: 9, 3: 9}, map[uint64]uint64{4: 9}), 3, []uint64{1, 2, 4}, map[uint64]bool{3: false},
			&change{raftpb.ConfChangeAddNode, 4}},
		{"drop the draining voter once four stay",
			groupStatus(9, map[uint64]uint64{1: 9, 2: 9, 3: 9, 4: 9}, nil), 3, []uint64{1, 2, 4}, map[uint64]bool{3: false},
			&change{raftpb.ConfChangeRemoveNode, 3}},
		{"keep a draining voter when only three would be left",
			groupStatus(9, map[uint64]uint64{1: 9, 2: 9, 3: 9}, nil), 2, []uint64{1, 2}, map[uint64]bool{3: false},
			nil},
		{"drop a removed voter at once",
			groupStatus(9, map[uint64]uint64{1: 9, 2: 9, 3: 9}, nil), 2, []uint64{1, 2}, map[uint64]bool{3: true},
			&change{raftpb.ConfChangeRemoveNode, 3}},
		{"keep a removed voter while the others are no quorum without it",
			func() raft.Status {
				st := groupStatus(9, map[uint64]uint64{1: 9, 2: 9, 3: 9}, nil)
				pr := st.Progress[2]
				pr.RecentActive = false
				st.Progress[2] = pr
				return st
			}(), 1, []uint64{1}, map[uint64]bool{3: true},
			nil},
		{"never remove the leader itself",
			groupStatus(9, map[uint64]uint64{1: 9, 2: 9, 3: 9, 4: 9}, nil), 3, []uint64{2, 3, 4}, map[uint64]bool{1: true},
			nil},
		{"drop a learner on a leaving node rather than promote it",
			groupStatus(9, map[uint64]uint64{1: 9, 2: 9}, map[uint64]uint64{3: 9}), 3, []uint64{1, 2}, map[uint64]bool{3: false},
			&change{raftpb.ConfChangeRemoveNode, 3}},
		{"drop a learner on a leaving node when the voters are complete",
			groupStatus(9, map[uint64]uint64{1: 9, 2: 9, 3: 9}, map[uint64]uint64{4: 2}), 3, []uint64{1, 2, 3}, map[uint64]bool{4: false},
			&change{raftpb.ConfChangeRemoveNode, 4}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cc := nextConfChange(tc.st, 1, tc.want, tc.candidates, tc.leaving)
			switch {
			case tc.expect == nil && cc != nil:
				t.Fatalf("got %v, want no change", cc)
			case tc.expect == nil:
			case cc == nil || len(cc.Changes) != 1 || cc.Changes[0].GetType() != tc.expect.typ || cc.Changes[0].GetNodeId() != tc.expect.node:
				t.Fatalf("got %v, want %v of node %d", cc, tc.expect.typ, tc.expect.node)
			}
		})
	}
}
