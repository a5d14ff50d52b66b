package moves

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencluster/opencluster/bucket"
	"github.com/opencluster/opencluster/internal/bench"
	"github.com/opencluster/opencluster/rpc/client"
	"github.com/opencluster/opencluster/rpc/ocpb"
)

// loadConcurrency is how many puts a load keeps in flight.
const loadConcurrency = 16

// movedBucket is the bucket parts 1 and 2 load and move.
const movedBucket = 0

// workloadKeys is the key space of part 2's puts.
const workloadKeys = 10000

// moveWait bounds a MoveReplica call (the server bounds each of its
// steps by a minute).
const moveWait = 10 * time.Minute

// Run does the three parts (see the package doc) and returns what they
// measured. It stops every process it started before it returns, and
// leaves the nodes' directories (data and logs) in Config.WorkDir.
func Run(ctx context.Context, cfg Config) (Result, error) {
	cfg, err := cfg.Validate()
	if err != nil {
		return Result{}, err
	}
	r := &runner{cfg: cfg}
	res := Result{Machine: machine(), Settings: Settings{
		BucketMB: cfg.BucketMB, ClusterMB: cfg.ClusterMB, Buckets: cfg.Buckets, ValueKB: cfg.ValueKB,
		Clients: cfg.Clients, PutBytes: cfg.PutBytes, WindowS: cfg.Window.Seconds(), Seed: cfg.Seed,
	}}
	if err := r.moveParts(ctx, &res); err != nil {
		return res, err
	}
	if err := r.joinPart(ctx, &res); err != nil {
		return res, err
	}
	return res, nil
}

// runner is the state of one Run.
type runner struct {
	cfg Config
}

func (r *runner) logf(format string, args ...any) {
	if r.cfg.Log != nil {
		fmt.Fprintf(r.cfg.Log, "moves: "+format+"\n", args...)
	}
}

// values returns a source of distinct incompressible values: the value
// of key i is a window of a random buffer at an offset that depends on i.
func (r *runner) values() func(i int) []byte {
	size := r.cfg.ValueKB << 10
	buf := make([]byte, 2*size)
	var seed [32]byte
	binary.LittleEndian.PutUint64(seed[:], r.cfg.Seed)
	_, _ = rand.NewChaCha8(seed).Read(buf)
	return func(i int) []byte {
		off := (i * 7919) % size
		return buf[off : off+size]
	}
}

// moveParts does parts 1 and 2 on a cluster with the rebalancer off.
func (r *runner) moveParts(ctx context.Context, res *Result) error {
	cl, err := newCluster(r.cfg, filepath.Join(r.cfg.WorkDir, "move"), r.cfg.HostBase, false)
	if err != nil {
		return err
	}
	defer cl.stop()
	r.logf("part 1: starting 3 nodes (rebalancer off) on 127.0.0.%d-%d", r.cfg.HostBase, r.cfg.HostBase+2)
	for range 3 {
		if _, err := cl.start(ctx); err != nil {
			return err
		}
	}
	if _, err := cl.waitStatus(ctx, 2*time.Minute, "buckets replicated on 3 nodes", replicated); err != nil {
		return err
	}

	// Load one bucket: keys chosen by their bucket.
	var keys [][]byte
	want := (int64(r.cfg.BucketMB)<<20 + int64(r.cfg.ValueKB<<10) - 1) / int64(r.cfg.ValueKB<<10)
	for i := 0; int64(len(keys)) < want; i++ {
		k := fmt.Appendf(nil, "moves/big/%08d", i)
		if bucket.Of(k, r.cfg.Buckets) == movedBucket {
			keys = append(keys, k)
		}
	}
	mv := &res.Move
	mv.Bucket = movedBucket
	mv.Keys = len(keys)
	r.logf("part 1: loading %d MiB into bucket %d (%d keys of %d KiB)", r.cfg.BucketMB, movedBucket, len(keys), r.cfg.ValueKB)
	t0 := time.Now()
	if mv.LoadedBytes, err = r.load(ctx, cl, keys); err != nil {
		return err
	}
	mv.LoadS = time.Since(t0).Seconds()

	r.logf("part 1: starting a 4th node")
	n4, err := cl.start(ctx)
	if err != nil {
		return err
	}
	st, err := cl.waitStatus(ctx, startTimeout, "node 4 active", func(st *ocpb.StatusResponse) bool { return activeMember(st, n4.id) })
	if err != nil {
		return err
	}
	mv.From, err = nonLeader(st, movedBucket)
	if err != nil {
		return err
	}
	mv.To = n4.id
	mv.Method = "growth of the receiving node's data directory (no snapshot-bytes metric exists)"
	size0, err := dirBytes(n4.dir)
	if err != nil {
		return err
	}
	wb0 := writeBytes(n4.proc.PID())
	r.logf("part 1: moving bucket %d from node %s to node %s", movedBucket, mv.From, mv.To)
	d, err := r.move(ctx, cl, movedBucket, mv.From, mv.To)
	if err != nil {
		return err
	}
	mv.Seconds = d.Seconds()
	mv.MBPerS = float64(mv.LoadedBytes) / (1 << 20) / d.Seconds()
	size1, err := dirBytes(n4.dir)
	if err != nil {
		return err
	}
	mv.DataDirGrowthBytes = size1 - size0
	mv.DiskWriteBytes = delta(wb0, writeBytes(n4.proc.PID()))
	r.logf("part 1: moved in %.2fs, receiver's data dir grew %d bytes", mv.Seconds, mv.DataDirGrowthBytes)

	// Part 2: a fifth node receives the bucket while puts run.
	r.logf("part 2: starting a 5th node")
	n5, err := cl.start(ctx)
	if err != nil {
		return err
	}
	if _, err := cl.waitStatus(ctx, startTimeout, "node 5 active", func(st *ocpb.StatusResponse) bool { return activeMember(st, n5.id) }); err != nil {
		return err
	}
	cs, err := cl.clients(ctx, r.cfg.Clients)
	if err != nil {
		return err
	}
	defer closeAll(cs)
	wl := &res.Workload
	wl.Bucket, wl.To = movedBucket, n5.id
	r.logf("part 2: %d clients putting %d-byte values for %s + %s, no move", r.cfg.Clients, r.cfg.PutBytes, r.cfg.Warmup, r.cfg.Window)
	base, err := r.putWindow(ctx, cs, nil)
	if err != nil {
		return err
	}
	wl.Baseline, wl.BaselineBucket = base.all, base.bucket
	st, err = cl.c.Status(ctx)
	if err != nil {
		return err
	}
	if wl.From, err = nonLeader(st, movedBucket); err != nil {
		return err
	}
	r.logf("part 2: the same, moving bucket %d from node %s to node %s", movedBucket, wl.From, wl.To)
	during, err := r.putWindow(ctx, cs, func(ctx context.Context) (time.Duration, error) {
		return r.move(ctx, cl, movedBucket, wl.From, wl.To)
	})
	if err != nil {
		return err
	}
	wl.DuringMove, wl.DuringBucket, wl.InFlight = during.all, during.bucket, during.inFlight
	wl.WindowS, wl.MoveS = during.window.Seconds(), during.move.Seconds()
	r.logf("part 2: p99 %.2fms without a move, %.2fms during one (%.2fms while in flight)", wl.Baseline.P99ms, wl.DuringMove.P99ms, wl.InFlight.P99ms)
	closeAll(cs)
	cl.stop() // before part 3 starts
	return nil
}

// nonLeader returns a voter of bucket b that does not lead it.
func nonLeader(st *ocpb.StatusResponse, b int) (string, error) {
	for _, bs := range st.GetBuckets() {
		if int(bs.GetBucket()) != b {
			continue
		}
		for _, v := range bs.GetReplicas() {
			if v != bs.GetLeader() {
				return v, nil
			}
		}
	}
	return "", fmt.Errorf("%w: bucket %d has no voter besides its leader\n%s", bench.ErrMissing, b, summary(st))
}

// move moves bucket b's replica from node from to node to and returns how
// long the call took.
func (r *runner) move(ctx context.Context, cl *cluster, b int, from, to string) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, moveWait)
	defer cancel()
	t0 := time.Now()
	if _, err := cl.c.MoveReplica(ctx, uint32(b), from, to); err != nil {
		return 0, fmt.Errorf("moves: move bucket %d from node %s to node %s after %s: %w\n%s", b, from, to, time.Since(t0).Round(time.Millisecond), err, cl.logTails())
	}
	return time.Since(t0), nil
}

func delta(before, after int64) int64 {
	if before < 0 || after < 0 {
		return -1
	}
	return after - before
}

// load puts keys with large values, loadConcurrency at a time over the
// cluster's client, and returns the bytes put (keys plus values).
func (r *runner) load(ctx context.Context, cl *cluster, keys [][]byte) (int64, error) {
	value := r.values()
	cs, err := cl.clients(ctx, loadConcurrency/2)
	if err != nil {
		return 0, err
	}
	defer closeAll(cs)
	var (
		next    atomic.Int64
		total   atomic.Int64
		wg      sync.WaitGroup
		errOnce sync.Once
		first   error
	)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for g := range loadConcurrency {
		wg.Go(func() {
			c := cs[g%len(cs)]
			for {
				i := int(next.Add(1) - 1)
				if i >= len(keys) || ctx.Err() != nil {
					return
				}
				v := value(i)
				pctx, pcancel := context.WithTimeout(ctx, time.Minute)
				_, err := c.Put(pctx, keys[i], v)
				pcancel()
				if err != nil {
					errOnce.Do(func() { first = fmt.Errorf("moves: load %s: %w", keys[i], err); cancel() })
					return
				}
				total.Add(int64(len(keys[i]) + len(v)))
			}
		})
	}
	wg.Wait()
	if first != nil {
		return 0, errors.Join(first, cl.alive())
	}
	return total.Load(), ctx.Err()
}

// window is what putWindow measured.
type window struct {
	all, bucket, inFlight Latency
	window, move          time.Duration
}

// sample is one put: when it completed, how long it took, whether it was
// to movedBucket, its error.
type sample struct {
	done     time.Time
	lat      time.Duration
	inBucket bool
	err      error
}

// putWindow runs the put workload on cs for a warm-up and a window. With
// move, it calls move at the window's start and the window lasts until it
// has returned too.
func (r *runner) putWindow(ctx context.Context, cs []*client.Client, move func(context.Context) (time.Duration, error)) (window, error) {
	var stop atomic.Bool
	samples := make([][]sample, len(cs))
	val := make([]byte, r.cfg.PutBytes)
	for i := range val {
		val[i] = byte('a' + i%26)
	}
	var wg sync.WaitGroup
	for g, c := range cs {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(r.cfg.Seed, uint64(g)))
			for !stop.Load() && ctx.Err() == nil {
				key := fmt.Appendf(nil, "moves/w/%d", rng.IntN(workloadKeys))
				pctx, cancel := context.WithTimeout(ctx, time.Minute)
				t0 := time.Now()
				_, err := c.Put(pctx, key, val)
				done := time.Now()
				cancel()
				samples[g] = append(samples[g], sample{done: done, lat: done.Sub(t0), inBucket: bucket.Of(key, r.cfg.Buckets) == movedBucket, err: err})
			}
		})
	}
	wait := func(d time.Duration) {
		select {
		case <-ctx.Done():
		case <-time.After(d):
		}
	}
	wait(r.cfg.Warmup)
	start := time.Now()
	var (
		moveStart, moveEnd time.Time
		moveDur            time.Duration
		moveErr            error
	)
	if move != nil {
		moveStart = time.Now()
		moveDur, moveErr = func() (time.Duration, error) {
			done := make(chan struct{})
			var d time.Duration
			var err error
			go func() { defer close(done); d, err = move(ctx) }()
			wait(r.cfg.Window)
			<-done
			return d, err
		}()
		moveEnd = moveStart.Add(moveDur)
	} else {
		wait(r.cfg.Window)
	}
	end := time.Now()
	stop.Store(true)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return window{}, err
	}
	if moveErr != nil {
		return window{}, moveErr
	}

	var all, inB, fl bench.Histogram
	var errsAll, errsB, errsFl int
	var sampleErr string
	for _, ss := range samples {
		for _, s := range ss {
			if s.done.Before(start) || s.done.After(end) {
				continue
			}
			flying := move != nil && !s.done.Before(moveStart) && !s.done.After(moveEnd)
			if s.err != nil {
				errsAll++
				if s.inBucket {
					errsB++
				}
				if flying {
					errsFl++
				}
				if sampleErr == "" {
					sampleErr = s.err.Error()
				}
				continue
			}
			all.Record(s.lat)
			if s.inBucket {
				inB.Record(s.lat)
			}
			if flying {
				fl.Record(s.lat)
			}
		}
	}
	w := window{window: end.Sub(start), move: moveDur}
	w.all = latencyOf(&all, errsAll, sampleErr, w.window)
	w.bucket = latencyOf(&inB, errsB, "", w.window)
	if move != nil {
		w.inFlight = latencyOf(&fl, errsFl, "", moveDur)
	}
	return w, nil
}

// joinPart does part 3: a fourth node joins a loaded three-node cluster
// with the rebalancer on.
func (r *runner) joinPart(ctx context.Context, res *Result) error {
	cl, err := newCluster(r.cfg, filepath.Join(r.cfg.WorkDir, "join"), r.cfg.HostBase, true)
	if err != nil {
		return err
	}
	defer cl.stop()
	r.logf("part 3: starting 3 nodes (rebalancer on)")
	for range 3 {
		if _, err := cl.start(ctx); err != nil {
			return err
		}
	}
	if _, err := cl.waitStatus(ctx, 2*time.Minute, "3 nodes balanced", func(st *ocpb.StatusResponse) bool { return balanced(st, 3, false) }); err != nil {
		return err
	}
	j := &res.Join
	n := int((int64(r.cfg.ClusterMB)<<20 + int64(r.cfg.ValueKB<<10) - 1) / int64(r.cfg.ValueKB<<10))
	keys := make([][]byte, n)
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "moves/load/%08d", i)
	}
	j.Keys = n
	r.logf("part 3: loading %d MiB over %d buckets (%d keys of %d KiB)", r.cfg.ClusterMB, r.cfg.Buckets, n, r.cfg.ValueKB)
	t0 := time.Now()
	if j.LoadedBytes, err = r.load(ctx, cl, keys); err != nil {
		return err
	}
	j.LoadS = time.Since(t0).Seconds()
	if _, err := cl.waitStatus(ctx, 2*time.Minute, "3 loaded nodes balanced", func(st *ocpb.StatusResponse) bool { return balanced(st, 3, false) }); err != nil {
		return err
	}

	r.logf("part 3: starting a 4th node")
	t0 = time.Now()
	n4, err := cl.start(ctx)
	if err != nil {
		return err
	}
	// The new node's directory was empty before it started; it counts
	// from zero, since the rebalancer may have moved data to it before
	// it could be measured after its start (a few KiB of it are Pebble's
	// own files). Its disk writes count from its start for the same
	// reason.
	const size0 = 0
	var wb0 int64
	seen := map[string]bool{}
	track := func(st *ocpb.StatusResponse) {
		for _, mv := range st.GetMoves() {
			seen[fmt.Sprint(mv.GetBucket(), mv.GetKind(), mv.GetFrom(), mv.GetTo(), mv.GetStartedUnixMs())] = true
		}
	}
	st, err := cl.waitStatus(ctx, r.cfg.JoinTimeout, "the 4th node holding its share", func(st *ocpb.StatusResponse) bool {
		track(st)
		return activeMember(st, n4.id) && balanced(st, 4, false)
	})
	if err != nil {
		return err
	}
	j.Seconds = time.Since(t0).Seconds()
	size1, err := dirBytes(n4.dir)
	if err != nil {
		return err
	}
	j.DataDirGrowthBytes = size1 - size0
	j.DiskWriteBytes = delta(wb0, writeBytes(n4.proc.PID()))
	r.logf("part 3: the 4th node holds its share after %.1fs; waiting for leaders", j.Seconds)
	j.LeadersS = -1
	if st2, err := cl.waitStatus(ctx, r.cfg.LeaderWait, "leaders balanced", func(st *ocpb.StatusResponse) bool {
		track(st)
		return balanced(st, 4, true)
	}); err == nil {
		j.LeadersS = time.Since(t0).Seconds()
		st = st2
	} else if !errors.Is(err, ErrTimeout) {
		return err
	} else {
		r.logf("part 3: leaders not balanced %s after the replicas:\n%s", r.cfg.LeaderWait, summary(st2))
	}
	replicas, leaders := client.Holdings(st)
	j.Replicas, j.Leaders = replicas[n4.id], leaders[n4.id]
	for _, m := range st.GetMembers() {
		j.Members = append(j.Members, Holding{ID: m.GetId(), State: m.GetState(), Replicas: replicas[m.GetId()], Leaders: leaders[m.GetId()]})
	}
	j.MeanReplicas = float64(Replicas*len(st.GetBuckets())) / 4
	j.MovesSeen = len(seen)
	r.logf("part 3: done, %d moves seen", j.MovesSeen)
	return nil
}
