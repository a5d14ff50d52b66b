package kv

import (
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/opencluster/opencluster/locks"
	"github.com/opencluster/opencluster/mvcc"
	"github.com/opencluster/opencluster/rpc/cmdpb"
	"github.com/opencluster/opencluster/rpc/ocpb"
)

// TestOrphanedKeyLockReleased: a LockKeys that applies after its lock was
// committed and its keys resolved (its coordinator had given up on the
// call) leaves a key lock nothing accounts for. The orphan sweeper
// releases it without touching the committed value, so the next lock of
// the key is granted.
func TestOrphanedKeyLockReleased(t *testing.T) {
	n := openTestNode(t)
	ctx := ctxT(t)
	key := []byte("acct")
	ttl := durationpb.New(15 * time.Second)
	first, err := n.Restrict(ctx, &ocpb.RestrictRequest{Name: "first", Ttl: ttl, Keys: []*ocpb.KeyLockRequest{{Key: key, Mode: ocpb.KeyMode_WRITE}}})
	if err != nil {
		t.Fatal(err)
	}
	c, err := n.Commit(ctx, &ocpb.CommitRequest{Name: "first", Code: first.Code, Writes: []*ocpb.TxnWrite{{Key: key, Value: []byte("100")}}})
	if err != nil {
		t.Fatal(err)
	}
	code, err := decodeCode(first.Code)
	if err != nil {
		t.Fatal(err)
	}
	// Wait until the record is marked resolved: from then on nothing
	// releases a key lock held with its code.
	rr := n.replicaOfName("first")
	waitUntil(t, 5*time.Second, func() bool {
		rec, _, err := locks.TxnRecord(n.eng.DB(), rr.bucket, "first")
		return err == nil && rec.Resolved
	})
	// The late LockKeys.
	b := mvcc.BucketOf(key, n.buckets)
	res, err := n.replicas[b].propose(ctx, &cmdpb.Command{Body: &cmdpb.Command_LockKeys{LockKeys: &cmdpb.LockKeys{
		Name: "first", Code: code, Keys: []*cmdpb.KeySpec{{Key: key, Mode: cmdpb.KeyMode_WRITE}},
	}}})
	if err != nil || res.Error != cmdpb.ErrorCode_OK {
		t.Fatalf("late LockKeys: %v %v", res, err)
	}
	if _, err := n.Restrict(ctx, &ocpb.RestrictRequest{Name: "probe", Ttl: ttl, Wait: durationpb.New(0),
		Keys: []*ocpb.KeyLockRequest{{Key: key, Mode: ocpb.KeyMode_WRITE}}}); !errors.Is(err, ErrWaitTimeout) {
		t.Fatalf("the orphan did not hold the key: %v", err)
	}

	next, err := n.Restrict(ctx, &ocpb.RestrictRequest{Name: "next", Ttl: ttl, Wait: durationpb.New(5 * time.Second), Prefetch: true,
		Keys: []*ocpb.KeyLockRequest{{Key: key, Mode: ocpb.KeyMode_WRITE}}})
	if err != nil {
		t.Fatalf("the orphaned key lock was never released: %v", err)
	}
	if len(next.Values) != 1 || string(next.Values[0].Value) != "100" || next.Values[0].Version != c.CommitVersion {
		t.Fatalf("after the orphan's release the key reads %v, want 100 at %d", next.Values, c.CommitVersion)
	}
	// The sweeper counts the release once its proposal returns, after the
	// apply that woke the waiter.
	waitUntil(t, 5*time.Second, func() bool { return testutil.ToFloat64(n.metrics.orphanedKeyLocks) == 1 })
}

// TestHeldKeyLockNotOrphaned: the key locks of a lock still PENDING are
// left alone however long they are held (locks.TestTracksKeyLocks covers
// the finished records).
func TestHeldKeyLockNotOrphaned(t *testing.T) {
	n := openTestNode(t)
	ctx := ctxT(t)
	ttl := durationpb.New(15 * time.Second)
	held, err := n.Restrict(ctx, &ocpb.RestrictRequest{Name: "held", Ttl: ttl, Keys: []*ocpb.KeyLockRequest{{Key: []byte("x"), Mode: ocpb.KeyMode_WRITE}}})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * n.cfg.OrphanSweepInterval)
	if _, err := n.Restrict(ctx, &ocpb.RestrictRequest{Name: "probe", Ttl: ttl, Wait: durationpb.New(0),
		Keys: []*ocpb.KeyLockRequest{{Key: []byte("x"), Mode: ocpb.KeyMode_WRITE}}}); !errors.Is(err, ErrWaitTimeout) {
		t.Fatalf("a held key lock was released: %v", err)
	}
	if got := testutil.ToFloat64(n.metrics.orphanedKeyLocks); got != 0 {
		t.Fatalf("orphaned key locks released: %v, want 0", got)
	}
	if _, err := n.Commit(ctx, &ocpb.CommitRequest{Name: "held", Code: held.Code}); err != nil {
		t.Fatalf("commit after the wait: %v", err)
	}
}

func waitUntil(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s", d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
