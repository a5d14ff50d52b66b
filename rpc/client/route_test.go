package client_test

import (
	"testing"
	"time"

	"github.com/opencluster/opencluster/rpc/client/clienttest"
)

// TestRoutesToBucketLeader checks that once the client has the placement,
// requests about a key go straight to its bucket's leader rather than to
// the current endpoint, and that requests with no key (BatchGet) stay on
// the current endpoint.
func TestRoutesToBucketLeader(t *testing.T) {
	h := clienttest.Start(t, "n1", "n2")
	h.Fake.SetLeader(clienttest.Targets("n2")[0])
	c := newClient(t, h, []string{"n1", "n2"})
	ctx := testCtx(t)
	// The first calls fetch the placement in the background.
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := c.Put(ctx, []byte("k"), []byte("v")); err != nil {
			t.Fatal(err)
		}
		calls := h.Fake.CallsOf("Put")
		if calls[len(calls)-1].Addr == "n2" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("puts still go to %s, not the leader n2", calls[len(calls)-1].Addr)
		}
		time.Sleep(10 * time.Millisecond)
	}
	before := len(h.Fake.CallsOf("Get"))
	for range 5 {
		if _, err := c.Get(ctx, []byte("k")); err != nil {
			t.Fatal(err)
		}
	}
	for _, call := range h.Fake.CallsOf("Get")[before:] {
		if call.Addr != "n2" {
			t.Errorf("a Get went to %s, not the leader", call.Addr)
		}
	}
	if _, err := c.BatchGet(ctx, [][]byte{[]byte("k")}); err != nil {
		t.Fatal(err)
	}
	if calls := h.Fake.CallsOf("BatchGet"); calls[len(calls)-1].Addr != "n1" {
		t.Errorf("BatchGet went to %s, want the current endpoint n1", calls[len(calls)-1].Addr)
	}
}
