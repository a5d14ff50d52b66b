package kv

import (
	"context"
	"errors"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/opencluster/opencluster/rpc/ocpb"
)

func openTestNode(t *testing.T) *Node {
	t.Helper()
	n, err := Open(TestConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Error(err)
		}
	})
	return n
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestNodePutGet(t *testing.T) {
	n := openTestNode(t)
	ctx := ctxT(t)
	put, err := n.Put(ctx, &ocpb.PutRequest{Key: []byte("a"), Value: []byte("1")})
	if err != nil {
		t.Fatal(err)
	}
	got, err := n.Get(ctx, &ocpb.GetRequest{Key: []byte("a")})
	if err != nil {
		t.Fatal(err)
	}
	if string(got.Kv.Value) != "1" || got.Kv.Version != put.Version {
		t.Fatalf("Get = %q@%d, want 1@%d", got.Kv.Value, got.Kv.Version, put.Version)
	}
	if _, err := n.Get(ctx, &ocpb.GetRequest{Key: []byte("missing")}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get(missing) err = %v, want ErrNotFound", err)
	}
}

func TestNodeRestrictCommit(t *testing.T) {
	n := openTestNode(t)
	ctx := ctxT(t)
	if _, err := n.Put(ctx, &ocpb.PutRequest{Key: []byte("bal"), Value: []byte("10")}); err != nil {
		t.Fatal(err)
	}
	tx, err := n.Restrict(ctx, &ocpb.RestrictRequest{
		Name: "UpdateBalance:4587", Ttl: durationpb.New(15 * time.Second), Isolation: ocpb.Isolation_SNAPSHOT,
		Keys: []*ocpb.KeyLockRequest{{Key: []byte("bal"), Mode: ocpb.KeyMode_WRITE}, {Key: []byte("user"), Mode: ocpb.KeyMode_READ}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.Put(ctx, &ocpb.PutRequest{Key: []byte("bal"), Value: []byte("20"), Code: tx.Code}); err != nil {
		t.Fatal(err)
	}
	own, err := n.Get(ctx, &ocpb.GetRequest{Key: []byte("bal"), Code: tx.Code})
	if err != nil || string(own.Kv.Value) != "20" {
		t.Fatalf("holder reads %v, %v; want its provisional 20", own, err)
	}
	other, err := n.Get(ctx, &ocpb.GetRequest{Key: []byte("bal")})
	if err != nil || string(other.Kv.Value) != "10" {
		t.Fatalf("snapshot-mode reader reads %v, %v; want committed 10", other, err)
	}
	_, err = n.Put(ctx, &ocpb.PutRequest{Key: []byte("bal"), Value: []byte("x"), Wait: durationpb.New(50 * time.Millisecond)})
	if !errors.Is(err, ErrWaitTimeout) {
		t.Fatalf("plain Put on a locked key: err = %v, want ErrWaitTimeout", err)
	}
	c, err := n.Commit(ctx, &ocpb.CommitRequest{Name: "UpdateBalance:4587", Code: tx.Code})
	if err != nil {
		t.Fatal(err)
	}
	after, err := n.Get(ctx, &ocpb.GetRequest{Key: []byte("bal")})
	if err != nil || string(after.Kv.Value) != "20" || after.Kv.Version != c.CommitVersion {
		t.Fatalf("after commit reads %v, %v; want 20@%d", after, err, c.CommitVersion)
	}
}

func TestNodeNamedLockExpires(t *testing.T) {
	n := openTestNode(t)
	ctx := ctxT(t)
	l, err := n.Acquire(ctx, &ocpb.AcquireRequest{Name: "m", Ttl: durationpb.New(100 * time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	l2, err := n.Acquire(ctx, &ocpb.AcquireRequest{Name: "m", Ttl: durationpb.New(time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	if time.Since(start) < 90*time.Millisecond {
		t.Fatalf("second holder granted after %s, before the first one's ttl", time.Since(start))
	}
	if l2.Fence != l.Fence+1 {
		t.Fatalf("fences %d then %d, want consecutive", l.Fence, l2.Fence)
	}
	if _, err := n.Release(ctx, &ocpb.ReleaseRequest{Name: "m", Code: l.Code}); !errors.Is(err, ErrNotHolder) {
		t.Fatalf("release by expired holder: err = %v, want ErrNotHolder", err)
	}
}
