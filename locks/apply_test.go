package locks

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/opencluster/opencluster/mvcc"
	"github.com/opencluster/opencluster/rpc/cmdpb"
)

func openEngine(t *testing.T) *mvcc.Engine {
	t.Helper()
	e, err := mvcc.Open("", mvcc.Config{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// applyOne applies cmd in its own batch and commits it.
func applyOne(t *testing.T, e *mvcc.Engine, cmd *cmdpb.Command) *cmdpb.Result {
	t.Helper()
	return applyOneCached(t, e, cmd, nil)
}

// applyOneCached is applyOne keeping the bucket's cache c (nil: none).
func applyOneCached(t *testing.T, e *mvcc.Engine, cmd *cmdpb.Command, c *Cache) *cmdpb.Result {
	t.Helper()
	b := e.NewBatch()
	defer b.Close()
	res, _, err := ApplyCached(b, 0, cmd, c)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		t.Fatal(err)
	}
	return res
}

func code(i byte) []byte { return bytes.Repeat([]byte{i}, 16) }

func keys(specs ...any) []*cmdpb.KeySpec {
	var out []*cmdpb.KeySpec
	for i := 0; i < len(specs); i += 2 {
		out = append(out, &cmdpb.KeySpec{Key: []byte(specs[i].(string)), Mode: specs[i+1].(cmdpb.KeyMode)})
	}
	return out
}

// TestKeyLockConflicts checks invariant 2: READ shares with READ; READ/WRITE
// and WRITE/WRITE conflict, and plain writes wait for any key lock
// (invariant 3).
func TestKeyLockConflicts(t *testing.T) {
	const R, W = cmdpb.KeyMode_READ, cmdpb.KeyMode_WRITE
	for _, tc := range []struct {
		first, second cmdpb.KeyMode
		ok            bool
	}{{R, R, true}, {R, W, false}, {W, R, false}, {W, W, false}} {
		t.Run(fmt.Sprintf("%s-then-%s", tc.first, tc.second), func(t *testing.T) {
			e := openEngine(t)
			lock := func(name string, c []byte, m cmdpb.KeyMode) *cmdpb.Result {
				return applyOne(t, e, &cmdpb.Command{Body: &cmdpb.Command_LockKeys{LockKeys: &cmdpb.LockKeys{Name: name, Code: c, Keys: keys("k", m)}}})
			}
			if res := lock("a", code(1), tc.first); res.Error != cmdpb.ErrorCode_OK {
				t.Fatalf("first lock: %v", res)
			}
			res := lock("b", code(2), tc.second)
			if got := res.Error == cmdpb.ErrorCode_OK; got != tc.ok {
				t.Fatalf("second lock ok = %v, want %v (%v)", got, tc.ok, res)
			}
			put := applyOne(t, e, &cmdpb.Command{Body: &cmdpb.Command_Put{Put: &cmdpb.Put{Key: []byte("k"), Value: []byte("v"), Ts: 10}}})
			if put.Error != cmdpb.ErrorCode_KEY_LOCKED {
				t.Fatalf("plain put on a locked key: %v, want KEY_LOCKED", put)
			}
		})
	}
}

// TestTxnCommitIsAtomic checks invariants 4 and 5: provisional values stay
// invisible until ResolveKeys commits them at the commit timestamp, and an
// aborted record's values never appear.
func TestTxnCommitIsAtomic(t *testing.T) {
	for _, commit := range []bool{true, false} {
		t.Run(fmt.Sprintf("commit=%v", commit), func(t *testing.T) {
			e := openEngine(t)
			c := code(7)
			must := func(res *cmdpb.Result) {
				t.Helper()
				if res.Error != cmdpb.ErrorCode_OK {
					t.Fatalf("refused: %v", res)
				}
			}
			must(applyOne(t, e, &cmdpb.Command{Body: &cmdpb.Command_Put{Put: &cmdpb.Put{Key: []byte("x"), Value: []byte("old"), Ts: 5}}}))
			must(applyOne(t, e, &cmdpb.Command{Body: &cmdpb.Command_TxnBegin{TxnBegin: &cmdpb.TxnBegin{Name: "tx", Code: c, StartTs: 6, Keys: keys("x", cmdpb.KeyMode_WRITE, "y", cmdpb.KeyMode_WRITE)}}}))
			must(applyOne(t, e, &cmdpb.Command{Body: &cmdpb.Command_LockKeys{LockKeys: &cmdpb.LockKeys{Name: "tx", Code: c, Keys: keys("x", cmdpb.KeyMode_WRITE, "y", cmdpb.KeyMode_WRITE)}}}))
			for _, k := range []string{"x", "y"} {
				must(applyOne(t, e, &cmdpb.Command{Body: &cmdpb.Command_TxnWrite{TxnWrite: &cmdpb.TxnWrite{Name: "tx", Code: c, Key: []byte(k), Value: []byte("new")}}}))
			}
			for _, k := range []string{"x", "y"} {
				v, err := mvcc.Get(e.DB(), 0, []byte(k), mvcc.Latest)
				if err != nil {
					t.Fatal(err)
				}
				if v.Found && string(v.Bytes) != "old" {
					t.Fatalf("provisional value of %s visible before commit: %q", k, v.Bytes)
				}
			}
			status := cmdpb.TxnStatus_ABORTED
			if commit {
				status = cmdpb.TxnStatus_COMMITTED
			}
			must(applyOne(t, e, &cmdpb.Command{Body: &cmdpb.Command_TxnFinish{TxnFinish: &cmdpb.TxnFinish{Name: "tx", Code: c, Status: status, CommitTs: 20}}}))
			again := applyOne(t, e, &cmdpb.Command{Body: &cmdpb.Command_TxnFinish{TxnFinish: &cmdpb.TxnFinish{Name: "tx", Code: c, Status: 5 - status, CommitTs: 21}}})
			if again.Error == cmdpb.ErrorCode_OK {
				t.Fatalf("record left %s twice: %v", status, again)
			}
			must(applyOne(t, e, &cmdpb.Command{Body: &cmdpb.Command_ResolveKeys{ResolveKeys: &cmdpb.ResolveKeys{Name: "tx", Code: c, Keys: [][]byte{[]byte("x"), []byte("y")}, Commit: commit, CommitTs: 20}}}))
			for k, want := range map[string]string{"x": "old", "y": ""} {
				if commit {
					want = "new"
				}
				v, err := mvcc.Get(e.DB(), 0, []byte(k), mvcc.Latest)
				if err != nil {
					t.Fatal(err)
				}
				if string(v.Bytes) != want || (commit && v.Version != 20) {
					t.Fatalf("%s after resolve = %q@%d, want %q (commit=%v)", k, v.Bytes, v.Version, want, commit)
				}
			}
		})
	}
}

// TestLateWriteRefusedOncePrepared: a snapshot lock's provisional write
// that applies after the lock prepared its keys (a Put whose answer was
// lost, or that Raft carried across a leadership change) is refused, even
// on a key the lock never wrote, and a reader above the commit timestamp
// that found the key unlocked before it keeps its answer after the
// resolution.
func TestLateWriteRefusedOncePrepared(t *testing.T) {
	e := openEngine(t)
	c := code(3)
	k := []byte("k")
	must := func(res *cmdpb.Result) {
		t.Helper()
		if res.Error != cmdpb.ErrorCode_OK {
			t.Fatalf("refused: %v", res)
		}
	}
	must(applyOne(t, e, &cmdpb.Command{Body: &cmdpb.Command_Put{Put: &cmdpb.Put{Key: k, Value: []byte("v0"), Ts: 10}}}))
	must(applyOne(t, e, &cmdpb.Command{Body: &cmdpb.Command_TxnBegin{TxnBegin: &cmdpb.TxnBegin{Name: "L", Code: c, Isolation: cmdpb.Isolation_SNAPSHOT, Keys: keys("k", cmdpb.KeyMode_WRITE)}}}))
	must(applyOne(t, e, &cmdpb.Command{Body: &cmdpb.Command_LockKeys{LockKeys: &cmdpb.LockKeys{Name: "L", Code: c, Isolation: cmdpb.Isolation_SNAPSHOT, Keys: keys("k", cmdpb.KeyMode_WRITE)}}}))
	must(applyOne(t, e, &cmdpb.Command{Body: &cmdpb.Command_TxnPrepare{TxnPrepare: &cmdpb.TxnPrepare{Name: "L", Code: c, Keys: [][]byte{k}, MinCommitTs: 20}}}))
	must(applyOne(t, e, &cmdpb.Command{Body: &cmdpb.Command_TxnFinish{TxnFinish: &cmdpb.TxnFinish{Name: "L", Code: c, Status: cmdpb.TxnStatus_COMMITTED, CommitTs: 30}}}))
	read := func() string {
		t.Helper()
		res, err := Read(e.DB(), 0, k, 40, nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.Blocked {
			return "blocked by " + res.BlockedBy
		}
		return string(res.Value.Bytes)
	}
	if got := read(); got != "v0" {
		t.Fatalf("read at 40 of a key prepared with nothing to publish: %s, want v0", got)
	}
	late := applyOne(t, e, &cmdpb.Command{Body: &cmdpb.Command_TxnWrite{TxnWrite: &cmdpb.TxnWrite{Code: c, Key: k, Value: []byte("late")}}})
	if late.Error == cmdpb.ErrorCode_OK {
		t.Fatal("a provisional write after the prepare was accepted")
	}
	must(applyOne(t, e, &cmdpb.Command{Body: &cmdpb.Command_ResolveKeys{ResolveKeys: &cmdpb.ResolveKeys{Name: "L", Code: c, Keys: [][]byte{k}, Commit: true, CommitTs: 30}}}))
	if got := read(); got != "v0" {
		t.Fatalf("read at 40 after the resolution: %s, want v0 as before it", got)
	}
}

// TestNamedLockFence checks invariant 1: one holder, fences grow by one per
// grant and survive releases; a retried Acquire gets the same grant.
func TestNamedLockFence(t *testing.T) {
	e := openEngine(t)
	acq := func(c []byte, req string) *cmdpb.Result {
		return applyOne(t, e, &cmdpb.Command{Body: &cmdpb.Command_NamedAcquire{NamedAcquire: &cmdpb.NamedAcquire{Name: "m", Code: c, TtlMs: 1000, Ts: 1, RequestId: req}}})
	}
	rel := func(c []byte) *cmdpb.Result {
		return applyOne(t, e, &cmdpb.Command{Body: &cmdpb.Command_NamedRelease{NamedRelease: &cmdpb.NamedRelease{Name: "m", Code: c}}})
	}
	var last uint64
	for i := byte(1); i <= 5; i++ {
		res := acq(code(i), fmt.Sprint("r", i))
		if res.Error != cmdpb.ErrorCode_OK || res.Fence != last+1 {
			t.Fatalf("grant %d: %v, want fence %d", i, res, last+1)
		}
		last = res.Fence
		if retry := acq(code(99), fmt.Sprint("r", i)); retry.Error != cmdpb.ErrorCode_OK || !bytes.Equal(retry.Code, code(i)) {
			t.Fatalf("retried acquire %d: %v, want the same grant", i, retry)
		}
		if other := acq(code(100), "other"); other.Error != cmdpb.ErrorCode_LOCK_HELD {
			t.Fatalf("second holder: %v, want LOCK_HELD", other)
		}
		if res := rel(code(100)); res.Error != cmdpb.ErrorCode_NOT_HOLDER {
			t.Fatalf("release with a wrong code: %v", res)
		}
		if res := rel(code(i)); res.Error != cmdpb.ErrorCode_OK {
			t.Fatalf("release: %v", res)
		}
		if res := rel(code(i)); res.Error != cmdpb.ErrorCode_OK {
			t.Fatalf("retried release: %v, want idempotent success", res)
		}
	}
}

// TestApplyDeterminism applies one random command stream to two engines,
// one through the apply path's cache (Cache), and compares every result
// and every byte: replicas that apply the same log hold the same state.
func TestApplyDeterminism(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	var cmds []*cmdpb.Command
	ts := uint64(100)
	for range 2000 {
		ts++
		k := []byte{'k', byte('a' + rng.IntN(4))}
		c := code(byte(1 + rng.IntN(3)))
		name := fmt.Sprint("n", rng.IntN(2))
		var cmd *cmdpb.Command
		switch rng.IntN(11) {
		case 0:
			cmd = &cmdpb.Command{Body: &cmdpb.Command_Put{Put: &cmdpb.Put{Key: k, Value: []byte(fmt.Sprint(ts)), Ts: ts}}}
		case 1:
			cmd = &cmdpb.Command{Body: &cmdpb.Command_Cas{Cas: &cmdpb.CompareAndSwap{Key: k, Value: []byte("c"), Ts: ts, ExpectedVersion: uint64(rng.IntN(3))}}}
		case 2:
			cmd = &cmdpb.Command{Body: &cmdpb.Command_NamedAcquire{NamedAcquire: &cmdpb.NamedAcquire{Name: name, Code: c, Ts: ts}}}
		case 3:
			cmd = &cmdpb.Command{Body: &cmdpb.Command_NamedRelease{NamedRelease: &cmdpb.NamedRelease{Name: name, Code: c}}}
		case 4:
			cmd = &cmdpb.Command{Body: &cmdpb.Command_TxnBegin{TxnBegin: &cmdpb.TxnBegin{Name: name, Code: c, StartTs: ts, Keys: keys(string(k), cmdpb.KeyMode_WRITE)}}}
		case 5:
			cmd = &cmdpb.Command{Body: &cmdpb.Command_LockKeys{LockKeys: &cmdpb.LockKeys{Name: name, Code: c, Keys: keys(string(k), cmdpb.KeyMode(1+rng.IntN(2)))}}}
		case 6:
			cmd = &cmdpb.Command{Body: &cmdpb.Command_TxnWrite{TxnWrite: &cmdpb.TxnWrite{Name: name, Code: c, Key: k, Value: []byte("p")}}}
		case 8:
			// A snapshot-mode prepare: provisional writes and stamps.
			cmd = &cmdpb.Command{Body: &cmdpb.Command_TxnPrepare{TxnPrepare: &cmdpb.TxnPrepare{Name: name, Code: c, Keys: [][]byte{k}, MinCommitTs: ts,
				Writes: []*cmdpb.TxnWrite{{Name: name, Code: c, Key: k, Value: []byte("s")}}}}}
		case 9:
			// GC purges cleared key locks, which must still read as none.
			cmd = &cmdpb.Command{Body: &cmdpb.Command_Gc{Gc: &cmdpb.GC{Ts: ts - uint64(rng.IntN(50))}}}
		case 7:
			cmd = &cmdpb.Command{Body: &cmdpb.Command_TxnFinish{TxnFinish: &cmdpb.TxnFinish{Name: name, Code: c, Status: cmdpb.TxnStatus(2 + rng.IntN(2)), CommitTs: ts}}}
		default:
			rk := &cmdpb.ResolveKeys{Name: name, Code: c, Keys: [][]byte{k}, Commit: rng.IntN(2) == 0, CommitTs: ts}
			for range rng.IntN(3) { // head waiters' offers, of this key or another
				hk := []byte{'k', byte('a' + rng.IntN(4))}
				rk.Handoffs = append(rk.Handoffs, &cmdpb.LockKeys{Name: fmt.Sprint("n", rng.IntN(2)), Code: code(byte(1 + rng.IntN(3))), Keys: keys(string(hk), cmdpb.KeyMode(1+rng.IntN(2)))})
			}
			cmd = &cmdpb.Command{Body: &cmdpb.Command_ResolveKeys{ResolveKeys: rk}}
		}
		cmds = append(cmds, cmd)
	}
	// dump applies cmds on a fresh engine, through the apply path's cache
	// if cached, and returns every result and the engine's contents.
	dump := func(cached bool) []byte {
		e := openEngine(t)
		var out bytes.Buffer
		cache := NewCache()
		for _, cmd := range cmds {
			b := e.NewBatch()
			var res *cmdpb.Result
			var err error
			if cached {
				res, _, err = ApplyCached(b, 0, cmd, cache)
			} else {
				res, _, err = Apply(b, 0, cmd)
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := b.Commit(pebble.NoSync); err != nil {
				t.Fatal(err)
			}
			b.Close()
			fmt.Fprintf(&out, "%v\n", res)
		}
		it, err := e.DB().NewIter(nil)
		if err != nil {
			t.Fatal(err)
		}
		defer it.Close()
		for ok := it.First(); ok; ok = it.Next() {
			fmt.Fprintf(&out, "%x=%x\n", it.Key(), it.Value())
		}
		return out.Bytes()
	}
	a, b := dump(false), dump(true)
	if !bytes.Equal(a, b) {
		t.Fatalf("two replicas applying the same %d commands diverged (one through the cache)", len(cmds))
	}
	if len(a) == 0 {
		t.Fatal("the command stream wrote nothing; the test checks nothing")
	}
}

// TestRetriedWritesApplyOnce checks request-id dedup: a Put or CAS retried
// with the same request id (and, as the leader re-stamps it, a later
// timestamp) returns the first result and writes no second version; after
// GC passes the write's timestamp the record is forgotten.
func TestRetriedWritesApplyOnce(t *testing.T) {
	e := openEngine(t)
	put := func(ts uint64, req string) *cmdpb.Result {
		return applyOne(t, e, &cmdpb.Command{Body: &cmdpb.Command_Put{Put: &cmdpb.Put{Key: []byte("k"), Value: []byte(req), Ts: ts, RequestId: req, CheckApplied: true}}})
	}
	cas := func(ts, expected uint64, req string) *cmdpb.Result {
		return applyOne(t, e, &cmdpb.Command{Body: &cmdpb.Command_Cas{Cas: &cmdpb.CompareAndSwap{Key: []byte("k"), Value: []byte(req), Ts: ts, ExpectedVersion: expected, RequestId: req, CheckApplied: true}}})
	}
	if res := put(10, "p1"); res.Error != cmdpb.ErrorCode_OK || res.Ts != 10 {
		t.Fatalf("first put: %v", res)
	}
	if res := put(20, "p1"); res.Error != cmdpb.ErrorCode_OK || res.Ts != 10 {
		t.Fatalf("retried put: %v, want the first result (ts 10)", res)
	}
	if res := cas(30, 10, "c1"); res.Error != cmdpb.ErrorCode_OK || res.Ts != 30 {
		t.Fatalf("first cas: %v", res)
	}
	// Evaluated again, the retry would fail: the version is now 30.
	if res := cas(40, 10, "c1"); res.Error != cmdpb.ErrorCode_OK || res.Ts != 30 {
		t.Fatalf("retried cas: %v, want the first success (ts 30)", res)
	}
	v, err := mvcc.Get(e.DB(), 0, []byte("k"), mvcc.Latest)
	if err != nil || uint64(v.Version) != 30 || string(v.Bytes) != "c1" {
		t.Fatalf("k = %q@%d, %v; want c1@30 and no version from a retry", v.Bytes, v.Version, err)
	}
	// A retry is recognised for as long as its version is kept: GC at 35
	// deletes p1@10 but keeps c1@30, the newest version below 35.
	applyOne(t, e, &cmdpb.Command{Body: &cmdpb.Command_Gc{Gc: &cmdpb.GC{Ts: 35}}})
	if res := put(50, "p1"); res.Ts != 50 {
		t.Fatalf("put p1 after GC deleted its version: %v, want a new write at 50", res)
	}
	if res := cas(55, 10, "c1"); res.Error != cmdpb.ErrorCode_OK || res.Ts != 30 {
		t.Fatalf("cas c1 retried while its version is kept: %v, want the first success (ts 30)", res)
	}
	applyOne(t, e, &cmdpb.Command{Body: &cmdpb.Command_Gc{Gc: &cmdpb.GC{Ts: 52}}})
	if res := cas(60, 10, "c1"); res.Error != cmdpb.ErrorCode_CAS_MISMATCH {
		t.Fatalf("cas c1 after GC deleted its version: %v, want it judged again (mismatch)", res)
	}
}

// TestRetriedWriteOfEarlierBuild checks that a retry of a write applied by
// a build that kept a dedup record per write (no request id in the
// version) still gets its first result.
func TestRetriedWriteOfEarlierBuild(t *testing.T) {
	e := openEngine(t)
	b := e.DB().NewIndexedBatch()
	if err := mvcc.PutVersion(b, 0, []byte("k"), 10, []byte("old")); err != nil {
		t.Fatal(err)
	}
	if err := mvcc.PutRecord(b, 0, mvcc.KindRequest, []byte("r"), &cmdpb.AppliedRequest{Result: &cmdpb.Result{Ts: 10}, Ts: 10}); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(nil); err != nil {
		t.Fatal(err)
	}
	res := applyOne(t, e, &cmdpb.Command{Body: &cmdpb.Command_Put{Put: &cmdpb.Put{Key: []byte("k"), Value: []byte("new"), Ts: 20, RequestId: "r", CheckApplied: true}}})
	if res.Error != cmdpb.ErrorCode_OK || res.Ts != 10 {
		t.Fatalf("retry of a write with a dedup record: %v, want the recorded result (ts 10)", res)
	}
	if v, err := mvcc.Get(e.DB(), 0, []byte("k"), mvcc.Latest); err != nil || string(v.Bytes) != "old" {
		t.Fatalf("k = %q, %v; want old (the retry wrote nothing)", v.Bytes, err)
	}
}

// TestRetriedReleaseAfterRegrant checks that a Release retried with its
// request id succeeds even after the lock was granted to someone else and
// released again, instead of looking like a lost lock.
func TestRetriedReleaseAfterRegrant(t *testing.T) {
	e := openEngine(t)
	acq := func(c []byte) *cmdpb.Result {
		return applyOne(t, e, &cmdpb.Command{Body: &cmdpb.Command_NamedAcquire{NamedAcquire: &cmdpb.NamedAcquire{Name: "m", Code: c, TtlMs: 1000, Ts: 1}}})
	}
	rel := func(c []byte, req string) *cmdpb.Result {
		return applyOne(t, e, &cmdpb.Command{Body: &cmdpb.Command_NamedRelease{NamedRelease: &cmdpb.NamedRelease{Name: "m", Code: c, RequestId: req, Ts: 5, CheckApplied: true}}})
	}
	acq(code(1))
	if res := rel(code(1), "r1"); res.Error != cmdpb.ErrorCode_OK {
		t.Fatalf("release: %v", res)
	}
	acq(code(2))
	rel(code(2), "r2")
	if res := rel(code(1), "r1"); res.Error != cmdpb.ErrorCode_OK {
		t.Fatalf("retried release after a regrant: %v, want the first success", res)
	}
	if res := rel(code(1), "r3"); res.Error != cmdpb.ErrorCode_NOT_HOLDER {
		t.Fatalf("a new release with a stale code: %v, want NOT_HOLDER", res)
	}
}

// TestFirstAttemptSkipsDedupLookup checks that a write marked as a first
// attempt applies without looking for a record (so the same request id
// sent as a first attempt twice writes twice: only a retry is checked),
// and still leaves the record a later retry finds.
func TestFirstAttemptSkipsDedupLookup(t *testing.T) {
	e := openEngine(t)
	put := func(ts uint64, check bool) *cmdpb.Result {
		return applyOne(t, e, &cmdpb.Command{Body: &cmdpb.Command_Put{Put: &cmdpb.Put{Key: []byte("k"), Value: []byte("v"), Ts: ts, RequestId: "r", CheckApplied: check}}})
	}
	if res := put(10, false); res.Ts != 10 {
		t.Fatalf("first attempt: %v", res)
	}
	if res := put(20, false); res.Ts != 20 {
		t.Fatalf("unchecked resend: %v, want a new write at 20", res)
	}
	if res := put(30, true); res.Ts != 20 {
		t.Fatalf("retry: %v, want the recorded result (20)", res)
	}
}

// TestFinishedRecordFreesItsName: once a restrictive lock commits, its name
// may be taken again before its keys are resolved; the new record keeps the
// old one (FinishedTxn finds it) until TxnResolved drops it, and the old
// keys stay locked until ResolveKeys.
func TestFinishedRecordFreesItsName(t *testing.T) {
	const W = cmdpb.KeyMode_WRITE
	e := openEngine(t)
	begin := func(c []byte, key string) *cmdpb.Result {
		return applyOne(t, e, &cmdpb.Command{Body: &cmdpb.Command_TxnBegin{TxnBegin: &cmdpb.TxnBegin{Name: "T", Code: c, Keys: keys(key, W)}}})
	}
	if res := begin(code(1), "a"); res.Error != cmdpb.ErrorCode_OK {
		t.Fatal(res)
	}
	applyOne(t, e, &cmdpb.Command{Body: &cmdpb.Command_LockKeys{LockKeys: &cmdpb.LockKeys{Name: "T", Code: code(1), Keys: keys("a", W)}}})
	if res := begin(code(2), "b"); res.Error != cmdpb.ErrorCode_LOCK_HELD {
		t.Fatalf("second holder while the first is PENDING: %v", res)
	}
	b := e.NewBatch()
	_, eff, err := Apply(b, 0, &cmdpb.Command{Body: &cmdpb.Command_TxnFinish{TxnFinish: &cmdpb.TxnFinish{Name: "T", Code: code(1), Status: cmdpb.TxnStatus_COMMITTED, CommitTs: 7}}})
	if err != nil || b.Commit(pebble.NoSync) != nil {
		t.Fatal(err)
	}
	b.Close()
	if len(eff.FreedTxns) != 1 {
		t.Fatalf("commit freed %v, want the name", eff.FreedTxns)
	}
	if res := begin(code(2), "b"); res.Error != cmdpb.ErrorCode_OK || res.Fence != 2 {
		t.Fatalf("taking a committed, unresolved name: %v", res)
	}
	rec, _, err := TxnRecord(e.DB(), 0, "T")
	if err != nil {
		t.Fatal(err)
	}
	old, ok := FinishedTxn(rec, code(1))
	if !ok || old.Status != cmdpb.TxnStatus_COMMITTED || old.CommitTs != 7 {
		t.Fatalf("the first holder's outcome: %v, %v", old, ok)
	}
	if kl, held, _ := KeyLockOf(e.DB(), 0, []byte("a")); !held || !bytes.Equal(kl.Holders[0].Code, code(1)) {
		t.Fatal("the first holder's key was released before ResolveKeys")
	}
	applyOne(t, e, &cmdpb.Command{Body: &cmdpb.Command_ResolveKeys{ResolveKeys: &cmdpb.ResolveKeys{Name: "T", Code: code(1), Keys: [][]byte{[]byte("a")}, Commit: true, CommitTs: 7}}})
	if res := applyOne(t, e, &cmdpb.Command{Body: &cmdpb.Command_TxnResolved{TxnResolved: &cmdpb.TxnResolved{Name: "T", Code: code(1)}}}); res.Error != cmdpb.ErrorCode_OK {
		t.Fatal(res)
	}
	rec, _, _ = TxnRecord(e.DB(), 0, "T")
	if _, ok := FinishedTxn(rec, code(1)); ok || len(rec.Unresolved) != 0 || !bytes.Equal(rec.Code, code(2)) || rec.Status != cmdpb.TxnStatus_PENDING {
		t.Fatalf("after resolving the first holder: %v", rec)
	}
}

// TestResolveHandsKeysOver: a ResolveKeys's handoffs apply after its
// release, in order, each as a LockKeys would on the state it finds: the
// first takes the released keys (and a free one), a READ behind it is
// refused, and a handoff carried by a repeated resolution, which releases
// nothing, is refused too: the key is the first handoff's now.
func TestResolveHandsKeysOver(t *testing.T) {
	const R, W = cmdpb.KeyMode_READ, cmdpb.KeyMode_WRITE
	e := openEngine(t)
	if res := applyOne(t, e, &cmdpb.Command{Body: &cmdpb.Command_LockKeys{LockKeys: &cmdpb.LockKeys{Name: "T1", Code: code(1), Keys: keys("a", W, "b", W)}}}); res.Error != cmdpb.ErrorCode_OK {
		t.Fatal(res)
	}
	resolve := func(handoffs ...*cmdpb.LockKeys) *cmdpb.Result {
		return applyOne(t, e, &cmdpb.Command{Body: &cmdpb.Command_ResolveKeys{ResolveKeys: &cmdpb.ResolveKeys{
			Name: "T1", Code: code(1), Keys: [][]byte{[]byte("a"), []byte("b")}, Commit: true, CommitTs: 9,
			Writes:   []*cmdpb.TxnWrite{{Key: []byte("a"), Value: []byte("va")}},
			Handoffs: handoffs,
		}}})
	}
	res := resolve(
		&cmdpb.LockKeys{Name: "T2", Code: code(2), Keys: keys("a", W, "c", W)},
		&cmdpb.LockKeys{Name: "T3", Code: code(3), Keys: keys("b", W)},
		&cmdpb.LockKeys{Name: "T4", Code: code(4), Keys: keys("a", R)},
	)
	if res.Error != cmdpb.ErrorCode_OK || res.Count != 2 || len(res.KeyHandoffs) != 3 {
		t.Fatalf("resolution: %v", res)
	}
	if h := res.KeyHandoffs; h[0].Error != cmdpb.ErrorCode_OK || h[0].Count != 2 ||
		h[1].Error != cmdpb.ErrorCode_OK || h[1].Count != 1 ||
		h[2].Error != cmdpb.ErrorCode_KEY_LOCKED || h[2].Count != 0 || h[2].HeldBy != "T2" {
		t.Fatalf("handoff results: %v", h)
	}
	for key, c := range map[string][]byte{"a": code(2), "b": code(3), "c": code(2)} {
		if held, err := KeyHeldBy(e.DB(), 0, []byte(key), c); err != nil || !held {
			t.Fatalf("key %s: held by the handoff's code = %v (%v)", key, held, err)
		}
	}
	// The release committed before the grant: the new holder reads it.
	if v, err := mvcc.Get(e.DB(), 0, []byte("a"), mvcc.Latest); err != nil || string(v.Bytes) != "va" || v.Version != 9 {
		t.Fatalf("committed value under the new holder: %q at %d, %v", v.Bytes, v.Version, err)
	}
	res = resolve(&cmdpb.LockKeys{Name: "T5", Code: code(5), Keys: keys("a", W)})
	if res.Count != 0 || len(res.KeyHandoffs) != 1 || res.KeyHandoffs[0].Error != cmdpb.ErrorCode_KEY_LOCKED {
		t.Fatalf("repeated resolution: %v", res)
	}
}

// TestKeyLockCountFollowsRecords: the bucket's key-lock count lets plain
// writes skip the key-lock read only while no key lock exists: it follows
// LockKeys and ResolveKeys, and after Invalidate it is recounted.
func TestKeyLockCountFollowsRecords(t *testing.T) {
	const W, R = cmdpb.KeyMode_WRITE, cmdpb.KeyMode_READ
	e := openEngine(t)
	cache := NewCache()
	kls := &cache.KeyLocks
	var tsNow uint64
	apply := func(cmd *cmdpb.Command) *cmdpb.Result {
		t.Helper()
		return applyOneCached(t, e, cmd, cache)
	}
	put := func(key string) cmdpb.ErrorCode {
		tsNow++
		return apply(&cmdpb.Command{Body: &cmdpb.Command_Put{Put: &cmdpb.Put{Key: []byte(key), Value: []byte("v"), Ts: tsNow}}}).Error
	}
	lock := func(c []byte, specs ...any) {
		if res := apply(&cmdpb.Command{Body: &cmdpb.Command_LockKeys{LockKeys: &cmdpb.LockKeys{Name: "T", Code: c, Keys: keys(specs...)}}}); res.Error != cmdpb.ErrorCode_OK {
			t.Fatal(res)
		}
	}
	resolve := func(c []byte, ks ...string) {
		var bs [][]byte
		for _, k := range ks {
			bs = append(bs, []byte(k))
		}
		apply(&cmdpb.Command{Body: &cmdpb.Command_ResolveKeys{ResolveKeys: &cmdpb.ResolveKeys{Name: "T", Code: c, Keys: bs}}})
	}
	if put("a") != cmdpb.ErrorCode_OK || kls.n != 0 {
		t.Fatalf("after a plain put: count %d, want 0", kls.n)
	}
	lock(code(1), "a", W, "b", R)
	lock(code(2), "b", R) // a second READ holder: no new record
	if kls.n != 2 {
		t.Fatalf("two key-lock records counted %d", kls.n)
	}
	if put("a") != cmdpb.ErrorCode_KEY_LOCKED || put("b") != cmdpb.ErrorCode_KEY_LOCKED {
		t.Fatal("a plain put went through a key lock")
	}
	// LockKeys skipped its lookup for code(1) in the bucket counted
	// empty; in one counted non-empty it looks, and sees the holders.
	if res := apply(&cmdpb.Command{Body: &cmdpb.Command_LockKeys{LockKeys: &cmdpb.LockKeys{Name: "U", Code: code(3), Keys: keys("b", W)}}}); res.Error != cmdpb.ErrorCode_KEY_LOCKED {
		t.Fatalf("WRITE over two READ holders: %v, want KEY_LOCKED", res)
	}
	resolve(code(1), "a", "b")
	if kls.n != 1 || put("b") != cmdpb.ErrorCode_KEY_LOCKED {
		t.Fatalf("b still READ-locked by code 2: count %d", kls.n)
	}
	kls.Invalidate()
	if put("c") != cmdpb.ErrorCode_OK || kls.n != 1 {
		t.Fatalf("recounted %d, want 1", kls.n)
	}
	resolve(code(2), "b")
	if kls.n != 0 || put("a") != cmdpb.ErrorCode_OK || put("b") != cmdpb.ErrorCode_OK {
		t.Fatalf("after every key lock went: count %d", kls.n)
	}
}

// TestResolvedCodesRideOnLaterCommands: the resolved list of a TxnBegin or
// TxnFinish on the same name marks earlier holders resolved as TxnResolved
// would, and is kept even when the command itself is refused.
func TestResolvedCodesRideOnLaterCommands(t *testing.T) {
	const W = cmdpb.KeyMode_WRITE
	e := openEngine(t)
	record := func() *cmdpb.TxnRecord {
		t.Helper()
		rec, _, err := TxnRecord(e.DB(), 0, "T")
		if err != nil {
			t.Fatal(err)
		}
		return rec
	}
	begin := func(c []byte, resolved ...[]byte) *cmdpb.Result {
		return applyOne(t, e, &cmdpb.Command{Body: &cmdpb.Command_TxnBegin{TxnBegin: &cmdpb.TxnBegin{Name: "T", Code: c, Keys: keys("a", W), Resolved: resolved}}})
	}
	finish := func(c []byte, resolved ...[]byte) *cmdpb.Result {
		return applyOne(t, e, &cmdpb.Command{Body: &cmdpb.Command_TxnFinish{TxnFinish: &cmdpb.TxnFinish{Name: "T", Code: c, Status: cmdpb.TxnStatus_COMMITTED, CommitTs: 9, Resolved: resolved}}})
	}
	// Holder 1 commits; holder 2 takes the name before 1 is resolved.
	begin(code(1))
	finish(code(1))
	if res := begin(code(2)); res.Error != cmdpb.ErrorCode_OK {
		t.Fatal(res)
	}
	if rec := record(); len(rec.Unresolved) != 1 {
		t.Fatalf("holder 1 not kept: %v", rec)
	}
	// A refused TxnBegin (the name is PENDING) still marks holder 1.
	if res := begin(code(3), code(1)); res.Error != cmdpb.ErrorCode_LOCK_HELD {
		t.Fatalf("a third holder while the second is PENDING: %v", res)
	}
	if rec := record(); len(rec.Unresolved) != 0 || !bytes.Equal(rec.Code, code(2)) {
		t.Fatalf("after the refused TxnBegin carried holder 1: %v", rec)
	}
	// Holder 2 commits; holder 4 takes the name carrying 2 as resolved.
	if res := finish(code(2)); res.Error != cmdpb.ErrorCode_OK {
		t.Fatal(res)
	}
	if res := begin(code(4), code(2)); res.Error != cmdpb.ErrorCode_OK {
		t.Fatal(res)
	}
	if rec := record(); len(rec.Unresolved) != 0 {
		t.Fatalf("holder 2 kept though its TxnBegin-borne mark: %v", rec)
	}
	// Holder 4 commits and a retried commit carries its own code: the
	// record is finished, so it becomes resolved.
	if res := finish(code(4)); res.Error != cmdpb.ErrorCode_OK {
		t.Fatal(res)
	}
	if rec := record(); rec.Resolved {
		t.Fatal("resolved before anyone said so")
	}
	if res := finish(code(4), code(4)); res.Error != cmdpb.ErrorCode_OK {
		t.Fatal(res)
	}
	if rec := record(); !rec.Resolved || rec.Status != cmdpb.TxnStatus_COMMITTED {
		t.Fatalf("a retried commit carrying its own code: %v", rec)
	}
}
