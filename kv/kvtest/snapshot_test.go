package kvtest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/opencluster/opencluster/kv"
	"github.com/opencluster/opencluster/rpc/ocpb"
)

// TestLaggingReplicaIngestsSnapshotSSTs is TestLaggingReplicaCatchesUpBySnapshot
// with every non-empty snapshot ingested as SSTs (Config.SnapshotSSTBytes
// = 1), over a replica that holds keys the snapshot no longer has: after
// catching up, and again after a restart, reads that need the caught-up
// node see the new keys and not the deleted ones.
func TestLaggingReplicaIngestsSnapshotSSTs(t *testing.T) {
	cfg := kv.TestConfig()
	cfg.RaftLogKeep = 5
	cfg.SnapshotSSTBytes = 1
	c := Start(t, Options{Nodes: 3, Config: &cfg})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	put := func(k string) {
		t.Helper()
		if _, err := Do(ctx, c, func(n *kv.Node) (*ocpb.PutResponse, error) {
			return n.Put(ctx, &ocpb.PutRequest{Key: []byte(k), Value: []byte("v")})
		}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 40 {
		put(fmt.Sprint("gone/", i))
	}
	primary := c.Primary().ID()
	lagging := c.IDs()[2]
	if primary == lagging {
		lagging = c.IDs()[1]
	}
	c.WaitCaughtUp(c.Node(lagging))
	c.StopNode(lagging)
	for i := range 40 {
		k := fmt.Sprint("gone/", i)
		if _, err := Do(ctx, c, func(n *kv.Node) (*ocpb.DeleteResponse, error) {
			return n.Delete(ctx, &ocpb.DeleteRequest{Key: []byte(k)})
		}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 300 {
		put(fmt.Sprint("lag/", i))
	}
	c.WaitCaughtUp(c.StartNode(lagging))
	// Without the primary, every read needs the caught-up node.
	c.StopNode(primary)
	check := func(when string) {
		t.Helper()
		readBack(ctx, t, c, "lag/", 300)
		for i := range 40 {
			k := fmt.Sprint("gone/", i)
			_, err := Do(ctx, c, func(n *kv.Node) (*ocpb.GetResponse, error) {
				return n.Get(ctx, &ocpb.GetRequest{Key: []byte(k)})
			})
			if !errors.Is(err, kv.ErrNotFound) {
				t.Fatalf("%s: get %s: err = %v, want ErrNotFound", when, k, err)
			}
		}
	}
	check("caught up")
	c.StopNode(lagging)
	c.StartNode(lagging)
	check("restarted")
}
