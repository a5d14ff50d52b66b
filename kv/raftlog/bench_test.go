package raftlog

import (
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"go.etcd.io/raft/v3/raftpb"
)

// benchEntryBytes is the payload of each benchmark entry.
const benchEntryBytes = 256

// benchEntries builds n entries from index first with a few allocations,
// however large n is (the benchmarks count them).
func benchEntries(first, term uint64, n int, data []byte) []*raftpb.Entry {
	slab := make([]raftpb.Entry, n)
	idx := make([]uint64, n)
	ents := make([]*raftpb.Entry, n)
	for i := range slab {
		idx[i] = first + uint64(i)
		slab[i].Index, slab[i].Term, slab[i].Data = &idx[i], &term, data
		ents[i] = &slab[i]
	}
	return ents
}

func benchStorage(b *testing.B) (*pebble.DB, *Storage, func()) {
	eng := openEngine(b, vfs.NewMem())
	db := eng.DB()
	s := mustLoad(b, db, 1, Config{})
	stage(b, db, false, func(batch *pebble.Batch) error {
		return s.Bootstrap(batch, &raftpb.ConfState{Voters: []uint64{1}}, 10, 5)
	})
	return db, s, func() { _ = eng.Close() }
}

// BenchmarkAppend measures Append alone: staging n entries and a
// HardState into a batch, and the cache. The batch is reset instead of
// committed (which the contract forbids outside a benchmark: nothing here
// reads the DB back).
//
//	go test ./kv/raftlog -run '^$' -bench 'Append' -count 10 > new.txt && benchstat old.txt new.txt
func BenchmarkAppend(b *testing.B) {
	for _, n := range []int{1, 64} {
		b.Run(fmt.Sprintf("entries=%d", n), func(b *testing.B) {
			db, s, closeDB := benchStorage(b)
			defer closeDB()
			batch := db.NewBatch()
			defer batch.Close()
			data := make([]byte, benchEntryBytes)
			hs := hardSt(6, 1, 10)
			b.SetBytes(int64(n * benchEntryBytes))
			b.ReportAllocs()
			for b.Loop() {
				last, _ := s.LastIndex()
				if err := s.Append(batch, benchEntries(last+1, 6, n, data), hs); err != nil {
					b.Fatal(err)
				}
				batch.Reset()
			}
		})
	}
}

// BenchmarkAppendCommit measures Append plus the batch commit (NoSync: the
// scheduler's fsync is shared by every group of a round), with the log
// compacted every 256 rounds to keep it short.
//
//	go test ./kv/raftlog -run '^$' -bench 'AppendCommit' -count 10 > new.txt && benchstat old.txt new.txt
func BenchmarkAppendCommit(b *testing.B) {
	for _, n := range []int{1, 64} {
		b.Run(fmt.Sprintf("entries=%d", n), func(b *testing.B) {
			db, s, closeDB := benchStorage(b)
			defer closeDB()
			batch := db.NewBatch()
			defer batch.Close()
			data := make([]byte, benchEntryBytes)
			b.SetBytes(int64(n * benchEntryBytes))
			b.ReportAllocs()
			round := 0
			for b.Loop() {
				last, _ := s.LastIndex()
				// Commit what the previous round appended.
				if err := s.Append(batch, benchEntries(last+1, 6, n, data), hardSt(6, 1, last)); err != nil {
					b.Fatal(err)
				}
				if round++; round%256 == 0 {
					if err := s.SetApplied(batch, last); err != nil {
						b.Fatal(err)
					}
					if err := s.Compact(batch, last); err != nil {
						b.Fatal(err)
					}
				}
				if err := batch.Commit(pebble.NoSync); err != nil {
					b.Fatal(err)
				}
				batch.Reset()
			}
		})
	}
}
