package raftlog

import (
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/opencluster/opencluster/mvcc"
)

var seedFlag = flag.Int64("seed", 0, "seed of the randomized tests (0: time-based)")

// TestDifferential checks Storage against raft.MemoryStorage, the naive
// model of the raft.Storage contract (storage.go in go.etcd.io/raft/v3), on
// seeded random operation streams: appends that overwrite suffixes of the
// log, HardState updates, applied-index moves, compactions, snapshots,
// ConfState changes and invalid writes, staged in batches of one to three
// operations (indexed or not), with reloads from the DB and DB reopens in
// between, and cache bounds from one byte (nearly every read goes to
// Pebble) to the default. After every batch it compares FirstIndex,
// LastIndex, Term over the whole range and beyond it, Entries over random
// ranges and maxSizes, InitialState, Snapshot and ReadSnapshotMetadata,
// and checks the in-memory invariants. Neighbouring groups in the same DB
// must stay untouched.
//
// Replay a failure with: go test ./kv/raftlog -run TestDifferential -seed=N
func TestDifferential(t *testing.T) {
	seed := *seedFlag
	if seed == 0 {
		seed = time.Now().UnixNano()
	}
	t.Logf("seed %d (replay with -seed=%d)", seed, seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0x5eed))
	runs, steps := 16, 150
	if testing.Short() {
		runs, steps = 6, 60
	}
	for run := range runs {
		cfg := Config{CacheBytes: []int64{1, 300, 4 << 10, 0}[run%4]}
		t.Run(fmt.Sprintf("run=%d/cache=%d", run, cfg.CacheBytes), func(t *testing.T) {
			r := newDiffRun(t, rng, cfg)
			defer func() { _ = r.eng.Close() }()
			for range steps {
				r.step()
			}
			r.checkNeighbors()
		})
	}
}

// diffRun drives one Storage and its MemoryStorage model.
type diffRun struct {
	t     *testing.T
	rng   *rand.Rand
	fs    vfs.FS
	eng   *mvcc.Engine
	cfg   Config
	group uint32
	s     *Storage
	ms    *raft.MemoryStorage

	// The model of what MemoryStorage does not hold.
	term uint64 // the highest term used so far
	hs   hardState
	// stored is the HardState last written: Append does not write one
	// that only moves the commit index.
	stored  hardState
	applied uint64
	cs      *raftpb.ConfState

	opsInBatch int
	neighbors  map[uint32][]*raftpb.Entry
	history    []string
}

func newDiffRun(t *testing.T, rng *rand.Rand, cfg Config) *diffRun {
	r := &diffRun{
		t:         t,
		rng:       rng,
		fs:        vfs.NewMem(),
		cfg:       cfg,
		group:     1 + rng.Uint32N(1<<20),
		ms:        raft.NewMemoryStorage(),
		neighbors: map[uint32][]*raftpb.Entry{},
	}
	r.eng = openEngine(t, r.fs)
	db := r.eng.DB()
	for _, g := range []uint32{r.group - 1, r.group + 1} {
		ns := mustLoad(t, db, g, cfg)
		var ents []*raftpb.Entry
		for i := uint64(6); i <= 15; i++ {
			ents = append(ents, ent(i, 1, fmt.Sprintf("neighbor %d entry %d", g, i)))
		}
		stage(t, db, false, func(b *pebble.Batch) error {
			if err := ns.Bootstrap(b, &raftpb.ConfState{Voters: []uint64{1}}, 5, 1); err != nil {
				return err
			}
			return ns.Append(b, ents, hardSt(1, 1, 15))
		})
		r.neighbors[g] = ents
	}

	r.s = mustLoad(t, db, r.group, cfg)
	index, term := 1+rng.Uint64N(20), 1+rng.Uint64N(3)
	r.cs = r.randConfState()
	stage(t, db, false, func(b *pebble.Batch) error { return r.s.Bootstrap(b, r.cs, index, term) })
	r.note("bootstrap at (%d, %d)", index, term)
	if err := r.ms.ApplySnapshot(&raftpb.Snapshot{Metadata: &raftpb.SnapshotMetadata{
		Index: new(index), Term: new(term), ConfState: proto.Clone(r.cs).(*raftpb.ConfState),
	}}); err != nil {
		t.Fatal(err)
	}
	r.term, r.hs, r.applied = term, hardState{term, 0, index}, index
	r.stored = r.hs
	r.compare()
	return r
}

func (r *diffRun) note(format string, args ...any) {
	r.history = append(r.history, fmt.Sprintf(format, args...))
}

func (r *diffRun) fatalf(format string, args ...any) {
	r.t.Helper()
	h := r.history[max(0, len(r.history)-20):]
	r.t.Fatalf("%s\nlast operations:\n  %s", fmt.Sprintf(format, args...), strings.Join(h, "\n  "))
}

func (r *diffRun) bounds() (first, last uint64) {
	first, _ = r.ms.FirstIndex()
	last, _ = r.ms.LastIndex()
	return first, last
}

// step stages one to three operations in one batch, commits it, maybe
// reloads, and compares.
func (r *diffRun) step() {
	db := r.eng.DB()
	indexed := r.rng.IntN(2) == 0
	b := db.NewBatch()
	if indexed {
		b = db.NewIndexedBatch()
	}
	r.note("-- batch (indexed %t)", indexed)
	r.opsInBatch = 0
	for range 1 + r.rng.IntN(3) {
		r.op(b)
		r.opsInBatch++
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		r.fatalf("commit: %v", err)
	}
	if err := b.Close(); err != nil {
		r.fatalf("close batch: %v", err)
	}
	switch r.rng.IntN(40) {
	case 0:
		r.note("reopen DB and reload")
		if err := r.eng.Close(); err != nil {
			r.fatalf("close: %v", err)
		}
		r.eng = openEngine(r.t, r.fs)
		r.s = mustLoad(r.t, r.eng.DB(), r.group, r.cfg)
		r.reloaded()
	case 1, 2:
		r.note("reload")
		r.s = mustLoad(r.t, db, r.group, r.cfg)
		r.reloaded()
	}
	r.compare()
}

func (r *diffRun) op(b *pebble.Batch) {
	switch x := r.rng.IntN(20); {
	case x < 8:
		r.appendOp(b)
	case x < 11:
		r.hardStateOp(b)
	case x < 14:
		r.appliedOp(b)
	case x < 16:
		r.compactOp(b)
	case x < 17:
		r.confStateOp(b)
	case x < 18:
		r.snapshotOp(b)
	default:
		r.invalidOp(b)
	}
}

func (r *diffRun) appendOp(b *pebble.Batch) {
	_, last := r.bounds()
	lo := r.hs.commit + 1
	start := lo + r.rng.Uint64N(last+2-lo)
	if r.rng.IntN(4) == 0 {
		r.term++
	}
	n := 1 + r.rng.IntN(10)
	ents := make([]*raftpb.Entry, n)
	for i := range ents {
		data := make([]byte, r.rng.IntN(400))
		for j := range data {
			data[j] = byte(r.rng.Uint32())
		}
		ents[i] = &raftpb.Entry{Index: new(start + uint64(i)), Term: new(r.term), Data: data}
	}
	var hs *raftpb.HardState
	newHS := r.hs
	if r.rng.IntN(3) == 0 {
		newLast := start + uint64(n) - 1
		newHS = hardState{r.term, r.rng.Uint64N(4), r.hs.commit + r.rng.Uint64N(newLast-r.hs.commit+1)}
		hs = hardSt(newHS.term, newHS.vote, newHS.commit)
	}
	r.note("append [%d, %d] term %d, hs %v", start, start+uint64(n)-1, r.term, newHS)
	if err := r.s.Append(b, ents, hs); err != nil {
		r.fatalf("Append: %v", err)
	}
	if err := r.ms.Append(ents); err != nil {
		r.fatalf("MemoryStorage.Append: %v", err)
	}
	if hs != nil {
		r.setHardState(newHS)
	}
}

// setHardState is the model of Append's HardState: a new term or vote is
// written, a new commit index alone is not.
func (r *diffRun) setHardState(hs hardState) {
	if hs.term != r.stored.term || hs.vote != r.stored.vote {
		r.stored = hs
	}
	r.hs = hs
}

// reloaded is the model of Load: the commit index is the stored one or
// the applied index, whichever is higher.
func (r *diffRun) reloaded() {
	r.hs.commit = max(r.stored.commit, r.applied)
}

func (r *diffRun) hardStateOp(b *pebble.Batch) {
	_, last := r.bounds()
	hs := hardState{r.term, r.rng.Uint64N(4), r.hs.commit + r.rng.Uint64N(last-r.hs.commit+1)}
	r.note("hard state %v", hs)
	if err := r.s.Append(b, nil, hardSt(hs.term, hs.vote, hs.commit)); err != nil {
		r.fatalf("Append(hs): %v", err)
	}
	r.setHardState(hs)
}

func (r *diffRun) appliedOp(b *pebble.Batch) {
	r.applied += r.rng.Uint64N(r.hs.commit - r.applied + 1)
	r.note("applied %d", r.applied)
	if err := r.s.SetApplied(b, r.applied); err != nil {
		r.fatalf("SetApplied: %v", err)
	}
}

func (r *diffRun) compactOp(b *pebble.Batch) {
	if !b.Indexed() && r.opsInBatch > 0 {
		// The entry at the compaction index may sit, evicted from the
		// cache, in this unindexed batch (see Compact).
		r.hardStateOp(b)
		return
	}
	first, _ := r.bounds()
	trunc := first - 1
	index := trunc + r.rng.Uint64N(r.applied-trunc+1)
	r.note("compact %d", index)
	if err := r.s.Compact(b, index); err != nil {
		r.fatalf("Compact: %v", err)
	}
	if index == trunc {
		return // a no-op for Storage; MemoryStorage returns ErrCompacted
	}
	if _, err := r.ms.CreateSnapshot(index, proto.Clone(r.cs).(*raftpb.ConfState), nil); err != nil {
		r.fatalf("MemoryStorage.CreateSnapshot: %v", err)
	}
	if err := r.ms.Compact(index); err != nil {
		r.fatalf("MemoryStorage.Compact: %v", err)
	}
}

func (r *diffRun) confStateOp(b *pebble.Batch) {
	r.cs = r.randConfState()
	r.note("conf state %v", r.cs)
	if err := r.s.SetConfState(b, r.cs); err != nil {
		r.fatalf("SetConfState: %v", err)
	}
}

func (r *diffRun) snapshotOp(b *pebble.Batch) {
	index := r.hs.commit + 1 + r.rng.Uint64N(30)
	if r.rng.IntN(3) == 0 {
		r.term++
	}
	r.cs = r.randConfState()
	meta := &raftpb.SnapshotMetadata{Index: new(index), Term: new(r.term), ConfState: r.cs}
	r.note("apply snapshot (%d, %d)", index, r.term)
	if err := r.s.ApplySnapshot(b, meta); err != nil {
		r.fatalf("ApplySnapshot: %v", err)
	}
	if err := r.ms.ApplySnapshot(&raftpb.Snapshot{Metadata: proto.Clone(meta).(*raftpb.SnapshotMetadata)}); err != nil {
		r.fatalf("MemoryStorage.ApplySnapshot: %v", err)
	}
	if r.hs.term < r.term {
		r.hs.term, r.hs.vote = r.term, 0
	}
	r.hs.commit, r.applied = index, index
	r.stored = r.hs
}

// invalidOp attempts a write that must fail its checks and stage nothing.
func (r *diffRun) invalidOp(b *pebble.Batch) {
	_, last := r.bounds()
	lastTerm, _ := r.ms.Term(last)
	var (
		desc string
		want error
		err  error
	)
	before := b.Len()
	switch r.rng.IntN(11) {
	case 0:
		desc, want = "append with a gap", ErrLogGap
		err = r.s.Append(b, []*raftpb.Entry{ent(last+2, r.term, "x")}, nil)
	case 1:
		desc, want = "append over the commit index", ErrOverwriteCommitted
		err = r.s.Append(b, []*raftpb.Entry{ent(r.hs.commit, r.term, "x")}, nil)
	case 2:
		desc, want = "append non-contiguous", ErrInvalidEntries
		err = r.s.Append(b, []*raftpb.Entry{ent(last+1, r.term, "x"), ent(last+3, r.term, "y")}, nil)
	case 3:
		desc, want = "append with a decreasing term", ErrInvalidEntries
		err = r.s.Append(b, []*raftpb.Entry{ent(last+1, lastTerm+1, "x"), ent(last+2, lastTerm, "y")}, nil)
	case 4:
		desc, want = "append below the last term", ErrInvalidEntries
		if lastTerm == 0 {
			return
		}
		err = r.s.Append(b, []*raftpb.Entry{ent(last+1, lastTerm-1, "x")}, nil)
	case 5:
		desc, want = "commit beyond the log", ErrOutOfRange
		err = r.s.Append(b, nil, hardSt(r.term, 0, last+1))
	case 6:
		desc, want = "applied beyond commit", ErrOutOfRange
		err = r.s.SetApplied(b, r.hs.commit+1)
	case 7:
		desc, want = "compact beyond applied", ErrOutOfRange
		err = r.s.Compact(b, r.applied+1)
	case 8:
		desc, want = "stale snapshot", ErrStaleSnapshot
		err = r.s.ApplySnapshot(b, &raftpb.SnapshotMetadata{Index: new(r.hs.commit), Term: new(r.term)})
	case 9:
		desc, want = "bootstrap twice", ErrInitialized
		err = r.s.Bootstrap(b, r.cs, last+1, r.term)
	case 10:
		desc, want = "commit regression", ErrOutOfRange
		if r.hs.commit == 0 {
			return
		}
		err = r.s.Append(b, nil, hardSt(r.term, 0, r.hs.commit-1))
	}
	r.note("invalid: %s", desc)
	if !errors.Is(err, want) {
		r.fatalf("%s: got %v, want %v", desc, err, want)
	}
	if b.Len() != before {
		r.fatalf("%s: staged %d bytes", desc, b.Len()-before)
	}
}

func (r *diffRun) randConfState() *raftpb.ConfState {
	cs := &raftpb.ConfState{}
	for id := uint64(1); id <= 5; id++ {
		switch r.rng.IntN(3) {
		case 0:
			cs.Voters = append(cs.Voters, id)
		case 1:
			cs.Learners = append(cs.Learners, id)
		}
	}
	return raftpb.EnsureConfState(cs)
}

// compare checks Storage against the model.
func (r *diffRun) compare() {
	r.t.Helper()
	s, ms := r.s, r.ms
	if err := s.check(); err != nil {
		r.fatalf("invariants: %v", err)
	}
	first, last := r.bounds()
	if got, _ := s.FirstIndex(); got != first {
		r.fatalf("FirstIndex = %d, want %d", got, first)
	}
	if got, _ := s.LastIndex(); got != last {
		r.fatalf("LastIndex = %d, want %d", got, last)
	}
	for i := max(first, 3) - 3; i <= last+2; i++ {
		got, gerr := s.Term(i)
		want, werr := ms.Term(i)
		if got != want || gerr != werr {
			r.fatalf("Term(%d) = %d, %v; want %d, %v", i, got, gerr, want, werr)
		}
	}
	for range 8 {
		lo := first - 1 + r.rng.Uint64N(last-first+2)
		hi := lo + 1 + r.rng.Uint64N(last+1-lo)
		maxSize := []uint64{0, 1, r.rng.Uint64N(3000), math.MaxUint64}[r.rng.IntN(4)]
		got, gerr := s.Entries(lo, hi, maxSize)
		want, werr := ms.Entries(lo, hi, maxSize)
		if gerr != werr || !equalEntries(got, want) {
			r.fatalf("Entries(%d, %d, %d) = %d entries %v, %v; want %d entries %v, %v",
				lo, hi, maxSize, len(got), entryIndices(got), gerr, len(want), entryIndices(want), werr)
		}
		if gerr != nil {
			continue
		}
		// The caller owns the slice: appending must not corrupt Storage.
		_ = append(got, ent(0, 0, "junk"))
		again, err := s.Entries(lo, hi, maxSize)
		if err != nil || !equalEntries(again, want) {
			r.fatalf("Entries(%d, %d, %d) changed after an append to its result", lo, hi, maxSize)
		}
	}
	if _, err := s.Entries(last+1, last+2, math.MaxUint64); err != raft.ErrUnavailable {
		r.fatalf("Entries past the end: %v, want ErrUnavailable", err)
	}
	if got, err := s.Entries(last+1, last+1, 0); err != nil || len(got) != 0 {
		r.fatalf("Entries(%d, %d) = %v, %v; want none", last+1, last+1, got, err)
	}

	hs, cs, err := s.InitialState()
	if err != nil || (hardState{hs.GetTerm(), hs.GetVote(), hs.GetCommit()}) != r.hs || !proto.Equal(cs, r.cs) {
		r.fatalf("InitialState = %v, %v, %v; want %v, %v", hs, cs, err, r.hs, r.cs)
	}
	if s.Applied() != r.applied {
		r.fatalf("Applied = %d, want %d", s.Applied(), r.applied)
	}
	snap, err := s.Snapshot()
	wantSnap, _ := ms.Snapshot()
	if err != nil || snap.GetMetadata().GetIndex() != wantSnap.GetMetadata().GetIndex() ||
		snap.GetMetadata().GetTerm() != wantSnap.GetMetadata().GetTerm() ||
		!proto.Equal(snap.GetMetadata().GetConfState(), r.cs) || len(snap.GetData()) != 0 {
		r.fatalf("Snapshot = %v, %v; want index/term of %v and ConfState %v", snap, err, wantSnap, r.cs)
	}
	meta, err := ReadSnapshotMetadata(r.eng.DB(), r.group)
	appliedTerm, _ := ms.Term(r.applied)
	if err != nil || meta.GetIndex() != r.applied || meta.GetTerm() != appliedTerm || !proto.Equal(meta.GetConfState(), r.cs) {
		r.fatalf("ReadSnapshotMetadata = %v, %v; want (%d, %d) %v", meta, err, r.applied, appliedTerm, r.cs)
	}
}

// checkNeighbors checks that the groups around the tested one kept their
// state.
func (r *diffRun) checkNeighbors() {
	for g, want := range r.neighbors {
		ns := mustLoad(r.t, r.eng.DB(), g, r.cfg)
		got, err := ns.Entries(6, 16, math.MaxUint64)
		if err != nil || !equalEntries(got, want) {
			r.fatalf("neighbor group %d: Entries = %v, %v", g, entryIndices(got), err)
		}
		if fi, _ := ns.FirstIndex(); fi != 6 {
			r.fatalf("neighbor group %d: FirstIndex = %d, want 6", g, fi)
		}
	}
}
