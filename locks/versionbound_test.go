package locks

import (
	"testing"

	"github.com/cockroachdb/pebble/v2"

	"github.com/opencluster/opencluster/mvcc"
	"github.com/opencluster/opencluster/mvcc/ts"
	"github.com/opencluster/opencluster/rpc/cmdpb"
)

// TestVersionBound: the bound is known only once established in its own
// generation, covers the versions written while it was unknown, follows
// later writes, and forgets everything on Invalidate.
func TestVersionBound(t *testing.T) {
	var v VersionBound
	v.Invalidate()
	gen, unknown := v.Unknown()
	if !unknown || v.Above(1<<60) {
		t.Fatal("a new bound is known")
	}
	v.wrote(50) // written while unknown
	v.Establish(gen, 40)
	if v.Above(50) || !v.Above(51) {
		t.Fatalf("established at 40 after a write at 50: max %d, want 50", v.max)
	}
	v.wrote(70)
	if v.Above(70) || !v.Above(71) {
		t.Fatalf("after a write at 70: max %d", v.max)
	}
	v.Invalidate()
	if _, unknown := v.Unknown(); !unknown || v.Above(1<<60) {
		t.Fatal("known after Invalidate")
	}
	v.Establish(gen, 100) // a timestamp from the previous generation
	if _, unknown := v.Unknown(); !unknown {
		t.Fatal("established from a timestamp taken before the invalidation")
	}
	var nilBound *VersionBound
	nilBound.wrote(1)
	if nilBound.Above(2) {
		t.Fatal("a nil bound is known")
	}
}

// TestPutWithVersionBound: with the bound known, a Put above it applies
// without reading its key, and a Put at or below it is still judged by
// the key's newest version: refused when stale, applied when not.
func TestPutWithVersionBound(t *testing.T) {
	e := openEngine(t)
	cache := NewCache()
	iters := 0 // iterators opened by the last command (mvcc.Get opens one)
	apply := func(cmd *cmdpb.Command) *cmdpb.Result {
		t.Helper()
		b := e.NewBatch()
		defer b.Close()
		rw := &countingIters{ReadWriter: b}
		res, _, err := ApplyCached(rw, 0, cmd, cache)
		iters = rw.iters
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Commit(pebble.NoSync); err != nil {
			t.Fatal(err)
		}
		return res
	}
	put := func(key string, at uint64) cmdpb.ErrorCode {
		t.Helper()
		return apply(&cmdpb.Command{Body: &cmdpb.Command_Put{Put: &cmdpb.Put{Key: []byte(key), Value: []byte{byte(at)}, Ts: at}}}).Error
	}
	if got := put("a", 10); got != cmdpb.ErrorCode_OK {
		t.Fatalf("first put: %v", got)
	}
	if got := put("a", 10); got != cmdpb.ErrorCode_STALE_TS {
		t.Fatalf("put at the newest version with the bound unknown: %v, want STALE_TS", got)
	}
	gen, _ := cache.Versions.Unknown()
	cache.Versions.Establish(gen, 20)
	if got := put("b", 30); got != cmdpb.ErrorCode_OK || iters != 0 {
		t.Fatalf("put above the bound: %v, %d iterators opened, want none", got, iters)
	}
	for _, c := range []struct {
		key  string
		at   uint64
		want cmdpb.ErrorCode
	}{
		{"a", 9, cmdpb.ErrorCode_STALE_TS},  // below a's version 10
		{"b", 30, cmdpb.ErrorCode_STALE_TS}, // at b's version 30, the bound
		{"a", 25, cmdpb.ErrorCode_OK},       // below the bound, above a's version
		{"c", 31, cmdpb.ErrorCode_OK},       // above the bound
		{"c", 31, cmdpb.ErrorCode_STALE_TS}, // the bound moved with it
	} {
		mustRead := ts.Timestamp(c.at) <= cache.Versions.max
		if got := put(c.key, c.at); got != c.want {
			t.Fatalf("put %s at %d: %v, want %v", c.key, c.at, got, c.want)
		}
		if read := iters > 0; read != mustRead {
			t.Fatalf("put %s at %d with the bound at %d read its key: %t", c.key, c.at, cache.Versions.max, read)
		}
	}
	for key, want := range map[string]uint64{"a": 25, "b": 30, "c": 31} {
		v, err := mvcc.Get(e.DB(), 0, []byte(key), mvcc.Latest)
		if err != nil || v.Version != ts.Timestamp(want) {
			t.Fatalf("%s: version %d, %v; want %d", key, v.Version, err, want)
		}
	}
}

// countingIters counts the iterators opened on a ReadWriter.
type countingIters struct {
	mvcc.ReadWriter
	iters int
}

func (c *countingIters) NewIter(o *pebble.IterOptions) (*pebble.Iterator, error) {
	c.iters++
	return c.ReadWriter.NewIter(o)
}
