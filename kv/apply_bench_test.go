package kv

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/opencluster/opencluster/kv/raftlog"
	"github.com/opencluster/opencluster/locks"
	"github.com/opencluster/opencluster/mvcc"
	"github.com/opencluster/opencluster/mvcc/ts"
	"github.com/opencluster/opencluster/rpc/cmdpb"
)

// Benchmarks of the scheduler's hot paths on one bucket group of a node
// whose goroutines are not started: the benchmark is the scheduler
// goroutine, so it drives scheduler.apply and scheduler.cycle itself. The
// engine is in memory (TestConfig), so a synced commit costs no fsync:
// these measure CPU and allocations, not the disk.
//
//	go test ./kv -run '^$' -bench 'Apply|ReadyLoop' -count 10 > new.txt && benchstat old.txt new.txt

// benchKeys is how many user keys the puts write to, round robin.
const benchKeys = 10_000

// newBenchGroup returns a node holding one bucket group (bucket 0, this
// node its only voter, bootstrapped as Open does) with no goroutine
// running; the caller acts as its scheduler goroutine.
func newBenchGroup(b testing.TB) (*Node, *replica) {
	b.Helper()
	cfg := TestConfig()
	cfg.Buckets = 1
	cfg.fillDefaults()
	eng, err := mvcc.Open("", mvcc.Config{FS: cfg.FS})
	if err != nil {
		b.Fatal(err)
	}
	n := &Node{
		cfg: cfg, log: cfg.Logger, eng: eng, id: 1, buckets: 1,
		waits: locks.NewWaitQueues(), deadlines: locks.NewDeadlines(),
		stopper: make(chan struct{}), metrics: newMetrics(nil, nil),
	}
	n.bg, n.bgCancel = context.WithCancel(context.Background())
	n.sched = &scheduler{n: n, wakeCh: make(chan struct{}, 1), compactEvery: uint64(cfg.RaftLogKeep)}
	n.tso = newTSOService(n)
	st, err := raftlog.Load(eng.DB(), 0, raftlog.Config{})
	if err != nil {
		b.Fatal(err)
	}
	batch := eng.DB().NewBatch()
	if err := st.Bootstrap(batch, &raftpb.ConfState{Voters: []uint64{n.id}}, initialIndex, initialTerm); err != nil {
		b.Fatal(err)
	}
	if err := batch.Commit(pebble.Sync); err != nil {
		b.Fatal(err)
	}
	batch.Close()
	r, err := newReplica(n, 0, st)
	if err != nil {
		b.Fatal(err)
	}
	n.replicas = []*replica{r}
	b.Cleanup(func() {
		n.bgCancel()
		close(n.stopper)
		n.wg.Wait()
		if err := eng.Close(); err != nil {
			b.Error(err)
		}
	})
	return n, r
}

// benchValue is the value of every benchmark put (read only).
var benchValue = make([]byte, 128)

// benchRand draws the puts' request ids.
var benchRand = rand.New(rand.NewPCG(1, 2))

// benchPuts makes count put commands of benchValue to keys taken round
// robin from benchKeys, at timestamps above *t.
func benchPuts(count int, next *int, t *uint64) []*cmdpb.Command {
	cmds := make([]*cmdpb.Command, count)
	for i := range cmds {
		*t++
		// A request id as the Go client makes them: 16 random bytes in hex.
		cmds[i] = &cmdpb.Command{Body: &cmdpb.Command_Put{Put: &cmdpb.Put{
			Key: fmt.Appendf(nil, "key-%06d", *next%benchKeys), Value: benchValue, Ts: *t,
			RequestId: fmt.Sprintf("%016x%016x", benchRand.Uint64(), benchRand.Uint64()),
		}}}
		*next++
	}
	return cmds
}

// BenchmarkApplyBatch measures scheduler.apply on one Ready's committed
// entries, each a put: decoding the commands, locks.Apply into one indexed
// batch, the applied index, the (NoSync) commit, answering proposers and
// the periodic log truncation. Appending the entries to the log (with a
// HardState committing them) is setup, outside the timer. b.SetBytes
// counts the values. With bound=known the bucket's version bound is
// established (as it is on a running node), so no put reads its key's
// newest version; with bound=unknown every put does (as after a start or
// a snapshot, until the bound is fetched).
func BenchmarkApplyBatch(b *testing.B) {
	for _, size := range []int{1, 16, 128} {
		for _, bound := range []string{"known", "unknown"} {
			b.Run(fmt.Sprintf("entries=%d/bound=%s", size, bound), func(b *testing.B) {
				benchApplyBatch(b, size, bound == "known")
			})
		}
	}
}

func benchApplyBatch(b *testing.B, size int, boundKnown bool) {
	n, r := newBenchGroup(b)
	next, t := 0, uint64(1000)
	if boundKnown {
		gen, _ := r.cache.Versions.Unknown()
		r.cache.Versions.Establish(gen, ts.Timestamp(t))
	}
	term := uint64(initialTerm)
	b.SetBytes(int64(size * 128))
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		last, err := r.storage.LastIndex()
		if err != nil {
			b.Fatal(err)
		}
		ents := make([]*raftpb.Entry, size)
		for i, cmd := range benchPuts(size, &next, &t) {
			data, err := mvcc.Marshal(cmd)
			if err != nil {
				b.Fatal(err)
			}
			ents[i] = &raftpb.Entry{Index: new(last + 1 + uint64(i)), Term: &term, Data: data}
		}
		commit := last + uint64(size)
		lb := n.eng.DB().NewBatch()
		hs := &raftpb.HardState{Term: &term, Vote: new(n.id), Commit: &commit}
		if err := r.storage.Append(lb, ents, hs); err != nil {
			b.Fatal(err)
		}
		if err := lb.Commit(pebble.NoSync); err != nil {
			b.Fatal(err)
		}
		lb.Close()
		work := []readyWork{{r: r, rd: raft.Ready{CommittedEntries: ents}}}
		b.StartTimer()
		if err := n.sched.apply(work); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if got, want := r.storage.Applied(), uint64(initialIndex+b.N*size); got != want {
		b.Fatalf("applied index %d, want %d", got, want)
	}
}
