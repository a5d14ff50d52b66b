package mvcc

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/opencluster/opencluster/mvcc/ts"
)

const testKeys, testVersions = 20, 50

// putTestVersions writes testVersions versions of testKeys keys of bucket 3.
func putTestVersions(t *testing.T, e *Engine) {
	b := e.NewBatch()
	for k := range testKeys {
		for v := 1; v <= testVersions; v++ {
			must(t, PutVersion(b, 3, fmt.Appendf(nil, "key-%02d", k), ts.Timestamp(v), fmt.Appendf(nil, "value-%02d-%03d-%s", k, v, make([]byte, 100))))
		}
	}
	must(t, b.Commit(pebble.NoSync))
	must(t, b.Close())
}

// TestFlushWritesNoValueBlocks: a flush of many versions of a few keys
// keeps the older versions inline (no value blocks, whose buffering made
// flushes spike the Go heap), and every version still reads back.
func TestFlushWritesNoValueBlocks(t *testing.T) {
	e := newTestEngine(t)
	putTestVersions(t, e)
	flushAndCompact(t, e)
	checkNoValueBlocks(t, e)
}

// TestSnapshotSSTsHaveNoValueBlocks: the SSTs a snapshot is ingested from
// (CreateSST) keep older versions inline too.
func TestSnapshotSSTsHaveNoValueBlocks(t *testing.T) {
	src, dst := newTestEngine(t), newTestEngine(t)
	putTestVersions(t, src)
	fs := dst.FS()
	must(t, fs.MkdirAll("ssts", 0o755))
	w, err := dst.CreateSST(fs.PathJoin("ssts", "3.sst"))
	must(t, err)
	start, end := BucketSpan(3)
	it, err := src.DB().NewIter(&pebble.IterOptions{LowerBound: start, UpperBound: end})
	must(t, err)
	for ok := it.First(); ok; ok = it.Next() {
		must(t, w.Set(it.Key(), it.Value()))
	}
	must(t, it.Close())
	must(t, w.Finish())
	must(t, dst.IngestReplacing(t.Context(), []string{fs.PathJoin("ssts", "3.sst")}, start, end))
	checkNoValueBlocks(t, dst)
}

// checkNoValueBlocks checks that e's tables hold the versions of
// putTestVersions, and no value blocks.
func checkNoValueBlocks(t *testing.T, e *Engine) {
	t.Helper()
	const keys, versions = testKeys, testVersions
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

// putRound writes version round+1 of 200 keys of bucket 3 in one batch.
func putRound(e *Engine, round int, value []byte) error {
	b := e.NewBatch()
	defer b.Close()
	for k := range 200 {
		if err := PutVersion(b, 3, fmt.Appendf(nil, "key-%04d", k), ts.Timestamp(round+1), value); err != nil {
			return err
		}
	}
	return b.Commit(pebble.NoSync)
}

// TestBlockCacheOutlivesFullMemtables: Pebble charges memtables to the
// block cache, so a cache sized without them caches nothing once the
// memtables have grown to full size, and every read goes to the files. With
// two full memtables held, reads of flushed data are still cached.
func TestBlockCacheOutlivesFullMemtables(t *testing.T) {
	const memtable = 1 << 20
	e, err := Open(t.TempDir(), Config{CacheBytes: 1 << 20, MemTableBytes: memtable})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	db := e.DB()
	// Memtables start small and double up to MemTableBytes: write until
	// the engine holds two of full size (the active one and one flushed,
	// kept for reuse).
	value := make([]byte, 1000)
	for round := 0; db.Metrics().MemTable.Size+db.Metrics().MemTable.ZombieSize < 2*memtable; round++ {
		if round == 100 {
			t.Fatalf("memtables hold %d bytes after 100 rounds of writes", db.Metrics().MemTable.Size)
		}
		must(t, putRound(e, round, value))
	}
	must(t, db.Flush())
	for k := range 200 {
		if _, err := Get(db, 3, fmt.Appendf(nil, "key-%04d", k), ts.Timestamp(1<<40)); err != nil {
			t.Fatal(err)
		}
	}
	m := db.Metrics()
	if m.BlockCache.Size == 0 {
		t.Fatalf("block cache empty after %d reads with memtables of %d bytes held (hits %d, misses %d)",
			200, m.MemTable.Size+m.MemTable.ZombieSize, m.BlockCache.Hits, m.BlockCache.Misses)
	}
}

// flushBlockingFS holds back the creation of every sstable until release
// is closed, so that memtables cannot be flushed.
type flushBlockingFS struct {
	vfs.FS
	release chan struct{}
}

func (fs flushBlockingFS) Create(name string, category vfs.DiskWriteCategory) (vfs.File, error) {
	if strings.HasSuffix(name, ".sst") {
		<-fs.release
	}
	return fs.FS.Create(name, category)
}

// TestWriteStallsCounted: when flushes cannot keep up, Pebble holds every
// write back; WriteStalls counts the stall and, once it has ended, its
// duration.
func TestWriteStallsCounted(t *testing.T) {
	fs := flushBlockingFS{FS: vfs.NewMem(), release: make(chan struct{})}
	e, err := Open("", Config{FS: fs, MemTableBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	released := false
	defer func() {
		if !released {
			close(fs.release)
		}
	}()
	// The writer fills memtables that cannot be flushed until Pebble stalls
	// it (a handful of MiB), then finishes once flushes resume.
	done := make(chan error, 1)
	go func() {
		value := make([]byte, 1000)
		for round := range 100 {
			if err := putRound(e, round, value); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if n, _ := e.WriteStalls(); n > 0 {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("20 MB written without a write stall while flushes were blocked (err %v)", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("no write stall counted within 10s while flushes were blocked")
		}
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond) // the stall lasts at least this long
	close(fs.release)
	released = true
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n, total := e.WriteStalls(); n == 0 || total < 20*time.Millisecond {
		t.Fatalf("WriteStalls() = %d, %v after a stall of at least 20ms that ended", n, total)
	}
}
