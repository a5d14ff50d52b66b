package kv

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/cockroachkvs"
	"github.com/cockroachdb/pebble/v2/vfs"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/opencluster/opencluster/kv/raftlog"
	"github.com/opencluster/opencluster/mvcc"
	"github.com/opencluster/opencluster/mvcc/ts"
	"github.com/opencluster/opencluster/rpc/cmdpb"
)

// The group under test is bucket snapBucket's; its neighbours' data and
// the other group's Raft state must come through a snapshot untouched.
const (
	snapBucket  = mvcc.Bucket(3)
	snapGroup   = uint32(3)
	otherGroup  = uint32(2)
	snapIndex   = 100
	snapTerm    = 7
	snapDataDir = "data"
)

// openSnapEngine opens an engine in snapDataDir of fs.
func openSnapEngine(t *testing.T, fs vfs.FS) *mvcc.Engine {
	t.Helper()
	e, err := mvcc.Open(snapDataDir, mvcc.Config{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// fillBeforeSnapshot gives groups snapGroup and otherGroup a log (11..40,
// committed and applied) and buckets 2..4 old keys, some flushed to
// tables and some in the memtable, so that the snapshot must cut tables
// and shadow the memtable.
func fillBeforeSnapshot(t *testing.T, e *mvcc.Engine) {
	t.Helper()
	db := e.DB()
	b := db.NewIndexedBatch()
	defer b.Close()
	for _, g := range []uint32{otherGroup, snapGroup} {
		st, err := raftlog.Load(db, g, raftlog.Config{})
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Bootstrap(b, &raftpb.ConfState{Voters: []uint64{1, 2, 3}}, 10, 5); err != nil {
			t.Fatal(err)
		}
		var ents []*raftpb.Entry
		for i := uint64(11); i <= 40; i++ {
			ents = append(ents, &raftpb.Entry{Index: new(i), Term: new(uint64(5)), Data: []byte("cmd")})
		}
		hs := &raftpb.HardState{Term: new(uint64(5)), Vote: new(uint64(1)), Commit: new(uint64(40))}
		if err := st.Append(b, ents, hs); err != nil {
			t.Fatal(err)
		}
		if err := st.SetApplied(b, 40); err != nil {
			t.Fatal(err)
		}
	}
	put := func(bk mvcc.Bucket, from, to int) {
		for i := from; i < to; i++ {
			k := mvcc.VersionKey(bk, fmt.Appendf(nil, "old/%03d", i), ts.Timestamp(100))
			if err := b.Set(k, []byte("old value"), nil); err != nil {
				t.Fatal(err)
			}
			if err := b.Set(mvcc.RecordKey(bk, mvcc.KindNamedLock, fmt.Appendf(nil, "lock%d", i)), []byte("old record"), nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	for bk := mvcc.Bucket(2); bk <= 4; bk++ {
		put(bk, 0, 50)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := db.Flush(); err != nil {
		t.Fatal(err)
	}
	b = db.NewIndexedBatch()
	for bk := mvcc.Bucket(2); bk <= 4; bk++ {
		put(bk, 50, 60)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		t.Fatal(err)
	}
}

// snapshotKVs returns the snapshot of bucket snapBucket: some of the old
// keys with new values (and new versions) and new keys, in engine order.
func snapshotKVs() []*cmdpb.SnapshotKV {
	var kvs []*cmdpb.SnapshotKV
	add := func(k []byte, v string) { kvs = append(kvs, &cmdpb.SnapshotKV{Key: k, Value: []byte(v)}) }
	for i := range 20 {
		uk := fmt.Appendf(nil, "old/%03d", i)
		add(mvcc.VersionKey(snapBucket, uk, ts.Timestamp(200)), "newer")
		add(mvcc.VersionKey(snapBucket, uk, ts.Timestamp(100)), "snapshot's old value")
	}
	rng := rand.New(rand.NewPCG(1, 2)) // values that do not compress
	for i := range 400 {
		v := make([]byte, 200)
		for j := range v {
			v[j] = byte(rng.Uint32())
		}
		add(mvcc.VersionKey(snapBucket, fmt.Appendf(nil, "new/%04d", i), ts.Timestamp(150)), string(v))
	}
	add(mvcc.RecordKey(snapBucket, mvcc.KindNamedLock, []byte("lock1")), "snapshot record")
	add(mvcc.RecordKey(snapBucket, mvcc.KindTxn, []byte("t1")), "txn record")
	slices.SortFunc(kvs, func(a, b *cmdpb.SnapshotKV) int { return cockroachkvs.Compare(a.Key, b.Key) })
	return kvs
}

func snapshotMeta() *raftpb.SnapshotMetadata {
	return &raftpb.SnapshotMetadata{
		Index:     new(uint64(snapIndex)),
		Term:      new(uint64(snapTerm)),
		ConfState: &raftpb.ConfState{Voters: []uint64{1, 2, 4}},
	}
}

// dump prints every key and value of the engine, in order.
func dump(t *testing.T, r mvcc.Reader, lower, upper []byte) []string {
	t.Helper()
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	var out []string
	for valid := it.First(); valid; valid = it.Next() {
		out = append(out, fmt.Sprintf("%x=%x", it.Key(), it.Value()))
	}
	if err := it.Error(); err != nil {
		t.Fatal(err)
	}
	return out
}

// raftState prints what raftlog loads for a group.
func raftState(t *testing.T, db *pebble.DB, g uint32) string {
	t.Helper()
	st, err := raftlog.Load(db, g, raftlog.Config{})
	if err != nil {
		t.Fatal(err)
	}
	first, _ := st.FirstIndex()
	last, _ := st.LastIndex()
	hs, cs, _ := st.InitialState()
	return fmt.Sprintf("first=%d last=%d applied=%d hs=%v cs=%v", first, last, st.Applied(), hs, cs)
}

// TestIngestSnapshotMatchesBatch applies one snapshot over the same state
// twice, as a batch (stageSnapshot) and as SSTs cut into several files
// (ingestSnapshot), and checks that both engines then hold the same bytes
// everywhere: the bucket's span exactly the snapshot's keys (the old keys
// gone), its neighbours and the other group untouched, and the group's
// Raft state at the snapshot (truncated, applied and committed at its
// index, no log). The ingested state survives a crash right after the
// ingest (only synced data kept) and a clean restart, and no SST file is
// left behind.
func TestIngestSnapshotMatchesBatch(t *testing.T) {
	kvs, meta := snapshotKVs(), snapshotMeta()
	start, end := mvcc.BucketSpan(snapBucket)

	// The batch path.
	want := openSnapEngine(t, vfs.NewMem())
	defer want.Close()
	fillBeforeSnapshot(t, want)
	st, err := raftlog.Load(want.DB(), snapGroup, raftlog.Config{})
	if err != nil {
		t.Fatal(err)
	}
	b := want.DB().NewBatch()
	if err := stageSnapshot(b, st, start, end, kvs, meta); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		t.Fatal(err)
	}
	b.Close()
	wantAll := dump(t, want.DB(), nil, nil)
	wantRaft := raftState(t, want.DB(), snapGroup)

	// The checks on the batch path's result itself.
	var wantSpan []string
	for _, kv := range kvs {
		wantSpan = append(wantSpan, fmt.Sprintf("%x=%x", kv.Key, kv.Value))
	}
	if got := dump(t, want.DB(), start, end); !slices.Equal(got, wantSpan) {
		t.Fatalf("batch path: bucket span holds %d keys, want the snapshot's %d", len(got), len(wantSpan))
	}
	if got := fmt.Sprint(st.Applied(), " ", raftState(t, want.DB(), snapGroup)); !strings.Contains(got, "first=101 last=100 applied=100") {
		t.Fatalf("batch path: raft state %s", got)
	}

	// The SST path, on a filesystem that can crash, with a leftover file
	// of an earlier attempt in the SST directory.
	fs := vfs.NewCrashableMem()
	e := openSnapEngine(t, fs)
	fillBeforeSnapshot(t, e)
	before := dump(t, e.DB(), nil, nil)
	sstDir := fs.PathJoin(snapDataDir, snapshotSSTDir)
	if err := fs.MkdirAll(sstDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if f, err := fs.Create(fs.PathJoin(sstDir, "leftover.sst"), vfs.WriteCategoryUnspecified); err != nil {
		t.Fatal(err)
	} else {
		f.Close()
	}
	// A crash now, before the ingest, leaves the old state whole.
	if got := crashAndDump(t, fs); !slices.Equal(got, before) {
		t.Fatal("a crash before the ingest changed the state")
	}
	st, err = raftlog.Load(e.DB(), snapGroup, raftlog.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := ingestSnapshot(context.Background(), e, st, start, end, kvs, meta, 8<<10); err != nil {
		t.Fatal(err)
	}
	if err := e.DB().Flush(); err != nil { // a flushable ingest counts once flushed
		t.Fatal(err)
	}
	m := e.DB().Metrics()
	if m.Ingest.Count != 1 {
		t.Fatalf("%d ingests, want 1", m.Ingest.Count)
	}
	// Ingested straight into a level, or as a flushable (it overlaps
	// the memtable).
	ingested := m.Flush.AsIngestTableCount
	for _, l := range m.Levels {
		ingested += l.TablesIngested
	}
	if ingested < 3 {
		t.Fatalf("%d tables ingested, want the snapshot cut into several and the Raft state", ingested)
	}
	t.Logf("%d tables ingested", ingested)
	if _, err := fs.Stat(sstDir); err == nil {
		t.Fatalf("%s still exists after the ingest", sstDir)
	}
	check := func(what string, db *pebble.DB) {
		t.Helper()
		if got := dump(t, db, nil, nil); !slices.Equal(got, wantAll) {
			t.Fatalf("%s: the engine differs from the batch path's:\n%s", what, diffLines(got, wantAll))
		}
		if got := raftState(t, db, snapGroup); got != wantRaft {
			t.Fatalf("%s: raft state %s, want %s", what, got, wantRaft)
		}
	}
	check("after the ingest", e.DB())
	// The in-memory view equals what a load reads.
	if st.Applied() != snapIndex {
		t.Fatalf("view: applied %d, want %d", st.Applied(), snapIndex)
	}

	// A crash right after the ingest keeps it (only synced data survives).
	crashed := openSnapEngine(t, fs.CrashClone(vfs.CrashCloneCfg{}))
	check("after a crash", crashed.DB())
	if err := crashed.Close(); err != nil {
		t.Fatal(err)
	}

	// And so does a clean restart.
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e = openSnapEngine(t, fs)
	defer e.Close()
	check("after a restart", e.DB())
}

// crashAndDump opens a crash clone of fs (only synced data) and dumps it.
func crashAndDump(t *testing.T, fs *vfs.MemFS) []string {
	t.Helper()
	e := openSnapEngine(t, fs.CrashClone(vfs.CrashCloneCfg{}))
	defer e.Close()
	return dump(t, e.DB(), nil, nil)
}

// diffLines describes the first difference of two dumps.
func diffLines(got, want []string) string {
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			return fmt.Sprintf("at %d: got %s\nwant %s", i, got[i], want[i])
		}
	}
	return fmt.Sprintf("got %d lines, want %d", len(got), len(want))
}

// TestIngestSnapshotRefusesKeysOutsideSpan: a snapshot key outside the
// group's span fails the ingest before anything reaches the engine.
func TestIngestSnapshotRefusesKeysOutsideSpan(t *testing.T) {
	e := openSnapEngine(t, vfs.NewMem())
	defer e.Close()
	fillBeforeSnapshot(t, e)
	before := dump(t, e.DB(), nil, nil)
	st, err := raftlog.Load(e.DB(), snapGroup, raftlog.Config{})
	if err != nil {
		t.Fatal(err)
	}
	start, end := mvcc.BucketSpan(snapBucket)
	kvs := append(snapshotKVs(), &cmdpb.SnapshotKV{Key: mvcc.RecordKey(snapBucket+1, mvcc.KindTxn, []byte("x")), Value: []byte("v")})
	err = ingestSnapshot(context.Background(), e, st, start, end, kvs, snapshotMeta(), 8<<10)
	if err == nil || !strings.Contains(err.Error(), "outside the group's span") {
		t.Fatalf("ingest of a key outside the span: err = %v", err)
	}
	if got := dump(t, e.DB(), nil, nil); !slices.Equal(got, before) {
		t.Fatal("a refused snapshot changed the engine")
	}
	if st.Applied() != 40 {
		t.Fatalf("a refused snapshot moved the applied index to %d", st.Applied())
	}
}
