package kv

import (
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/opencluster/opencluster/rpc/ocpb"
)

// TestLeaseServesReads: after one ReadIndex round a leader serves reads
// under its lease, without a round each, and renews the lease while reads
// keep coming; a value written is read back at once.
func TestLeaseServesReads(t *testing.T) {
	n := openTestNode(t)
	ctx := ctxT(t)
	key := []byte("k")
	for i := range 200 {
		v := []byte{byte(i)}
		if _, err := n.Put(ctx, &ocpb.PutRequest{Key: key, Value: v}); err != nil {
			t.Fatal(err)
		}
		got, err := n.Get(ctx, &ocpb.GetRequest{Key: key})
		if err != nil {
			t.Fatal(err)
		}
		if got.Kv.Value[0] != byte(i) {
			t.Fatalf("read %v after writing %v", got.Kv.Value, v)
		}
		time.Sleep(time.Millisecond)
	}
	leased, rounds := testutil.ToFloat64(n.metrics.leaseReads), testutil.ToFloat64(n.metrics.readRounds)
	if leased < 100 {
		t.Fatalf("%v of 200 reads served under the lease (%v ReadIndex rounds)", leased, rounds)
	}
	if rounds > 100 {
		t.Fatalf("%v ReadIndex rounds for 200 reads", rounds)
	}
}

// TestLeaseVoided: whatever could let another node lead voids the lease
// at once: handing the leadership over (MsgTimeoutNow, after which no
// round renews it until the leadership changes), a configuration change,
// losing the leadership and a new term; a round that started before the
// void does not renew it.
func TestLeaseVoided(t *testing.T) {
	n := openTestNode(t)
	ctx := ctxT(t)
	r := n.replicaOf([]byte("k"))
	establish := func() uint64 {
		t.Helper()
		if err := r.linearizable(ctx); err != nil {
			t.Fatal(err)
		}
		epoch, _, ok := r.leased()
		if !ok {
			t.Fatal("no lease after a ReadIndex round")
		}
		return epoch
	}
	epoch := establish()
	r.voidLeaseBefore([]*raftpb.Message{{Type: raftpb.MsgApp.Enum()}, {Type: raftpb.MsgTimeoutNow.Enum()}})
	if r.leaseHeld(epoch) {
		t.Fatal("the lease survived a MsgTimeoutNow")
	}
	if err := r.linearizable(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := r.leased(); ok {
		t.Fatal("a round after a MsgTimeoutNow renewed the lease in the same leadership")
	}
	r.mu.Lock()
	r.leadershipChangedLocked()
	r.mu.Unlock()
	epoch = establish()

	// A round that started before a void does not renew the lease.
	r.mu.Lock()
	stale := readRound{start: leaseNow(), epoch: r.mu.lease.epoch}
	r.voidLeaseLocked()
	r.renewLeaseLocked(stale)
	r.mu.Unlock()
	if _, _, ok := r.leased(); ok || r.leaseHeld(epoch) {
		t.Fatal("a round from before the void renewed the lease")
	}

	epoch = establish()
	r.setConfState(&raftpb.ConfState{Voters: []uint64{n.id}}, 1)
	if r.leaseHeld(epoch) {
		t.Fatal("the lease survived a configuration change")
	}
	epoch = establish()
	r.mu.Lock()
	term := r.mu.term
	r.mu.Unlock()
	r.noteHardState(&raftpb.HardState{Term: proto.Uint64(term + 1)})
	if r.leaseHeld(epoch) {
		t.Fatal("the lease survived a new term")
	}
	epoch = establish()
	r.setLeader(false, 0)
	if r.leaseHeld(epoch) {
		t.Fatal("the lease survived losing the leadership")
	}
}

// TestSnapshotFloorGivesUpOnLeaderChange: a snapshot reader waiting for
// entries above the commit index fails, retryably, when the leadership
// changes, since the new leader may drop them; it does not wait forever.
func TestSnapshotFloorGivesUpOnLeaderChange(t *testing.T) {
	n := openTestNode(t)
	ctx := ctxT(t)
	r := n.replicaOf([]byte("k"))
	r.mu.Lock()
	gen, applied := r.mu.leaderGen, r.mu.applied
	r.mu.Unlock()
	errc := make(chan error, 1)
	go func() { errc <- r.waitAppliedLeading(ctx, applied+1000, &gen) }()
	time.Sleep(20 * time.Millisecond)
	r.mu.Lock()
	r.leadershipChangedLocked()
	r.mu.Unlock()
	select {
	case err := <-errc:
		if !errors.Is(err, ErrNotApplied) {
			t.Fatalf("err = %v, want ErrNotApplied", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the snapshot reader still waits after the leadership changed")
	}
}

// TestLeaseDuration: the lease ends before any follower that heard the
// round could vote for another leader, and a restarted node refuses votes
// for an election timeout.
func TestLeaseDuration(t *testing.T) {
	cfg := TestConfig()
	n := &Node{cfg: cfg, started: leaseNow()}
	safe := time.Duration(cfg.ElectionTicks-2) * cfg.TickInterval
	if d := n.leaseDuration(); d <= 0 || d >= safe {
		t.Fatalf("lease %s, want in (0, %s)", d, safe)
	}
	if !n.refusesVotes() {
		t.Fatal("a node just started grants votes")
	}
	n.started = leaseNow() - time.Duration(cfg.ElectionTicks)*cfg.TickInterval
	if n.refusesVotes() {
		t.Fatal("a node still refuses votes an election timeout after it started")
	}
	// Another node's lease counts on this one, whatever it uses itself.
	n.cfg.DisableLeaseReads = true
	n.started = leaseNow()
	if n.leaseDuration() != 0 || !n.refusesVotes() {
		t.Fatal("leases disabled: want no lease and votes still refused after a start")
	}
	n.cfg.DisableLeaseReads, n.cfg.ElectionTicks = false, 2
	if n.leaseDuration() != 0 {
		t.Fatal("a lease with an election timeout of 2 ticks, which one late tick can cut to nothing")
	}
}

// TestPlainVoteRequests: right after a restart a node ignores vote and
// pre-vote requests, but not the election a leader handed over.
func TestPlainVoteRequests(t *testing.T) {
	for _, tc := range []struct {
		m    *raftpb.Message
		want bool
	}{
		{&raftpb.Message{Type: raftpb.MsgVote.Enum()}, true},
		{&raftpb.Message{Type: raftpb.MsgPreVote.Enum()}, true},
		{&raftpb.Message{Type: raftpb.MsgVote.Enum(), Context: []byte("CampaignTransfer")}, false},
		{&raftpb.Message{Type: raftpb.MsgVoteResp.Enum()}, false},
		{&raftpb.Message{Type: raftpb.MsgApp.Enum()}, false},
	} {
		if got := isPlainVoteRequest(tc.m); got != tc.want {
			t.Errorf("isPlainVoteRequest(%v) = %v, want %v", tc.m, got, tc.want)
		}
	}
}

// TestOracleWithoutLeases: with read leases off the oracle confirms every
// timestamp it issues by a ReadIndex round of the meta group, and writes
// and snapshot reads (which take timestamps) still go through.
func TestOracleWithoutLeases(t *testing.T) {
	cfg := TestConfig()
	cfg.DisableLeaseReads = true
	n := openTestNodeWith(t, cfg)
	ctx := ctxT(t)
	before := testutil.ToFloat64(n.metrics.readRounds)
	var last uint64
	for i := range 20 {
		put, err := n.Put(ctx, &ocpb.PutRequest{Key: []byte("k"), Value: []byte{byte(i)}})
		if err != nil {
			t.Fatal(err)
		}
		if put.Version <= last {
			t.Fatalf("version %d after %d", put.Version, last)
		}
		last = put.Version
		got, err := n.Get(ctx, &ocpb.GetRequest{Key: []byte("k"), Version: put.Version})
		if err != nil || got.Kv.Value[0] != byte(i) {
			t.Fatalf("read at %d: %v, %v", put.Version, got, err)
		}
	}
	// Each snapshot read takes one round for its barrier; each of the 40
	// timestamps (a write's, a read's check of its version) one more.
	if rounds := testutil.ToFloat64(n.metrics.readRounds) - before; rounds < 60 {
		t.Fatalf("%v ReadIndex rounds for 20 writes and 20 snapshot reads without leases, want 60: the oracle did not confirm its timestamps", rounds)
	}
}
