package kv

import (
	"bytes"
	"context"
	"time"

	"go.etcd.io/raft/v3/raftpb"
)

// Read leases. A linearizable read normally costs a ReadIndex round: a
// heartbeat to the followers and their answers, for every batch of reads
// of every group. A leader whose ReadIndex round started at s was
// answered by a quorum, and each member of it heard from the leader at or
// after s. With CheckQuorum, such a member ignores vote requests until its
// election timeout has passed since (raft's inLease), and it does not
// campaign before either. That takes ElectionTicks of its ticks, and its
// ticks come no faster than TickInterval of real time, except one late
// tick that a busy scheduler may still receive at once; so no other
// leader can be elected before s + (ElectionTicks-2)*TickInterval. Until
// then, less a margin (leaseDuration), the leader serves reads from its
// applied state, once it applied its commit index, without a round.
//
// What would break the argument voids the lease at once:
//   - MsgTimeoutNow, the leadership transfer that makes a follower
//     campaign at once and its voters ignore their lease: the lease is
//     voided before the message is sent (outgoing), and no round renews it
//     for the rest of the leadership, since the message may be delivered
//     whenever until the term ends, even after the transfer was given up;
//   - a configuration change or snapshot, which changes the quorum (and
//     rounds that started before it do not renew it: the epoch);
//   - losing the leadership;
//   - a node that restarts forgets that it heard from the leader, so it
//     ignores vote requests for an election timeout after it starts
//     (stepInbox), whether or not it uses leases itself.
//
// A process pause is the remaining hazard: a leader stopped between its
// lease check and its read would read after the lease ended. So a read is
// checked against the lease after it ran and repeated with a ReadIndex
// round if the lease ended meanwhile (readLinearizable). The lease clock
// (leaseNow) counts a suspended machine's sleep too.
//
// The lease counts real time, as Raft's ticks do, not Config.Clock:
// skewing the lock clock must not stretch it. Every node of a cluster
// must run with the same TickInterval and ElectionTicks.

// leaseMargin is the share of the lease kept back for timer slack and
// for clock-rate differences between nodes.
const leaseMargin = 0.2

// leaseDuration is how long after the start of a ReadIndex round that a
// quorum answered the leader may serve reads without another round (0:
// never).
func (n *Node) leaseDuration() time.Duration {
	if n.cfg.DisableLeaseReads || n.cfg.ElectionTicks < 3 {
		return 0
	}
	safe := time.Duration(n.cfg.ElectionTicks-2) * n.cfg.TickInterval
	return safe - time.Duration(float64(safe)*leaseMargin)
}

// readRound is a ReadIndex round in flight: its readers, when it started,
// the lease epoch then, and its floor: the last index appended when it
// started, which snapshot readers wait for too (replica.readStates).
type readRound struct {
	reads []*readReq
	start time.Duration // leaseNow
	epoch uint64
	floor uint64
}

// leaseState is a leader's read lease (in replica.mu).
type leaseState struct {
	// expiry is when the lease ends, by leaseNow (zero: no lease).
	expiry time.Duration
	// epoch grows whenever the lease is voided; a round that started in an
	// earlier epoch does not renew it.
	epoch uint64
	// renewing: a round to renew the lease is in flight.
	renewing bool
	// handedOver: a MsgTimeoutNow went out during this leadership; no
	// lease until the leadership changes.
	handedOver bool
}

// voidLeaseLocked ends the lease now and keeps rounds in flight from
// renewing it. The caller holds r.mu.
func (r *replica) voidLeaseLocked() {
	r.mu.lease.expiry = 0
	r.mu.lease.epoch++
}

// renewLeaseLocked extends the lease after round, answered by a quorum.
// The caller holds r.mu.
func (r *replica) renewLeaseLocked(round readRound) {
	d := r.node.leaseDuration()
	if d == 0 || !r.mu.leader || r.mu.lease.handedOver || round.epoch != r.mu.lease.epoch {
		return
	}
	r.mu.lease.expiry = max(r.mu.lease.expiry, round.start+d)
}

// noteHardState records the group's commit index as a Ready reports it
// (on a leader, the highest index committed anywhere: every write already
// acknowledged is at or below it), and treats a new term as a change of
// leadership, even one that a Ready's SoftState would not show.
func (r *replica) noteHardState(hs *raftpb.HardState) {
	if hs == nil {
		return
	}
	r.mu.Lock()
	r.mu.commit = max(r.mu.commit, hs.GetCommit())
	if hs.GetTerm() > r.mu.term {
		r.mu.term = hs.GetTerm()
		r.leadershipChangedLocked()
	}
	r.mu.Unlock()
}

// leadershipChangedLocked voids the lease and wakes the snapshot readers
// that wait for a floor this leadership set (awaitRead). The caller holds
// r.mu.
func (r *replica) leadershipChangedLocked() {
	r.voidLeaseLocked()
	r.mu.lease.handedOver = false
	r.mu.leaderGen++
	close(r.mu.appliedCh)
	r.mu.appliedCh = make(chan struct{})
}

// leased reports whether this replica is a ready leader holding a read
// lease, and if so the lease's epoch and the index a read must wait for.
// It starts a renewal round when less than half the lease is left.
func (r *replica) leased() (epoch, index uint64, ok bool) {
	return r.leasedRenewing(true)
}

// leasedRenewing is leased; renewal false never starts a renewal round
// (for callers that only use a lease already there).
func (r *replica) leasedRenewing(renewal bool) (epoch, index uint64, ok bool) {
	now := leaseNow()
	r.mu.Lock()
	if !r.mu.ready || now >= r.mu.lease.expiry {
		r.mu.Unlock()
		return 0, 0, false
	}
	epoch, index = r.mu.lease.epoch, r.mu.commit
	renew := renewal && !r.mu.lease.renewing && r.mu.lease.expiry-now < r.node.leaseDuration()/2
	if renew {
		r.mu.lease.renewing = true
	}
	r.mu.Unlock()
	if renew {
		r.requestRead(false) // answered to nobody: it only renews the lease
	}
	return epoch, index, true
}

// leasedApplied reports whether this replica holds a read lease and has
// applied the lease's commit index, so that a read of its applied state
// made now is linearizable if leaseHeld(epoch) still holds after it. It
// only uses a lease that reads keep renewed: renewing one for this alone
// cost more rounds than it saved.
func (r *replica) leasedApplied() (epoch uint64, ok bool) {
	epoch, index, ok := r.leasedRenewing(false)
	if !ok {
		return 0, false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return epoch, r.mu.applied >= index
}

// leaseHeld reports whether the lease of epoch still holds.
func (r *replica) leaseHeld(epoch uint64) bool {
	now := leaseNow()
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.mu.ready && r.mu.lease.epoch == epoch && now < r.mu.lease.expiry
}

// readLinearizable runs read so that it reflects every write acknowledged
// before the call: under the replica's lease when it holds one (read runs
// once the commit index is applied, and again after a ReadIndex round if
// the lease ended while it ran), else after a ReadIndex round.
func (r *replica) readLinearizable(ctx context.Context, read func() error) error {
	if epoch, index, ok := r.leased(); ok {
		if err := r.waitApplied(ctx, index); err != nil {
			return err
		}
		err := read()
		if err != nil {
			return err
		}
		if r.leaseHeld(epoch) {
			r.node.metrics.leaseReads.Inc()
			return nil
		}
	}
	if err := r.linearizable(ctx); err != nil {
		return err
	}
	return read()
}

// voidLeaseBefore voids r's lease if msgs hand its leadership over
// (scheduler goroutine, before msgs are sent).
func (r *replica) voidLeaseBefore(msgs []*raftpb.Message) {
	for _, m := range msgs {
		if m.GetType() == raftpb.MsgTimeoutNow {
			r.mu.Lock()
			r.voidLeaseLocked()
			r.mu.lease.handedOver = true
			r.mu.Unlock()
			return
		}
	}
}

// campaignTransfer is the context etcd raft puts on the vote requests of
// a campaign that a leader's MsgTimeoutNow started.
var campaignTransfer = []byte("CampaignTransfer")

// isPlainVoteRequest reports whether m asks for a vote or pre-vote in an
// election that no leader handed over. A handed-over election is safe to
// vote in even right after a restart: the leader that started it voided
// its lease first, and no older leader holds a lease, since the current
// one was elected after theirs ended.
func isPlainVoteRequest(m *raftpb.Message) bool {
	t := m.GetType()
	return (t == raftpb.MsgVote || t == raftpb.MsgPreVote) && !bytes.Equal(m.GetContext(), campaignTransfer)
}

// refusesVotes reports whether this node still ignores vote requests
// because it started less than an election timeout ago: it does not
// remember whether it heard from a leader whose lease its vote would cut
// short. Other nodes may hold leases even if this one does not use them.
func (n *Node) refusesVotes() bool {
	return leaseNow()-n.started < time.Duration(n.cfg.ElectionTicks)*n.cfg.TickInterval
}
