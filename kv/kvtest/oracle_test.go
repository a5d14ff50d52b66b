package kvtest

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencluster/opencluster/kv"
	"github.com/opencluster/opencluster/mvcc/ts"
)

// TestDeposedOracleIssuesNothingStale: a meta leader whose Raft loop
// stalls (a paused process, resumed with requests queued) loses the meta
// group to another node, whose oracle starts from the persisted bound.
// Until the stalled node hears of it, it still believes it serves the
// oracle; a timestamp it issued then would be below ones its successor
// issued earlier in real time (T1), so that a write acknowledged before a
// snapshot read began could land above the read's snapshot (the Jepsen
// register workload saw exactly that). It must issue nothing it has not
// confirmed under its lease or a ReadIndex round.
func TestDeposedOracleIssuesNothingStale(t *testing.T) {
	var stalled atomic.Uint64
	cfg := kv.TestConfig()
	cfg.Knobs = &kv.TestingKnobs{BeforeCycle: func(node uint64) {
		for stalled.Load() == node {
			time.Sleep(time.Millisecond)
		}
	}}
	c := Start(t, Options{Nodes: 3, Config: &cfg})
	defer stalled.Store(0)
	// Wide, as in TestTransfersAcrossLeaders: on a starved CI machine
	// leaders step down every few hundred milliseconds for a while, and
	// the majority side needs a meta and a bucket leader at once.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	oracle := func(skip uint64) *kv.Node {
		for _, n := range c.Nodes() {
			if local, _, _ := n.Route(); local && n.ID() != skip {
				return n
			}
		}
		return nil
	}
	var old *kv.Node
	c.WaitFor(time.Minute, "a meta leader", func() bool { old = oracle(0); return old != nil })
	if _, err := old.ServeTimestamp(ctx, 1); err != nil {
		t.Fatal(err)
	}
	stalled.Store(old.ID())
	var successor *kv.Node
	c.WaitFor(time.Minute, "another meta leader", func() bool { successor = oracle(old.ID()); return successor != nil })
	issued, err := On(ctx, successor, func() (ts.Timestamp, error) { return successor.ServeTimestamp(ctx, 1) })
	if err != nil {
		t.Fatal(err)
	}
	if local, _, _ := old.Route(); !local {
		t.Fatal("the stalled node no longer believes it serves the oracle: the test proves nothing")
	}
	sctx, scancel := context.WithTimeout(ctx, 300*time.Millisecond)
	stale, err := old.ServeTimestamp(sctx, 1)
	scancel()
	if err == nil && stale <= issued {
		t.Fatalf("the deposed oracle issued %d after its successor issued %d", stale, issued)
	}
	stalled.Store(0)
	c.WaitFor(time.Minute, "the stalled node hears of its successor", func() bool {
		local, _, _ := old.Route()
		return !local
	})
}
