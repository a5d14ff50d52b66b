package kv

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

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
	n := &Node{cfg: Config{Remote: oracle}, stopper: make(chan struct{}), metrics: newMetrics(nil, nil)}
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
	// Every round trip is timed once, with the oracle's 2 ms in it.
	var m dto.Metric
	if err := n.metrics.tsoRemote.Write(&m); err != nil {
		t.Fatal(err)
	}
	if got, want := m.GetHistogram().GetSampleCount(), uint64(oracle.trips.Load()); got != want {
		t.Errorf("tso_remote_duration_seconds counted %d round trips, want %d", got, want)
	}
	if sum, min := m.GetHistogram().GetSampleSum(), 0.002*float64(oracle.trips.Load()); sum < min {
		t.Errorf("tso_remote_duration_seconds sum %.4fs, want at least %.4fs", sum, min)
	}
	t.Logf("%d callers, %d round trips", callers, oracle.trips.Load())
}

// TestDatingReusesRecentTimestamps: a timestamp that only dates a record
// is the newest one the node saw while that is under a second old (no
// round trip), and a fresh one after.
func TestDatingReusesRecentTimestamps(t *testing.T) {
	oracle := &countingOracle{}
	clock := ts.NewSkewedClock(ts.RealClock{})
	n := &Node{cfg: Config{Remote: oracle, OracleClock: clock}, stopper: make(chan struct{}), metrics: newMetrics(nil, nil)}
	n.bg, n.bgCancel = context.WithCancel(context.Background())
	defer func() { n.bgCancel(); close(n.stopper); n.wg.Wait() }()
	n.tso = newTSOService(n)
	oracle.next = ts.FromTime(time.Now())

	if _, ok := n.tso.recent(); ok {
		t.Fatal("a recent timestamp before any was seen")
	}
	seen, err := n.tso.remote.get(context.Background(), 2)
	if err != nil {
		t.Fatal(err)
	}
	got, err := n.tso.dating(context.Background())
	if err != nil || got != seen || oracle.trips.Load() != 1 {
		t.Fatalf("dating right after a timestamp: %v (seen %v), %v, %d round trips; want the seen one, no trip", got, seen, err, oracle.trips.Load())
	}
	clock.Set(2*datingStaleness, 1)
	if _, ok := n.tso.recent(); ok {
		t.Fatal("a timestamp two seconds old still dates records")
	}
}

// movedOracle is a Remote whose node 1 no longer leads the meta group: it
// holds each round trip until release is closed, then refuses it. Node 2
// answers.
type movedOracle struct {
	Remote
	release chan struct{}
	asked   [3]atomic.Int32
}

func (o *movedOracle) Timestamp(ctx context.Context, node uint64, count int) (ts.Timestamp, error) {
	o.asked[node].Add(1)
	if node == 1 {
		<-o.release
		return 0, ErrNotLeader
	}
	return 100, nil
}

// TestRemoteTimestampsFollowAMovedLeader: a caller that names a new meta
// leader while the batcher's round trip to the old one is in flight gets
// its timestamp from the new one, though the queue never emptied between
// the two round trips.
func TestRemoteTimestampsFollowAMovedLeader(t *testing.T) {
	oracle := &movedOracle{release: make(chan struct{})}
	n := &Node{cfg: Config{Remote: oracle}, stopper: make(chan struct{}), metrics: newMetrics(nil, nil)}
	n.bg, n.bgCancel = context.WithCancel(context.Background())
	defer func() { n.bgCancel(); close(n.stopper); n.wg.Wait() }()
	n.tso = newTSOService(n)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	old := make(chan error, 1)
	go func() {
		_, err := n.tso.remote.get(ctx, 1)
		old <- err
	}()
	for oracle.asked[1].Load() == 0 { // the round trip to node 1 is out
		time.Sleep(time.Millisecond)
	}
	got := make(chan tsResult, 1)
	go func() {
		v, err := n.tso.remote.get(ctx, 2)
		got <- tsResult{v, err}
	}()
	for {
		n.tso.remote.mu.Lock()
		queued := len(n.tso.remote.mu.queue)
		n.tso.remote.mu.Unlock()
		if queued == 1 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	close(oracle.release)
	if err := <-old; err == nil {
		t.Fatal("the round trip to the old leader succeeded")
	}
	r := <-got
	if r.err != nil || r.ts != 100 {
		t.Fatalf("caller naming the new leader got %d, %v; want 100 from node 2", r.ts, r.err)
	}
	if a1, a2 := oracle.asked[1].Load(), oracle.asked[2].Load(); a1 != 1 || a2 != 1 {
		t.Fatalf("round trips: %d to the old leader, %d to the new; want 1 and 1", a1, a2)
	}
}
