package raftlog

import (
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/opencluster/opencluster/mvcc"
)

// The write methods check their arguments first: on a check's error they
// have staged nothing and changed nothing. Past the checks they stage
// writes into b and update the in-memory view; an error there comes from
// the batch itself, and leaves b and the Storage out of step, so the caller
// must drop both (and Load again). The caller commits b, with pebble.Sync
// before it sends the round's messages or calls RawNode.Advance.

// Bootstrap stages the initial state of a new group: the log truncated at
// (index, term) with ConfState cs, HardState{Term: term, Commit: index}
// and applied = index. FirstIndex is then index+1 and the log is empty.
// This replaces RawNode.Bootstrap, like CockroachDB's raftInitialLogIndex.
// A stored HardState with a higher term keeps its term and vote. It
// returns ErrInitialized if the group is initialized and ErrOutOfRange if
// index is 0 (raft cannot send a snapshot at index 0).
func (s *Storage) Bootstrap(b *pebble.Batch, cs *raftpb.ConfState, index, term uint64) error {
	if s.initialized {
		return fmt.Errorf("%w: group %d: truncated at %d", ErrInitialized, s.group, s.trunc.index)
	}
	if index == 0 {
		return fmt.Errorf("%w: group %d: bootstrap at index 0", ErrOutOfRange, s.group)
	}
	hs := s.hs
	if hs.term < term {
		hs.term, hs.vote = term, 0
	}
	hs.commit = index
	cs = cloneConfState(cs)
	trunc := entryID{index, term}

	if err := s.stageTrunc(b, trunc, cs); err != nil {
		return err
	}
	if err := s.stageHardState(b, hs); err != nil {
		return err
	}
	if err := setApplied(b, s.group, index); err != nil {
		return fmt.Errorf("raftlog: group %d: stage applied index: %w", s.group, err)
	}
	s.initialized = true
	s.trunc, s.last, s.applied, s.confState = trunc, trunc, index, cs
	s.hs, s.hasHS = hs, true
	if invariantsEnabled {
		s.assertInvariants()
	}
	return nil
}

// Append stages entries and the HardState hs into b, and updates the
// in-memory view (the cache keeps the entries themselves, which must not
// be mutated afterwards; raft's Ready entries are immutable). Entries at
// index >= entries[0].Index already in the log are replaced, and the ones
// past the new last entry deleted, as raft requires. hs is skipped if nil
// or empty (raft.IsEmptyHardState).
//
// It returns ErrNotInitialized for entries on an uninitialized group (a
// leader's log always starts past a bootstrap or snapshot, so such a group
// gets a snapshot first; its HardState alone may be stored),
// ErrInvalidEntries for entries that are not contiguous or whose terms
// decrease, ErrOverwriteCommitted if entries[0].Index <= the commit index,
// ErrLogGap if entries[0].Index > LastIndex()+1, and ErrOutOfRange if
// hs.Commit is beyond the new last index or below the current commit.
func (s *Storage) Append(b *pebble.Batch, entries []*raftpb.Entry, hs *raftpb.HardState) error {
	newLast := s.last
	if len(entries) > 0 {
		if err := s.checkEntries(entries); err != nil {
			return err
		}
		newLast = entryID{entries[0].GetIndex() + uint64(len(entries)) - 1, entries[len(entries)-1].GetTerm()}
	}
	stageHS := !raft.IsEmptyHardState(hs)
	newHS := hardState{hs.GetTerm(), hs.GetVote(), hs.GetCommit()}
	if stageHS && (newHS.commit > newLast.index || newHS.commit < s.hs.commit) {
		return fmt.Errorf("%w: group %d: HardState commit %d outside [commit %d, last index %d]",
			ErrOutOfRange, s.group, newHS.commit, s.hs.commit, newLast.index)
	}

	if len(entries) > 0 {
		first := entries[0].GetIndex()
		if s.last.index > newLast.index {
			err := b.DeleteRange(entryKey(s.group, newLast.index+1), entryKey(s.group, s.last.index+1), nil)
			if err != nil {
				return fmt.Errorf("raftlog: group %d: stage log truncation: %w", s.group, err)
			}
		}
		s.cache.truncate(first)
		for _, e := range entries {
			size := proto.Size(e)
			if err := setProtoSized(b, entryKey(s.group, e.GetIndex()), e, size); err != nil {
				return fmt.Errorf("raftlog: group %d: stage entry %d: %w", s.group, e.GetIndex(), err)
			}
			s.cache.push(e, size)
		}
		s.cache.evict()
		s.last = newLast
	}
	// A HardState that only moves the commit index is not staged: raft
	// needs the term and vote durable before it answers (Ready.MustSync),
	// not the commit index, which a restarted leader learns again from a
	// quorum and a follower from its leader. Load takes the applied index
	// for it when that is higher, so the applied index of the state
	// machine is never past the commit index raft starts with. This saves
	// every group a write per round on every replica.
	if stageHS {
		if !s.hasHS || newHS.term != s.stored.term || newHS.vote != s.stored.vote {
			if err := s.stageHardState(b, newHS); err != nil {
				return err
			}
		}
		s.hs, s.hasHS = newHS, true
	}
	if invariantsEnabled {
		s.assertInvariants()
	}
	return nil
}

// checkEntries checks entries (non-empty) against the log for Append.
func (s *Storage) checkEntries(entries []*raftpb.Entry) error {
	first := entries[0].GetIndex()
	switch {
	case !s.initialized:
		return fmt.Errorf("%w: group %d: append of entries at %d", ErrNotInitialized, s.group, first)
	case first <= s.hs.commit:
		return fmt.Errorf("%w: group %d: entries from %d, commit index %d",
			ErrOverwriteCommitted, s.group, first, s.hs.commit)
	case first > s.last.index+1:
		return fmt.Errorf("%w: group %d: entries from %d, last index %d", ErrLogGap, s.group, first, s.last.index)
	}
	// The term of the entry before: known without I/O in the common cases
	// (appending at the end, or overwriting inside the cache).
	prevTerm, ok := uint64(0), false
	if first-1 == s.last.index {
		prevTerm, ok = s.last.term, true
	} else if first-1 == s.trunc.index {
		prevTerm, ok = s.trunc.term, true
	} else if e, cached := s.cache.get(first - 1); cached {
		prevTerm, ok = e.GetTerm(), true
	}
	if ok && entries[0].GetTerm() < prevTerm {
		return fmt.Errorf("%w: group %d: entry %d has term %d, below the previous entry's term %d",
			ErrInvalidEntries, s.group, first, entries[0].GetTerm(), prevTerm)
	}
	for i, e := range entries {
		if e.GetIndex() != first+uint64(i) {
			return fmt.Errorf("%w: group %d: entry %d of the batch has index %d, want %d",
				ErrInvalidEntries, s.group, i, e.GetIndex(), first+uint64(i))
		}
		if i > 0 && e.GetTerm() < entries[i-1].GetTerm() {
			return fmt.Errorf("%w: group %d: entry %d has term %d, below the previous entry's term %d",
				ErrInvalidEntries, s.group, e.GetIndex(), e.GetTerm(), entries[i-1].GetTerm())
		}
	}
	return nil
}

// SetApplied stages the applied index. The caller stages it in the batch
// holding the state machine's writes of the entries up to index, after
// Append has staged the HardState that commits them. It returns
// ErrNotInitialized on an uninitialized group and ErrOutOfRange unless
// Applied() <= index <= the commit index.
func (s *Storage) SetApplied(b *pebble.Batch, index uint64) error {
	if !s.initialized {
		return fmt.Errorf("%w: group %d: set applied index %d", ErrNotInitialized, s.group, index)
	}
	if index < s.applied || index > s.hs.commit {
		return fmt.Errorf("%w: group %d: applied index %d outside [applied %d, commit %d]",
			ErrOutOfRange, s.group, index, s.applied, s.hs.commit)
	}
	if err := setApplied(b, s.group, index); err != nil {
		return fmt.Errorf("raftlog: group %d: stage applied index: %w", s.group, err)
	}
	s.applied = index
	if invariantsEnabled {
		s.assertInvariants()
	}
	return nil
}

// SetConfState stages cs (the result of RawNode.ApplyConfChange) as the
// group's ConfState, reported by InitialState, Snapshot and
// ReadSnapshotMetadata. The caller stages it in the batch that applies the
// conf change entry (with its SetApplied). It returns ErrNotInitialized on
// an uninitialized group.
func (s *Storage) SetConfState(b *pebble.Batch, cs *raftpb.ConfState) error {
	if !s.initialized {
		return fmt.Errorf("%w: group %d: set ConfState", ErrNotInitialized, s.group)
	}
	cs = cloneConfState(cs)
	if err := s.stageTrunc(b, s.trunc, cs); err != nil {
		return err
	}
	s.confState = cs
	if invariantsEnabled {
		s.assertInvariants()
	}
	return nil
}

// Compact stages the deletion of the entries at or below index and
// records (index, Term(index)) as the truncated state: FirstIndex becomes
// index+1. Compacting at or below the truncated index is a no-op. It
// returns ErrNotInitialized on an uninitialized group and ErrOutOfRange if
// index > Applied(). It reads Term(index) through b if b is indexed, else
// from the DB, if the entry is not cached: an entry staged in an
// uncommitted, unindexed batch and already evicted cannot be compacted.
func (s *Storage) Compact(b *pebble.Batch, index uint64) error {
	if !s.initialized {
		return fmt.Errorf("%w: group %d: compact to %d", ErrNotInitialized, s.group, index)
	}
	if index <= s.trunc.index {
		return nil
	}
	if index > s.applied {
		return fmt.Errorf("%w: group %d: compact to %d beyond applied index %d",
			ErrOutOfRange, s.group, index, s.applied)
	}
	var r mvcc.Reader = s.db
	if b.Indexed() {
		r = b
	}
	term, err := s.term(r, index)
	if err != nil {
		return fmt.Errorf("raftlog: group %d: compact to %d: %w", s.group, index, err)
	}
	err = b.DeleteRange(entryKey(s.group, s.trunc.index+1), entryKey(s.group, index+1), nil)
	if err != nil {
		return fmt.Errorf("raftlog: group %d: stage compaction: %w", s.group, err)
	}
	trunc := entryID{index, term}
	if err := s.stageTrunc(b, trunc, s.confState); err != nil {
		return err
	}
	s.trunc = trunc
	s.cache.dropTo(index)
	if invariantsEnabled {
		s.assertInvariants()
	}
	return nil
}

// ApplySnapshot stages the metadata of an incoming snapshot (Ready's
// Snapshot): it drops every entry of the log, records (meta.Index,
// meta.Term) as the truncated state and meta.ConfState as the ConfState,
// raises the HardState's commit to meta.Index (and its term to meta.Term,
// clearing the vote, if lower), and sets applied = meta.Index. The caller
// ingests the bucket data itself, then stages the Ready's entries and
// HardState with Append. It returns ErrOutOfRange for an empty snapshot
// (index 0) and ErrStaleSnapshot if meta.Index <= the commit index (raft
// never hands out such a snapshot).
func (s *Storage) ApplySnapshot(b *pebble.Batch, meta *raftpb.SnapshotMetadata) error {
	index, term := meta.GetIndex(), meta.GetTerm()
	if index == 0 {
		return fmt.Errorf("%w: group %d: empty snapshot", ErrOutOfRange, s.group)
	}
	if index <= s.hs.commit {
		return fmt.Errorf("%w: group %d: snapshot at %d, commit index %d", ErrStaleSnapshot, s.group, index, s.hs.commit)
	}
	cs := cloneConfState(meta.GetConfState())
	hs := s.hs
	if hs.term < term {
		hs.term, hs.vote = term, 0
	}
	hs.commit = index
	trunc := entryID{index, term}

	if s.last.index > s.trunc.index {
		err := b.DeleteRange(entryKey(s.group, s.trunc.index+1), entryKey(s.group, s.last.index+1), nil)
		if err != nil {
			return fmt.Errorf("raftlog: group %d: stage log deletion: %w", s.group, err)
		}
	}
	if err := s.stageTrunc(b, trunc, cs); err != nil {
		return err
	}
	if err := s.stageHardState(b, hs); err != nil {
		return err
	}
	if err := setApplied(b, s.group, index); err != nil {
		return fmt.Errorf("raftlog: group %d: stage applied index: %w", s.group, err)
	}
	s.initialized = true
	s.trunc, s.last, s.applied, s.confState = trunc, trunc, index, cs
	s.hs, s.hasHS = hs, true
	s.cache.reset()
	if invariantsEnabled {
		s.assertInvariants()
	}
	return nil
}

// stageTrunc stages the 's' record: the truncated state and ConfState.
func (s *Storage) stageTrunc(b *pebble.Batch, trunc entryID, cs *raftpb.ConfState) error {
	m := &raftpb.SnapshotMetadata{ConfState: cs, Index: new(trunc.index), Term: new(trunc.term)}
	if err := setProto(b, mvcc.RaftKey(s.group, kindTrunc, 0), m); err != nil {
		return fmt.Errorf("raftlog: group %d: stage truncated state: %w", s.group, err)
	}
	return nil
}

// stageHardState stages hs and records it as stored.
func (s *Storage) stageHardState(b *pebble.Batch, hs hardState) error {
	m := &raftpb.HardState{Term: new(hs.term), Vote: new(hs.vote), Commit: new(hs.commit)}
	if err := setProto(b, mvcc.RaftKey(s.group, kindHardState, 0), m); err != nil {
		return fmt.Errorf("raftlog: group %d: stage HardState: %w", s.group, err)
	}
	s.stored = hs
	return nil
}

// cloneConfState returns a copy of cs (an empty ConfState for nil) with
// every pointer field set.
func cloneConfState(cs *raftpb.ConfState) *raftpb.ConfState {
	if cs == nil {
		return raftpb.EnsureConfState(nil)
	}
	return raftpb.EnsureConfState(proto.Clone(cs).(*raftpb.ConfState))
}

// Forget stages the removal of the group's whole state except its term
// and vote, for a replica that left its group (replica GC): once b commits
// the group loads as never bootstrapped, so only a snapshot initializes it
// again, yet it keeps the vote it cast in its term and never votes twice
// in one term. Load the group again after b commits; s must not be used.
func (s *Storage) Forget(b *pebble.Batch) error {
	start, end := mvcc.RaftSpan(s.group)
	if err := b.DeleteRange(start, end, nil); err != nil {
		return fmt.Errorf("raftlog: group %d: forget: %w", s.group, err)
	}
	return s.stageHardState(b, hardState{term: s.hs.term, vote: s.hs.vote})
}
