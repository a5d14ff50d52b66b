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
