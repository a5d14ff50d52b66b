package kv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/opencluster/opencluster/locks"
	"github.com/opencluster/opencluster/mvcc/ts"
	"github.com/opencluster/opencluster/rpc/cmdpb"
	"github.com/opencluster/opencluster/rpc/ocpb"
)

func openTestNode(t *testing.T) *Node {
	t.Helper()
	return openTestNodeWith(t, TestConfig())
}

// openTestNodeWith opens a one-node cluster with cfg, closed when the test
// ends.
func openTestNodeWith(t *testing.T, cfg Config) *Node {
	t.Helper()
	n, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Error(err)
		}
	})
	return n
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestNodePutGet(t *testing.T) {
	n := openTestNode(t)
	ctx := ctxT(t)
	put, err := n.Put(ctx, &ocpb.PutRequest{Key: []byte("a"), Value: []byte("1")})
	if err != nil {
		t.Fatal(err)
	}
	got, err := n.Get(ctx, &ocpb.GetRequest{Key: []byte("a")})
	if err != nil {
		t.Fatal(err)
	}
	if string(got.Kv.Value) != "1" || got.Kv.Version != put.Version {
		t.Fatalf("Get = %q@%d, want 1@%d", got.Kv.Value, got.Kv.Version, put.Version)
	}
	if _, err := n.Get(ctx, &ocpb.GetRequest{Key: []byte("missing")}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get(missing) err = %v, want ErrNotFound", err)
	}
}

func TestNodeRestrictCommit(t *testing.T) {
	n := openTestNode(t)
	ctx := ctxT(t)
	if _, err := n.Put(ctx, &ocpb.PutRequest{Key: []byte("bal"), Value: []byte("10")}); err != nil {
		t.Fatal(err)
	}
	tx, err := n.Restrict(ctx, &ocpb.RestrictRequest{
		Name: "UpdateBalance:4587", Ttl: durationpb.New(15 * time.Second), Isolation: ocpb.Isolation_SNAPSHOT,
		Keys: []*ocpb.KeyLockRequest{{Key: []byte("bal"), Mode: ocpb.KeyMode_WRITE}, {Key: []byte("user"), Mode: ocpb.KeyMode_READ}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.Put(ctx, &ocpb.PutRequest{Key: []byte("bal"), Value: []byte("20"), Code: tx.Code}); err != nil {
		t.Fatal(err)
	}
	own, err := n.Get(ctx, &ocpb.GetRequest{Key: []byte("bal"), Code: tx.Code})
	if err != nil || string(own.Kv.Value) != "20" {
		t.Fatalf("holder reads %v, %v; want its provisional 20", own, err)
	}
	other, err := n.Get(ctx, &ocpb.GetRequest{Key: []byte("bal")})
	if err != nil || string(other.Kv.Value) != "10" {
		t.Fatalf("snapshot-mode reader reads %v, %v; want committed 10", other, err)
	}
	_, err = n.Put(ctx, &ocpb.PutRequest{Key: []byte("bal"), Value: []byte("x"), Wait: durationpb.New(50 * time.Millisecond)})
	if !errors.Is(err, ErrWaitTimeout) {
		t.Fatalf("plain Put on a locked key: err = %v, want ErrWaitTimeout", err)
	}
	c, err := n.Commit(ctx, &ocpb.CommitRequest{Name: "UpdateBalance:4587", Code: tx.Code})
	if err != nil {
		t.Fatal(err)
	}
	after, err := n.Get(ctx, &ocpb.GetRequest{Key: []byte("bal")})
	if err != nil || string(after.Kv.Value) != "20" || after.Kv.Version != c.CommitVersion {
		t.Fatalf("after commit reads %v, %v; want 20@%d", after, err, c.CommitVersion)
	}
}

// TestCommitCarriesWrites: writes sent with Commit replace the lock's
// earlier provisional writes and become visible at the commit version; a
// write to a key not locked WRITE is refused and commits nothing.
func TestCommitCarriesWrites(t *testing.T) {
	n := openTestNode(t)
	ctx := ctxT(t)
	restrict := func(name string) *ocpb.RestrictResponse {
		tx, err := n.Restrict(ctx, &ocpb.RestrictRequest{Name: name, Ttl: durationpb.New(15 * time.Second),
			Keys: []*ocpb.KeyLockRequest{{Key: []byte("a"), Mode: ocpb.KeyMode_WRITE}, {Key: []byte("b"), Mode: ocpb.KeyMode_WRITE}, {Key: []byte("r"), Mode: ocpb.KeyMode_READ}}})
		if err != nil {
			t.Fatal(err)
		}
		return tx
	}
	if _, err := n.Put(ctx, &ocpb.PutRequest{Key: []byte("b"), Value: []byte("old")}); err != nil {
		t.Fatal(err)
	}

	tx := restrict("refused")
	_, err := n.Commit(ctx, &ocpb.CommitRequest{Name: "refused", Code: tx.Code, Writes: []*ocpb.TxnWrite{{Key: []byte("a"), Value: []byte("1")}, {Key: []byte("r"), Value: []byte("x")}}})
	if !errors.Is(err, ErrNotWriteLocked) {
		t.Fatalf("commit writing a READ key: %v, want ErrNotWriteLocked", err)
	}
	if _, err := n.Abort(ctx, &ocpb.AbortRequest{Name: "refused", Code: tx.Code}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Get(ctx, &ocpb.GetRequest{Key: []byte("a")}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a refused commit wrote a: %v", err)
	}

	tx = restrict("carried")
	// An earlier provisional write, replaced by the one the commit carries.
	if _, err := n.Put(ctx, &ocpb.PutRequest{Key: []byte("a"), Value: []byte("early"), Code: tx.Code}); err != nil {
		t.Fatal(err)
	}
	c, err := n.Commit(ctx, &ocpb.CommitRequest{Name: "carried", Code: tx.Code, Writes: []*ocpb.TxnWrite{{Key: []byte("a"), Value: []byte("1")}, {Key: []byte("b"), Delete: true}}})
	if err != nil {
		t.Fatal(err)
	}
	a, err := n.Get(ctx, &ocpb.GetRequest{Key: []byte("a")})
	if err != nil || string(a.Kv.Value) != "1" || a.Kv.Version != c.CommitVersion {
		t.Fatalf("a after commit: %v, %v; want 1@%d", a, err, c.CommitVersion)
	}
	if _, err := n.Get(ctx, &ocpb.GetRequest{Key: []byte("b")}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("b after a committed delete: %v, want ErrNotFound", err)
	}
	// A retried commit (same code) answers the same version.
	again, err := n.Commit(ctx, &ocpb.CommitRequest{Name: "carried", Code: tx.Code, Writes: []*ocpb.TxnWrite{{Key: []byte("a"), Value: []byte("1")}}})
	if err != nil || again.CommitVersion != c.CommitVersion {
		t.Fatalf("retried commit: %v, %v; want version %d", again, err, c.CommitVersion)
	}
}

// TestCommitFreesNameBeforeResolving: right after Commit the name can be
// taken again; the committed keys read their new values (a reader waits
// for the resolution, never sees the old value); and a retried Commit of
// the first code, after the name was taken again, answers its version.
func TestCommitFreesNameBeforeResolving(t *testing.T) {
	n := openTestNode(t)
	ctx := ctxT(t)
	ttl := durationpb.New(15 * time.Second)
	for round := range 20 {
		key := []byte(fmt.Sprintf("k%d", round))
		first, err := n.Restrict(ctx, &ocpb.RestrictRequest{Name: "same", Ttl: ttl, Keys: []*ocpb.KeyLockRequest{{Key: key, Mode: ocpb.KeyMode_WRITE}}})
		if err != nil {
			t.Fatal(err)
		}
		c, err := n.Commit(ctx, &ocpb.CommitRequest{Name: "same", Code: first.Code, Writes: []*ocpb.TxnWrite{{Key: key, Value: []byte("v")}}})
		if err != nil {
			t.Fatal(err)
		}
		next, err := n.Restrict(ctx, &ocpb.RestrictRequest{Name: "same", Ttl: ttl, Wait: durationpb.New(0),
			Keys: []*ocpb.KeyLockRequest{{Key: []byte(fmt.Sprintf("other%d", round)), Mode: ocpb.KeyMode_WRITE}}})
		if err != nil {
			t.Fatalf("round %d: the name was not free after Commit: %v", round, err)
		}
		got, err := n.Get(ctx, &ocpb.GetRequest{Key: key})
		if err != nil || string(got.Kv.Value) != "v" || got.Kv.Version != c.CommitVersion {
			t.Fatalf("round %d: read after commit: %v, %v; want v@%d", round, got, err, c.CommitVersion)
		}
		again, err := n.Commit(ctx, &ocpb.CommitRequest{Name: "same", Code: first.Code})
		if err != nil && !errors.Is(err, ErrNotHolder) {
			t.Fatalf("round %d: retried commit: %v", round, err)
		}
		if err == nil && again.CommitVersion != c.CommitVersion {
			t.Fatalf("round %d: retried commit answered %d, want %d", round, again.CommitVersion, c.CommitVersion)
		}
		if _, err := n.Abort(ctx, &ocpb.AbortRequest{Name: "same", Code: next.Code}); err != nil {
			t.Fatal(err)
		}
	}
}

func TestNodeNamedLockExpires(t *testing.T) {
	n := openTestNode(t)
	ctx := ctxT(t)
	l, err := n.Acquire(ctx, &ocpb.AcquireRequest{Name: "m", Ttl: durationpb.New(100 * time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	l2, err := n.Acquire(ctx, &ocpb.AcquireRequest{Name: "m", Ttl: durationpb.New(time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	if time.Since(start) < 90*time.Millisecond {
		t.Fatalf("second holder granted after %s, before the first one's ttl", time.Since(start))
	}
	if l2.Fence != l.Fence+1 {
		t.Fatalf("fences %d then %d, want consecutive", l.Fence, l2.Fence)
	}
	if _, err := n.Release(ctx, &ocpb.ReleaseRequest{Name: "m", Code: l.Code}); !errors.Is(err, ErrNotHolder) {
		t.Fatalf("release by expired holder: err = %v, want ErrNotHolder", err)
	}
}

// TestNodeResponseBound checks that big values cannot make a response past
// MaxResponseBytes: Scan stops early with more = true and resumes after
// its last key; BatchGet fails with ErrTooLarge.
func TestNodeResponseBound(t *testing.T) {
	n := openTestNode(t)
	ctx := ctxT(t)
	value := make([]byte, 1<<20)
	var keys [][]byte
	for i := range 5 {
		k := []byte{'b', 'i', 'g', byte('0' + i)}
		keys = append(keys, k)
		if _, err := n.Put(ctx, &ocpb.PutRequest{Key: k, Value: value}); err != nil {
			t.Fatal(err)
		}
	}
	var seen int
	var after []byte
	for pages := 0; ; pages++ {
		resp, err := n.Scan(ctx, &ocpb.ScanRequest{Prefix: []byte("big"), StartAfter: after, Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		size := 0
		for _, kv := range resp.Kvs {
			size += len(kv.Key) + len(kv.Value)
		}
		if len(resp.Kvs) == 0 || size > MaxResponseBytes {
			t.Fatalf("page %d: %d keys, %d bytes (bound %d)", pages, len(resp.Kvs), size, MaxResponseBytes)
		}
		seen += len(resp.Kvs)
		after = resp.Kvs[len(resp.Kvs)-1].Key
		if !resp.More {
			break
		}
		if pages > 5 {
			t.Fatal("scan does not finish")
		}
	}
	if seen != len(keys) {
		t.Fatalf("paged scan saw %d keys, want %d", seen, len(keys))
	}
	if _, err := n.BatchGet(ctx, &ocpb.BatchGetRequest{Keys: keys}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("BatchGet of 5 MiB: err = %v, want ErrTooLarge", err)
	}
	if _, err := n.BatchGet(ctx, &ocpb.BatchGetRequest{Keys: keys[:2]}); err != nil {
		t.Fatalf("BatchGet of 2 MiB: %v", err)
	}
}

// TestNodeScanPagesMissNothing pages through keys where one bucket holds
// a run of big values among small ones: that bucket's page is cut by the
// byte bound while the other buckets' pages go further, and the merged
// page must stop at the cut, or the next page would skip the cut bucket's
// keys in between.
func TestNodeScanPagesMissNothing(t *testing.T) {
	n := openTestNode(t)
	ctx := ctxT(t)
	var want []string
	heavy, big := n.replicaOf([]byte("mix/000")), 0
	for i := range 200 {
		k := fmt.Sprintf("mix/%03d", i)
		value := []byte("small")
		if big < 4 && n.replicaOf([]byte(k)) == heavy {
			value, big = make([]byte, 1<<20), big+1
		}
		want = append(want, k)
		if _, err := n.Put(ctx, &ocpb.PutRequest{Key: []byte(k), Value: value}); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	var after []byte
	for pages := 0; pages < 100; pages++ {
		resp, err := n.Scan(ctx, &ocpb.ScanRequest{Prefix: []byte("mix/"), StartAfter: after, Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		for _, kv := range resp.Kvs {
			got = append(got, string(kv.Key))
		}
		if !resp.More {
			break
		}
		after = resp.Kvs[len(resp.Kvs)-1].Key
	}
	if !slices.Equal(got, want) {
		t.Fatalf("paged scan returned %d keys %v, want %d", len(got), got, len(want))
	}
}

// TestUnresolvedLockIsSwept aborts a restrictive lock without releasing
// its keys (as when the resolution failed midway) and checks that the
// leader's sweep releases them.
func TestUnresolvedLockIsSwept(t *testing.T) {
	n := openTestNode(t)
	ctx := ctxT(t)
	lock, err := n.Restrict(ctx, &ocpb.RestrictRequest{Name: "stuck", Ttl: durationpb.New(time.Minute),
		Keys: []*ocpb.KeyLockRequest{{Key: []byte("held"), Mode: ocpb.KeyMode_WRITE}}})
	if err != nil {
		t.Fatal(err)
	}
	code, _ := decodeCode(lock.Code)
	res, err := n.replicaOfName("stuck").propose(ctx, &cmdpb.Command{Body: &cmdpb.Command_TxnFinish{TxnFinish: &cmdpb.TxnFinish{
		Name: "stuck", Code: code, Status: cmdpb.TxnStatus_ABORTED,
	}}})
	if err != nil || res.Error != cmdpb.ErrorCode_OK {
		t.Fatalf("abort without resolving: %v, %v", res, err)
	}
	start := time.Now()
	if _, err := n.Put(ctx, &ocpb.PutRequest{Key: []byte("held"), Value: []byte("v"), Wait: durationpb.New(5 * time.Second)}); err != nil {
		t.Fatalf("write to the key of an aborted, unresolved lock: %v", err)
	}
	if waited := time.Since(start); waited > 3*resolveSweepInterval {
		t.Fatalf("the key was released after %s", waited)
	}
}

// TestStaleMoveRecords: a node drops its own move records that it no
// longer runs (it restarted, or the Done was lost while the meta group was
// unavailable) without leading anything special: a stuck record would
// keep the bucket busy for the planner forever. Records of live executors
// and of moves still running stay.
func TestStaleMoveRecords(t *testing.T) {
	n := openTestNode(t)
	ctx := ctxT(t)
	for _, rec := range []*cmdpb.MoveRecord{
		{Id: "orphan", Executor: n.id, Bucket: 1, Kind: "move"},
		{Id: "other", Executor: n.id + 1000, Bucket: 2, Kind: "move"}, // alive: the node has no directory
	} {
		if _, err := n.metaPropose(ctx, &cmdpb.Command{Body: &cmdpb.Command_RecordMove{RecordMove: &cmdpb.RecordMove{Start: rec}}}); err != nil {
			t.Fatal(err)
		}
	}
	done := n.trackMove(ctx, &cmdpb.MoveRecord{Bucket: 3, Kind: "move"})
	for _, ownOnly := range []bool{true, false} {
		if got := n.staleMoves(ownOnly); !slices.Equal(got, []string{"orphan"}) {
			t.Fatalf("staleMoves(%v) = %v, want [orphan]", ownOnly, got)
		}
	}
	n.dropStaleMoves(true)
	if ids := moveIDs(n); len(ids) != 2 || slices.Contains(ids, "orphan") {
		t.Fatalf("after dropping own stale records, moves = %v, want other and the running one", ids)
	}
	done() // drops the record in the background
	deadline := time.Now().Add(5 * time.Second)
	for !slices.Equal(moveIDs(n), []string{"other"}) {
		if time.Now().After(deadline) {
			t.Fatalf("the finished move's record stayed: moves = %v", moveIDs(n))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func moveIDs(n *Node) []string {
	var ids []string
	for _, m := range n.metaView().state.GetMoves() {
		ids = append(ids, m.GetId())
	}
	return ids
}

// TestVersionBoundsEstablished: every bucket's version bound becomes known
// from the oracle soon after the node starts, and again after the bucket's
// cache is invalidated (as a snapshot does), above every version written.
func TestVersionBoundsEstablished(t *testing.T) {
	n := openTestNode(t)
	ctx := ctxT(t)
	put, err := n.Put(ctx, &ocpb.PutRequest{Key: []byte("k"), Value: []byte("v")})
	if err != nil {
		t.Fatal(err)
	}
	b := n.replicaOf([]byte("k"))
	waitKnown := func() {
		t.Helper()
		for {
			unknown := 0
			if err := n.onScheduler(ctx, func() error {
				for _, r := range n.replicas[:n.buckets] {
					if _, u := r.cache.Versions.Unknown(); u {
						unknown++
					}
				}
				return nil
			}); err != nil {
				t.Fatalf("%d buckets without a version bound: %v", unknown, err)
			}
			if unknown == 0 {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitKnown()
	if err := n.onScheduler(ctx, func() error { b.cache.Invalidate(); return nil }); err != nil {
		t.Fatal(err)
	}
	waitKnown()
	if err := n.onScheduler(ctx, func() error {
		if b.cache.Versions.Above(ts.Timestamp(put.Version)) {
			return fmt.Errorf("the bound is below the version %d written before it", put.Version)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// TestResolvedMarks: once a committed lock's keys are released, the mark
// that says so rides on the name's next TxnBegin (no round of its own);
// with no next command, the sweeper proposes it.
func TestResolvedMarks(t *testing.T) {
	n := openTestNode(t)
	ctx := ctxT(t)
	ttl := durationpb.New(15 * time.Second)
	record := func() *cmdpb.TxnRecord {
		t.Helper()
		rec, found, err := locks.TxnRecord(n.eng.DB(), n.replicaOfName("T").bucket, "T")
		if err != nil || !found {
			t.Fatalf("record: %v, %v", found, err)
		}
		return rec
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 5s", what)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	commit := func(key string) []byte {
		t.Helper()
		l, err := n.Restrict(ctx, &ocpb.RestrictRequest{Name: "T", Ttl: ttl, Keys: []*ocpb.KeyLockRequest{{Key: []byte(key), Mode: ocpb.KeyMode_WRITE}}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := n.Commit(ctx, &ocpb.CommitRequest{Name: "T", Code: l.Code, Writes: []*ocpb.TxnWrite{{Key: []byte(key), Value: []byte("v")}}}); err != nil {
			t.Fatal(err)
		}
		code, _ := decodeCode(l.Code)
		return code
	}
	first := commit("a")
	waitFor("the first holder's keys released", func() bool { return n.marks.has("T", first) })
	if rec := record(); rec.Resolved {
		t.Fatal("the record was marked resolved in a round of its own")
	}
	second := commit("b") // its TxnBegin carries the first holder's mark
	if rec := record(); len(rec.Unresolved) != 0 || n.marks.has("T", first) {
		t.Fatalf("the next TxnBegin did not carry the mark: unresolved %d", len(rec.Unresolved))
	}
	waitFor("the second holder marked resolved by the sweeper", func() bool {
		rec := record()
		return bytes.Equal(rec.Code, second) && rec.Resolved
	})
	if n.marks.has("T", second) {
		t.Fatal("a proposed mark is still held")
	}
}

// TestProposalIDsDifferAcrossOpens: each Open starts its proposal ids at
// a random value, so an entry proposed before a restart never answers a
// proposal made after it (a follower forwarding does not wait for its log
// to catch up first).
func TestProposalIDsDifferAcrossOpens(t *testing.T) {
	a, b := openTestNode(t), openTestNode(t)
	if a.proposalIDs.Load() == b.proposalIDs.Load() {
		t.Fatalf("two opens start their proposal ids at the same value %d", a.proposalIDs.Load())
	}
}

// TestReadLooksForKeyLocksOnlyWhileHeld: a read (Get or Scan) skips the
// look for a key lock only while the bucket holds none. The flag that says so is cleared
// before a key lock is acknowledged, so a strict WRITE lock still blocks
// readers, and set again once the lock is resolved.
func TestReadLooksForKeyLocksOnlyWhileHeld(t *testing.T) {
	n := openTestNode(t)
	ctx := ctxT(t)
	key := []byte("k")
	if _, err := n.Put(ctx, &ocpb.PutRequest{Key: key, Value: []byte("1")}); err != nil {
		t.Fatal(err)
	}
	r := n.replicaOf(key)
	if !r.noKeyLocks.Load() {
		t.Fatal("after a plain Put the bucket is not known to hold no key lock")
	}
	tx, err := n.Restrict(ctx, &ocpb.RestrictRequest{Name: "w", Ttl: durationpb.New(5 * time.Second), Isolation: ocpb.Isolation_STRICT,
		Keys: []*ocpb.KeyLockRequest{{Key: key, Mode: ocpb.KeyMode_WRITE}}})
	if err != nil {
		t.Fatal(err)
	}
	if r.noKeyLocks.Load() {
		t.Fatal("a granted key lock left the bucket marked as holding none")
	}
	_, err = n.Get(ctx, &ocpb.GetRequest{Key: key, Wait: durationpb.New(50 * time.Millisecond)})
	if !errors.Is(err, ErrWaitTimeout) {
		t.Fatalf("Get of a strictly WRITE-locked key: err = %v, want ErrWaitTimeout", err)
	}
	_, err = n.Scan(ctx, &ocpb.ScanRequest{Prefix: key, Wait: durationpb.New(50 * time.Millisecond)})
	if !errors.Is(err, ErrWaitTimeout) {
		t.Fatalf("Scan over a strictly WRITE-locked key: err = %v, want ErrWaitTimeout", err)
	}
	if _, err := n.Commit(ctx, &ocpb.CommitRequest{Name: "w", Code: tx.Code,
		Writes: []*ocpb.TxnWrite{{Key: key, Value: []byte("2")}}}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 5*time.Second, r.noKeyLocks.Load)
	got, err := n.Get(ctx, &ocpb.GetRequest{Key: key})
	if err != nil || string(got.Kv.Value) != "2" {
		t.Fatalf("after commit Get = %v, %v; want 2", got, err)
	}
}

// TestServeReadRefusesMetaGroup: the meta group holds no bucket's data, so
// a bucket read or scan addressed to it is refused, not served from bucket 0.
func TestServeReadRefusesMetaGroup(t *testing.T) {
	n := openTestNode(t)
	ctx := ctxT(t)
	if _, err := n.ServeRead(ctx, &cmdpb.BucketReadRequest{Group: metaGroup, Keys: [][]byte{[]byte("k")}}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("ServeRead(meta group) err = %v, want ErrInvalid", err)
	}
	if _, _, err := n.ServeScan(ctx, &cmdpb.BucketScanRequest{Group: metaGroup}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("ServeScan(meta group) err = %v, want ErrInvalid", err)
	}
}
