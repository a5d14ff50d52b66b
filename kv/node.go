package kv

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/raft/v3/raftpb"
	"golang.org/x/time/rate"
	"google.golang.org/protobuf/proto"

	"github.com/opencluster/opencluster/kv/raftlog"
	"github.com/opencluster/opencluster/locks"
	"github.com/opencluster/opencluster/mvcc"
	"github.com/opencluster/opencluster/mvcc/ts"
	"github.com/opencluster/opencluster/rpc/cmdpb"
)

// Initial Raft state of a bootstrapped group (like CockroachDB's
// raftInitialLogIndex): the log starts "truncated" here, so no group ever
// replays an empty prefix.
const (
	initialIndex = 10
	initialTerm  = 5
)

// Node is one OpenCluster server's storage and replication: it satisfies
// rpc/server.Backend.
type Node struct {
	cfg     Config
	log     *slog.Logger
	eng     *mvcc.Engine
	id      uint64
	cluster string
	buckets int

	// replicas holds every group; fixed after Open (buckets, then meta).
	replicas []*replica
	meta     *replica
	sched    *scheduler
	tso      *tsoService
	metrics  *metrics

	waits *locks.WaitQueues
	// handoffs: head waiters of named locks, offered to the next Release.
	handoffs handoffs[*cmdpb.NamedAcquire]
	// keyHandoffs: head waiters of keys, offered to the next ResolveKeys
	// this node proposes as the keys' leader (key_handoff.go).
	keyHandoffs handoffs[*cmdpb.LockKeys]
	// firstPass decides whether multi-bucket key locks first try every
	// bucket at once (first_pass.go).
	firstPass firstPassGate
	// givingBack holds the codes of hand-offs being released (giveBack).
	givingBack codeSet
	// pendingBegins holds the codes of restrictive locks whose record this
	// node (its leader) is creating while their keys are tried
	// (beginWithFirstStep): the orphan sweeper must not take their key
	// locks for orphans before the record shows them.
	pendingBegins codeSet
	deadlines     *locks.Deadlines
	// proposalIDs numbers this node's proposals. It starts at a random
	// value so that ids never repeat across restarts: a follower forwarding
	// a proposal does not wait for its log to catch up, so an entry it
	// proposed before a crash may apply after it and must not answer a new
	// proposal (a ResolveKeys answered so while the new one was dropped
	// left keys locked under a record marked resolved; found by the append
	// workload with kills).
	proposalIDs atomic.Uint64
	// marks are released restrictive-lock holders whose records do not say
	// so yet (resolved_marks.go).
	marks resolvedMarks
	// fetchingBound: establishVersionBounds has a fetch in flight.
	fetchingBound atomic.Bool
	// draining is set once HandOff starts: the node is about to stop.
	draining atomic.Bool
	// metaCache holds the decoded meta state (see metaView).
	metaCache struct {
		sync.Mutex
		view *metaView
	}
	// snapshotRate paces outgoing snapshot chunks (Config.SnapshotRate).
	snapshotRate *rate.Limiter
	// runningMoves are the ids of the move records this node is carrying
	// out (see trackMove).
	runningMoves struct {
		sync.Mutex
		ids map[string]bool
	}

	stopper chan struct{}
	// started is when Open ran, by leaseNow (refusesVotes).
	started  time.Duration
	stopOnce sync.Once
	wg       sync.WaitGroup
	// bg bounds the lifetime of background work started from the
	// scheduler (expiry proposals, recovery).
	bg       context.Context
	bgCancel context.CancelFunc
}

// Open opens or creates the node's data directory, bootstraps a new
// one-node cluster if it is empty, and starts the scheduler.
func Open(cfg Config) (*Node, error) {
	cfg.fillDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	eng, err := mvcc.Open(cfg.DataDir, mvcc.Config{FS: cfg.FS, Logger: cfg.Logger, MemTableBytes: cfg.MemTableBytes})
	if err != nil {
		return nil, err
	}
	n := &Node{
		cfg:       cfg,
		log:       cfg.Logger,
		eng:       eng,
		waits:     locks.NewWaitQueues(),
		deadlines: locks.NewDeadlines(),
		stopper:   make(chan struct{}),
		started:   leaseNow(),
	}
	n.bg, n.bgCancel = context.WithCancel(context.Background())
	var idStart [8]byte
	if _, err := rand.Read(idStart[:]); err != nil {
		eng.Close()
		return nil, fmt.Errorf("kv: proposal ids: %w", err)
	}
	n.proposalIDs.Store(binary.BigEndian.Uint64(idStart[:]))
	n.snapshotRate = rate.NewLimiter(rate.Inf, 0)
	if cfg.SnapshotRate > 0 {
		n.snapshotRate = rate.NewLimiter(rate.Limit(cfg.SnapshotRate), snapshotRateBurst)
	}
	n.sched = &scheduler{n: n, wakeCh: make(chan struct{}, 1), compactEvery: uint64(cfg.RaftLogKeep)}
	n.tso = newTSOService(n)
	n.metrics = newMetrics(cfg.Registerer, eng)
	if err := n.loadOrBootstrap(); err != nil {
		eng.Close()
		return nil, err
	}
	n.log = n.log.With("node", n.id)
	if cfg.Rebalance && cfg.Transport != nil {
		n.wg.Add(1)
		go func() { defer n.wg.Done(); n.rebalanceLoop() }()
	}
	// A group whose only voter is this node need not wait an election
	// timeout. Read before the scheduler goroutine, which owns storage,
	// starts.
	var solo []*replica
	for _, r := range n.replicas {
		if cs := r.storage.ConfState(); len(cs.GetVoters()) == 1 && cs.GetVoters()[0] == n.id && len(cs.GetVotersOutgoing()) == 0 {
			solo = append(solo, r)
		}
	}
	if cfg.Transport != nil {
		n.wg.Add(1)
		go func() { defer n.wg.Done(); n.replicaGCLoop() }()
	}
	n.wg.Add(3)
	go func() { defer n.wg.Done(); n.sched.run() }()
	go func() { defer n.wg.Done(); n.expiryLoop() }()
	go func() { defer n.wg.Done(); n.gcLoop() }()
	for _, r := range solo {
		n.submit(func() { _ = r.rn.Campaign() })
	}
	return n, nil
}

// submit runs fn on the scheduler goroutine at its next cycle.
func (n *Node) submit(fn func()) {
	n.sched.mu.Lock()
	n.sched.mu.fns = append(n.sched.mu.fns, fn)
	n.sched.mu.Unlock()
	n.sched.wake()
}

func (n *Node) loadOrBootstrap() error {
	db := n.eng.DB()
	ident := &cmdpb.NodeIdent{}
	found, err := mvcc.GetProto(db, mvcc.LocalKey("ident"), ident)
	if err != nil {
		return err
	}
	if found {
		n.id, n.cluster, n.buckets = ident.NodeId, ident.ClusterId, int(ident.Buckets)
	} else if n.cfg.Join != nil {
		if err := n.join(); err != nil {
			return err
		}
	} else {
		if err := n.bootstrap(); err != nil {
			return err
		}
	}
	groups := make([]uint32, 0, n.buckets+1)
	for g := range n.buckets {
		groups = append(groups, uint32(g))
	}
	groups = append(groups, metaGroup)
	for _, g := range groups {
		// A joined node's groups stay uninitialized until a leader sends
		// a snapshot.
		st, err := raftlog.Load(db, g, raftlog.Config{})
		if err != nil {
			return err
		}
		r, err := newReplica(n, g, st)
		if err != nil {
			return err
		}
		n.replicas = append(n.replicas, r)
	}
	n.meta = n.replicas[len(n.replicas)-1]
	return nil
}

// join creates the identity of a node joining an existing cluster.
func (n *Node) join() error {
	id := n.cfg.NodeID
	for id == 0 || id == 1 {
		var b [8]byte
		if _, err := io.ReadFull(rand.Reader, b[:]); err != nil {
			return err
		}
		id = binary.BigEndian.Uint64(b[:]) >> 1 // positive, for JSON tools that parse ids as numbers
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	resp, err := n.cfg.Join(ctx, id)
	if err != nil {
		return fmt.Errorf("kv: join: %w", err)
	}
	if resp.GetBuckets() < 1 || int(resp.GetBuckets()) > mvcc.MaxBuckets || resp.GetClusterId() == "" {
		return fmt.Errorf("kv: join: bad cluster identity %v", resp)
	}
	ident := &cmdpb.NodeIdent{NodeId: id, ClusterId: resp.GetClusterId(), Buckets: resp.GetBuckets()}
	b := n.eng.DB().NewBatch()
	defer b.Close()
	if err := mvcc.PutProto(b, mvcc.LocalKey("ident"), ident); err != nil {
		return err
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return err
	}
	n.id, n.cluster, n.buckets = ident.NodeId, ident.ClusterId, int(ident.Buckets)
	n.log.Info("joined a cluster", "cluster", ident.ClusterId, "node", id, "buckets", ident.Buckets)
	return nil
}

// bootstrap creates a new one-node cluster: every group with this node as
// its only voter, and the registry holding this node.
func (n *Node) bootstrap() error {
	db := n.eng.DB()
	var cluster [8]byte
	if _, err := io.ReadFull(rand.Reader, cluster[:]); err != nil {
		return err
	}
	nodeID := n.cfg.NodeID
	if nodeID == 0 {
		nodeID = 1
	}
	ident := &cmdpb.NodeIdent{NodeId: nodeID, ClusterId: hex.EncodeToString(cluster[:]), Buckets: uint32(n.cfg.Buckets)}
	cs := &raftpb.ConfState{Voters: []uint64{ident.NodeId}}
	b := db.NewBatch()
	defer b.Close()
	groups := make([]uint32, 0, n.cfg.Buckets+1)
	for g := range n.cfg.Buckets {
		groups = append(groups, uint32(g))
	}
	for _, g := range append(groups, metaGroup) {
		st, err := raftlog.Load(db, g, raftlog.Config{})
		if err != nil {
			return err
		}
		if err := st.Bootstrap(b, cs, initialIndex, initialTerm); err != nil {
			return err
		}
	}
	state := &cmdpb.MetaState{Nodes: []*cmdpb.NodeRecord{{NodeId: ident.NodeId, Addr: n.cfg.AdvertiseAddr}}}
	if err := mvcc.PutProto(b, mvcc.MetaKey("state"), state); err != nil {
		return err
	}
	if err := mvcc.PutProto(b, mvcc.LocalKey("ident"), ident); err != nil {
		return err
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return err
	}
	n.id, n.cluster, n.buckets = ident.NodeId, ident.ClusterId, int(ident.Buckets)
	n.log.Info("bootstrapped a new cluster", "cluster", ident.ClusterId, "buckets", ident.Buckets)
	return nil
}

// ID returns the node id.
func (n *Node) ID() uint64 { return n.id }

// Buckets returns the cluster's bucket count.
func (n *Node) Buckets() int { return n.buckets }

// StorageMetrics describes the node's Pebble engine (LSM levels,
// memtables, caches, compactions), as Pebble formats it.
func (n *Node) StorageMetrics() string { return n.eng.DB().Metrics().String() }

// Close hands its leaderships to other nodes (for up to a few election
// timeouts), stops the node's goroutines and closes the engine.
func (n *Node) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), n.leaderWait())
	n.HandOff(ctx)
	cancel()
	n.stopOnce.Do(func() {
		n.bgCancel()
		close(n.stopper)
	})
	n.wg.Wait()
	return n.eng.Close()
}

func (n *Node) replicaOf(key []byte) *replica {
	return n.replicas[mvcc.BucketOf(key, n.buckets)]
}

func (n *Node) replicaOfName(name string) *replica {
	return n.replicaOf([]byte(name))
}

// notify wakes the waiters an applied command concerns.
func (n *Node) notify(r *replica, eff locks.Effects) {
	for _, name := range eff.ReleasedNames {
		n.waits.Notify(namedResource(name))
	}
	for _, name := range eff.FreedTxns {
		n.waits.Notify(txnResource(name))
	}
	for _, k := range eff.ReleasedKeys {
		n.waits.Notify(keyResource(k))
	}
}

func namedResource(name string) string { return "n/" + name }
func txnResource(name string) string   { return "t/" + name }
func keyResource(key []byte) string    { return "k/" + string(key) }

// onLeaderReady runs (on the scheduler goroutine) when r becomes a ready
// leader: lock deadlines restart at now + ttl (never early), finished but
// unresolved restrictive locks are resolved, and the meta leader resets the
// oracle from its persisted bound.
func (n *Node) onLeaderReady(r *replica) {
	if r.isMeta() {
		state := &cmdpb.MetaState{}
		if _, err := mvcc.GetProto(n.eng.DB(), mvcc.MetaKey("state"), state); err != nil {
			panic(fmt.Sprintf("kv: read meta state: %v", err))
		}
		n.tso.reset(state.TsoBound)
		return
	}
	now := n.cfg.Clock.Now()
	db := n.eng.DB()
	var unresolved []string
	err := mvcc.ScanRecords(db, r.bucket, mvcc.KindNamedLock, nil, func(name, raw []byte) error {
		rec := &cmdpb.NamedLockRecord{}
		if err := unmarshalRecord(raw, rec); err != nil {
			return err
		}
		if rec.Held {
			n.deadlines.Set(locks.LeaseID{Kind: locks.Named, Name: string(name), Code: string(rec.Code)}, n.leaseTTL(millis(rec.TtlMs)), now)
		}
		return nil
	})
	if err == nil {
		err = mvcc.ScanRecords(db, r.bucket, mvcc.KindTxn, nil, func(name, raw []byte) error {
			rec := &cmdpb.TxnRecord{}
			if err := unmarshalRecord(raw, rec); err != nil {
				return err
			}
			if rec.Status == cmdpb.TxnStatus_PENDING {
				n.deadlines.Set(locks.LeaseID{Kind: locks.Restrictive, Name: string(name), Code: string(rec.Code)}, n.leaseTTL(millis(rec.TtlMs)), now)
			}
			if needsResolving(rec) {
				unresolved = append(unresolved, string(name))
			}
			return nil
		})
	}
	if err != nil {
		panic(fmt.Sprintf("kv: scan lock records of bucket %d: %v", r.bucket, err))
	}
	sort.Strings(unresolved)
	for _, name := range unresolved {
		n.goBackground(func(ctx context.Context) {
			if err := n.resolveFinished(ctx, name); err != nil {
				n.log.Warn("resolving a finished restrictive lock", "lock", name, "err", err)
			}
		})
	}
}

// onLeaderLost forgets leader-only state of r and wakes its waiters so they
// find out.
func (n *Node) onLeaderLost(r *replica) {
	if r.isMeta() {
		n.tso.lost()
		return
	}
	// The new leader restarts these deadlines; expiring them from here
	// could only fail (and did, every 100 ms, flooding the log).
	n.deadlines.RemoveIf(func(id locks.LeaseID) bool { return n.replicaOfName(id.Name) == r })
	n.waits.NotifyAll()
}

// goBackground runs fn in a goroutine the node waits for on Close.
func (n *Node) goBackground(fn func(ctx context.Context)) {
	select {
	case <-n.stopper:
		return
	default:
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		fn(n.bg)
	}()
}

// newCode returns a fresh 128-bit lock code.
func (n *Node) newCode() ([]byte, error) {
	code := make([]byte, 16)
	if _, err := io.ReadFull(n.cfg.Rand, code); err != nil {
		return nil, fmt.Errorf("kv: lock code: %w", err)
	}
	return code, nil
}

// expiryLoop proposes the release of every lock whose deadline passed.
func (n *Node) expiryLoop() {
	t := time.NewTicker(n.cfg.ExpiryInterval)
	defer t.Stop()
	inFlight := make(map[locks.LeaseID]bool)
	var mu sync.Mutex
	sweeper := &resolveSweeper{n: n, inFlight: make(map[string]bool)}
	orphans := newOrphanSweeper(n)
	lastSweep, lastOrphanSweep := time.Now(), time.Now()
	for {
		select {
		case <-n.stopper:
			return
		case <-t.C:
		}
		if time.Since(lastSweep) >= resolveSweepInterval {
			lastSweep = time.Now()
			sweeper.sweep()
		}
		if time.Since(lastOrphanSweep) >= n.cfg.OrphanSweepInterval {
			lastOrphanSweep = time.Now()
			orphans.sweep()
		}
		for _, id := range n.deadlines.Expired(n.cfg.Clock.Now()) {
			mu.Lock()
			busy := inFlight[id]
			inFlight[id] = true
			mu.Unlock()
			if busy {
				continue
			}
			n.goBackground(func(ctx context.Context) {
				defer func() { mu.Lock(); delete(inFlight, id); mu.Unlock() }()
				err := n.expire(ctx, id)
				switch {
				case err == nil, errors.Is(err, context.Canceled):
				case errors.Is(err, ErrNotLeader):
					n.deadlines.Remove(id) // the leader elsewhere tracks it
				case errors.Is(err, ErrUnavailable):
					n.log.Debug("expiring a lock; will retry", "lock", id.Name, "err", err)
				default:
					n.log.Warn("expiring a lock", "lock", id.Name, "err", err)
				}
			})
		}
	}
}

// gcHorizon is the oldest version a snapshot may be read at when the
// oracle's time is now: GC collects below it (gcLoop), and snapshot reads
// below it are refused (snapshotTS).
func (n *Node) gcHorizon(now ts.Timestamp) ts.Timestamp {
	if w := ts.FromDuration(n.cfg.GCWindow); now > w {
		return now - w
	}
	return 0
}

// gcLoop periodically garbage-collects versions older than the GC window.
func (n *Node) gcLoop() {
	t := time.NewTicker(n.cfg.GCInterval)
	defer t.Stop()
	for {
		select {
		case <-n.stopper:
			return
		case <-t.C:
		}
		now, err := n.tso.now(n.bg)
		if err != nil {
			continue
		}
		before := n.gcHorizon(now)
		for _, r := range n.replicas[:n.buckets] {
			if !r.isReadyLeader() {
				continue
			}
			ctx, cancel := context.WithTimeout(n.bg, 10*time.Second)
			_, err := r.propose(ctx, &cmdpb.Command{Body: &cmdpb.Command_Gc{Gc: &cmdpb.GC{Ts: uint64(before)}}})
			cancel()
			if err != nil {
				n.log.Debug("gc", "bucket", r.bucket, "err", err)
			}
		}
	}
}

// establishVersionBounds makes the unknown version bounds of this node's
// buckets known (locks.VersionBound), from one fresh oracle timestamp
// taken in the background (scheduler goroutine; one fetch at a time).
func (n *Node) establishVersionBounds() {
	var gens map[*replica]uint64 // allocated only when one is unknown: this runs every few ticks
	for _, r := range n.replicas[:n.buckets] {
		if gen, unknown := r.cache.Versions.Unknown(); unknown {
			if gens == nil {
				gens = make(map[*replica]uint64)
			}
			gens[r] = gen
		}
	}
	if len(gens) == 0 || !n.fetchingBound.CompareAndSwap(false, true) {
		return
	}
	n.goBackground(func(ctx context.Context) {
		defer n.fetchingBound.Store(false)
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		// Asked after Unknown returned gens: above every version those
		// buckets held then.
		fresh, err := n.tso.now(ctx)
		if err != nil {
			return // the next maintenance tick asks again
		}
		n.submit(func() {
			for r, gen := range gens {
				r.cache.Versions.Establish(gen, fresh)
			}
		})
	})
}

func unmarshalRecord(raw []byte, m proto.Message) error {
	if err := proto.Unmarshal(raw, m); err != nil {
		return fmt.Errorf("kv: corrupt record: %w", err)
	}
	return nil
}

func (r *replica) isReadyLeader() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.mu.ready
}
