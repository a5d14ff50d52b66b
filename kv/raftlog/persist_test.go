package raftlog

import (
	"errors"
	"fmt"
	"math"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/opencluster/opencluster/mvcc"
)

// storageState is everything a Storage reports, for comparing a Storage
// before a DB reopen with the one loaded after it.
type storageState struct {
	initialized   bool
	first, last   uint64
	truncTerm     uint64
	hs            *raftpb.HardState
	cs            *raftpb.ConfState
	applied       uint64
	snap          *raftpb.Snapshot
	ents          []*raftpb.Entry
	terms         []uint64
	readSnapMeta  *raftpb.SnapshotMetadata
	readSnapError error
}

func captureState(t *testing.T, db *pebble.DB, s *Storage) storageState {
	t.Helper()
	var st storageState
	st.initialized = s.Initialized()
	st.first, _ = s.FirstIndex()
	st.last, _ = s.LastIndex()
	var err error
	if st.truncTerm, err = s.Term(st.first - 1); err != nil {
		t.Fatalf("Term(FirstIndex-1): %v", err)
	}
	if st.hs, st.cs, err = s.InitialState(); err != nil {
		t.Fatal(err)
	}
	st.applied = s.Applied()
	if st.snap, err = s.Snapshot(); err != nil {
		t.Fatal(err)
	}
	if st.last >= st.first {
		if st.ents, err = s.Entries(st.first, st.last+1, math.MaxUint64); err != nil {
			t.Fatal(err)
		}
	}
	for i := st.first; i <= st.last; i++ {
		term, err := s.Term(i)
		if err != nil {
			t.Fatalf("Term(%d): %v", i, err)
		}
		st.terms = append(st.terms, term)
	}
	st.readSnapMeta, st.readSnapError = ReadSnapshotMetadata(db, s.Group())
	return st
}

func (a storageState) diff(b storageState) string {
	switch {
	case a.initialized != b.initialized:
		return fmt.Sprintf("initialized %t vs %t", a.initialized, b.initialized)
	case a.first != b.first || a.last != b.last:
		return fmt.Sprintf("log [%d, %d] vs [%d, %d]", a.first, a.last, b.first, b.last)
	case a.truncTerm != b.truncTerm:
		return fmt.Sprintf("truncated term %d vs %d", a.truncTerm, b.truncTerm)
	case !proto.Equal(a.hs, b.hs):
		return fmt.Sprintf("HardState %v vs %v", a.hs, b.hs)
	case !proto.Equal(a.cs, b.cs):
		return fmt.Sprintf("ConfState %v vs %v", a.cs, b.cs)
	case a.applied != b.applied:
		return fmt.Sprintf("applied %d vs %d", a.applied, b.applied)
	case !proto.Equal(a.snap, b.snap):
		return fmt.Sprintf("Snapshot %v vs %v", a.snap, b.snap)
	case !equalEntries(a.ents, b.ents):
		return fmt.Sprintf("entries %v vs %v", entryIndices(a.ents), entryIndices(b.ents))
	case fmt.Sprint(a.terms) != fmt.Sprint(b.terms):
		return fmt.Sprintf("terms %v vs %v", a.terms, b.terms)
	case !proto.Equal(a.readSnapMeta, b.readSnapMeta) || fmt.Sprint(a.readSnapError) != fmt.Sprint(b.readSnapError):
		return fmt.Sprintf("ReadSnapshotMetadata %v, %v vs %v, %v",
			a.readSnapMeta, a.readSnapError, b.readSnapMeta, b.readSnapError)
	}
	return ""
}

// TestPersistence checks that everything a Storage reports survives
// closing and reopening the DB: entries (including overwritten suffixes and
// compactions), HardState, ConfState, applied index and truncated state,
// for a bootstrapped group, a group that applied a snapshot, a group that
// only voted, and a group never touched.
func TestPersistence(t *testing.T) {
	fs := vfs.NewMem()
	eng := openEngine(t, fs)
	db := eng.DB()
	cfg := Config{CacheBytes: 512}

	// Group 3: bootstrapped, appended, overwritten, applied, reconfigured,
	// compacted.
	s3 := mustLoad(t, db, 3, cfg)
	stage(t, db, false, func(b *pebble.Batch) error {
		return s3.Bootstrap(b, &raftpb.ConfState{Voters: []uint64{1, 2, 3}, Learners: []uint64{4}}, 10, 5)
	})
	for i := uint64(11); i <= 60; i += 10 {
		var ents []*raftpb.Entry
		for j := i; j < i+10; j++ {
			ents = append(ents, ent(j, 6, fmt.Sprintf("entry %d", j)))
		}
		stage(t, db, false, func(b *pebble.Batch) error { return s3.Append(b, ents, hardSt(6, 1, max(10, i-11))) })
	}
	// Overwrite (45, 60] (commit is 40) with a shorter suffix at term 7.
	stage(t, db, false, func(b *pebble.Batch) error {
		return s3.Append(b, []*raftpb.Entry{ent(46, 7, "new 46"), ent(47, 7, "new 47")}, hardSt(7, 2, 45))
	})
	stage(t, db, true, func(b *pebble.Batch) error {
		if err := s3.SetApplied(b, 40); err != nil {
			return err
		}
		if err := s3.SetConfState(b, &raftpb.ConfState{Voters: []uint64{1, 2, 3, 4}}); err != nil {
			return err
		}
		return s3.Compact(b, 25)
	})

	// Group 4: a snapshot on an uninitialized group, then entries.
	s4 := mustLoad(t, db, 4, cfg)
	stage(t, db, false, func(b *pebble.Batch) error {
		meta := &raftpb.SnapshotMetadata{
			Index: new(uint64(100)), Term: new(uint64(9)),
			ConfState: &raftpb.ConfState{Voters: []uint64{1, 2}},
		}
		if err := s4.ApplySnapshot(b, meta); err != nil {
			return err
		}
		return s4.Append(b, []*raftpb.Entry{ent(101, 9, "a"), ent(102, 9, "b")}, hardSt(9, 1, 101))
	})

	// Group 5: uninitialized, but voted.
	s5 := mustLoad(t, db, 5, cfg)
	stage(t, db, false, func(b *pebble.Batch) error { return s5.Append(b, nil, hardSt(3, 2, 0)) })

	// Group 6: never touched.
	s6 := mustLoad(t, db, 6, cfg)

	before := map[uint32]storageState{}
	for _, s := range []*Storage{s3, s4, s5, s6} {
		before[s.Group()] = captureState(t, db, s)
	}
	if err := eng.Close(); err != nil {
		t.Fatal(err)
	}

	eng = openEngine(t, fs)
	defer func() { _ = eng.Close() }()
	db = eng.DB()
	for _, g := range []uint32{3, 4, 5, 6} {
		s := mustLoad(t, db, g, cfg)
		if err := s.check(); err != nil {
			t.Fatal(err)
		}
		after := captureState(t, db, s)
		if d := before[g].diff(after); d != "" {
			t.Errorf("group %d before vs after reopen: %s", g, d)
		}
	}

	// Spot-check the expected values, not just their persistence.
	want := map[uint32]struct {
		first, last, truncTerm, applied uint64
		hs                              *raftpb.HardState
		initialized                     bool
	}{
		3: {26, 47, 6, 40, hardSt(7, 2, 45), true},
		4: {101, 102, 9, 100, hardSt(9, 1, 101), true},
		5: {1, 0, 0, 0, hardSt(3, 2, 0), false},
		6: {1, 0, 0, 0, nil, false},
	}
	for g, w := range want {
		st := before[g]
		if st.first != w.first || st.last != w.last || st.truncTerm != w.truncTerm ||
			st.applied != w.applied || !proto.Equal(st.hs, w.hs) || st.initialized != w.initialized {
			t.Errorf("group %d: got first %d last %d truncTerm %d applied %d hs %v initialized %t, want %+v",
				g, st.first, st.last, st.truncTerm, st.applied, st.hs, st.initialized, w)
		}
	}
	if got := before[3].ents[47-26]; string(got.GetData()) != "new 47" || got.GetTerm() != 7 {
		t.Errorf("group 3 entry 47 = %v, want the overwritten one", got)
	}
	if cs := before[3].cs; !proto.Equal(cs, raftpb.EnsureConfState(&raftpb.ConfState{Voters: []uint64{1, 2, 3, 4}})) {
		t.Errorf("group 3 ConfState = %v", cs)
	}
	if m := before[3].readSnapMeta; m.GetIndex() != 40 || m.GetTerm() != 6 {
		t.Errorf("group 3 ReadSnapshotMetadata = %v, want (40, 6)", m)
	}
	if err := before[6].readSnapError; !errors.Is(err, ErrNotInitialized) {
		t.Errorf("group 6 ReadSnapshotMetadata error = %v, want ErrNotInitialized", err)
	}
	// Invariant 1: the entry span of group 3 holds exactly (25, 47].
	lo, hi := entrySpan(3)
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		t.Fatal(err)
	}
	var idx []uint64
	for valid := it.First(); valid; valid = it.Next() {
		i, err := mvcc.RaftEntryIndex(it.Key())
		if err != nil {
			t.Fatal(err)
		}
		idx = append(idx, i)
	}
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
	if len(idx) != 47-25 || idx[0] != 26 || idx[len(idx)-1] != 47 {
		t.Errorf("group 3 entry keys %v, want 26..47", idx)
	}
}

// TestLoadCorrupt checks that Load refuses state that breaks the package
// invariants.
func TestLoadCorrupt(t *testing.T) {
	for _, tc := range []struct {
		name  string
		write func(b *pebble.Batch) error
	}{
		{"applied without truncated state", func(b *pebble.Batch) error {
			return setApplied(b, 1, 5)
		}},
		{"undecodable HardState", func(b *pebble.Batch) error {
			return b.Set(mvcc.RaftKey(1, kindHardState, 0), []byte{0xff, 0xff}, nil)
		}},
		{"entries without truncated state", func(b *pebble.Batch) error {
			return setProto(b, entryKey(1, 1), ent(1, 1, "x"))
		}},
		{"log not starting after the truncated index", func(b *pebble.Batch) error {
			if err := setBootstrap(b, 1, 10, 5); err != nil {
				return err
			}
			return setProto(b, entryKey(1, 12), ent(12, 5, "x"))
		}},
		{"commit beyond the log", func(b *pebble.Batch) error {
			if err := setBootstrap(b, 1, 10, 5); err != nil {
				return err
			}
			return setProto(b, mvcc.RaftKey(1, kindHardState, 0), hardSt(5, 0, 11))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			eng := openEngine(t, vfs.NewMem())
			defer func() { _ = eng.Close() }()
			stage(t, eng.DB(), false, tc.write)
			if _, err := Load(eng.DB(), 1, Config{}); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Load = %v, want ErrCorrupt", err)
			}
		})
	}
}

// setBootstrap writes a bootstrapped state with a fresh Storage.
func setBootstrap(b *pebble.Batch, group uint32, index, term uint64) error {
	s := &Storage{group: group, confState: raftpb.EnsureConfState(nil)}
	return s.Bootstrap(b, &raftpb.ConfState{Voters: []uint64{1}}, index, term)
}

// TestUninitialized checks that a group never bootstrapped behaves like an
// empty raft.MemoryStorage and refuses writes that need a log.
func TestUninitialized(t *testing.T) {
	eng := openEngine(t, vfs.NewMem())
	defer func() { _ = eng.Close() }()
	s := mustLoad(t, eng.DB(), 9, Config{})
	ms := raft.NewMemoryStorage()
	if s.Initialized() {
		t.Fatal("Initialized")
	}
	fi, _ := s.FirstIndex()
	li, _ := s.LastIndex()
	wfi, _ := ms.FirstIndex()
	wli, _ := ms.LastIndex()
	if fi != wfi || li != wli {
		t.Fatalf("bounds [%d, %d], want [%d, %d]", fi, li, wfi, wli)
	}
	for i := uint64(0); i < 3; i++ {
		got, gerr := s.Term(i)
		want, werr := ms.Term(i)
		if got != want || gerr != werr {
			t.Errorf("Term(%d) = %d, %v; want %d, %v", i, got, gerr, want, werr)
		}
	}
	if _, err := s.Entries(1, 2, 0); err != raft.ErrUnavailable {
		t.Errorf("Entries(1, 2) = %v, want ErrUnavailable", err)
	}
	if hs, cs, err := s.InitialState(); hs != nil || cs == nil || len(cs.GetVoters()) != 0 || err != nil {
		t.Errorf("InitialState = %v, %v, %v", hs, cs, err)
	}
	b := eng.DB().NewBatch()
	defer b.Close()
	for name, err := range map[string]error{
		"Append":       s.Append(b, []*raftpb.Entry{ent(1, 1, "x")}, nil),
		"SetApplied":   s.SetApplied(b, 0),
		"SetConfState": s.SetConfState(b, &raftpb.ConfState{}),
		"Compact":      s.Compact(b, 1),
	} {
		if !errors.Is(err, ErrNotInitialized) {
			t.Errorf("%s = %v, want ErrNotInitialized", name, err)
		}
	}
	if err := s.Bootstrap(b, nil, 0, 1); !errors.Is(err, ErrOutOfRange) {
		t.Errorf("Bootstrap at 0 = %v, want ErrOutOfRange", err)
	}
	if err := s.ApplySnapshot(b, &raftpb.SnapshotMetadata{}); !errors.Is(err, ErrOutOfRange) {
		t.Errorf("ApplySnapshot at 0 = %v, want ErrOutOfRange", err)
	}
	if !b.Empty() {
		t.Errorf("failed writes staged %d bytes", b.Len())
	}
	if _, err := Load(eng.DB(), 9, Config{CacheBytes: -1}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("Load with CacheBytes -1 = %v, want ErrInvalidConfig", err)
	}
}
