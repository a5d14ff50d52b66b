package kv

import (
	"testing"

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
