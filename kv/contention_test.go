package kv

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/opencluster/opencluster/rpc/ocpb"
)

// TestNamedLockMutualExclusion: many goroutines contend on one named lock;
// never two holders at once, and every grant's fence is larger than the
// previous one.
func TestNamedLockMutualExclusion(t *testing.T) {
	n := openTestNode(t)
	ctx := ctxT(t)
	var (
		holders   atomic.Int32
		mu        sync.Mutex
		lastFence uint64
		grants    int
		wg        sync.WaitGroup
		errs      = make(chan error, 16)
	)
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 10 {
				l, err := n.Acquire(ctx, &ocpb.AcquireRequest{Name: "mutex", Ttl: durationpb.New(5 * time.Second), RequestId: fmt.Sprint(g, "-", i)})
				if err != nil {
					errs <- err
					return
				}
				if h := holders.Add(1); h != 1 {
					errs <- fmt.Errorf("%d holders at once", h)
				}
				mu.Lock()
				if l.Fence <= lastFence {
					errs <- fmt.Errorf("fence %d after %d", l.Fence, lastFence)
				}
				lastFence = l.Fence
				grants++
				mu.Unlock()
				time.Sleep(100 * time.Microsecond)
				holders.Add(-1)
				if _, err := n.Release(ctx, &ocpb.ReleaseRequest{Name: "mutex", Code: l.Code}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if grants != 160 {
		t.Fatalf("%d grants, want 160", grants)
	}
	if testutil.ToFloat64(n.metrics.handoffs) == 0 {
		t.Fatal("16 contenders and no release handed the lock over")
	}
}

// TestContendedLockHandedOff: a release hands the lock to the waiting
// head in the same command (one round), with the next fence; a waiter
// that gave up is not handed anything and the lock ends up free.
func TestContendedLockHandedOff(t *testing.T) {
	n := openTestNode(t)
	ctx := ctxT(t)
	ttl := durationpb.New(5 * time.Second)
	first, err := n.Acquire(ctx, &ocpb.AcquireRequest{Name: "h", Ttl: ttl, RequestId: "first"})
	if err != nil {
		t.Fatal(err)
	}
	offered := func() bool {
		n.handoffs.mu.Lock()
		defer n.handoffs.mu.Unlock()
		return n.handoffs.offers["h"] != nil
	}

	// A waiter that gives up withdraws its offer.
	if _, err := n.Acquire(ctx, &ocpb.AcquireRequest{Name: "h", Ttl: ttl, Wait: durationpb.New(30 * time.Millisecond), RequestId: "gone"}); !errors.Is(err, ErrWaitTimeout) {
		t.Fatalf("waiter that gave up: %v, want ErrWaitTimeout", err)
	}
	if offered() {
		t.Fatal("an offer outlived its waiter")
	}

	got := make(chan *ocpb.AcquireResponse, 1)
	go func() {
		l, err := n.Acquire(ctx, &ocpb.AcquireRequest{Name: "h", Ttl: ttl, RequestId: "second"})
		if err != nil {
			t.Error(err)
		}
		got <- l
	}()
	for !offered() {
		time.Sleep(time.Millisecond)
	}
	if _, err := n.Release(ctx, &ocpb.ReleaseRequest{Name: "h", Code: first.Code}); err != nil {
		t.Fatal(err)
	}
	second := <-got
	if second == nil {
		t.FailNow()
	}
	if second.Fence != first.Fence+1 || second.Code == first.Code {
		t.Fatalf("handed grant fence %d code %s after fence %d code %s", second.Fence, second.Code, first.Fence, first.Code)
	}
	if h := testutil.ToFloat64(n.metrics.handoffs); h != 1 {
		t.Fatalf("%v hand-offs, want 1", h)
	}
	// The grant is a real one: its code releases it, and then it is free.
	if _, err := n.Release(ctx, &ocpb.ReleaseRequest{Name: "h", Code: second.Code}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Acquire(ctx, &ocpb.AcquireRequest{Name: "h", Ttl: ttl, Wait: durationpb.New(0)}); err != nil {
		t.Fatalf("lock not free after the handed grant was released: %v", err)
	}
}
