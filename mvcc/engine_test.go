package mvcc

import (
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2"

	"github.com/opencluster/opencluster/mvcc/ts"
)

// TestFlushWritesNoValueBlocks: a flush of many versions of a few keys
// keeps the older versions inline (no value blocks, whose buffering made
// flushes spike the Go heap), and every version still reads back.
func TestFlushWritesNoValueBlocks(t *testing.T) {
	e := newTestEngine(t)
	const keys, versions = 20, 50
	b := e.NewBatch()
	for k := range keys {
		for v := 1; v <= versions; v++ {
			must(t, PutVersion(b, 3, fmt.Appendf(nil, "key-%02d", k), ts.Timestamp(v), fmt.Appendf(nil, "value-%02d-%03d-%s", k, v, make([]byte, 100))))
		}
	}
	must(t, b.Commit(pebble.NoSync))
	must(t, b.Close())
	flushAndCompact(t, e)

	m := e.DB().Metrics()
	tables := int64(0)
	for level := range m.Levels {
		tables += m.Levels[level].TablesCount
		if vb := m.Levels[level].Additional.ValueBlocksSize; vb != 0 {
			t.Fatalf("level %d holds %d bytes of value blocks, want none", level, vb)
		}
	}
	if tables == 0 {
		t.Fatal("nothing was flushed; the test checks nothing")
	}
	for k := range keys {
		for _, v := range []int{1, versions / 2, versions} {
			got, err := Get(e.DB(), 3, fmt.Appendf(nil, "key-%02d", k), ts.Timestamp(v))
			must(t, err)
			if want := fmt.Sprintf("value-%02d-%03d-", k, v); !got.Found || string(got.Bytes[:len(want)]) != want || got.Version != ts.Timestamp(v) {
				t.Fatalf("key %d at %d: %q (version %d, found %t), want %q...", k, v, got.Bytes, got.Version, got.Found, want)
			}
		}
	}
}
