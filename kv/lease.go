package kv

import (
	"context"
	"time"

	"go.etcd.io/raft/v3/raftpb"
)

// Read leases. A linearizable read normally costs a ReadIndex round: a
// heartbeat to the followers and their answers, for every batch of reads
// of every group. A leader whose ReadIndex round started at s was
// answered by a quorum, and each member of it heard from the leader at or
// after s. With CheckQuorum, such a member refuses to vote for anyone
// until a full election timeout of its own ticks has passed since, and
// ticks never come faster than TickInterval of real time; so no other
// leader can be elected before s + (ElectionTicks-1)*TickInterval. Until
// then (less a margin: leaseDuration) the leader serves reads from its
// applied state, once it applied its commit index, without a round.
//
// What would break the argument voids the lease at once:
//   - MsgTimeoutNow, the leadership transfer that makes a follower
//     campaign at once and its voters ignore their lease: the lease is
//     voided before the message is sent (outgoing), and rounds that
//     started before it do not renew it (the epoch);
//   - a configuration change or snapshot, which changes the quorum;
//   - losing the leadership;
//   - a node that restarts forgets that it heard from the leader, so it
//     ignores vote requests for an election timeout after it starts
//     (stepInbox).
//
// A process pause is the remaining hazard: a leader stopped between its
// lease check and its read would read after the lease ended. So a read is
// checked against the lease after it ran and repeated with a ReadIndex
// round if the lease ended meanwhile (readLinearizable).
//
// The lease uses the real monotonic clock, like Raft's ticks that it
// stands on, not Config.Clock: skewing the lock clock must not stretch it.

// leaseMargin is the share of the lease kept back for timer slack and
// for clock-rate differences between nodes.
const leaseMargin = 0.2

// leaseDuration is how long after the start of a ReadIndex round that a
// quorum answered the leader may serve reads without another round (0:
// never).
func (n *Node) leaseDuration() time.Duration {
	if n.cfg.DisableLeaseReads || n.cfg.ElectionTicks < 2 {
		return 0
	}
	safe := time.Duration(n.cfg.ElectionTicks-1) * n.cfg.TickInterval
	return safe - time.Duration(float64(safe)*leaseMargin)
}

// readRound is a ReadIndex round in flight: its readers, when it started,
// the lease epoch then, and its floor: the last index appended when it
// started, which snapshot readers wait for too (replica.readStates).
type readRound struct {
	reads []*readReq
	start time.Time
	epoch uint64
	floor uint64
}

// leaseState is a leader's read lease (in replica.mu).
type leaseState struct {
	// expiry is when the lease ends (zero: no lease).
	expiry time.Time
	// epoch grows whenever the lease is voided; a round that started in an
	// earlier epoch does not renew it.
	epoch uint64
	// renewing: a round to renew the lease is in flight.
	renewing bool
}

// voidLease ends the lease now and keeps rounds in flight from renewing
// it. The caller holds r.mu.
func (r *replica) voidLeaseLocked() {
	r.mu.lease.expiry = time.Time{}
	r.mu.lease.epoch++
}

func (r *replica) voidLease() {
	r.mu.Lock()
	r.voidLeaseLocked()
	r.mu.Unlock()
}

// renewLeaseLocked extends the lease after round, answered by a quorum.
// The caller holds r.mu.
func (r *replica) renewLeaseLocked(round readRound) {
	d := r.node.leaseDuration()
	if d == 0 || !r.mu.leader || round.epoch != r.mu.lease.epoch {
		return
	}
	if end := round.start.Add(d); end.After(r.mu.lease.expiry) {
		r.mu.lease.expiry = end
	}
}

// setCommit records the group's commit index as a Ready reports it. On a
// leader it is the highest index committed anywhere: every write already
// acknowledged is at or below it.
func (r *replica) setCommit(index uint64) {
	r.mu.Lock()
	r.mu.commit = max(r.mu.commit, index)
	r.mu.Unlock()
}

// leased reports whether this replica is a ready leader holding a read
// lease, and if so the lease's epoch and the index a read must wait for.
// It starts a renewal round when less than half the lease is left.
func (r *replica) leased() (epoch, index uint64, ok bool) {
	now := time.Now()
	r.mu.Lock()
	if !r.mu.ready || !now.Before(r.mu.lease.expiry) {
		r.mu.Unlock()
		return 0, 0, false
	}
	epoch, index = r.mu.lease.epoch, r.mu.commit
	renew := !r.mu.lease.renewing && r.mu.lease.expiry.Sub(now) < r.node.leaseDuration()/2
	if renew {
		r.mu.lease.renewing = true
	}
	r.mu.Unlock()
	if renew {
		r.requestRead(false) // answered to nobody: it only renews the lease
	}
	return epoch, index, true
}

// leaseHeld reports whether the lease of epoch still holds.
func (r *replica) leaseHeld(epoch uint64) bool {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.mu.ready && r.mu.lease.epoch == epoch && now.Before(r.mu.lease.expiry)
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
			r.voidLease()
			return
		}
	}
}

// refusesVotes reports whether this node still ignores vote requests
// because it started less than an election timeout ago: it does not
// remember whether it heard from a leader whose lease its vote would cut
// short.
func (n *Node) refusesVotes() bool {
	return n.leaseDuration() != 0 && time.Since(n.started) < time.Duration(n.cfg.ElectionTicks)*n.cfg.TickInterval
}
