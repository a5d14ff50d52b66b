package kv

import (
	"fmt"
	"testing"

	"github.com/opencluster/opencluster/rpc/cmdpb"
)

// BenchmarkReadyLoop measures proposals end to end through the Ready loop
// of one bucket group on one node (its only voter), in memory: each op
// queues a round of puts as the request path does (replica.enqueue), then
// runs scheduler.cycle until every one is answered: hand-off to raft,
// Ready, log append and synced commit, apply, Advance, and the second
// cycle that applies what the first committed. ns/op is per round;
// b.SetBytes counts the values. See apply_bench_test.go for the setup.
//
//	go test ./kv -run '^$' -bench ReadyLoop -benchtime 2000x
func BenchmarkReadyLoop(b *testing.B) {
	for _, size := range []int{1, 16} {
		b.Run(fmt.Sprintf("proposals=%d", size), func(b *testing.B) {
			n, r := newBenchGroup(b)
			// As Open campaigns a lone voter: on the scheduler goroutine,
			// at its next cycle.
			n.submit(func() { _ = r.rn.Campaign() })
			for !benchLeaderReady(r) {
				if err := n.sched.cycle(); err != nil {
					b.Fatal(err)
				}
			}
			next, t := 0, uint64(1000)
			ps := make([]*proposal, size)
			b.SetBytes(int64(size * 128))
			b.ReportAllocs()
			for b.Loop() {
				for i, cmd := range benchPuts(size, &next, &t) {
					ps[i] = r.enqueue(cmd, 0)
				}
				for _, p := range ps {
					if res := benchAwait(b, n, p); res.err != nil || res.res.GetError() != cmdpb.ErrorCode_OK {
						b.Fatalf("put: %v %v", res.res, res.err)
					}
				}
			}
		})
	}
}

// benchLeaderReady reports whether r leads and applied its term's start.
func benchLeaderReady(r *replica) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.mu.ready
}

// benchAwait runs scheduler cycles until p is answered.
func benchAwait(b *testing.B, n *Node, p *proposal) proposalResult {
	for {
		select {
		case res := <-p.done:
			return res
		default:
		}
		if err := n.sched.cycle(); err != nil {
			b.Fatal(err)
		}
	}
}
