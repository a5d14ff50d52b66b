package locks

import (
	"fmt"
	"testing"

	"github.com/opencluster/opencluster/mvcc"
	"github.com/opencluster/opencluster/rpc/cmdpb"
)

// TestRecordsStayWithinBudget: the cache of lock records forgets
// everything rather than grow past its budget, does not keep a record
// over recordMaxBytes, and keeps what it was told last.
func TestRecordsStayWithinBudget(t *testing.T) {
	var c Records
	value := make([]byte, 100)
	for i := range 10 * recordsBudget / len(value) {
		name := fmt.Sprint("lock-", i)
		c.set(mvcc.KindNamedLock, name, value, true)
		if c.bytes > recordsBudget {
			t.Fatalf("after %d records: %d bytes, budget %d", i+1, c.bytes, recordsBudget)
		}
		if raw, known := c.get(mvcc.KindNamedLock, name); !known || len(raw) != len(value) {
			t.Fatalf("record %q just set is not known", name)
		}
	}
	c.set(mvcc.KindTxn, "t", nil, false)
	if raw, known := c.get(mvcc.KindTxn, "t"); !known || raw != nil {
		t.Fatalf("a record known absent = %q, %v", raw, known)
	}
	c.set(mvcc.KindTxn, "t", []byte("x"), true) // a rewrite replaces, not adds
	if raw, known := c.get(mvcc.KindTxn, "t"); !known || string(raw) != "x" {
		t.Fatalf("rewritten record = %q, %v", raw, known)
	}
	if _, known := c.get(mvcc.KindNamedLock, "t"); known {
		t.Fatal("a txn record answered for a named lock of the same name")
	}
	before := c.bytes
	c.set(mvcc.KindTxn, "t", []byte("y"), true)
	if c.bytes != before {
		t.Fatalf("rewriting a record of the same size changed the count: %d -> %d", before, c.bytes)
	}
	// A record that grows (a commit adds its writes) is counted at its new
	// size; one larger than recordMaxBytes is not kept at all.
	for size := 1; size <= recordMaxBytes; size *= 2 {
		c.set(mvcc.KindTxn, "t", make([]byte, size), true)
		if c.bytes > recordsBudget {
			t.Fatalf("a record grown to %d bytes: %d bytes, budget %d", size, c.bytes, recordsBudget)
		}
	}
	c.set(mvcc.KindTxn, "t", make([]byte, recordMaxBytes+1), true)
	if _, known := c.get(mvcc.KindTxn, "t"); known {
		t.Fatal("a record over recordMaxBytes was kept")
	}
	c.set(mvcc.KindTxn, "e", nil, true)
	if raw, known := c.get(mvcc.KindTxn, "e"); !known || raw == nil {
		t.Fatal("a found record of default fields was taken for none")
	}
	c.Invalidate()
	if _, known := c.get(mvcc.KindTxn, "e"); known || c.bytes != 0 {
		t.Fatal("Invalidate kept a record")
	}
}

// TestPlainWritesLeaveKeyLockCacheAlone: in a bucket holding a key lock,
// every plain write looks for its key's lock, but remembers nothing, so
// writes of many keys do not fill the cache and push out the held lock.
func TestPlainWritesLeaveKeyLockCacheAlone(t *testing.T) {
	e := openEngine(t)
	cache := NewCache()
	apply := func(cmd *cmdpb.Command) *cmdpb.Result {
		t.Helper()
		return applyOneCached(t, e, cmd, cache)
	}
	lock := &cmdpb.LockKeys{Name: "T", Code: code(1), Keys: keys("held", cmdpb.KeyMode_WRITE)}
	if res := apply(&cmdpb.Command{Body: &cmdpb.Command_LockKeys{LockKeys: lock}}); res.Error != cmdpb.ErrorCode_OK {
		t.Fatal(res)
	}
	for i := range 500 {
		put := &cmdpb.Put{Key: fmt.Appendf(nil, "free-%03d", i), Value: []byte("v"), Ts: uint64(100 + i)}
		if res := apply(&cmdpb.Command{Body: &cmdpb.Command_Put{Put: put}}); res.Error != cmdpb.ErrorCode_OK {
			t.Fatalf("put %d: %v", i, res)
		}
	}
	if res := apply(&cmdpb.Command{Body: &cmdpb.Command_Put{Put: &cmdpb.Put{Key: []byte("held"), Value: []byte("v"), Ts: 1000}}}); res.Error != cmdpb.ErrorCode_KEY_LOCKED {
		t.Fatalf("put of the locked key: %v, want KEY_LOCKED", res)
	}
	if n := len(cache.KeyLockRecords.m); n != 1 {
		t.Fatalf("the key-lock cache holds %d entries after 500 plain writes, want only the held lock", n)
	}
	if _, known := cache.KeyLockRecords.get(mvcc.KindKeyLock, "held"); !known {
		t.Fatal("the held key lock was pushed out of the cache")
	}
}
