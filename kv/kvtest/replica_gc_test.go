package kvtest

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/opencluster/opencluster/kv"
	"github.com/opencluster/opencluster/rpc/ocpb"
)

// TestReplicaGCAfterMove moves a bucket's replica off a node and checks
// that the node deletes the bucket's data (and only that bucket's), then
// moves it back and checks the node receives the data again by snapshot
// and serves it.
func TestReplicaGCAfterMove(t *testing.T) {
	c := Start(t, Options{Nodes: 4})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const b, buckets = 5, 8
	n := c.Node(1)
	var keys [][]byte
	for i := range 10 {
		k := inBucket(fmt.Sprintf("gc%d-", i), b, buckets)
		keys = append(keys, k)
		if _, err := On(ctx, n, func() (*ocpb.PutResponse, error) {
			return n.Put(ctx, &ocpb.PutRequest{Key: k, Value: k, RequestId: string(k)})
		}); err != nil {
			t.Fatal(err)
		}
	}
	st, err := n.Status(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	var from uint64
	for _, r := range st.Buckets[b].Replicas {
		if r != st.Buckets[b].Leader && r != "4" {
			from = mustID(t, r)
			break
		}
	}
	if from == 0 || slices.Contains(st.Buckets[b].Replicas, "4") {
		t.Fatalf("bucket %d before the move: %+v", b, st.Buckets[b])
	}
	old := c.Node(from)
	c.WaitCaughtUp(old)
	other := (b + 1) % buckets
	otherKeys, err := old.LocalKeys(uint32(other))
	if err != nil {
		t.Fatal(err)
	}
	if k, err := old.LocalKeys(b); err != nil || k == 0 {
		t.Fatalf("node %d holds %d keys of bucket %d before the move (%v)", from, k, b, err)
	}
	if _, err := Do(ctx, c, func(n *kv.Node) (*ocpb.MoveReplicaResponse, error) {
		return n.MoveReplica(ctx, &ocpb.MoveReplicaRequest{Bucket: b, From: idStr(from), To: "4"})
	}); err != nil {
		t.Fatal(err)
	}
	c.WaitFor(20*time.Second, fmt.Sprintf("node %d to delete bucket %d", from, b), func() bool {
		k, err := old.LocalKeys(b)
		return err == nil && k == 0
	})
	if k, err := old.LocalKeys(uint32(other)); err != nil || k != otherKeys {
		t.Fatalf("bucket %d on node %d: %d keys after the GC of bucket %d, %d before (%v)", other, from, k, b, otherKeys, err)
	}

	// Back again: a snapshot brings the data, and the node serves it.
	if _, err := Do(ctx, c, func(n *kv.Node) (*ocpb.MoveReplicaResponse, error) {
		return n.MoveReplica(ctx, &ocpb.MoveReplicaRequest{Bucket: b, From: "4", To: idStr(from)})
	}); err != nil {
		t.Fatal(err)
	}
	c.WaitFor(20*time.Second, fmt.Sprintf("node %d to hold bucket %d again", from, b), func() bool {
		k, err := old.LocalKeys(b)
		return err == nil && k > 0
	})
	c.StopNode(4) // the replica that held the bucket meanwhile
	for _, k := range keys {
		got, err := On(ctx, old, func() (*ocpb.GetResponse, error) { return old.Get(ctx, &ocpb.GetRequest{Key: k}) })
		if err != nil || string(got.GetKv().GetValue()) != string(k) {
			t.Fatalf("get %s through node %d after the return: %v, %v", k, from, got, err)
		}
	}
}
