package kvtest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/opencluster/opencluster/kv"
	"github.com/opencluster/opencluster/rpc/ocpb"
)

// TestDrainThenRemoveNode drains a node of a four-node cluster under the
// rebalancer: its replicas and leaderships move to the other three, a lock
// held across the drain keeps its code and fence, the node may then be
// removed (a live node that still holds replicas may not), and the
// cluster serves without it.
func TestDrainThenRemoveNode(t *testing.T) {
	c := Start(t, Options{Nodes: 4, Rebalance: true})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	n := c.Node(1)
	for i := range 16 {
		k := fmt.Sprint("d", i)
		if _, err := On(ctx, n, func() (*ocpb.PutResponse, error) {
			return n.Put(ctx, &ocpb.PutRequest{Key: []byte(k), Value: []byte(k), RequestId: k})
		}); err != nil {
			t.Fatal(err)
		}
	}
	lock, err := On(ctx, n, func() (*ocpb.AcquireResponse, error) {
		return n.Acquire(ctx, &ocpb.AcquireRequest{Name: "held-across-the-drain", Ttl: durationpb.New(time.Minute), RequestId: "a"})
	})
	if err != nil {
		t.Fatal(err)
	}
	holds := func(id string) (replicas, leaders int, moves int) {
		st, err := c.Primary().Status(ctx, nil)
		if err != nil {
			return -1, -1, -1
		}
		for _, b := range st.Buckets {
			if slices.Contains(b.Replicas, id) {
				replicas++
			}
			if b.Leader == id {
				leaders++
			}
		}
		return replicas, leaders, len(st.Moves)
	}
	c.WaitFor(40*time.Second, "node 4 to hold replicas", func() bool { r, _, _ := holds("4"); return r > 0 })

	// A live node holding replicas may not be removed.
	if _, err := Do(ctx, c, func(n *kv.Node) (*ocpb.RemoveNodeResponse, error) {
		return n.RemoveNode(ctx, &ocpb.RemoveNodeRequest{NodeId: "4"})
	}); !errors.Is(err, kv.ErrPrecondition) {
		t.Fatalf("removing a live node that holds replicas: %v, want ErrPrecondition", err)
	}
	if _, err := Do(ctx, c, func(n *kv.Node) (*ocpb.DrainNodeResponse, error) {
		return n.DrainNode(ctx, &ocpb.DrainNodeRequest{NodeId: "4"})
	}); err != nil {
		t.Fatal(err)
	}
	c.WaitFor(60*time.Second, "node 4 to drain", func() bool {
		r, l, m := holds("4")
		return r == 0 && l == 0 && m == 0
	})
	st, err := c.Primary().Status(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range st.Members {
		if want := map[bool]string{true: "draining", false: "active"}[m.Id == "4"]; m.State != want {
			t.Errorf("member %s is %q, want %q", m.Id, m.State, want)
		}
	}
	for _, b := range st.Buckets {
		if len(b.Replicas) != 3 {
			t.Errorf("bucket %d has replicas %v after the drain, want 3", b.Bucket, b.Replicas)
		}
	}
	// The meta group leaves the drained node too (it keeps more than
	// three voters without it).
	var removeErr error
	defer func() {
		if t.Failed() {
			t.Logf("last RemoveNode error: %v", removeErr)
		}
	}()
	c.WaitFor(30*time.Second, "the meta group to leave node 4", func() bool {
		_, removeErr = Do(ctx, c, func(n *kv.Node) (*ocpb.RemoveNodeResponse, error) {
			return n.RemoveNode(ctx, &ocpb.RemoveNodeRequest{NodeId: "4"})
		})
		return removeErr == nil
	})
	c.StopNode(4)
	for i := range 16 {
		k := fmt.Sprint("d", i)
		got, err := Do(ctx, c, func(n *kv.Node) (*ocpb.GetResponse, error) {
			return n.Get(ctx, &ocpb.GetRequest{Key: []byte(k)})
		})
		if err != nil || string(got.GetKv().GetValue()) != k {
			t.Fatalf("get %s after node 4 left: %v, %v", k, got, err)
		}
	}
	desc, err := Do(ctx, c, func(n *kv.Node) (*ocpb.DescribeResponse, error) {
		return n.Describe(ctx, &ocpb.DescribeRequest{Name: "held-across-the-drain", Kind: ocpb.LockKind_NAMED})
	})
	if err != nil || !desc.Locks[0].Held || desc.Locks[0].Fence != lock.Fence {
		t.Fatalf("the named lock after the drain: %v, %v", desc, err)
	}
	if _, err := Do(ctx, c, func(n *kv.Node) (*ocpb.ReleaseResponse, error) {
		return n.Release(ctx, &ocpb.ReleaseRequest{Name: "held-across-the-drain", Code: lock.Code, RequestId: "rel"})
	}); err != nil {
		t.Fatalf("release with the code after the drain: %v", err)
	}
	st, err = c.Primary().Status(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if m := st.Members[slices.IndexFunc(st.Members, func(m *ocpb.Member) bool { return m.Id == "4" })]; m.State != "removed" {
		t.Errorf("node 4 after remove: %q, want removed", m.State)
	}
}
