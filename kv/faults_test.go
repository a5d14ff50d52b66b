package kv

import (
	"errors"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/opencluster/opencluster/rpc/ocpb"
)

// TestPlantedFaults checks that each planted bug really breaks what the
// consistency harness must then catch, and only while it is switched on.
func TestPlantedFaults(t *testing.T) {
	cfg := TestConfig()
	cfg.Faults = &Faults{}
	n, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	ctx := ctxT(t)

	t.Run("stale reads", func(t *testing.T) {
		if _, err := n.Put(ctx, &ocpb.PutRequest{Key: []byte("s"), Value: []byte("new")}); err != nil {
			t.Fatal(err)
		}
		n.cfg.Faults.StaleReads.Store(true)
		_, err := n.Get(ctx, &ocpb.GetRequest{Key: []byte("s")})
		n.cfg.Faults.StaleReads.Store(false)
		if !errors.Is(err, ErrNotFound) {
			t.Fatalf("planted stale read of a fresh write: %v, want it missed (NotFound)", err)
		}
		if _, err := n.Get(ctx, &ocpb.GetRequest{Key: []byte("s")}); err != nil {
			t.Fatalf("read with the fault off: %v", err)
		}
	})
	t.Run("no fence check", func(t *testing.T) {
		put := func(token uint64) error {
			_, err := n.Put(ctx, &ocpb.PutRequest{Key: []byte("f"), Value: []byte("v"), Fence: &ocpb.Fence{Name: "m", Token: token}})
			return err
		}
		if err := put(5); err != nil {
			t.Fatal(err)
		}
		if err := put(4); !errors.Is(err, ErrFenceTooLow) {
			t.Fatalf("lower fence with the check on: %v, want ErrFenceTooLow", err)
		}
		n.cfg.Faults.NoFenceCheck.Store(true)
		defer n.cfg.Faults.NoFenceCheck.Store(false)
		if err := put(4); err != nil {
			t.Fatalf("lower fence with the planted bug: %v, want it accepted", err)
		}
	})
	t.Run("early expiry", func(t *testing.T) {
		n.cfg.Faults.EarlyExpiry.Store(true)
		defer n.cfg.Faults.EarlyExpiry.Store(false)
		if _, err := n.Acquire(ctx, &ocpb.AcquireRequest{Name: "e", Ttl: durationpb.New(400 * time.Millisecond)}); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if _, err := n.Acquire(ctx, &ocpb.AcquireRequest{Name: "e", Ttl: durationpb.New(time.Second)}); err != nil {
			t.Fatal(err)
		}
		if waited := time.Since(start); waited >= 350*time.Millisecond {
			t.Fatalf("second grant after %s: the planted early expiry did not expire the lock early", waited)
		}
	})
}
