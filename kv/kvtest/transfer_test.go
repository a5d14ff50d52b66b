package kvtest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/opencluster/opencluster/kv"
	"github.com/opencluster/opencluster/mvcc"
	"github.com/opencluster/opencluster/rpc/ocpb"
)

// TestTransfersAcrossLeaders: concurrent transfers between accounts whose
// buckets are led by different nodes, each coordinated by a different
// node, take their key locks (a no-wait pass over every bucket at once,
// then in order), prefetch the balances and commit the writes they carry.
// None deadlocks, and the total holds.
//
// The windows are wide because a starved CI machine makes leaders step
// down every few hundred milliseconds right after the start, and a lock
// that an attempt left behind when its abort was dropped is reclaimed
// only a ttl after leadership settles (every new leader restarts lock
// deadlines at now + ttl). A deadlock would still fail it.
func TestTransfersAcrossLeaders(t *testing.T) {
	c := Start(t, Options{Nodes: 3})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	accts := make([][]byte, 6)
	for i := range accts {
		accts[i] = []byte(fmt.Sprintf("acct/%d", i))
		n := c.Primary()
		if _, err := On(ctx, n, func() (*ocpb.PutResponse, error) {
			return n.Put(ctx, &ocpb.PutRequest{Key: accts[i], Value: []byte("100")})
		}); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for g := range 9 {
		n := c.Nodes()[g%3]
		wg.Go(func() {
			for i := range 12 {
				from, to := accts[(g+i)%6], accts[(g+2*i+1)%6]
				if string(from) == string(to) {
					continue
				}
				name := fmt.Sprintf("transfer/%d", g)
				specs := []*ocpb.KeyLockRequest{{Key: from, Mode: ocpb.KeyMode_WRITE}, {Key: to, Mode: ocpb.KeyMode_WRITE}}
				// A lock lost to its ttl while the cluster was unavailable
				// (leader churn on a starved CI machine) discards its writes:
				// do the transfer again, as the Go client's Txn does.
				for attempt := 0; ; attempt++ {
					err := transferOnce(ctx, n, name, fmt.Sprintf("%s/%d/%d", name, i, attempt), specs, from, to)
					if err == nil {
						break
					}
					if !errors.Is(err, kv.ErrAborted) || attempt == 2 {
						t.Errorf("transfer %d through node %d: %v", i, n.ID(), err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	n := c.Primary()
	res, err := On(ctx, n, func() (*ocpb.BatchGetResponse, error) { return n.BatchGet(ctx, &ocpb.BatchGetRequest{Keys: accts}) })
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, r := range res.Results {
		v, _ := strconv.Atoi(string(r.Value))
		total += v
	}
	if total != 600 {
		t.Fatalf("total %d after the transfers, want 600", total)
	}
}

// TestKeyHandedOffOnItsLeader: a committed lock's keys, in a bucket
// another node leads, are resolved by a ResolveKeys proposed on that
// leader, which hands each key to the lock waiting at the head of its
// queue there in the same command; the waiter gets the committed value.
func TestKeyHandedOffOnItsLeader(t *testing.T) {
	reg := &registry{}
	cfg := kv.TestConfig()
	cfg.Registerer = reg
	c := Start(t, Options{Nodes: 3, Config: &cfg})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const rounds = 5
	n := c.Primary()
	// Keys whose bucket a node other than the names' leader leads.
	var st *ocpb.StatusResponse
	c.WaitFor(10*time.Second, "leaders on every node", func() bool {
		var err error
		if st, err = n.Status(ctx, nil); err != nil {
			return false
		}
		led := map[string]bool{}
		for _, b := range st.Buckets {
			led[b.Leader] = b.Leader != ""
		}
		return len(led) == 3 && !slices.Contains(slices.Collect(maps.Values(led)), false)
	})
	leaderOf := func(k string) string { return st.Buckets[mvcc.BucketOf([]byte(k), n.Buckets())].Leader }
	var keys [][]byte
	for i := 0; len(keys) < rounds; i++ {
		if k := fmt.Sprintf("k/%d", i); leaderOf(k) != leaderOf("holder") && leaderOf(k) != leaderOf("waiter") {
			keys = append(keys, []byte(k))
		}
	}
	restrict := func(name string, key []byte) (*ocpb.RestrictResponse, error) {
		return On(ctx, n, func() (*ocpb.RestrictResponse, error) {
			return n.Restrict(ctx, &ocpb.RestrictRequest{Name: name, Keys: []*ocpb.KeyLockRequest{{Key: key, Mode: ocpb.KeyMode_WRITE}},
				Ttl: durationpb.New(10 * time.Second), Prefetch: true, RequestId: fmt.Sprintf("%s-%s", name, key)})
		})
	}
	commit := func(l *ocpb.RestrictResponse, key []byte, value string) error {
		_, err := On(ctx, n, func() (*ocpb.CommitResponse, error) {
			return n.Commit(ctx, &ocpb.CommitRequest{Name: l.Name, Code: l.Code, Writes: []*ocpb.TxnWrite{{Key: key, Value: []byte(value)}}})
		})
		return err
	}
	for i, key := range keys {
		holder, err := restrict("holder", key)
		if err != nil {
			t.Fatal(err)
		}
		waits := reg.sum("opencluster_lock_waits_total")
		got := make(chan *ocpb.RestrictResponse, 1)
		go func() {
			l, err := restrict("waiter", key)
			if err != nil {
				t.Error(err)
			}
			got <- l
		}()
		// The waiter offers its LockKeys before it begins to wait.
		c.WaitFor(10*time.Second, "the waiter queued", func() bool { return reg.sum("opencluster_lock_waits_total") > waits })
		if err := commit(holder, key, fmt.Sprint("v", i)); err != nil {
			t.Fatal(err)
		}
		waiter := <-got
		if waiter == nil {
			t.FailNow()
		}
		if len(waiter.Values) != 1 || string(waiter.Values[0].Value) != fmt.Sprint("v", i) {
			t.Fatalf("round %d: the waiter read %v, want v%d", i, waiter.Values, i)
		}
		if err := commit(waiter, key, fmt.Sprint("w", i)); err != nil {
			t.Fatal(err)
		}
	}
	// A spurious wake (a leadership change elsewhere on the node) can make
	// a waiter withdraw its offer just as the release comes: allow one.
	if h := reg.sum("opencluster_key_lock_handoffs_total"); h < rounds-1 || h > rounds {
		t.Fatalf("%v key locks handed off, want %d", h, rounds)
	}
}

// transferOnce moves one unit from one account to the other under a
// restrictive lock through node n. Its request id, as the Go client sends
// one, makes a Restrict that On retries after an ambiguous failure get its
// first grant back (and its key locks, which it must not queue for behind
// the locks waiting for them: the stall this test found).
func transferOnce(ctx context.Context, n *kv.Node, name, requestID string, specs []*ocpb.KeyLockRequest, from, to []byte) error {
	tctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	lock, err := On(tctx, n, func() (*ocpb.RestrictResponse, error) {
		return n.Restrict(tctx, &ocpb.RestrictRequest{Name: name, Keys: specs, Ttl: durationpb.New(10 * time.Second), Prefetch: true, RequestId: requestID})
	})
	if err != nil {
		return fmt.Errorf("restrict: %w", err)
	}
	bal := make(map[string]int)
	for _, v := range lock.Values {
		bal[string(v.Key)], _ = strconv.Atoi(string(v.Value))
	}
	writes := []*ocpb.TxnWrite{
		{Key: from, Value: []byte(strconv.Itoa(bal[string(from)] - 1))},
		{Key: to, Value: []byte(strconv.Itoa(bal[string(to)] + 1))},
	}
	_, err = On(tctx, n, func() (*ocpb.CommitResponse, error) {
		return n.Commit(tctx, &ocpb.CommitRequest{Name: name, Code: lock.Code, Writes: writes})
	})
	if err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}
