package kv

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/opencluster/opencluster/kv/raftlog"
	"github.com/opencluster/opencluster/mvcc"
	"github.com/opencluster/opencluster/mvcc/ts"
	"github.com/opencluster/opencluster/rpc/cmdpb"
)

// BenchmarkSnapshotApply compares the two ways a received snapshot
// replaces a bucket, on a real disk (b.TempDir): path=batch stages it into
// a batch committed with a sync (stageSnapshot, as the round's log batch
// is), path=sst writes SSTs and ingests them (ingestSnapshot). Each op
// applies a snapshot of about the given size, of 1 KiB random values, at the next
// index over the previous one. Config.SnapshotSSTBytes picks the path.
//
//	go test ./kv -run '^$' -bench SnapshotApply -benchtime 20x
func BenchmarkSnapshotApply(b *testing.B) {
	for _, size := range []int{64 << 10, 1 << 20, 4 << 20, 16 << 20} {
		kvs := benchSnapshotKVs(size)
		for _, path := range []string{"batch", "sst"} {
			b.Run(fmt.Sprintf("bytes=%d/path=%s", size, path), func(b *testing.B) {
				e, err := mvcc.Open(b.TempDir(), mvcc.Config{})
				if err != nil {
					b.Fatal(err)
				}
				defer e.Close()
				st, err := raftlog.Load(e.DB(), 0, raftlog.Config{})
				if err != nil {
					b.Fatal(err)
				}
				start, end := mvcc.BucketSpan(0)
				index := uint64(10)
				b.SetBytes(int64(size))
				b.ReportAllocs()
				for b.Loop() {
					index++
					meta := &raftpb.SnapshotMetadata{Index: new(index), Term: new(uint64(5)), ConfState: &raftpb.ConfState{Voters: []uint64{1}}}
					if path == "sst" {
						if err := ingestSnapshot(context.Background(), e, st, start, end, kvs, meta, snapshotSSTFileBytes); err != nil {
							b.Fatal(err)
						}
						continue
					}
					batch := e.DB().NewBatch()
					if err := stageSnapshot(batch, st, start, end, kvs, meta); err != nil {
						b.Fatal(err)
					}
					if err := batch.Commit(pebble.Sync); err != nil {
						b.Fatal(err)
					}
					batch.Close()
				}
			})
		}
	}
}

// benchSnapshotKVs returns a snapshot of bucket 0 of about size bytes, in
// 1 KiB values that do not compress.
func benchSnapshotKVs(size int) []*cmdpb.SnapshotKV {
	rng := rand.New(rand.NewPCG(1, 2))
	var kvs []*cmdpb.SnapshotKV
	for i := 0; i<<10 < size; i++ {
		value := make([]byte, 1<<10)
		for j := range value {
			value[j] = byte(rng.Uint32())
		}
		k := mvcc.VersionKey(0, fmt.Appendf(nil, "key-%08d", i), ts.Timestamp(100))
		kvs = append(kvs, &cmdpb.SnapshotKV{Key: k, Value: value})
	}
	return kvs
}
