package server

import (
	"errors"
	"io"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/opencluster/opencluster/kv"
	"github.com/opencluster/opencluster/rpc/ocpb"
)

// TestKVNode runs the services over a real one-node kv.Node (in-memory
// filesystem): the contract between validation, normalisation, the error
// table and the production Backend, end to end.
func TestKVNode(t *testing.T) {
	kcfg := kv.TestConfig()
	kcfg.DataDir = t.TempDir()
	node, err := kv.Open(kcfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = node.Close() }) // after the gRPC server stops (cleanups run last-in first-out)
	e := newEnv(t, nil, withBackend(node))
	ctx := testCtx(t)

	// An empty fence is dropped before the node sees it.
	put, err := e.kv.Put(ctx, &ocpb.PutRequest{Key: []byte("a"), Value: []byte("1"), Fence: &ocpb.Fence{}})
	if err != nil || put.GetVersion() == 0 {
		t.Fatalf("Put = %v, %v", put, err)
	}
	get, err := e.kv.Get(ctx, &ocpb.GetRequest{Key: []byte("a")})
	if err != nil || string(get.GetKv().GetValue()) != "1" || get.GetKv().GetVersion() != put.GetVersion() {
		t.Fatalf("Get = %v, %v", get, err)
	}
	if _, err := e.kv.Get(ctx, &ocpb.GetRequest{Key: []byte("missing")}); status.Code(err) != codes.NotFound {
		t.Fatalf("Get(missing) = %v, want NotFound", err)
	}

	// The default ttl (TestConfig: 1s) reaches the node.
	lock, err := e.locks.Acquire(ctx, &ocpb.AcquireRequest{Name: "L"})
	if err != nil || lock.GetTtl().AsDuration() != time.Second || lock.GetFence() == 0 {
		t.Fatalf("Acquire = %v, %v", lock, err)
	}
	if _, err := e.locks.Acquire(ctx, &ocpb.AcquireRequest{Name: "L", Wait: durationpb.New(0)}); status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("Acquire(held, wait 0) = %v, want DeadlineExceeded", err)
	}

	stream, err := e.locks.KeepAlive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		code string
		lost bool
	}{{lock.GetCode(), false}, {testCode, true}, {lock.GetCode(), false}} {
		if err := stream.Send(&ocpb.KeepAliveRequest{Name: "L", Code: tc.code, Kind: ocpb.LockKind_NAMED}); err != nil {
			t.Fatal(err)
		}
		resp, err := stream.Recv()
		if err != nil || resp.GetLost() != tc.lost || resp.GetCode() != tc.code {
			t.Fatalf("KeepAlive(lost=%v) = %v, %v", tc.lost, resp, err)
		}
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("KeepAlive after CloseSend = %v, want EOF", err)
	}
	if _, err := e.locks.Release(ctx, &ocpb.ReleaseRequest{Name: "L", Code: lock.GetCode()}); err != nil {
		t.Fatalf("Release: %v", err)
	}

	tx, err := e.locks.Restrict(ctx, &ocpb.RestrictRequest{Name: "T", Keys: []*ocpb.KeyLockRequest{{Key: []byte("a"), Mode: ocpb.KeyMode_WRITE}}})
	if err != nil {
		t.Fatalf("Restrict: %v", err)
	}
	if _, err := e.kv.Put(ctx, &ocpb.PutRequest{Key: []byte("a"), Value: []byte("2"), Code: tx.GetCode()}); err != nil {
		t.Fatalf("Put under the lock: %v", err)
	}
	commit, err := e.locks.Commit(ctx, &ocpb.CommitRequest{Name: "T", Code: tx.GetCode()})
	if err != nil {
		t.Fatalf("Commit: %v", err)
	}
	scan, err := e.kv.Scan(ctx, &ocpb.ScanRequest{})
	if err != nil || len(scan.GetKvs()) != 1 || scan.GetKvs()[0].GetVersion() != commit.GetCommitVersion() {
		t.Fatalf("Scan = %v, %v", scan, err)
	}
	mustNotContain(t, e.logs.String(), lock.GetCode(), "log")
	mustNotContain(t, e.logs.String(), tx.GetCode(), "log")
}
