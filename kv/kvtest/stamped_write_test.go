package kvtest

import (
	"bytes"
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencluster/opencluster/kv"
	"github.com/opencluster/opencluster/mvcc/ts"
	"github.com/opencluster/opencluster/rpc/ocpb"
)

// TestWriteStampedUnderLostLeadership: a write that took its timestamp t
// on its bucket's leader, which then lost the bucket before the write
// reached Raft, must not apply at t once the new leader has served a
// snapshot read at some R > t that found nothing: the same read repeated
// would then find it (invariant 4). The Jepsen register workload saw
// exactly that once ("read absent at snapshot R, then a value at R-1 at
// the same snapshot") after a pause moved a leadership: the old leader
// forwarded the stamped write to the new one.
//
// The write is held after stamping (a testing knob) while its node is
// cut off, another leader is elected and the read runs there; the network
// heals and the old leader hears of the new term (or wins the bucket
// back) before the write goes on.
func TestWriteStampedUnderLostLeadership(t *testing.T) {
	key := []byte("register")
	type stamp struct {
		node uint64
		at   ts.Timestamp
	}
	var armed atomic.Bool
	stamped, release := make(chan stamp, 1), make(chan struct{})
	cfg := kv.TestConfig()
	cfg.Knobs = &kv.TestingKnobs{AfterWriteStamped: func(node uint64, k []byte, at ts.Timestamp) {
		if bytes.Equal(k, key) && armed.CompareAndSwap(true, false) {
			stamped <- stamp{node, at}
			<-release
		}
	}}
	c := Start(t, Options{Nodes: 3, Config: &cfg})
	// Wide, as in TestTransfersAcrossLeaders: on a starved CI machine
	// leaders step down every few hundred milliseconds for a while, and
	// the majority side needs a meta and a bucket leader at once.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	type putResult struct {
		resp *ocpb.PutResponse
		err  error
	}
	put := make(chan putResult, 1)
	armed.Store(true)
	go func() {
		resp, err := c.Primary().Put(ctx, &ocpb.PutRequest{Key: key, Value: []byte("stale")})
		put <- putResult{resp, err}
	}()
	var s stamp
	select {
	case s = <-stamped:
	case r := <-put:
		t.Fatalf("the put finished without stopping at the knob: %v, %v", r.resp, r.err)
	case <-ctx.Done():
		t.Fatal("the put never took its timestamp")
	}
	released := false
	defer func() {
		if !released {
			close(release)
		}
	}()

	old := c.Node(s.node)
	c.Net.Isolate(s.node, c.IDs())
	var other *kv.Node
	for _, n := range c.Nodes() {
		if n.ID() != s.node {
			other = n
			break
		}
	}
	// A timestamp above the stamped write's: a write's through the
	// majority side (which elects a new oracle if it must).
	probe, err := On(ctx, other, func() (*ocpb.PutResponse, error) {
		return other.Put(ctx, &ocpb.PutRequest{Key: []byte("probe"), Value: []byte("x")})
	})
	if err != nil {
		t.Fatal(err)
	}
	at := probe.Version
	if at <= uint64(s.at) {
		t.Fatalf("probe version %d, not above the stamped write's %d", at, s.at)
	}
	readAt := func(n *kv.Node) error {
		_, err := On(ctx, n, func() (*ocpb.GetResponse, error) {
			return n.Get(ctx, &ocpb.GetRequest{Key: key, Version: at})
		})
		return err
	}
	if err := readAt(other); !errors.Is(err, kv.ErrNotFound) {
		t.Fatalf("read at %d on the majority side: %v, want not found", at, err)
	}

	c.Net.Heal()
	// A linearizable read through the old leader succeeds only once it no
	// longer leads in the write's term: that leadership lost its quorum,
	// and its lease ran out while the majority elected another.
	if _, err := On(ctx, old, func() (*ocpb.GetResponse, error) {
		return old.Get(ctx, &ocpb.GetRequest{Key: key})
	}); !errors.Is(err, kv.ErrNotFound) {
		t.Fatalf("linearizable read through the old leader: %v, want not found", err)
	}
	released = true
	close(release)
	r := <-put
	switch {
	case r.err == nil && r.resp.Version <= at:
		t.Errorf("the write stamped under the lost leadership applied at %d, below the read at %d", r.resp.Version, at)
	case r.err != nil && !errors.Is(r.err, kv.ErrNotApplied):
		t.Errorf("the write stamped under the lost leadership: %v, want a not-applied error (safe to retry)", r.err)
	}
	if err := readAt(other); !errors.Is(err, kv.ErrNotFound) {
		t.Fatalf("the read at %d again: %v, want not found as the first time", at, err)
	}
}
