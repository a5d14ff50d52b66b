package raftlog

import "errors"

// The errors of the write methods, Load and ReadSnapshotMetadata. They are
// wrapped with detail ("%w: ..."); check them with errors.Is. The
// raft.Storage methods return raft.ErrCompacted and raft.ErrUnavailable
// bare instead (see the package doc).
var (
	// ErrCorrupt reports persisted state that does not decode or breaks an
	// invariant of the package doc, or a log entry missing from the DB
	// (also returned when the batch that staged it was never committed).
	ErrCorrupt = errors.New("raftlog: corrupt raft state")
	// ErrInvalidConfig reports a Config field out of range.
	ErrInvalidConfig = errors.New("raftlog: invalid config")
	// ErrInitialized reports a Bootstrap of a group that already has a log
	// or a truncated state.
	ErrInitialized = errors.New("raftlog: group already initialized")
	// ErrNotInitialized reports a write that needs an initialized group
	// (SetConfState, Compact) on a group that was never bootstrapped.
	ErrNotInitialized = errors.New("raftlog: group not initialized")
	// ErrInvalidEntries reports entries passed to Append that are not
	// contiguous, start at index 0 or have decreasing terms.
	ErrInvalidEntries = errors.New("raftlog: invalid entries")
	// ErrLogGap reports entries passed to Append that start after
	// LastIndex()+1.
	ErrLogGap = errors.New("raftlog: entries leave a gap in the log")
	// ErrOverwriteCommitted reports entries passed to Append that start at
	// or below the commit index, which would rewrite committed entries.
	ErrOverwriteCommitted = errors.New("raftlog: entries overwrite committed entries")
	// ErrOutOfRange reports an index argument outside the range the method
	// allows: a HardState commit beyond the log or below the current
	// commit, an applied index outside [Applied(), commit], a compaction
	// beyond the applied index, a bootstrap or a snapshot at index 0.
	ErrOutOfRange = errors.New("raftlog: index out of range")
	// ErrStaleSnapshot reports a snapshot at or below the commit index.
	ErrStaleSnapshot = errors.New("raftlog: snapshot is not newer than the commit index")
)
