package kv

import (
	"bytes"
	"context"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/opencluster/opencluster/kv/raftlog"
	"github.com/opencluster/opencluster/mvcc"
	"github.com/opencluster/opencluster/rpc/cmdpb"
)

// A received snapshot of at least Config.SnapshotSSTBytes is not applied
// as a batch (through the WAL and the memtable) but written to SST files and
// ingested: ingestSnapshot.
//
// # Crash order
//
// The group's state lies in two spans: its data (groupSpan: a bucket's
// span, or the meta span) and its Raft state (mvcc.RaftSpan: log entries,
// HardState, truncated state with ConfState, applied index). Invariant 1
// of the package needs the data and the applied index to describe the same
// index at every instant the disk can be seen, so both spans change in one
// atomic step:
//
//  1. The data SSTs and one Raft-state SST are written into
//     snapshotSSTDir and synced. The Raft-state SST is a range deletion
//     over the group's whole Raft span plus the records that
//     raftlog.Storage.ApplySnapshot stages (truncated state = applied =
//     commit = the snapshot's index, HardState term raised to its term,
//     no log entries): the state the batch path commits. A crash here
//     changes nothing in the DB: the node restarts with its old data, log
//     and applied index, consistent as before the snapshot arrived, the
//     leader sends the snapshot again, and the leftover files are removed
//     by the next ingest (it clears the directory first).
//  2. One pebble.DB.IngestAndExcise of every file, excising the data span:
//     one version edit (or one synced WAL record, when it overlaps the
//     memtable), durable on return. Before it the disk holds the whole old
//     state, after it the whole new one: the data span holds exactly the
//     snapshot's keys, the Raft state says they are the state as of the
//     snapshot's index, and no entry at or below it remains to replay.
//  3. The scheduler stages the Ready's entries (all above the snapshot's
//     index) and HardState into the round's log batch, which it commits
//     with a sync before it sends the round's messages. A crash between 2
//     and 3 loses only that Ready's writes, which nothing has acknowledged,
//     as a crash before any round's commit does; the HardState on disk
//     (the snapshot's term, no vote if the term rose, commit = the index)
//     is one the node may hold, since its votes of the Ready were not sent.
//
// Splitting step 2 would break invariant 1. Ingesting the data and then
// committing the Raft state in a batch leaves, after a crash between them,
// the snapshot's data under the old applied index A < index: the restart
// would apply entries (A, commit] again on a state that already holds them
// (and the leader would send the ones after), and apply is not idempotent:
// a grant applied again raises the lock's fence a second time, a put comes
// back STALE_TS, so the replica would silently diverge from its peers. The
// other order would claim the snapshot's index over the old data.
//
// An excise also removes the span from Pebble snapshots opened earlier
// (mvcc.Engine.IngestReplacing). The only Pebble snapshot of a group's
// span is the one sendSnapshot streams from, and it opens its iterator on
// the scheduler goroutine, the one that ingests, so the iterator exists
// before any later ingest and keeps its view.

// snapshotSSTBytes is the default Config.SnapshotSSTBytes. Below it one
// synced batch applies a snapshot faster than an ingest, whose fixed cost
// is a few fsyncs (SST files, directory, manifest); above it the batch's
// memory (about four times the snapshot, growing with it) and its second
// write of the data at the memtable flush outweigh that. On the 2-core
// development machine (BenchmarkSnapshotApply, real disk) the batch took
// 0.5 / 5.5 / 16 / 75 ms for 64 KiB / 1 / 4 / 16 MiB and the ingest 3.5 /
// 7 / 26 / 68 ms, with 4.3 / 17 / 70 MB against 0.35-0.6 MB allocated.
const snapshotSSTBytes = 4 << 20

// snapshotSSTDir is the directory, under the node's data directory, where
// the SST files of a snapshot are written before ingestion; only the
// scheduler goroutine uses it, for one snapshot at a time.
const snapshotSSTDir = "snapshot-ssts"

// snapshotSSTFileBytes is about the largest SST file a snapshot is cut
// into: smaller files let Pebble place them at different levels and
// compact them in parallel.
const snapshotSSTFileBytes = 64 << 20

// snapshotBytes returns the size of a snapshot's keys and values.
func snapshotBytes(kvs []*cmdpb.SnapshotKV) int {
	size := 0
	for _, kv := range kvs {
		size += len(kv.GetKey()) + len(kv.GetValue())
	}
	return size
}

// ingestSnapshot replaces a group's data span [start, end) with kvs and
// its Raft state with meta's, in one atomic, durable ingestion (see "Crash
// order" above), and updates st's in-memory view as ApplySnapshot does.
// kvs must be sorted by the engine's comparer, without duplicates, inside
// the span. Each SST file grows to about fileBytes. On an error the view
// may be ahead of the DB: the caller must stop (the scheduler panics).
func ingestSnapshot(ctx context.Context, eng *mvcc.Engine, st *raftlog.Storage, start, end []byte,
	kvs []*cmdpb.SnapshotKV, meta *raftpb.SnapshotMetadata, fileBytes uint64) error {
	fs := eng.FS()
	dir := fs.PathJoin(eng.Dir(), snapshotSSTDir)
	// Files left by a crash in step 1, or by a failed ingest, go first.
	if err := fs.RemoveAll(dir); err != nil {
		return fmt.Errorf("kv: clear %s: %w", dir, err)
	}
	if err := fs.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("kv: create %s: %w", dir, err)
	}
	defer func() { _ = fs.RemoveAll(dir) }() // Pebble removed what it ingested

	var paths []string
	var w *mvcc.SSTWriter
	create := func() error {
		path := fs.PathJoin(dir, fmt.Sprintf("g%d-%d-%d.sst", st.Group(), meta.GetIndex(), len(paths)))
		var err error
		if w, err = eng.CreateSST(path); err != nil {
			return err
		}
		paths = append(paths, path)
		return nil
	}
	finish := func() error {
		err := w.Finish()
		w = nil
		return err
	}
	defer func() {
		if w != nil {
			w.Abort()
		}
	}()

	// Step 1: the data, cut into files of about fileBytes.
	for _, kv := range kvs {
		if bytes.Compare(kv.GetKey(), start) < 0 || bytes.Compare(kv.GetKey(), end) >= 0 {
			return fmt.Errorf("group %d: snapshot key %q outside the group's span", st.Group(), kv.GetKey())
		}
		if w == nil {
			if err := create(); err != nil {
				return err
			}
		}
		if err := w.Set(kv.GetKey(), kv.GetValue()); err != nil {
			return fmt.Errorf("group %d: snapshot: %w", st.Group(), err)
		}
		if w.EstimatedSize() >= fileBytes {
			if err := finish(); err != nil {
				return err
			}
		}
	}
	if w != nil {
		if err := finish(); err != nil {
			return err
		}
	}

	// Step 1, the Raft state: what ApplySnapshot stages, over a cleared span.
	if err := create(); err != nil {
		return err
	}
	if err := writeRaftStateSST(ctx, eng, st, meta, w); err != nil {
		return err
	}
	if err := finish(); err != nil {
		return err
	}

	// Step 2.
	return eng.IngestReplacing(ctx, paths, start, end)
}

// writeRaftStateSST stages st.ApplySnapshot(meta) into a scratch batch
// (updating st's view) and writes the group's resulting Raft state into w:
// a range deletion over the group's Raft span, then the batch's records in
// that span. The batch also stages a deletion of the log, which the range
// deletion covers.
func writeRaftStateSST(ctx context.Context, eng *mvcc.Engine, st *raftlog.Storage, meta *raftpb.SnapshotMetadata, w *mvcc.SSTWriter) (err error) {
	scratch := eng.DB().NewIndexedBatch()
	defer scratch.Close()
	if err := st.ApplySnapshot(scratch, meta); err != nil {
		return err
	}
	lo, hi := mvcc.RaftSpan(st.Group())
	if err := w.DeleteRange(lo, hi); err != nil {
		return err
	}
	it, err := scratch.NewBatchOnlyIter(ctx, &pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return err
	}
	defer func() {
		if cerr := it.Close(); err == nil && cerr != nil {
			err = cerr
		}
	}()
	for valid := it.First(); valid; valid = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			return err
		}
		if err := w.Set(it.Key(), v); err != nil {
			return err
		}
	}
	return it.Error()
}
