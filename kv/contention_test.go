package kv

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/opencluster/opencluster/locks"
	"github.com/opencluster/opencluster/mvcc"
	"github.com/opencluster/opencluster/rpc/cmdpb"
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
	// Both waiters saw the lock held and offered without an acquire of
	// their own that would have been refused.
	if s := testutil.ToFloat64(n.metrics.triesSkipped); s != 2 {
		t.Fatalf("%v waiters skipped their try, want 2", s)
	}
	// The grant is a real one: its code releases it, and then it is free.
	if _, err := n.Release(ctx, &ocpb.ReleaseRequest{Name: "h", Code: second.Code}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Acquire(ctx, &ocpb.AcquireRequest{Name: "h", Ttl: ttl, Wait: durationpb.New(0)}); err != nil {
		t.Fatalf("lock not free after the handed grant was released: %v", err)
	}
}

// TestRetriedAcquireDoesNotQueueBehindItsWaiters: a retried Acquire (same
// request id) of a lock it already holds gets its grant back at once, even
// with waiters queued for the lock: they wait for it, so queueing behind
// them would stall everyone until the lock's ttl.
func TestRetriedAcquireDoesNotQueueBehindItsWaiters(t *testing.T) {
	n := openTestNode(t)
	ctx := ctxT(t)
	ttl := durationpb.New(5 * time.Second)
	first, err := n.Acquire(ctx, &ocpb.AcquireRequest{Name: "r", Ttl: ttl, RequestId: "first"})
	if err != nil {
		t.Fatal(err)
	}
	waiting := make(chan error, 1)
	go func() {
		_, err := n.Acquire(ctx, &ocpb.AcquireRequest{Name: "r", Ttl: ttl, Wait: durationpb.New(3 * time.Second), RequestId: "waiter"})
		waiting <- err
	}()
	for n.waits.Len(namedResource("r")) == 0 {
		time.Sleep(time.Millisecond)
	}
	retried, err := n.Acquire(ctx, &ocpb.AcquireRequest{Name: "r", Ttl: ttl, Wait: durationpb.New(time.Second), RequestId: "first"})
	if err != nil {
		t.Fatalf("retried acquire of a held lock: %v", err)
	}
	if retried.Code != first.Code || retried.Fence != first.Fence {
		t.Fatalf("retry got code %s fence %d, want the first grant's %s %d", retried.Code, retried.Fence, first.Code, first.Fence)
	}
	if _, err := n.Release(ctx, &ocpb.ReleaseRequest{Name: "r", Code: first.Code}); err != nil {
		t.Fatal(err)
	}
	if err := <-waiting; err != nil {
		t.Fatalf("waiter after the release: %v", err)
	}
}

// keyOffered reports whether a waiter of key offers its LockKeys.
func keyOffered(n *Node, key []byte) bool {
	n.keyHandoffs.mu.Lock()
	defer n.keyHandoffs.mu.Unlock()
	return n.keyHandoffs.offers[string(key)] != nil
}

// writeKeys is a KeyLockRequest list locking keys WRITE.
func writeKeys(keys ...[]byte) []*ocpb.KeyLockRequest {
	out := make([]*ocpb.KeyLockRequest, 0, len(keys))
	for _, k := range keys {
		out = append(out, &ocpb.KeyLockRequest{Key: k, Mode: ocpb.KeyMode_WRITE})
	}
	return out
}

// keyInBucketOf returns another key of key's bucket.
func keyInBucketOf(t *testing.T, node *Node, key []byte) []byte {
	t.Helper()
	b := mvcc.BucketOf(key, node.buckets)
	for i := range 10000 {
		k := []byte(fmt.Sprintf("%s-%d", key, i))
		if mvcc.BucketOf(k, node.buckets) == b {
			return k
		}
	}
	t.Fatalf("no other key of bucket %d", b)
	return nil
}

// keysInBuckets returns n keys of distinct buckets, in bucket order.
func keysInBuckets(t *testing.T, node *Node, n int) [][]byte {
	t.Helper()
	byBucket := make(map[mvcc.Bucket][]byte)
	for i := 0; len(byBucket) < n && i < 10000; i++ {
		k := []byte(fmt.Sprintf("acct-%d", i))
		b := mvcc.BucketOf(k, node.buckets)
		if byBucket[b] == nil {
			byBucket[b] = k
		}
	}
	var out [][]byte
	for b := range mvcc.Bucket(node.buckets) {
		if k := byBucket[b]; k != nil && len(out) < n {
			out = append(out, k)
		}
	}
	if len(out) < n {
		t.Fatalf("found %d keys of distinct buckets, want %d", len(out), n)
	}
	return out
}

// TestRestrictPrefetchesValues: a grant with prefetch brings each locked
// key's committed value (absent keys left out).
func TestRestrictPrefetchesValues(t *testing.T) {
	n := openTestNode(t)
	ctx := ctxT(t)
	keys := keysInBuckets(t, n, 3)
	for _, k := range keys[:2] {
		if _, err := n.Put(ctx, &ocpb.PutRequest{Key: k, Value: append([]byte("v-"), k...)}); err != nil {
			t.Fatal(err)
		}
	}
	tx, err := n.Restrict(ctx, &ocpb.RestrictRequest{Name: "p", Ttl: durationpb.New(5 * time.Second), Prefetch: true,
		Keys: []*ocpb.KeyLockRequest{{Key: keys[0], Mode: ocpb.KeyMode_WRITE}, {Key: keys[1], Mode: ocpb.KeyMode_READ}, {Key: keys[2], Mode: ocpb.KeyMode_WRITE}}})
	if err != nil {
		t.Fatal(err)
	}
	got := make(map[string]string)
	for _, kv := range tx.Values {
		if kv.Version == 0 {
			t.Errorf("prefetched %s without a version", kv.Key)
		}
		got[string(kv.Key)] = string(kv.Value)
	}
	want := map[string]string{string(keys[0]): "v-" + string(keys[0]), string(keys[1]): "v-" + string(keys[1])}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("prefetched %v, want %v", got, want)
	}
}

// TestRestrictGivesBackKeysTakenOutOfOrder: a lock that finds its first
// bucket's key held gives back the later bucket's key it took in the
// first, no-wait pass, so others can take it while it waits.
func TestRestrictGivesBackKeysTakenOutOfOrder(t *testing.T) {
	n := openTestNode(t)
	laterKeyFreeWhileWaiting(t, n, 2*time.Second, false, "the later bucket's key stayed held by a waiting lock", func() {
		if g := testutil.ToFloat64(n.metrics.keysGivenBack); g != 1 {
			t.Fatalf("key_locks_given_back_total = %v, want 1", g)
		}
	})
}

// TestRestrictLocksInOrderWhenTriesFallShort: on a node where most
// first-pass tries fell short, a multi-bucket Restrict takes its buckets
// in order without trying them all: waiting for the first bucket's key,
// it has not taken the later bucket's, so nothing is given back and
// others take that key meanwhile.
func TestRestrictLocksInOrderWhenTriesFallShort(t *testing.T) {
	n := openTestNode(t)
	for range 100 {
		n.firstPass.observe(true)
	}
	laterKeyFreeWhileWaiting(t, n, 0, false, "the later bucket's key was taken by a lock waiting for an earlier one", func() {
		if s, g := testutil.ToFloat64(n.metrics.firstPassesSkipped), testutil.ToFloat64(n.metrics.keysGivenBack); s != 1 || g != 0 {
			t.Fatalf("first passes skipped %v, keys given back %v; want 1 and 0", s, g)
		}
	})
}

// laterKeyFreeWhileWaiting: "first" holds the key of one bucket, "both"
// waits for it and a later bucket's key, and "third" must still take the
// later key, waiting at most wait (failing with failure otherwise); check
// runs then, before the locks commit. With partly, "partly" holds another
// key of the later bucket, which "both" wants too: its try of that bucket
// takes one key and is refused the other.
func laterKeyFreeWhileWaiting(t *testing.T, n *Node, wait time.Duration, partly bool, failure string, check func()) {
	t.Helper()
	ctx := ctxT(t)
	keys := keysInBuckets(t, n, 2)
	ttl := durationpb.New(5 * time.Second)
	holdersKeys := map[string][]byte{"first": keys[0]}
	bothKeys := writeKeys(keys[1], keys[0])
	if partly {
		laterHeld := keyInBucketOf(t, n, keys[1])
		holdersKeys["partly"] = laterHeld
		bothKeys = append(bothKeys, writeKeys(laterHeld)...)
	}
	var holders []*ocpb.RestrictResponse
	for name, k := range holdersKeys {
		l, err := n.Restrict(ctx, &ocpb.RestrictRequest{Name: name, Ttl: ttl, Keys: writeKeys(k)})
		if err != nil {
			t.Fatal(err)
		}
		holders = append(holders, l)
	}
	done := make(chan error, 1)
	go func() {
		_, err := n.Restrict(ctx, &ocpb.RestrictRequest{Name: "both", Ttl: ttl, Keys: bothKeys})
		done <- err
	}()
	// "both" now waits for keys[0]; keys[1] must be free.
	for n.waits.Len(keyResource(keys[0])) == 0 {
		time.Sleep(time.Millisecond)
	}
	third, err := n.Restrict(ctx, &ocpb.RestrictRequest{Name: "third", Ttl: ttl, Wait: durationpb.New(wait), Keys: writeKeys(keys[1])})
	if err != nil {
		t.Fatalf("%s: %v", failure, err)
	}
	check()
	for _, l := range append(holders, third) {
		if _, err := n.Commit(ctx, &ocpb.CommitRequest{Name: l.Name, Code: l.Code}); err != nil {
			t.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		t.Fatalf("the waiting lock: %v", err)
	}
}

// TestContendedKeyHandedOff: the head waiter of a key offers its LockKeys,
// and the committed holder's resolution grants it in the same command: the
// waiter's keys (the waited one and a free one of the same bucket) come
// back with the committed value, without a LockKeys round of its own. A
// waiter that gave up leaves no offer behind, and the handed keys are
// real: the new holder's commit frees them.
func TestContendedKeyHandedOff(t *testing.T) {
	n := openTestNode(t)
	ctx := ctxT(t)
	ttl := durationpb.New(5 * time.Second)
	key := []byte("k")
	other := keyInBucketOf(t, n, key)
	holder, err := n.Restrict(ctx, &ocpb.RestrictRequest{Name: "holder", Ttl: ttl, Keys: writeKeys(key)})
	if err != nil {
		t.Fatal(err)
	}
	offered := func() bool { return keyOffered(n, key) }
	if _, err := n.Restrict(ctx, &ocpb.RestrictRequest{Name: "gone", Ttl: ttl, Wait: durationpb.New(30 * time.Millisecond), Keys: writeKeys(key)}); !errors.Is(err, ErrWaitTimeout) {
		t.Fatalf("waiter that gave up: %v, want ErrWaitTimeout", err)
	}
	if offered() {
		t.Fatal("an offer outlived its waiter")
	}

	got := make(chan *ocpb.RestrictResponse, 1)
	go func() {
		tx, err := n.Restrict(ctx, &ocpb.RestrictRequest{Name: "waiter", Ttl: ttl, Prefetch: true, Keys: writeKeys(key, other)})
		if err != nil {
			t.Error(err)
		}
		got <- tx
	}()
	waitUntil(t, 5*time.Second, offered)
	if _, err := n.Commit(ctx, &ocpb.CommitRequest{Name: "holder", Code: holder.Code, Writes: []*ocpb.TxnWrite{{Key: key, Value: []byte("v1")}}}); err != nil {
		t.Fatal(err)
	}
	waiter := <-got
	if waiter == nil {
		t.FailNow()
	}
	if h := testutil.ToFloat64(n.metrics.keyHandoffs); h != 1 {
		t.Fatalf("key_lock_handoffs_total = %v, want 1", h)
	}
	if len(waiter.Values) != 1 || string(waiter.Values[0].Key) != string(key) || string(waiter.Values[0].Value) != "v1" {
		t.Fatalf("the handed grant read %v, want %s = v1", waiter.Values, key)
	}
	code, err := decodeCode(waiter.Code)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range [][]byte{key, other} {
		if !n.holdsKey(n.replicaOf(k), k, code) {
			t.Fatalf("key %q not held by the handed grant", k)
		}
	}
	if _, err := n.Commit(ctx, &ocpb.CommitRequest{Name: "waiter", Code: waiter.Code}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Restrict(ctx, &ocpb.RestrictRequest{Name: "after", Ttl: ttl, Wait: durationpb.New(2 * time.Second), Keys: writeKeys(key, other)}); err != nil {
		t.Fatalf("keys not free after the handed grant committed: %v", err)
	}
}

// TestKeyHandoffLetsWaitingReadersIn: a release hands nothing over while
// a reader waits for the key's strict WRITE lock: a handoff would keep the
// key locked from one holder to the next, and the reader waiting until the
// queue drained. The queued lock takes the key in a round of its own, and
// the reader reads, in the gap or after it.
func TestKeyHandoffLetsWaitingReadersIn(t *testing.T) {
	n := openTestNode(t)
	ctx := ctxT(t)
	ttl := durationpb.New(5 * time.Second)
	key := []byte("k")
	write := []*ocpb.KeyLockRequest{{Key: key, Mode: ocpb.KeyMode_WRITE}}
	holder, err := n.Restrict(ctx, &ocpb.RestrictRequest{Name: "holder", Ttl: ttl, Keys: write})
	if err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() {
		l, err := n.Restrict(ctx, &ocpb.RestrictRequest{Name: "waiter", Ttl: ttl, Keys: write})
		if err == nil {
			_, err = n.Commit(ctx, &ocpb.CommitRequest{Name: "waiter", Code: l.Code})
		}
		waited <- err
	}()
	waitUntil(t, 5*time.Second, func() bool { return keyOffered(n, key) })
	read := make(chan error, 1)
	go func() {
		got, err := n.Get(ctx, &ocpb.GetRequest{Key: key, Wait: durationpb.New(5 * time.Second)})
		if err == nil && string(got.Kv.GetValue()) != "v1" {
			err = fmt.Errorf("read %q, want v1", got.Kv.GetValue())
		}
		read <- err
	}()
	waitUntil(t, 5*time.Second, func() bool { return n.waits.Watching(keyResource(key)) })
	if _, err := n.Commit(ctx, &ocpb.CommitRequest{Name: "holder", Code: holder.Code, Writes: []*ocpb.TxnWrite{{Key: key, Value: []byte("v1")}}}); err != nil {
		t.Fatal(err)
	}
	if err := <-waited; err != nil {
		t.Fatalf("the queued lock: %v", err)
	}
	if err := <-read; err != nil {
		t.Fatalf("reader waiting through a release: %v", err)
	}
	if h := testutil.ToFloat64(n.metrics.keyHandoffs); h != 0 {
		t.Fatalf("%v key locks handed over a waiting reader", h)
	}
}

// TestKeyResolutionSkipsItsOwnOffer: a resolution of a lock's keys (its
// abort) does not claim the offer that the same lock's request waiting
// for one of them made, which would hand the aborted lock its key back.
func TestKeyResolutionSkipsItsOwnOffer(t *testing.T) {
	n := openTestNode(t)
	ctx := ctxT(t)
	key := []byte("k")
	w := n.waits.Join(keyResource(key))
	defer w.Leave()
	offer := n.keyHandoffs.offer(string(key), &cmdpb.LockKeys{Name: "L", Code: []byte("code-L"), Keys: []*cmdpb.KeySpec{{Key: key, Mode: cmdpb.KeyMode_WRITE}}}, w)
	r := n.replicaOf(key)
	res, err := n.proposeLed(ctx, r, &cmdpb.Command{Body: &cmdpb.Command_ResolveKeys{ResolveKeys: &cmdpb.ResolveKeys{Name: "L", Code: []byte("code-L"), Keys: [][]byte{key}}}})
	if err != nil || len(res.KeyHandoffs) != 0 {
		t.Fatalf("own resolution: %v, %v", res, err)
	}
	if !n.keyHandoffs.withdraw(offer) {
		t.Fatal("a lock's own resolution claimed its offer")
	}
	// Another lock's resolution does claim it, and settles it.
	offer = n.keyHandoffs.offer(string(key), offer.request, w)
	if _, err := n.proposeLed(ctx, r, &cmdpb.Command{Body: &cmdpb.Command_ResolveKeys{ResolveKeys: &cmdpb.ResolveKeys{Name: "M", Code: []byte("code-M"), Keys: [][]byte{key}}}}); err != nil {
		t.Fatal(err)
	}
	if grant := reclaim(n, &n.keyHandoffs, &offer); grant == nil || grant.Count != 1 {
		t.Fatalf("another lock's resolution handed %v, want the key", grant)
	}
	if held, err := locks.KeyHeldBy(n.eng.DB(), r.bucket, key, []byte("code-L")); err != nil || !held {
		t.Fatalf("handed key held by the offer's code: %v, %v", held, err)
	}
}

// TestKeyResolutionSkipsOffersTakingWatchedKeys: an offer is not claimed
// while a reader waits for any key it would take, not only the key it is
// filed under.
func TestKeyResolutionSkipsOffersTakingWatchedKeys(t *testing.T) {
	n := openTestNode(t)
	ctx := ctxT(t)
	key := []byte("k")
	later := keyInBucketOf(t, n, key)
	w := n.waits.Join(keyResource(key))
	defer w.Leave()
	reader := n.waits.Watch(keyResource(later))
	specs := []*cmdpb.KeySpec{{Key: key, Mode: cmdpb.KeyMode_WRITE}, {Key: later, Mode: cmdpb.KeyMode_WRITE}}
	offer := n.keyHandoffs.offer(string(key), &cmdpb.LockKeys{Name: "L", Code: []byte("code-L"), Keys: specs}, w)
	resolve := &cmdpb.Command{Body: &cmdpb.Command_ResolveKeys{ResolveKeys: &cmdpb.ResolveKeys{Name: "M", Code: []byte("code-M"), Keys: [][]byte{key}}}}
	if _, err := n.proposeLed(ctx, n.replicaOf(key), resolve); err != nil {
		t.Fatal(err)
	}
	if !n.keyHandoffs.withdraw(offer) {
		t.Fatal("a resolution claimed an offer that takes a key a reader waits for")
	}
	reader.Leave()
	offer = n.keyHandoffs.offer(string(key), offer.request, w)
	if _, err := n.proposeLed(ctx, n.replicaOf(key), resolve); err != nil {
		t.Fatal(err)
	}
	if grant := reclaim(n, &n.keyHandoffs, &offer); grant == nil || grant.Count != 2 {
		t.Fatalf("once the reader left, the resolution handed %v, want both keys", grant)
	}
}

// TestKeyWaiterDoesNotProposeWhileLocked: a Restrict that finds a key
// WRITE-locked by another waits for its release without proposing key
// locks that would be refused, and takes the key once it is released; READ
// locks share a key without waiting.
func TestKeyWaiterDoesNotProposeWhileLocked(t *testing.T) {
	n := openTestNode(t)
	ctx := ctxT(t)
	ttl := durationpb.New(5 * time.Second)
	key := []byte("k")
	holder, err := n.Restrict(ctx, &ocpb.RestrictRequest{Name: "holder", Ttl: ttl, Keys: []*ocpb.KeyLockRequest{{Key: key, Mode: ocpb.KeyMode_WRITE}}})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() {
		_, err := n.Restrict(ctx, &ocpb.RestrictRequest{Name: "waiter", Ttl: ttl, Keys: []*ocpb.KeyLockRequest{{Key: key, Mode: ocpb.KeyMode_READ}}})
		got <- err
	}()
	// The waiter begins waiting without a Raft round.
	waitUntil(t, 5*time.Second, func() bool { return testutil.ToFloat64(n.metrics.triesSkipped) > 0 })
	if _, err := n.Commit(ctx, &ocpb.CommitRequest{Name: "holder", Code: holder.Code}); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatalf("waiter after the holder committed: %v", err)
	}
	skipped := testutil.ToFloat64(n.metrics.triesSkipped)
	// The waiter holds k READ now: another READ shares it at once.
	if _, err := n.Restrict(ctx, &ocpb.RestrictRequest{Name: "reader", Ttl: ttl, Wait: durationpb.New(time.Second),
		Keys: []*ocpb.KeyLockRequest{{Key: key, Mode: ocpb.KeyMode_READ}}}); err != nil {
		t.Fatalf("READ after READ: %v", err)
	}
	if s := testutil.ToFloat64(n.metrics.triesSkipped); s != skipped {
		t.Fatalf("a READ lock waited for a READ lock (%v waits without a round, %v before)", s, skipped)
	}
}

// TestNamedHolder: the look a waiter takes before proposing knows a
// retry by its request id or its code, and does not give a retry back a
// grant that is being given back.
func TestNamedHolder(t *testing.T) {
	n := openTestNode(t)
	ctx := ctxT(t)
	l, err := n.Acquire(ctx, &ocpb.AcquireRequest{Name: "g", Ttl: durationpb.New(5 * time.Second), RequestId: "a"})
	if err != nil {
		t.Fatal(err)
	}
	code, err := decodeCode(l.Code)
	if err != nil {
		t.Fatal(err)
	}
	r := n.replicaOfName("g")
	for _, c := range []struct {
		requestID string
		code      []byte
		want      lockHolder
	}{
		{"a", nil, holderRequest},
		{"", code, holderRequest},
		{"b", []byte("another code 16b"), holderOther},
		{"", nil, holderOther},
	} {
		if got := r.namedHolder("g", c.requestID, c.code); got != c.want {
			t.Errorf("namedHolder(request %q, code %x) = %v, want %v", c.requestID, c.code, got, c.want)
		}
	}
	if got := r.namedHolder("free", "a", code); got != holderNone {
		t.Errorf("namedHolder of a free name = %v, want holderNone", got)
	}
	n.givingBack.add(code)
	if got := r.namedHolder("g", "a", nil); got != holderOther {
		t.Errorf("a retry saw a grant being given back as its own (%v)", got)
	}
	n.givingBack.remove(code)
	if got := r.namedHolder("g", "a", nil); got != holderRequest {
		t.Errorf("after the give-back ended: %v, want holderRequest", got)
	}
}

// TestRestrictNameWaiters: a Restrict of a name another holds waits
// without proposing a record that would be refused, and a retry of the
// holder's Restrict (same request id) gets its grant back at once instead
// of queueing behind that waiter, which waits for it.
func TestRestrictNameWaiters(t *testing.T) {
	n := openTestNode(t)
	ctx := ctxT(t)
	ttl := durationpb.New(5 * time.Second)
	keys := []*ocpb.KeyLockRequest{{Key: []byte("x"), Mode: ocpb.KeyMode_READ}}
	holder, err := n.Restrict(ctx, &ocpb.RestrictRequest{Name: "t", Ttl: ttl, Keys: keys, RequestId: "holder"})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() {
		_, err := n.Restrict(ctx, &ocpb.RestrictRequest{Name: "t", Ttl: ttl, Keys: keys, Wait: durationpb.New(4 * time.Second), RequestId: "waiter"})
		got <- err
	}()
	// The name's waiter begins waiting without a Raft round.
	waitUntil(t, 5*time.Second, func() bool { return testutil.ToFloat64(n.metrics.triesSkipped) > 0 })
	retried, err := n.Restrict(ctx, &ocpb.RestrictRequest{Name: "t", Ttl: ttl, Keys: keys, Wait: durationpb.New(time.Second), RequestId: "holder"})
	if err != nil {
		t.Fatalf("retried Restrict of the held name: %v", err)
	}
	if retried.Code != holder.Code || retried.Fence != holder.Fence {
		t.Fatalf("retry got code %s fence %d, want the first grant's %s %d", retried.Code, retried.Fence, holder.Code, holder.Fence)
	}
	if _, err := n.Commit(ctx, &ocpb.CommitRequest{Name: "t", Code: holder.Code}); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatalf("the name's waiter after the holder committed: %v", err)
	}
}

// TestRestrictAcrossBucketsNoDeadlock: transfers over a few accounts in
// different buckets, taken in every order, all finish and keep the total.
func TestRestrictAcrossBucketsNoDeadlock(t *testing.T) {
	n := openTestNode(t)
	ctx := ctxT(t)
	accts := keysInBuckets(t, n, 4)
	for _, k := range accts {
		if _, err := n.Put(ctx, &ocpb.PutRequest{Key: k, Value: []byte("100")}); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 15 {
				from, to := accts[(g+i)%4], accts[(g+2*i+1)%4]
				if bytes.Equal(from, to) {
					continue
				}
				name := fmt.Sprintf("t%d", g)
				tx, err := n.Restrict(ctx, &ocpb.RestrictRequest{Name: name, Ttl: durationpb.New(5 * time.Second), Prefetch: true,
					Keys: []*ocpb.KeyLockRequest{{Key: from, Mode: ocpb.KeyMode_WRITE}, {Key: to, Mode: ocpb.KeyMode_WRITE}}})
				if err != nil {
					t.Error(err)
					return
				}
				bal := make(map[string]int)
				for _, kv := range tx.Values {
					bal[string(kv.Key)], _ = strconv.Atoi(string(kv.Value))
				}
				writes := []*ocpb.TxnWrite{
					{Key: from, Value: []byte(strconv.Itoa(bal[string(from)] - 1))},
					{Key: to, Value: []byte(strconv.Itoa(bal[string(to)] + 1))},
				}
				if _, err := n.Commit(ctx, &ocpb.CommitRequest{Name: name, Code: tx.Code, Writes: writes}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	total := 0
	for _, k := range accts {
		r, err := n.Get(ctx, &ocpb.GetRequest{Key: k})
		if err != nil {
			t.Fatal(err)
		}
		v, _ := strconv.Atoi(string(r.Kv.Value))
		total += v
	}
	if total != 400 {
		t.Fatalf("total %d after the transfers, want 400", total)
	}
}

// TestRetriedRestrictDoesNotQueueBehindItsWaiters: a Restrict retried with
// its request id gets its first grant back, and its key locks are its own
// already; it must not queue behind the locks waiting for those keys (they
// wait for it), or both wait until they time out.
func TestRetriedRestrictDoesNotQueueBehindItsWaiters(t *testing.T) {
	n := openTestNode(t)
	ctx := ctxT(t)
	ttl := durationpb.New(15 * time.Second)
	keys := []*ocpb.KeyLockRequest{{Key: []byte("k"), Mode: ocpb.KeyMode_WRITE}}
	first, err := n.Restrict(ctx, &ocpb.RestrictRequest{Name: "a", Ttl: ttl, Keys: keys, RequestId: "a-1"})
	if err != nil {
		t.Fatal(err)
	}
	waiter := make(chan error, 1)
	go func() {
		_, err := n.Restrict(ctx, &ocpb.RestrictRequest{Name: "b", Ttl: ttl, Keys: keys, Wait: durationpb.New(5 * time.Second)})
		waiter <- err
	}()
	waitUntil(t, 5*time.Second, func() bool { return n.waits.Len(keyResource([]byte("k"))) > 0 })
	retry, err := n.Restrict(ctx, &ocpb.RestrictRequest{Name: "a", Ttl: ttl, Keys: keys, RequestId: "a-1", Wait: durationpb.New(time.Second)})
	if err != nil {
		t.Fatalf("the retried Restrict waited behind its own waiter: %v", err)
	}
	if retry.Code != first.Code {
		t.Fatalf("retry got code %s, want the first grant's %s", retry.Code, first.Code)
	}
	if _, err := n.Commit(ctx, &ocpb.CommitRequest{Name: "a", Code: first.Code}); err != nil {
		t.Fatal(err)
	}
	if err := <-waiter; err != nil {
		t.Fatalf("the waiter after the commit: %v", err)
	}
}

// TestRetriedRestrictWithOtherKeysRefused: a request id reused for other
// keys (or another isolation) must not get the first grant back and lock
// the new keys under its code: the record lists only the first keys, so a
// commit would report success and drop the writes to the others.
func TestRetriedRestrictWithOtherKeysRefused(t *testing.T) {
	n := openTestNode(t)
	ctx := ctxT(t)
	ttl := durationpb.New(15 * time.Second)
	first, err := n.Restrict(ctx, &ocpb.RestrictRequest{Name: "r", Ttl: ttl, Keys: writeKeys([]byte("a")), RequestId: "q"})
	if err != nil {
		t.Fatal(err)
	}
	for _, retry := range []*ocpb.RestrictRequest{
		{Name: "r", Ttl: ttl, Keys: writeKeys([]byte("b")), RequestId: "q"},
		{Name: "r", Ttl: ttl, Keys: writeKeys([]byte("a"), []byte("b")), RequestId: "q"},
		{Name: "r", Ttl: ttl, Keys: []*ocpb.KeyLockRequest{{Key: []byte("a"), Mode: ocpb.KeyMode_READ}}, RequestId: "q"},
		{Name: "r", Ttl: ttl, Keys: writeKeys([]byte("a")), RequestId: "q", Isolation: ocpb.Isolation_SNAPSHOT},
	} {
		if _, err := n.Restrict(ctx, retry); !errors.Is(err, ErrInvalid) {
			t.Errorf("retry %v: err %v, want ErrInvalid", retry.Keys, err)
		}
	}
	if _, held, err := locks.KeyLockOf(n.eng.DB(), mvcc.BucketOf([]byte("b"), n.buckets), []byte("b")); err != nil || held {
		t.Fatalf("key b locked after the refused retries (held %v, err %v)", held, err)
	}
	same, err := n.Restrict(ctx, &ocpb.RestrictRequest{Name: "r", Ttl: ttl, Keys: writeKeys([]byte("a")), RequestId: "q"})
	if err != nil || same.Code != first.Code {
		t.Fatalf("an exact retry: code %v err %v, want the first grant %s", same.GetCode(), err, first.Code)
	}
}

// TestRestrictPrefetchTooLarge: a grant whose prefetched values exceed a
// response fails with ErrTooLarge and leaves nothing held, rather than
// answer with a message the client cannot receive while the lock stays
// held until its ttl.
func TestRestrictPrefetchTooLarge(t *testing.T) {
	n := openTestNode(t)
	ctx := ctxT(t)
	var keys [][]byte
	for i := range 4 {
		k := fmt.Appendf(nil, "big%d", i)
		keys = append(keys, k)
		if _, err := n.Put(ctx, &ocpb.PutRequest{Key: k, Value: make([]byte, 1<<20)}); err != nil {
			t.Fatal(err)
		}
	}
	ttl := durationpb.New(15 * time.Second)
	_, err := n.Restrict(ctx, &ocpb.RestrictRequest{Name: "p", Ttl: ttl, Keys: writeKeys(keys...), Prefetch: true})
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("prefetch of 4 MiB: err %v, want ErrTooLarge", err)
	}
	// The name and every key are free again at once.
	tx, err := n.Restrict(ctx, &ocpb.RestrictRequest{Name: "p", Ttl: ttl, Keys: writeKeys(keys...), Wait: durationpb.New(0)})
	if err != nil {
		t.Fatalf("the lock after the refused grant: %v", err)
	}
	if _, err := n.Commit(ctx, &ocpb.CommitRequest{Name: "p", Code: tx.Code}); err != nil {
		t.Fatal(err)
	}
	got, err := n.Restrict(ctx, &ocpb.RestrictRequest{Name: "q", Ttl: ttl, Keys: writeKeys(keys[:2]...), Prefetch: true})
	if err != nil || len(got.Values) != 2 {
		t.Fatalf("prefetch of 2 MiB: %d values, err %v", len(got.GetValues()), err)
	}
}

// TestListTooLarge: a List whose locks (with their keys) outgrow a
// response fails with ErrTooLarge, and a narrower prefix still lists.
func TestListTooLarge(t *testing.T) {
	n := openTestNode(t)
	ctx := ctxT(t)
	var keys []*ocpb.KeyLockRequest
	for i := range 1000 {
		k := append(fmt.Appendf(nil, "k%04d-", i), bytes.Repeat([]byte("x"), 2000)...)
		keys = append(keys, &ocpb.KeyLockRequest{Key: k, Mode: ocpb.KeyMode_READ})
	}
	ttl := durationpb.New(15 * time.Second)
	for _, name := range []string{"wide-1", "wide-2"} {
		if _, err := n.Restrict(ctx, &ocpb.RestrictRequest{Name: name, Ttl: ttl, Keys: keys}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := n.Restrict(ctx, &ocpb.RestrictRequest{Name: "narrow", Ttl: ttl, Keys: keys[:1]}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.List(ctx, &ocpb.ListRequest{}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("List of 4 MB of keys: err %v, want ErrTooLarge", err)
	}
	got, err := n.List(ctx, &ocpb.ListRequest{Prefix: "narrow"})
	if err != nil || len(got.Locks) != 1 {
		t.Fatalf("List narrow: %d locks, err %v", len(got.GetLocks()), err)
	}
}

// TestBucketAnswersBounded: a bucket's own part of a List or of a grant's
// prefetched values is bounded on the leader that reads it, since another
// node receives it over a peer connection whose message limit would turn
// a larger answer into a transport error (Unavailable, which clients
// retry) instead of ErrTooLarge.
func TestBucketAnswersBounded(t *testing.T) {
	n := openTestNode(t)
	ctx := ctxT(t)
	ttl := durationpb.New(15 * time.Second)
	first := []byte("wide")
	keys := [][]byte{first}
	for len(keys) < 4 {
		keys = append(keys, keyInBucketOf(t, n, keys[len(keys)-1]))
	}
	for _, k := range keys {
		if _, err := n.Put(ctx, &ocpb.PutRequest{Key: k, Value: make([]byte, 1<<20)}); err != nil {
			t.Fatal(err)
		}
	}
	tx, err := n.Restrict(ctx, &ocpb.RestrictRequest{Name: "p", Ttl: ttl, Keys: writeKeys(keys...)})
	if err != nil {
		t.Fatal(err)
	}
	code, err := decodeCode(tx.Code)
	if err != nil {
		t.Fatal(err)
	}
	_, specs := n.planKeyLocks(writeKeys(keys...))
	if _, err := n.lockedValues(n.replicaOf(first), code, specs); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("one bucket's 4 MiB of prefetched values: err %v, want ErrTooLarge", err)
	}
	var many []*ocpb.KeyLockRequest
	for i := range 1600 {
		k := append(fmt.Appendf(nil, "m%04d-", i), bytes.Repeat([]byte("x"), 2000)...)
		many = append(many, &ocpb.KeyLockRequest{Key: k, Mode: ocpb.KeyMode_READ})
	}
	if _, err := n.Restrict(ctx, &ocpb.RestrictRequest{Name: "huge", Ttl: ttl, Keys: many}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.listHere(ctx, n.replicaOfName("huge"), &ocpb.ListRequest{Prefix: "huge"}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("one bucket's List of a 3.2 MB lock: err %v, want ErrTooLarge", err)
	}
}
