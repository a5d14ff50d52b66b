package kv

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencluster/opencluster/mvcc/ts"
)

// countingOracle is a Remote whose Timestamp hands out consecutive
// timestamps slowly, counting round trips.
type countingOracle struct {
	Remote
	mu    sync.Mutex
	next  ts.Timestamp
	trips atomic.Int32
}

func (o *countingOracle) Timestamp(ctx context.Context, node uint64, count int) (ts.Timestamp, error) {
	o.trips.Add(1)
	time.Sleep(2 * time.Millisecond)
	o.mu.Lock()
	defer o.mu.Unlock()
	first := o.next + 1
	o.next += ts.Timestamp(count)
	return first, nil
}

// issued returns the last timestamp handed out so far.
func (o *countingOracle) issued() ts.Timestamp {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.next
}

// TestRemoteTimestampsCoalesce checks that concurrent callers on a node
// that does not lead the meta group share round trips, get distinct
// timestamps, and each get one issued after its call began (fresh).
func TestRemoteTimestampsCoalesce(t *testing.T) {
	oracle := &countingOracle{}
	n := &Node{cfg: Config{Remote: oracle}, stopper: make(chan struct{})}
	n.bg, n.bgCancel = context.WithCancel(context.Background())
	defer func() { n.bgCancel(); close(n.stopper); n.wg.Wait() }()
	n.tso = newTSOService(n)

	const callers = 64
	var wg sync.WaitGroup
	got := make([]ts.Timestamp, callers)
	before := make([]ts.Timestamp, callers)
	for i := range callers {
		wg.Go(func() {
			before[i] = oracle.issued()
			v, err := n.tso.remote.get(context.Background(), 2)
			if err != nil {
				t.Error(err)
			}
			got[i] = v
		})
	}
	wg.Wait()
	seen := make(map[ts.Timestamp]bool)
	for i, v := range got {
		if seen[v] {
			t.Fatalf("timestamp %d handed out twice", v)
		}
		seen[v] = true
		if v <= before[i] {
			t.Errorf("caller %d got %d, not above %d issued before its call", i, v, before[i])
		}
	}
	if trips := oracle.trips.Load(); trips >= callers/2 {
		t.Errorf("%d callers took %d round trips: not coalesced", callers, trips)
	}
	t.Logf("%d callers, %d round trips", callers, oracle.trips.Load())
}
