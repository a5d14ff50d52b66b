package mvcc

import (
	"context"
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2"
)

// scanKeys returns the record keys it yields, as "bucket/name".
func scanKeys(t *testing.T, it *pebble.Iterator) []string {
	t.Helper()
	var out []string
	for valid := it.First(); valid; valid = it.Next() {
		b, _, name, err := DecodeRecordKey(it.Key())
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%d/%s", b, name))
	}
	if err := it.Error(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestIngestReplacing replaces bucket 1's span with an SST's keys: the
// span then holds exactly them, bucket 0 and 2 are untouched, an iterator
// opened before the ingest keeps its view, and a Pebble snapshot taken
// before it loses the span (the excise reaches snapshots; see
// IngestReplacing). Out-of-order keys are refused.
func TestIngestReplacing(t *testing.T) {
	e := newTestEngine(t)
	b := e.NewBatch()
	for bk := Bucket(0); bk < 3; bk++ {
		for _, name := range []string{"a", "b", "c"} {
			must(t, b.Set(RecordKey(bk, KindNamedLock, []byte(name)), []byte("old"), nil))
		}
	}
	must(t, b.Commit(pebble.Sync))
	must(t, b.Close())
	must(t, e.DB().Flush())

	start, end := BucketSpan(1)
	snap := e.DB().NewSnapshot()
	defer snap.Close()
	pinned, err := snap.NewIter(&pebble.IterOptions{LowerBound: start, UpperBound: end})
	must(t, err)
	defer pinned.Close()

	fs := e.FS()
	must(t, fs.MkdirAll("ssts", 0o755))
	w, err := e.CreateSST(fs.PathJoin("ssts", "1.sst"))
	must(t, err)
	must(t, w.Set(RecordKey(1, KindNamedLock, []byte("b")), []byte("new")))
	must(t, w.Set(RecordKey(1, KindNamedLock, []byte("d")), []byte("new")))
	if err := w.Set(RecordKey(1, KindNamedLock, []byte("c")), []byte("new")); err == nil {
		t.Fatal("an out-of-order key was accepted")
	}
	must(t, w.Finish())
	must(t, e.IngestReplacing(context.Background(), []string{fs.PathJoin("ssts", "1.sst")}, start, end))

	it, err := e.DB().NewIter(nil)
	must(t, err)
	got := fmt.Sprint(scanKeys(t, it))
	must(t, it.Close())
	if want := "[0/a 0/b 0/c 1/b 1/d 2/a 2/b 2/c]"; got != want {
		t.Fatalf("after the ingest: %s, want %s", got, want)
	}
	if got, want := fmt.Sprint(scanKeys(t, pinned)), "[1/a 1/b 1/c]"; got != want {
		t.Fatalf("iterator opened before the ingest: %s, want %s", got, want)
	}
	late, err := snap.NewIter(&pebble.IterOptions{LowerBound: start, UpperBound: end})
	must(t, err)
	defer late.Close()
	if got := scanKeys(t, late); len(got) != 0 {
		t.Fatalf("iterator opened on the earlier snapshot after the ingest: %v, want nothing (excised)", got)
	}
}
