package mvcc

import (
	"context"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/objstorage/objstorageprovider"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// SSTWriter writes engine keys into an SST file for Engine.IngestReplacing.
// Point keys must come in strictly increasing order (by the engine's
// comparer); range deletions must be sorted and not overlap. A range
// deletion does not delete the points of its own file: every key of an
// ingested file gets the same sequence number, and a tombstone only covers
// lower ones. Not safe for concurrent use.
type SSTWriter struct {
	w    *sstable.Writer
	cmp  pebble.Compare
	prev []byte // the last point key written, or nil
	n    int    // point keys and range deletions written
}

// FS returns the engine's filesystem (vfs.Default when Config.FS was nil).
func (e *Engine) FS() vfs.FS { return e.opts.FS }

// Dir returns the directory the engine was opened in.
func (e *Engine) Dir() string { return e.dir }

// CreateSST creates the file path on the engine's filesystem (its directory
// must exist) and returns a writer of an SST in the engine's table format.
// The caller must Finish or Abort it.
func (e *Engine) CreateSST(path string) (*SSTWriter, error) {
	f, err := e.opts.FS.Create(path, vfs.WriteCategoryUnspecified)
	if err != nil {
		return nil, fmt.Errorf("mvcc: create sst: %w", err)
	}
	wo := e.opts.MakeWriterOptions(0, e.db.TableFormat())
	// As the engine's own flushes and compactions (Open): a snapshot's
	// SSTs carry every version, and value blocks would sit in Go memory
	// until each table is finished.
	wo.DisableValueBlocks = true
	return &SSTWriter{
		w:   sstable.NewWriter(objstorageprovider.NewFileWritable(f), wo),
		cmp: e.opts.Comparer.Compare,
	}, nil
}

// Set adds a point key; keys must be strictly increasing.
func (w *SSTWriter) Set(key, value []byte) error {
	if w.prev != nil && w.cmp(w.prev, key) >= 0 {
		return fmt.Errorf("%w: sst key %x not after %x", ErrBadKey, key, w.prev)
	}
	if err := w.w.Set(key, value); err != nil {
		return fmt.Errorf("mvcc: sst: %w", err)
	}
	w.prev = append(w.prev[:0], key...)
	w.n++
	return nil
}

// DeleteRange adds a range deletion of [start, end).
func (w *SSTWriter) DeleteRange(start, end []byte) error {
	if err := w.w.DeleteRange(start, end); err != nil {
		return fmt.Errorf("mvcc: sst: %w", err)
	}
	w.n++
	return nil
}

// Empty reports whether nothing was written.
func (w *SSTWriter) Empty() bool { return w.n == 0 }

// EstimatedSize is about the size of the file once finished.
func (w *SSTWriter) EstimatedSize() uint64 { return w.w.Raw().EstimatedSize() }

// Finish completes the file, syncs it (ingestion requires synced files)
// and closes it.
func (w *SSTWriter) Finish() error {
	if err := w.w.Close(); err != nil {
		return fmt.Errorf("mvcc: finish sst: %w", err)
	}
	return nil
}

// Abort closes the file after a failure; the caller removes it.
func (w *SSTWriter) Abort() { _ = w.w.Close() }

// IngestReplacing atomically replaces the span [start, end) with the keys
// of the SST files at paths (finished SSTWriters, on the engine's
// filesystem): in one step, visible to readers and durable on return, every
// key in [start, end) not in the files is gone and every key of the files
// is present. Files may also hold keys outside the span (with their own
// range deletions); the keys in the span must come from the files. start
// and end must be unversioned keys.
//
// The span is excised (pebble.DB.IngestAndExcise): existing tables are cut
// around it, rather than covered by a tombstone. An excise also removes the
// span from Pebble snapshots taken earlier; only iterators opened before it
// keep seeing the old keys. So no reader may read the span through a
// snapshot taken before the call without having opened its iterator before
// the call. Pebble removes the files at paths once ingested.
func (e *Engine) IngestReplacing(ctx context.Context, paths []string, start, end []byte) error {
	_, err := e.db.IngestAndExcise(ctx, paths, nil, nil, pebble.KeyRange{Start: start, End: end})
	if err != nil {
		return fmt.Errorf("mvcc: ingest: %w", err)
	}
	return nil
}

// RaftSpan returns the span holding every Raft-storage key of group
// (RaftKey(group, ...)).
func RaftSpan(group uint32) (start, end []byte) {
	p := []byte{prefixRaft, byte(group >> 24), byte(group >> 16), byte(group >> 8), byte(group)}
	return encode(p), encode(successor(p))
}
