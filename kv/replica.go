package kv

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/opencluster/opencluster/kv/raftlog"
	"github.com/opencluster/opencluster/locks"
	"github.com/opencluster/opencluster/mvcc"
	"github.com/opencluster/opencluster/rpc/cmdpb"
)

// metaGroup is the Raft group id of the meta group; bucket b's group is b.
const metaGroup = uint32(1 << 16)

// replica is this node's member of one Raft group. The scheduler goroutine
// owns rn and storage; request goroutines talk to it through mu.
type replica struct {
	node    *Node
	group   uint32
	bucket  mvcc.Bucket // meaningless for the meta group
	rn      *raft.RawNode
	storage *raftlog.Storage
	// cache is the apply path's memory of the bucket (its key-lock count,
	// version bound and lock records; scheduler goroutine only).
	cache *locks.Cache
	// noKeyLocks: the bucket's stored state holds no key-lock record, so a
	// read need not look for one. The scheduler clears it before it commits
	// a batch that may hold one and sets it only after a batch left none,
	// so it never claims "none" while a key lock is in the database; false
	// when unknown (a new replica, a snapshot on its way in).
	noKeyLocks atomic.Bool
	// queued: proposals or reads wait in mu for the scheduler's hand-off.
	// Set after they are queued, and cleared by the scheduler before it
	// takes them, so a queue is never left behind unflagged.
	queued atomic.Bool
	// touched: a RawNode call may have left this group a Ready (a step, a
	// hand-off, an Advance that left more); the scheduler asks HasReady
	// only of touched groups, and of all of them after a tick or a
	// submitted function (scheduler goroutine only).
	touched bool
	// inRound: the group's Ready is in the round whose log write is being
	// synced, so it takes no message before that round advances it
	// (syncWaitServingAcks; scheduler goroutine only).
	inRound bool

	// gate orders write timestamps before snapshot reads (invariant 4):
	// writers hold it shared from taking a timestamp until their proposal is
	// queued; a snapshot reader takes it exclusively once, after choosing R.
	gate sync.RWMutex

	// Mutex order: replica.mu before WaitQueues.mu; never held across I/O.
	mu struct {
		sync.Mutex
		// pending proposals not yet handed to raft, in order.
		pending []*proposal
		// waiting maps proposal ids to proposals handed to raft.
		waiting map[uint64]*proposal
		// reads wait for the next ReadIndex round.
		reads []*readReq
		// readRounds maps a ReadIndex context to its round.
		readRounds map[uint64]readRound
		nextRound  uint64
		// commit and term are the last Ready's (noteHardState).
		commit, term uint64
		// leaderGen counts changes of leadership and term.
		leaderGen uint64
		// lease is this leader's read lease (lease.go).
		lease   leaseState
		applied uint64
		// appliedCh is closed and replaced whenever applied grows.
		appliedCh chan struct{}
		leader    bool
		// ready: leader and every entry of earlier terms applied.
		ready bool
		// readyCh is closed when ready becomes true.
		readyCh chan struct{}
		// readyIndex is the first index of this leader's term.
		readyIndex uint64
		// leaderID is the group's leader as last seen (0: none known).
		leaderID uint64
		// voters and learners are the group's configuration as applied.
		voters, learners []uint64
		// epoch is the index of the configuration's last change (or a
		// later index that saw it); reported is the epoch this node last
		// recorded in the meta group's placement table as leader, and
		// reporting says a report is in flight.
		epoch, reported uint64
		reporting       bool
	}
	// The scheduler's own state of this replica.
	lastConfChange time.Time // when this node last proposed a conf change
	lastTransfer   time.Time // when this node last asked to transfer leadership
	// confIndex is the index of the last configuration change in this
	// replica's log (or, after a restart, an index no lower), and
	// toldCommit the highest commit index sent to each follower in an
	// append or heartbeat (bucket groups only: the meta group skips no
	// append): together they say whether a commit-only append would tell
	// a follower that a configuration change committed
	// (commitsConfChange).
	confIndex  uint64
	toldCommit map[uint64]uint64
	// unfloored lists the read rounds started since the last Ready whose
	// floor is not set yet (setFloors).
	unfloored []uint64
}

type proposal struct {
	id   uint64
	data []byte
	done chan proposalResult // buffered: apply never blocks
	// term, when set, is the term in which this node led the group when
	// the proposal was made: the scheduler fails it with ErrNotApplied,
	// rather than forward it or propose it under a later leadership,
	// unless this node still leads the group in that term when it hands
	// the proposal to Raft (propose, stampedWrite).
	term uint64
}

type proposalResult struct {
	res *cmdpb.Result
	err error
}

type readReq struct {
	done     chan uint64 // receives the read index; buffered
	snapshot bool        // wait for the round's floor too
	// leaderGen is the replica's when the request was made: a snapshot
	// reader waiting for its floor gives up if the leadership changes,
	// since the new leader may drop the entries above the commit index.
	leaderGen uint64
}

func newReplica(n *Node, group uint32, st *raftlog.Storage) (*replica, error) {
	r := &replica{node: n, group: group, bucket: mvcc.Bucket(group), storage: st, cache: locks.NewCache()}
	r.mu.waiting = make(map[uint64]*proposal)
	r.mu.readRounds = make(map[uint64]readRound)
	r.mu.appliedCh = make(chan struct{})
	r.mu.readyCh = make(chan struct{})
	r.mu.applied = st.Applied()
	r.setConfState(st.ConfState(), st.Applied())
	// The log may hold a configuration change past the applied index;
	// take its last entry for one (at worst a few more commit-only
	// appends go out).
	last, err := st.LastIndex()
	if err != nil {
		return nil, err
	}
	r.confIndex, r.toldCommit = last, make(map[uint64]uint64)
	rn, err := r.newRawNode(st)
	if err != nil {
		return nil, err
	}
	r.rn = rn
	return r, nil
}

// newRawNode starts this replica's Raft state machine on st.
func (r *replica) newRawNode(st *raftlog.Storage) (*raft.RawNode, error) {
	n := r.node
	cfg := &raft.Config{
		ID:              n.id,
		ElectionTick:    n.cfg.ElectionTicks,
		HeartbeatTick:   n.cfg.HeartbeatTicks,
		Storage:         st,
		Applied:         st.Applied(),
		MaxSizePerMsg:   1 << 20,
		MaxInflightMsgs: 256,
		// Bound memory if a group cannot commit (no quorum).
		MaxUncommittedEntriesSize: 64 << 20,
		CheckQuorum:               true,
		PreVote:                   true,
		// A leader that a configuration change removed steps down at once
		// rather than lead a group it is no longer in.
		StepDownOnRemoval: true,
		ReadOnlyOption:    raft.ReadOnlySafe,
		Logger:            &raftLogger{l: n.log.With("group", r.group)},
	}
	rn, err := raft.NewRawNode(cfg)
	if err != nil {
		return nil, fmt.Errorf("kv: group %d: %w", r.group, err)
	}
	return rn, nil
}

// keyLocksMayAppear is called before an apply batch of this replica's
// commits: unless the batch is known to leave the bucket without key
// locks, readers must look for them from now on (scheduler goroutine).
func (r *replica) keyLocksMayAppear() {
	if !r.cache.KeyLocks.KnownNone() {
		r.noKeyLocks.Store(false)
	}
}

// publishKeyLocks is called after the batch committed: it tells readers
// whether the bucket now holds no key lock, recounting if the apply path
// lost count (scheduler goroutine). The meta group holds no bucket.
func (r *replica) publishKeyLocks() error {
	if r.isMeta() {
		return nil
	}
	none, err := r.cache.KeyLocks.None(r.node.eng.DB(), r.bucket)
	if err != nil {
		return err
	}
	r.noKeyLocks.Store(none)
	return nil
}

// invalidateCache forgets what the apply path knew of the bucket, before
// its stored state is replaced (scheduler goroutine).
func (r *replica) invalidateCache() {
	r.noKeyLocks.Store(false)
	r.cache.Invalidate()
}

func (r *replica) isMeta() bool { return r.group == metaGroup }

// waitReady blocks until this replica is a ready leader (invariant 2). It
// gives up after a few election timeouts, so that a request on a node that
// does not lead the group fails over instead of waiting out its deadline.
func (r *replica) waitReady(ctx context.Context) error {
	r.mu.Lock()
	ch, leader := r.mu.readyCh, r.mu.leaderID
	r.mu.Unlock()
	select {
	case <-ch:
		return nil
	default:
	}
	if leader != 0 && leader != r.node.id {
		return &NotLeaderError{LeaderID: leader, Addr: r.node.AddrOf(leader)}
	}
	timer := time.NewTimer(r.node.leaderWait())
	defer timer.Stop()
	select {
	case <-ch:
		return nil
	case <-timer.C:
		return fmt.Errorf("%w: %w: this node does not lead group %d (leader: node %d)", ErrUnavailable, ErrNotApplied, r.group, leader)
	case <-ctx.Done():
		return fmt.Errorf("%w: group %d has no ready leader: %w", ErrUnavailable, r.group, ctx.Err())
	case <-r.node.stopper:
		return fmt.Errorf("%w: node stopping", ErrUnavailable)
	}
}

// setLeaderID records the group's leader as Raft reports it.
func (r *replica) setLeaderID(id uint64) {
	r.mu.Lock()
	r.mu.leaderID = id
	r.mu.Unlock()
}

// setConfState publishes the group's configuration, as of index, for
// Status and placement.
func (r *replica) setConfState(cs *raftpb.ConfState, index uint64) {
	r.mu.Lock()
	r.voidLeaseLocked() // the quorum may have changed
	r.mu.epoch = max(r.mu.epoch, index)
	r.mu.voters, r.mu.learners = configMembers(cs.GetVoters(), cs.GetVotersOutgoing(), cs.GetLearners(), cs.GetLearnersNext())
	r.mu.Unlock()
}

// configMembers lists a configuration's nodes once each, sorted. In a
// joint configuration a node may be a voter of both halves, or a voter of
// the outgoing half and a learner next: it counts as a voter while it
// votes in either half.
func configMembers(incoming, outgoing, learners, learnersNext []uint64) (voters, others []uint64) {
	voters = slices.Compact(slices.Sorted(slices.Values(append(slices.Clone(incoming), outgoing...))))
	others = slices.Compact(slices.Sorted(slices.Values(append(slices.Clone(learners), learnersNext...))))
	others = slices.DeleteFunc(others, func(id uint64) bool { return slices.Contains(voters, id) })
	return voters, others
}

// membership returns the leader and configuration last seen.
func (r *replica) membership() (leader uint64, voters, learners []uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.mu.leaderID, slices.Clone(r.mu.voters), slices.Clone(r.mu.learners)
}

// propose replicates cmd and returns its apply result. A bucket's
// command must not apply outside the leadership it was proposed under:
// unless this node is the bucket's ready leader now and still leads it in
// the same term when the scheduler hands the command to Raft, it fails
// with ErrNotApplied (and the server retries it on the new leader) instead
// of being forwarded by Raft or proposed under a later leadership of this
// node. Appended by this node as leader, the entry is then either in the
// log of every later ready leader (which has applied it before it serves)
// or never applies: a later leader that serves without it holds its own
// term's entry in a quorum, which no log holding this one can win an
// election against. What depends on it: a timestamped write, which would
// otherwise apply below a snapshot read another leader served meanwhile
// (stampedWrite, invariant 4); a lock expiry, which would release a lock
// the new leader has seen kept alive since; a grant, whose deadline only
// the leader that proposed it tracks (invariant 8); a TxnBegin whose keys
// may already be locked (txnLiveHere). The meta group's commands are
// forwarded: any node reports to it.
func (r *replica) propose(ctx context.Context, cmd *cmdpb.Command) (*cmdpb.Result, error) {
	if err := r.waitReady(ctx); err != nil {
		return nil, err
	}
	var term uint64
	if !r.isMeta() {
		var err error
		if term, err = r.leaderTerm(); err != nil {
			return nil, err
		}
	}
	return r.await(ctx, r.enqueue(cmd, term))
}

// leaderTerm returns the term this node leads the group in, or a
// retryable error if it is not the group's ready leader.
func (r *replica) leaderTerm() (uint64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.mu.ready {
		return 0, fmt.Errorf("%w: %w: no longer the leader of group %d", ErrUnavailable, ErrNotApplied, r.group)
	}
	return r.mu.term, nil
}

// enqueue queues cmd for the scheduler without waiting; a term other than
// 0 binds it to this node's leadership in that term (see propose).
func (r *replica) enqueue(cmd *cmdpb.Command, term uint64) *proposal {
	cmd.ProposalId, cmd.Proposer = r.node.proposalIDs.Add(1), r.node.id
	data, err := mvcc.Marshal(cmd)
	if err != nil {
		panic(fmt.Sprintf("kv: marshal command: %v", err))
	}
	p := &proposal{id: cmd.ProposalId, data: data, done: make(chan proposalResult, 1), term: term}
	r.mu.Lock()
	r.mu.pending = append(r.mu.pending, p)
	r.mu.Unlock()
	r.queued.Store(true)
	r.node.sched.wake()
	return p
}

func (r *replica) await(ctx context.Context, p *proposal) (*cmdpb.Result, error) {
	select {
	case res := <-p.done:
		return res.res, res.err
	case <-ctx.Done():
		r.mu.Lock()
		delete(r.mu.waiting, p.id)
		r.mu.Unlock()
		return nil, ctx.Err()
	case <-r.node.stopper:
		return nil, fmt.Errorf("%w: node stopping", ErrUnavailable)
	}
}

// linearizable waits until this replica's applied state reflects every
// write acknowledged before the call (Raft ReadIndex).
func (r *replica) linearizable(ctx context.Context) error {
	if err := r.waitReady(ctx); err != nil {
		return err
	}
	return r.awaitRead(ctx, r.requestRead(false))
}

// requestRead queues a ReadIndex request for the scheduler's next round.
// Requests queued on many replicas before any is awaited share one round.
// A snapshot request also waits for every entry appended when its round
// starts, applied or dropped: the writes queued before a snapshot read
// passed the proposal gate may not be committed yet, and the commit index
// that ReadIndex answers does not cover them (invariant 4).
func (r *replica) requestRead(snapshot bool) *readReq {
	req := &readReq{done: make(chan uint64, 1), snapshot: snapshot}
	r.mu.Lock()
	req.leaderGen = r.mu.leaderGen
	r.mu.reads = append(r.mu.reads, req)
	r.mu.Unlock()
	r.queued.Store(true)
	r.node.sched.wake()
	return req
}

// awaitRead waits for a requested read index and for it to be applied.
func (r *replica) awaitRead(ctx context.Context, req *readReq) error {
	var index uint64
	select {
	case i, ok := <-req.done:
		if !ok {
			return fmt.Errorf("%w: %w: group %d lost leadership during a read", ErrUnavailable, ErrNotApplied, r.group)
		}
		index = i
	case <-ctx.Done():
		return ctx.Err()
	case <-r.node.stopper:
		return fmt.Errorf("%w: node stopping", ErrUnavailable)
	}
	if req.snapshot {
		return r.waitAppliedLeading(ctx, index, &req.leaderGen)
	}
	return r.waitApplied(ctx, index)
}

func (r *replica) waitApplied(ctx context.Context, index uint64) error {
	return r.waitAppliedLeading(ctx, index, nil)
}

// waitAppliedLeading waits until index is applied here; with gen set (a
// snapshot reader's floor) it fails, retryably, if the leadership changes
// from *gen first.
func (r *replica) waitAppliedLeading(ctx context.Context, index uint64, gen *uint64) error {
	for {
		r.mu.Lock()
		applied, ch, same := r.mu.applied, r.mu.appliedCh, gen == nil || r.mu.leaderGen == *gen
		r.mu.Unlock()
		if applied >= index {
			return nil
		}
		if !same {
			return fmt.Errorf("%w: %w: group %d changed leadership during a snapshot read", ErrUnavailable, ErrNotApplied, r.group)
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-r.node.stopper:
			return fmt.Errorf("%w: node stopping", ErrUnavailable)
		}
	}
}

// barrier makes every write acknowledged before the call visible to the
// reads that follow, on every replica in rs; with snapshot set it also waits
// out the writes that took their timestamp before the call (invariant 4).
// All replicas' ReadIndex requests go out in one scheduler round, so a
// scan of every bucket costs one round, not one per bucket.
func barrier(ctx context.Context, rs []*replica, snapshot bool) error {
	for _, r := range rs {
		if err := r.waitReady(ctx); err != nil {
			return err
		}
	}
	if snapshot {
		for _, r := range rs {
			r.gate.Lock()
			//lint:ignore SA2001 an empty critical section waits out the writers in flight.
			r.gate.Unlock()
		}
	}
	reqs := make([]*readReq, len(rs))
	for i, r := range rs {
		reqs[i] = r.requestRead(snapshot)
	}
	for i, r := range rs {
		if err := r.awaitRead(ctx, reqs[i]); err != nil {
			return err
		}
	}
	return nil
}

// The scheduler-side half. Everything below runs on the scheduler goroutine.

// handOff gives queued proposals and reads to raft.
func (r *replica) handOff() {
	r.mu.Lock()
	pending, reads := r.mu.pending, r.mu.reads
	r.mu.pending, r.mu.reads = nil, nil
	leader := r.mu.leader
	var round uint64
	if len(reads) > 0 {
		r.mu.nextRound++
		round = r.mu.nextRound
		// Taken before the heartbeat goes out: the lease it may renew
		// counts from no later than when the followers heard it.
		r.mu.readRounds[round] = readRound{reads: reads, start: leaseNow(), epoch: r.mu.lease.epoch}
	}
	for _, p := range pending {
		r.mu.waiting[p.id] = p
	}
	r.mu.Unlock()
	var st *raft.BasicStatus
	for _, p := range pending {
		if p.term != 0 {
			if st == nil {
				s := r.rn.BasicStatus()
				st = &s
			}
			if st.RaftState != raft.StateLeader || st.GetTerm() != p.term {
				r.finish(p.id, nil, fmt.Errorf("%w: %w: no longer the group's leader in term %d", ErrUnavailable, ErrNotApplied, p.term))
				continue
			}
		}
		if err := r.rn.Propose(p.data); err != nil {
			r.finish(p.id, nil, fmt.Errorf("%w: %w: propose: %w", ErrUnavailable, ErrNotApplied, err))
		}
	}
	if round != 0 {
		if !leader {
			r.failReads(round)
			return
		}
		var rctx [8]byte
		binary.BigEndian.PutUint64(rctx[:], round)
		r.rn.ReadIndex(rctx[:])
		r.node.metrics.readRounds.Inc()
		r.unfloored = append(r.unfloored, round)
	}
}

func (r *replica) failReads(round uint64) {
	r.mu.Lock()
	rr := r.mu.readRounds[round]
	delete(r.mu.readRounds, round)
	r.mu.lease.renewing = false
	r.mu.Unlock()
	for _, req := range rr.reads {
		close(req.done) // a zero index read fails the ready check below
	}
}

// finish answers a proposal, if its proposer still waits.
func (r *replica) finish(id uint64, res *cmdpb.Result, err error) {
	r.mu.Lock()
	p := r.mu.waiting[id]
	delete(r.mu.waiting, id)
	r.mu.Unlock()
	if p != nil {
		p.done <- proposalResult{res: res, err: err}
	}
}

// setFloors sets the floor of the rounds started since the last Ready to
// the last index appended now: this Ready holds every proposal handed to
// Raft before them.
func (r *replica) setFloors() {
	if len(r.unfloored) == 0 {
		return
	}
	last, _ := r.storage.LastIndex()
	r.mu.Lock()
	for _, round := range r.unfloored {
		if rr, ok := r.mu.readRounds[round]; ok {
			rr.floor = last
			r.mu.readRounds[round] = rr
		}
	}
	r.mu.Unlock()
	r.unfloored = r.unfloored[:0]
}

func (r *replica) readStates(states []raft.ReadState) {
	for _, rs := range states {
		if len(rs.RequestCtx) != 8 {
			continue
		}
		round := binary.BigEndian.Uint64(rs.RequestCtx)
		r.mu.Lock()
		rr, ok := r.mu.readRounds[round]
		delete(r.mu.readRounds, round)
		if ok {
			r.renewLeaseLocked(rr)
			r.mu.lease.renewing = false
		}
		r.mu.Unlock()
		floor := rr.floor
		if ok && floor == 0 {
			floor, _ = r.storage.LastIndex() // no Ready since it started; later is safe
		}
		for _, req := range rr.reads {
			if req.snapshot {
				req.done <- max(rs.Index, floor)
			} else {
				req.done <- rs.Index
			}
		}
	}
}

// setApplied publishes a new applied index to waiting readers.
func (r *replica) setApplied(index uint64) {
	r.mu.Lock()
	if index <= r.mu.applied {
		r.mu.Unlock()
		return
	}
	r.mu.applied = index
	close(r.mu.appliedCh)
	r.mu.appliedCh = make(chan struct{})
	becameReady := r.mu.leader && !r.mu.ready && index >= r.mu.readyIndex
	if becameReady {
		r.mu.ready = true
		close(r.mu.readyCh)
	}
	r.mu.Unlock()
	if becameReady {
		r.node.onLeaderReady(r)
	}
}

// setLeader records a change of leadership seen in a Ready.
func (r *replica) setLeader(leader bool, termStart uint64) {
	r.mu.Lock()
	was := r.mu.leader
	r.mu.leader = leader
	if leader != was {
		r.leadershipChangedLocked()
	}
	var failed []*proposal
	var rounds []uint64
	switch {
	case leader && !was:
		r.mu.readyIndex = termStart
		if r.mu.applied >= termStart {
			r.mu.ready = true
			close(r.mu.readyCh)
			defer r.node.onLeaderReady(r)
		}
	case !leader && was:
		r.mu.reported = 0
		if r.mu.ready {
			r.mu.readyCh = make(chan struct{})
		}
		r.mu.ready = false
		for id, p := range r.mu.waiting {
			failed = append(failed, p)
			delete(r.mu.waiting, id)
		}
		for round := range r.mu.readRounds {
			rounds = append(rounds, round)
		}
		defer r.node.onLeaderLost(r)
	}
	r.mu.Unlock()
	for _, p := range failed {
		p.done <- proposalResult{err: fmt.Errorf("%w: leadership of group %d lost", ErrUnavailable, r.group)}
	}
	for _, round := range rounds {
		r.failReads(round)
	}
}

// apply applies one committed normal entry into the apply batch.
func (r *replica) apply(b mvcc.ReadWriter, e *raftpb.Entry) (uint64, *cmdpb.Result, locks.Effects, error) {
	cmd := &cmdpb.Command{}
	if err := unmarshalCommand(e.Data, cmd); err != nil {
		return 0, nil, locks.Effects{}, err
	}
	id := cmd.ProposalId
	if cmd.Proposer != 0 && cmd.Proposer != r.node.id {
		id = 0 // another node's proposal: nobody here waits for it
	}
	if r.isMeta() {
		res, err := applyMeta(b, cmd)
		return id, res, locks.Effects{}, err
	}
	res, eff, err := locks.ApplyCached(b, r.bucket, cmd, r.cache)
	return id, res, eff, err
}
