package raftlog

import (
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"go.etcd.io/raft/v3/raftpb"
)

// TestForgetKeepsTermAndVote checks that a forgotten group loads as never
// bootstrapped, with its term and vote and nothing else.
func TestForgetKeepsTermAndVote(t *testing.T) {
	e := openEngine(t, vfs.NewMem())
	defer e.Close()
	db := e.DB()
	s := mustLoad(t, db, 7, Config{})
	b := db.NewBatch()
	if err := s.Bootstrap(b, &raftpb.ConfState{Voters: []uint64{1, 2, 3}}, 10, 3); err != nil {
		t.Fatal(err)
	}
	ents := []*raftpb.Entry{{Index: new(uint64(11)), Term: new(uint64(4))}, {Index: new(uint64(12)), Term: new(uint64(4))}}
	if err := s.Append(b, ents, &raftpb.HardState{Term: new(uint64(4)), Vote: new(uint64(2)), Commit: new(uint64(12))}); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		t.Fatal(err)
	}
	b = db.NewBatch()
	if err := s.Forget(b); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		t.Fatal(err)
	}
	got := mustLoad(t, db, 7, Config{})
	hs, cs, err := got.InitialState()
	if err != nil {
		t.Fatal(err)
	}
	last, _ := got.LastIndex()
	if got.Initialized() || got.Applied() != 0 || last != 0 || len(cs.GetVoters()) != 0 {
		t.Fatalf("after Forget: initialized %v, applied %d, last %d, voters %v; want a group never bootstrapped",
			got.Initialized(), got.Applied(), last, cs.GetVoters())
	}
	if hs.GetTerm() != 4 || hs.GetVote() != 2 || hs.GetCommit() != 0 {
		t.Fatalf("after Forget: HardState %v, want term 4, vote 2, commit 0", hs)
	}
}
