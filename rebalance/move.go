package rebalance

import (
	"fmt"
	"strings"
)

// MoveKind is what a move does to a bucket's configuration.
type MoveKind uint8

const (
	// AddReplica adds a voter on To: add a learner, send it a snapshot,
	// promote it once caught up. If To already holds a learner of the
	// bucket, the move only promotes it.
	AddReplica MoveKind = iota + 1
	// RemoveReplica removes From's replica (a voter or a learner). If From
	// leads, leadership goes to NewLeader first; if NewLeader is 0 (no
	// other voter can lead), the leader steps down and an election
	// follows.
	RemoveReplica
	// MoveReplica replaces From's voter with a new one on To without ever
	// having fewer voters: add a learner on To, snapshot, promote To and
	// demote From in one joint configuration, transfer leadership to
	// NewLeader while joint if From leads, leave the joint configuration,
	// remove From (design anchors §4.2).
	MoveReplica
	// TransferLeader hands the bucket's leadership from From to To, a
	// voter already.
	TransferLeader
)

func (k MoveKind) String() string {
	switch k {
	case AddReplica:
		return "add"
	case RemoveReplica:
		return "remove"
	case MoveReplica:
		return "move"
	case TransferLeader:
		return "transfer-leader"
	}
	return fmt.Sprintf("MoveKind(%d)", uint8(k))
}

// Reason is why the planner chose a move. The reasons are listed in the
// order the planner serves them.
type Reason uint8

const (
	// ReasonDead: the replica is on a node down for DeadAfter or longer,
	// or on a node the View does not list.
	ReasonDead Reason = iota + 1
	// ReasonDraining: the replica or leadership is on a draining node.
	ReasonDraining
	// ReasonStrayLearner: a learner with no move in flight (the leftover
	// of an interrupted move): promoted if the bucket needs a voter where
	// it is, removed otherwise.
	ReasonStrayLearner
	// ReasonUnderReplicated: the bucket has fewer than R voters.
	ReasonUnderReplicated
	// ReasonOverReplicated: the bucket has more than R voters.
	ReasonOverReplicated
	// ReasonReplicaBalance: the source node holds more than one replica
	// above the mean, or the target more than one below.
	ReasonReplicaBalance
	// ReasonLeaderBalance: as ReasonReplicaBalance, for leaderships.
	ReasonLeaderBalance
)

func (r Reason) String() string {
	switch r {
	case ReasonDead:
		return "dead"
	case ReasonDraining:
		return "draining"
	case ReasonStrayLearner:
		return "stray-learner"
	case ReasonUnderReplicated:
		return "under-replicated"
	case ReasonOverReplicated:
		return "over-replicated"
	case ReasonReplicaBalance:
		return "replica-balance"
	case ReasonLeaderBalance:
		return "leader-balance"
	}
	return fmt.Sprintf("Reason(%d)", uint8(r))
}

// Move is one change to one bucket's configuration or leadership.
type Move struct {
	Kind   MoveKind
	Bucket BucketID
	// From is the node that loses the replica (RemoveReplica,
	// MoveReplica) or the leadership (TransferLeader); 0 for AddReplica.
	From NodeID
	// To is the node that gains the replica (AddReplica, MoveReplica) or
	// the leadership (TransferLeader); 0 for RemoveReplica.
	To NodeID
	// NewLeader is set when the move removes the bucket's leader: the
	// voter of the new configuration that takes the leadership before
	// From leaves. 0 otherwise.
	NewLeader NodeID
	// Bytes is the data the move copies: the bucket's size for a new
	// replica, 0 for the rest (and for promoting a learner, which has or
	// is receiving its data already).
	Bytes  int64
	Reason Reason
}

// String formats m as "move b7 n1->n4 leader->n4 bytes=100 (dead)".
func (m Move) String() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "%s b%d ", m.Kind, m.Bucket)
	switch m.Kind {
	case AddReplica:
		fmt.Fprintf(&sb, "n%d", m.To)
	case RemoveReplica:
		fmt.Fprintf(&sb, "n%d", m.From)
	default:
		fmt.Fprintf(&sb, "n%d->n%d", m.From, m.To)
	}
	if m.NewLeader != 0 {
		fmt.Fprintf(&sb, " leader->n%d", m.NewLeader)
	}
	if m.Bytes != 0 {
		fmt.Fprintf(&sb, " bytes=%d", m.Bytes)
	}
	fmt.Fprintf(&sb, " (%s)", m.Reason)
	return sb.String()
}

// ProblemKind is a placement goal the planner cannot reach by moves.
type ProblemKind uint8

const (
	// ProblemNoQuorum: buckets with fewer up-to-date voters than a quorum
	// (dead, down or lagging voters). The planner leaves them alone: a
	// configuration change could not commit, and forcing one would risk
	// losing acknowledged writes. An operator must bring nodes back.
	ProblemNoQuorum ProblemKind = iota + 1
	// ProblemTooFewNodes: buckets below R voters because every usable
	// node already holds one of their replicas.
	ProblemTooFewNodes
	// ProblemDrainBlocked: a draining node keeps replicas of these
	// buckets because no usable node can take them.
	ProblemDrainBlocked
)

func (k ProblemKind) String() string {
	switch k {
	case ProblemNoQuorum:
		return "no-quorum"
	case ProblemTooFewNodes:
		return "too-few-nodes"
	case ProblemDrainBlocked:
		return "drain-blocked"
	}
	return fmt.Sprintf("ProblemKind(%d)", uint8(k))
}

// Problem is one kind of goal the plan cannot reach, and where.
type Problem struct {
	Kind ProblemKind
	// Node is the draining node, for ProblemDrainBlocked; 0 otherwise.
	Node NodeID
	// Buckets are the buckets concerned, in ascending order.
	Buckets []BucketID
}

// String formats p as "drain-blocked n4: b1 b2".
func (p Problem) String() string {
	var sb strings.Builder
	sb.WriteString(p.Kind.String())
	if p.Node != 0 {
		fmt.Fprintf(&sb, " n%d", p.Node)
	}
	sb.WriteString(":")
	for _, b := range p.Buckets {
		fmt.Fprintf(&sb, " b%d", b)
	}
	return sb.String()
}

// Plan is the planner's answer for one View.
type Plan struct {
	// Moves are in priority order: repairs (the buckets closest to losing
	// their quorum first), leaderships off draining nodes, replica
	// balance, leader balance. At most one move per bucket, so the moves
	// commute and the executor may run them concurrently.
	Moves []Move
	// Problems are the goals no move can reach, by kind and node.
	Problems []Problem
	// Limited reports that MaxMoves or MaxMovesPerNode cut the plan
	// short: more moves are due once these (or those in flight) finish.
	Limited bool
}
