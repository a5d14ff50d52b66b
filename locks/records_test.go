package locks

import (
	"fmt"
	"testing"

	"github.com/opencluster/opencluster/mvcc"
)

// TestRecordsStayWithinBudget: the cache of lock records forgets
// everything rather than grow past its budget, and keeps what it was told
// last.
func TestRecordsStayWithinBudget(t *testing.T) {
	var c Records
	value := make([]byte, 100)
	for i := range 10 * recordsBudget / len(value) {
		name := fmt.Sprint("lock-", i)
		c.set(mvcc.KindNamedLock, name, value)
		if c.bytes > recordsBudget {
			t.Fatalf("after %d records: %d bytes, budget %d", i+1, c.bytes, recordsBudget)
		}
		if raw, known := c.get(mvcc.KindNamedLock, name); !known || len(raw) != len(value) {
			t.Fatalf("record %q just set is not known", name)
		}
	}
	c.set(mvcc.KindTxn, "t", nil)
	c.set(mvcc.KindTxn, "t", []byte("x")) // a rewrite replaces, not adds
	if raw, known := c.get(mvcc.KindTxn, "t"); !known || string(raw) != "x" {
		t.Fatalf("rewritten record = %q, %v", raw, known)
	}
	if _, known := c.get(mvcc.KindNamedLock, "t"); known {
		t.Fatal("a txn record answered for a named lock of the same name")
	}
	before := c.bytes
	c.set(mvcc.KindTxn, "t", []byte("y"))
	if c.bytes != before {
		t.Fatalf("rewriting a record of the same size changed the count: %d -> %d", before, c.bytes)
	}
	c.Invalidate()
	if _, known := c.get(mvcc.KindTxn, "t"); known || c.bytes != 0 {
		t.Fatal("Invalidate kept a record")
	}
}
