package raftlog

import (
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/opencluster/opencluster/mvcc"
)

// entryID names a log position.
type entryID struct{ index, term uint64 }

// hardState is raftpb.HardState held by value (proto messages must not be
// copied).
type hardState struct{ term, vote, commit uint64 }

// Storage implements raft.Storage for one Raft group on the node's shared
// Pebble DB, and stages the group's writes into the caller's batches (see
// the package doc for the model and invariants).
//
// A Storage is not safe for concurrent use: the scheduler goroutine that
// drives the group's RawNode owns it, and calls both the raft.Storage
// methods (through raft) and the write methods. Other goroutines read a
// group's state from the DB or a Pebble snapshot (ReadSnapshotMetadata).
type Storage struct {
	db    *pebble.DB
	group uint32

	// initialized reports whether the group has a truncated state ('s'),
	// staged by Bootstrap or ApplySnapshot.
	// Invariant: !initialized implies trunc == last == entryID{},
	// applied == 0, an empty confState and an empty cache; only hs may be
	// set.
	initialized bool
	// trunc is the truncated state: the entry before FirstIndex, whose term
	// is kept for raft's log matching.
	// Invariant (initialized): trunc.index <= applied <= hs.commit <=
	// last.index.
	trunc entryID
	// last is the log's last entry, or trunc if the log is empty.
	// Invariant: last.index >= trunc.index, and last == trunc when
	// last.index == trunc.index. The log is (trunc.index, last.index].
	last entryID
	// hs is the HardState; hasHS reports whether one is stored.
	hs    hardState
	hasHS bool
	// stored is the HardState last staged. Its commit may lag hs.commit:
	// a change of the commit index alone is not staged (see Append).
	stored hardState
	// applied is the applied index.
	applied uint64
	// confState is the ConfState as of the applied index.
	// Invariant: never nil, and never mutated (a change replaces it);
	// callers get clones.
	confState *raftpb.ConfState
	// cache holds the newest entries (a suffix of the log).
	cache entryCache
}

var _ raft.Storage = (*Storage)(nil)

// Load reads the state of group from db. A group that was never
// bootstrapped loads as an empty, uninitialized Storage. Load returns
// ErrCorrupt if the stored state breaks the package invariants (it checks
// the ends of the log, not every entry).
func Load(db *pebble.DB, group uint32, cfg Config) (*Storage, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	s := &Storage{
		db:        db,
		group:     group,
		confState: raftpb.EnsureConfState(nil),
		cache:     entryCache{limit: cfg.CacheBytes},
	}

	var m raftpb.SnapshotMetadata
	ok, err := getProto(db, mvcc.RaftKey(group, kindTrunc, 0), &m)
	if err != nil {
		return nil, fmt.Errorf("raftlog: load group %d: %w", group, err)
	}
	if ok {
		s.initialized = true
		s.trunc = entryID{m.GetIndex(), m.GetTerm()}
		s.confState = raftpb.EnsureConfState(m.GetConfState())
	}

	var hs raftpb.HardState
	if s.hasHS, err = getProto(db, mvcc.RaftKey(group, kindHardState, 0), &hs); err != nil {
		return nil, fmt.Errorf("raftlog: load group %d: %w", group, err)
	}
	s.hs = hardState{hs.GetTerm(), hs.GetVote(), hs.GetCommit()}

	applied, ok, err := getApplied(db, group)
	if err != nil {
		return nil, fmt.Errorf("raftlog: load group %d: %w", group, err)
	}
	if ok != s.initialized {
		return nil, fmt.Errorf("%w: group %d: applied index present %t, truncated state present %t",
			ErrCorrupt, group, ok, s.initialized)
	}
	s.applied = applied
	// The stored commit index lags when only commits followed its last
	// change of term or vote; entries that applied were committed.
	s.stored = s.hs
	s.hs.commit = max(s.hs.commit, applied)

	s.last = s.trunc
	first, last, ok, err := s.logBounds()
	if err != nil {
		return nil, fmt.Errorf("raftlog: load group %d: %w", group, err)
	}
	if ok {
		if first != s.trunc.index+1 || !s.initialized {
			return nil, fmt.Errorf("%w: group %d: log starts at %d, truncated index %d (initialized %t)",
				ErrCorrupt, group, first, s.trunc.index, s.initialized)
		}
		e, err := getEntry(db, group, last)
		if err != nil {
			return nil, fmt.Errorf("raftlog: load group %d: %w", group, err)
		}
		s.last = entryID{last, e.GetTerm()}
	}
	if err := s.check(); err != nil {
		return nil, fmt.Errorf("raftlog: load group %d: %w", group, err)
	}
	return s, nil
}

// logBounds returns the indices of the first and last entry keys in the
// DB, or ok=false if there are none.
func (s *Storage) logBounds() (first, last uint64, ok bool, err error) {
	lo, hi := entrySpan(s.group)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return 0, 0, false, err
	}
	defer func() {
		if cerr := it.Close(); err == nil && cerr != nil {
			err = cerr
		}
	}()
	if !it.First() {
		return 0, 0, false, it.Error()
	}
	if first, err = mvcc.RaftEntryIndex(it.Key()); err != nil {
		return 0, 0, false, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	if !it.Last() {
		return 0, 0, false, it.Error()
	}
	if last, err = mvcc.RaftEntryIndex(it.Key()); err != nil {
		return 0, 0, false, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return first, last, true, nil
}

// assertInvariants panics if the in-memory view breaks an invariant. The
// write methods call it after staging when built with -tags invariants.
func (s *Storage) assertInvariants() {
	if err := s.check(); err != nil {
		panic(err)
	}
}

// check verifies the invariants of the in-memory view (O(1)), returning
// ErrCorrupt on a violation.
func (s *Storage) check() error {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("%w: group %d: "+format, append([]any{ErrCorrupt, s.group}, args...)...)
	}
	if !s.initialized {
		if s.trunc != (entryID{}) || s.last != (entryID{}) || s.applied != 0 || s.cache.len() != 0 {
			return fail("uninitialized with trunc %v, last %v, applied %d, %d cached entries",
				s.trunc, s.last, s.applied, s.cache.len())
		}
		if s.hs.commit != 0 {
			return fail("uninitialized with commit %d", s.hs.commit)
		}
		return nil
	}
	if !s.hasHS {
		return fail("initialized without a HardState")
	}
	if !(s.trunc.index <= s.applied && s.applied <= s.hs.commit && s.hs.commit <= s.last.index) {
		return fail("want trunc %d <= applied %d <= commit %d <= last %d",
			s.trunc.index, s.applied, s.hs.commit, s.last.index)
	}
	if s.last.index == s.trunc.index && s.last.term != s.trunc.term {
		return fail("empty log at %v but last %v", s.trunc, s.last)
	}
	if s.last.term < s.trunc.term {
		return fail("last term %d below truncated term %d", s.last.term, s.trunc.term)
	}
	if first, ok := s.cache.firstIndex(); ok {
		e, _ := s.cache.get(s.last.index)
		if first <= s.trunc.index || e == nil || e.GetTerm() != s.last.term {
			return fail("cache from %d is not a suffix of log (%d, %d]", first, s.trunc.index, s.last.index)
		}
	}
	return nil
}

// Initialized reports whether the group has been bootstrapped or has
// applied a snapshot.
func (s *Storage) Initialized() bool { return s.initialized }

// Group returns the group's id.
func (s *Storage) Group() uint32 { return s.group }

// Applied returns the applied index (0 if uninitialized). Pass it as
// raft.Config.Applied when creating the group's RawNode.
func (s *Storage) Applied() uint64 { return s.applied }

// InitialState implements raft.Storage. The HardState is nil if none was
// stored.
func (s *Storage) InitialState() (*raftpb.HardState, *raftpb.ConfState, error) {
	var hs *raftpb.HardState
	if s.hasHS {
		hs = &raftpb.HardState{Term: new(s.hs.term), Vote: new(s.hs.vote), Commit: new(s.hs.commit)}
	}
	return hs, proto.Clone(s.confState).(*raftpb.ConfState), nil
}

// Entries implements raft.Storage: the entries [lo, hi), at least one,
// then as many as fit in maxSize bytes (proto.Size, as raft counts). It
// returns raft.ErrCompacted if lo <= the truncated index and
// raft.ErrUnavailable if hi > LastIndex()+1. It panics if lo > hi. The
// entries are shared and must not be mutated; the slice may be appended to.
func (s *Storage) Entries(lo, hi, maxSize uint64) ([]*raftpb.Entry, error) {
	switch {
	case lo > hi:
		panic(fmt.Sprintf("raftlog: group %d: Entries(%d, %d): lo > hi", s.group, lo, hi))
	case lo <= s.trunc.index:
		return nil, raft.ErrCompacted
	case hi > s.last.index+1:
		return nil, raft.ErrUnavailable
	case lo == hi:
		return nil, nil
	}
	cacheFirst, ok := s.cache.firstIndex()
	if !ok {
		cacheFirst = s.last.index + 1
	}
	if lo >= cacheFirst {
		return s.cache.slice(lo, hi, maxSize, 0, false), nil
	}
	ents, size, err := s.loadEntries(lo, min(hi, cacheFirst), maxSize)
	if err != nil {
		return nil, err
	}
	if hi <= cacheFirst || uint64(len(ents)) < cacheFirst-lo {
		return ents, nil
	}
	return append(ents, s.cache.slice(cacheFirst, hi, maxSize, size, true)...), nil
}

// loadEntries reads the entries [lo, hi) from the DB, stopping before the
// entry that would take the total size over maxSize (but returning at
// least one). It returns the entries and their total size.
func (s *Storage) loadEntries(lo, hi, maxSize uint64) (ents []*raftpb.Entry, size uint64, err error) {
	it, err := s.db.NewIter(&pebble.IterOptions{
		LowerBound: entryKey(s.group, lo),
		UpperBound: entryKey(s.group, hi),
	})
	if err != nil {
		return nil, 0, fmt.Errorf("raftlog: group %d: read entries [%d, %d): %w", s.group, lo, hi, err)
	}
	defer func() {
		if cerr := it.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("raftlog: group %d: read entries [%d, %d): %w", s.group, lo, hi, cerr)
		}
	}()
	next := lo
	for valid := it.First(); valid; valid = it.Next() {
		i, err := mvcc.RaftEntryIndex(it.Key())
		if err != nil {
			return nil, 0, fmt.Errorf("%w: group %d: %w", ErrCorrupt, s.group, err)
		}
		if i != next {
			break // reported below
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return nil, 0, fmt.Errorf("raftlog: group %d: read entry %d: %w", s.group, i, err)
		}
		if len(ents) > 0 && size+uint64(len(v)) > maxSize {
			return ents, size, nil
		}
		e := new(raftpb.Entry)
		if err := proto.Unmarshal(v, e); err != nil {
			return nil, 0, fmt.Errorf("%w: group %d: entry %d: %w", ErrCorrupt, s.group, i, err)
		}
		if e.GetIndex() != i {
			return nil, 0, fmt.Errorf("%w: group %d: entry at %d has index %d", ErrCorrupt, s.group, i, e.GetIndex())
		}
		if ents == nil {
			ents = make([]*raftpb.Entry, 0, min(hi-lo, 64))
		}
		ents = append(ents, e)
		size += uint64(len(v))
		next++
	}
	if err := it.Error(); err != nil {
		return nil, 0, fmt.Errorf("raftlog: group %d: read entries [%d, %d): %w", s.group, lo, hi, err)
	}
	if next != hi {
		return nil, 0, fmt.Errorf("%w: group %d: entry %d missing from [%d, %d) (uncommitted batch?)",
			ErrCorrupt, s.group, next, lo, hi)
	}
	return ents, size, nil
}

// Term implements raft.Storage: the term of entry i, for i in
// [FirstIndex()-1, LastIndex()]. It returns raft.ErrCompacted below that
// range and raft.ErrUnavailable above it.
func (s *Storage) Term(i uint64) (uint64, error) {
	return s.term(s.db, i)
}

// term is Term reading cache misses from r.
func (s *Storage) term(r mvcc.Reader, i uint64) (uint64, error) {
	switch {
	case i < s.trunc.index:
		return 0, raft.ErrCompacted
	case i == s.trunc.index:
		return s.trunc.term, nil
	case i > s.last.index:
		return 0, raft.ErrUnavailable
	case i == s.last.index:
		return s.last.term, nil
	}
	if e, ok := s.cache.get(i); ok {
		return e.GetTerm(), nil
	}
	e, err := getEntry(r, s.group, i)
	if err != nil {
		return 0, err
	}
	return e.GetTerm(), nil
}

// LastIndex implements raft.Storage.
func (s *Storage) LastIndex() (uint64, error) { return s.last.index, nil }

// FirstIndex implements raft.Storage: the truncated index plus one.
func (s *Storage) FirstIndex() (uint64, error) { return s.trunc.index + 1, nil }

// Snapshot implements raft.Storage. It returns a placeholder without data
// whose metadata is the truncated state and the current ConfState; the
// transport replaces it with the bucket span and ReadSnapshotMetadata (see
// "Snapshots" in the package doc). It is empty (index 0) for an
// uninitialized group, which raft never asks, as such a group never leads.
func (s *Storage) Snapshot() (*raftpb.Snapshot, error) {
	return &raftpb.Snapshot{
		Metadata: &raftpb.SnapshotMetadata{
			ConfState: proto.Clone(s.confState).(*raftpb.ConfState),
			Index:     new(s.trunc.index),
			Term:      new(s.trunc.term),
		},
	}, nil
}

// ConfState returns a copy of the group's ConfState (empty if
// uninitialized).
func (s *Storage) ConfState() *raftpb.ConfState {
	if s.confState == nil {
		return &raftpb.ConfState{}
	}
	return cloneConfState(s.confState)
}
