package kv

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/opencluster/opencluster/rpc/ocpb"
)

// Single-node throughput on a real disk (synced Raft log), 16 concurrent
// callers in process (no gRPC):
//
//	go test -run '^$' -bench BenchmarkNode -benchtime 5s ./kv/
//
// ops/s = 1e9 / ns/op. Compare runs with benchstat; the machine is shared.
func BenchmarkNode(b *testing.B) {
	cfg := DefaultConfig()
	cfg.DataDir = b.TempDir()
	n, err := Open(cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer n.Close()
	ctx := context.Background()
	value := make([]byte, 128)
	const keys = 10_000
	for i := range keys {
		if _, err := n.Put(ctx, &ocpb.PutRequest{Key: fmt.Appendf(nil, "key-%06d", i), Value: value}); err != nil {
			b.Fatal(err)
		}
	}
	parallelism := max(1, 16/runtime.GOMAXPROCS(0)) // 16 callers
	b.Run("op=put/clients=16", func(b *testing.B) {
		b.SetParallelism(parallelism)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				k := fmt.Appendf(nil, "key-%06d", rand.IntN(keys))
				if _, err := n.Put(ctx, &ocpb.PutRequest{Key: k, Value: value}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("op=get/clients=16", func(b *testing.B) {
		b.SetParallelism(parallelism)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				k := fmt.Appendf(nil, "key-%06d", rand.IntN(keys))
				if _, err := n.Get(ctx, &ocpb.GetRequest{Key: k}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("op=lock-cycle/clients=16", func(b *testing.B) {
		b.SetParallelism(parallelism)
		b.ReportAllocs()
		var id atomicCounter
		b.RunParallel(func(pb *testing.PB) {
			name := fmt.Sprint("lock-", id.next()) // uncontended: one name per caller
			for pb.Next() {
				l, err := n.Acquire(ctx, &ocpb.AcquireRequest{Name: name, Ttl: durationSeconds(15)})
				if err != nil {
					b.Error(err)
					return
				}
				if _, err := n.Release(ctx, &ocpb.ReleaseRequest{Name: name, Code: l.Code}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

type atomicCounter struct{ v atomic.Int64 }

func (c *atomicCounter) next() int64 { return c.v.Add(1) }

func durationSeconds(s int) *durationpb.Duration {
	return durationpb.New(time.Duration(s) * time.Second)
}
