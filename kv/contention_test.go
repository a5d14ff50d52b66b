package kv

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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
}
