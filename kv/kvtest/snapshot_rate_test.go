package kvtest

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/opencluster/opencluster/kv"
	"github.com/opencluster/opencluster/rpc/ocpb"
)

// TestSnapshotsArePaced checks Config.SnapshotRate: a node joining a
// cluster that holds 9 MiB catches up (its applied indexes reach the
// leader's) no faster than the rate allows beyond the limiter's burst.
func TestSnapshotsArePaced(t *testing.T) {
	cfg := kv.TestConfig()
	const rate = 2 << 20
	cfg.SnapshotRate = rate
	c := Start(t, Options{Nodes: 1, Config: &cfg})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	p := c.Primary()
	value := bytes.Repeat([]byte("s"), 256<<10)
	const values = 36 // 9 MiB
	for i := range values {
		if _, err := p.Put(ctx, &ocpb.PutRequest{Key: fmt.Appendf(nil, "paced%d", i), Value: value}); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	n2 := c.StartNode(2)
	c.WaitCaughtUp(n2)
	// The limiter lets one burst (3 MiB) through at once, then paces the
	// rest: at least (9 - 3) MiB / 2 MiB/s = 3 s.
	if elapsed, least := time.Since(start), time.Duration(float64(values*len(value)-3<<20)/rate*float64(time.Second)); elapsed < least {
		t.Fatalf("node 2 caught up on %d MiB in %v; at %d MiB/s it takes at least %v", values/4, elapsed, rate>>20, least)
	}
}
