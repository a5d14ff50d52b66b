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
		// Two grants of m: fences 1 and 2 (a write's token must be one
		// the lock granted).
		for range 2 {
			l, err := n.Acquire(ctx, &ocpb.AcquireRequest{Name: "m", Ttl: durationpb.New(time.Second)})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := n.Release(ctx, &ocpb.ReleaseRequest{Name: "m", Code: l.Code}); err != nil {
				t.Fatal(err)
			}
		}
		if err := put(2); err != nil {
			t.Fatal(err)
		}
		if err := put(1); !errors.Is(err, ErrFenceTooLow) {
			t.Fatalf("lower fence with the check on: %v, want ErrFenceTooLow", err)
		}
		n.cfg.Faults.NoFenceCheck.Store(true)
		defer n.cfg.Faults.NoFenceCheck.Store(false)
		if err := put(1); err != nil {
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

// TestFenceNeverGrantedRefused: a fenced write whose token its lock never
// granted (no such lock, or above its newest grant) is refused before it
// reaches the key; had the key kept it as its highest, every real holder's
// token would be refused from then on.
func TestFenceNeverGrantedRefused(t *testing.T) {
	n := openTestNode(t)
	ctx := ctxT(t)
	put := func(name string, token uint64) error {
		_, err := n.Put(ctx, &ocpb.PutRequest{Key: []byte("k"), Value: []byte("v"), Fence: &ocpb.Fence{Name: name, Token: token}})
		return err
	}
	if err := put("nobody", 1); !errors.Is(err, ErrFenceUnknown) {
		t.Fatalf("fence of a lock never taken: %v, want ErrFenceUnknown", err)
	}
	l, err := n.Acquire(ctx, &ocpb.AcquireRequest{Name: "L", Ttl: durationpb.New(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	if err := put("L", l.Fence+1); !errors.Is(err, ErrFenceUnknown) {
		t.Fatalf("token above the grant: %v, want ErrFenceUnknown", err)
	}
	if err := put("L", l.Fence); err != nil {
		t.Fatalf("the granted token after the refused ones: %v", err)
	}
	if _, err := n.Release(ctx, &ocpb.ReleaseRequest{Name: "L", Code: l.Code}); err != nil {
		t.Fatal(err)
	}
	// A released lock's tokens stay valid (its record keeps the fence);
	// they are refused by the key only once a newer one wrote.
	if err := put("L", l.Fence); err != nil {
		t.Fatalf("a released lock's token: %v", err)
	}
}
