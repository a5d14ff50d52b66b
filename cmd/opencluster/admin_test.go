package main

import (
	"context"
	"errors"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/opencluster/opencluster/rpc/client"
	"github.com/opencluster/opencluster/rpc/cmdpb"
)

// TestTestAdmin drives the test-only admin service of a real server: a
// planted stale read misses a fresh write and stops when switched off;
// the oracle clock jumps an hour forward and back, and versions keep
// growing (T1). A server without --test-admin does not serve it.
func TestTestAdmin(t *testing.T) {
	if testing.Short() {
		t.Skip("starts server processes")
	}
	addr := freeAddr(t)
	startProcess(t, t.TempDir(), addr, "--test-admin")
	c := newTestClient(t, addr)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	admin := cmdpb.NewTestAdminClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	v1, err := c.Put(ctx, []byte("k"), []byte("1"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.SetFaults(ctx, &cmdpb.SetFaultsRequest{StaleReads: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, []byte("k")); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("planted stale read of a fresh key: %v, want NotFound", err)
	}
	if _, err := admin.SetFaults(ctx, &cmdpb.SetFaultsRequest{}); err != nil {
		t.Fatal(err)
	}
	if kv, err := c.Get(ctx, []byte("k")); err != nil || kv.Version != v1 {
		t.Errorf("read with the fault off: %v@%d, %v", kv.Value, kv.Version, err)
	}

	last := v1
	for _, offset := range []time.Duration{time.Hour, -time.Hour, 0} {
		if _, err := admin.SetClock(ctx, &cmdpb.SetClockRequest{OffsetMs: offset.Milliseconds(), Rate: 1}); err != nil {
			t.Fatal(err)
		}
		v, err := c.Put(ctx, []byte("k"), []byte("x"))
		if err != nil {
			t.Fatalf("put with the oracle clock at %s: %v", offset, err)
		}
		if v <= last {
			t.Fatalf("clock offset %s: version %d not above %d", offset, v, last)
		}
		last = v
	}

	plain := freeAddr(t)
	startProcess(t, t.TempDir(), plain)
	pconn, err := grpc.NewClient(plain, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer pconn.Close()
	if _, err := cmdpb.NewTestAdminClient(pconn).SetFaults(ctx, &cmdpb.SetFaultsRequest{StaleReads: true}); err == nil {
		t.Fatal("a server without --test-admin accepted SetFaults")
	}
}
