package kv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/opencluster/opencluster/mvcc/ts"
	"github.com/opencluster/opencluster/rpc/ocpb"
)

// TestSnapshotReadRepeatable: a read at a snapshot R gives the same answer
// however often it is repeated, while writers keep writing the key. A
// write that took its timestamp before R but was still in flight when the
// first read ran must not appear under R afterwards (invariant 4).
func TestSnapshotReadRepeatable(t *testing.T) {
	n := openTestNode(t)
	ctx := ctxT(t)
	key := []byte("hot")
	if _, err := n.Put(ctx, &ocpb.PutRequest{Key: key, Value: []byte("0")}); err != nil {
		t.Fatal(err)
	}
	wctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := 0; wctx.Err() == nil; i++ {
				_, _ = n.Put(wctx, &ocpb.PutRequest{Key: key, Value: fmt.Appendf(nil, "%d-%d", g, i)})
			}
		})
	}
	defer func() { stop(); wg.Wait() }()
	deadline := time.Now().Add(time.Second)
	for reads := 0; time.Now().Before(deadline); reads++ {
		at, err := n.tso.now(ctx)
		if err != nil {
			t.Fatal(err)
		}
		first, err := n.Get(ctx, &ocpb.GetRequest{Key: key, Version: uint64(at)})
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
		again, err := n.Get(ctx, &ocpb.GetRequest{Key: key, Version: uint64(at)})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(first.Kv.Value, again.Kv.Value) || first.Kv.Version != again.Kv.Version {
			t.Fatalf("read %d at %d: %q@%d, then %q@%d", reads, at, first.Kv.Value, first.Kv.Version, again.Kv.Value, again.Kv.Version)
		}
	}
}

// TestSnapshotOlderThanGCWindowRefused: a read at a version older than the
// GC window is refused even before this node ran its first GC (as after a
// restart): another node leading the bucket may have collected below it.
func TestSnapshotOlderThanGCWindowRefused(t *testing.T) {
	n := openTestNode(t)
	ctx := ctxT(t)
	put, err := n.Put(ctx, &ocpb.PutRequest{Key: []byte("k"), Value: []byte("v")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.Get(ctx, &ocpb.GetRequest{Key: []byte("k"), Version: put.Version}); err != nil {
		t.Fatalf("read at the write's own version: %v", err)
	}
	old := ts.Timestamp(put.Version) - ts.FromDuration(n.cfg.GCWindow+time.Second)
	if _, err := n.Get(ctx, &ocpb.GetRequest{Key: []byte("k"), Version: uint64(old)}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("read at a version older than the GC window: %v, want ErrInvalid", err)
	}
}
