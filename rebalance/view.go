package rebalance

import "time"

// NodeID names a node. 0 is never a node: it means "none".
type NodeID uint64

// BucketID names a Raft group to place: a bucket, or the meta group (kv
// numbers it 1<<16). The planner treats every group alike.
type BucketID uint32

// View is what the planner knows of the cluster: the placement table and
// the failure detector's opinion, read at one moment by the caller. The
// order of Nodes, Buckets and Replicas does not matter; the planner copies
// what it needs and never changes the View.
type View struct {
	Nodes   []Node
	Buckets []Bucket
}

// Node is one node of the registry.
type Node struct {
	// ID is the node's id. Invariant: non-zero and unique in the View.
	ID NodeID
	// Live reports that the failure detector currently considers the node
	// up.
	Live bool
	// DownFor is how long the node has been down, by the caller's clock;
	// ignored when Live. At Config.DeadAfter or more the node is dead and
	// its replicas are re-created elsewhere; below it the node only
	// stops receiving replicas and leaderships.
	DownFor time.Duration
	// Draining reports an operator's request to empty the node (`node
	// drain`): it receives nothing, and its replicas and leaderships move
	// to other nodes as far as targets allow.
	Draining bool
	// MovesInFlight counts the executor's unfinished moves that add a
	// replica to this node or remove one from it; they use up
	// Config.MaxMovesPerNode.
	MovesInFlight int
}

// Replica is one member of a bucket's Raft configuration.
type Replica struct {
	// Node holds the replica. Invariant: non-zero, and no two replicas of
	// a bucket on one node.
	Node NodeID
	// Learner marks a non-voting member: the target of a move before its
	// promotion. A learner holds (or is receiving) the bucket's data, so
	// it counts toward its node's replicas, but never toward a quorum.
	Learner bool
	// Lagging marks a voter the leader reports behind its commit index,
	// or cannot vouch for. A lagging voter does not count toward the
	// quorum of up-to-date voters that a move must keep.
	Lagging bool
}

// Bucket is one Raft group and its placement.
type Bucket struct {
	// ID is the bucket's id. Invariant: unique in the View.
	ID BucketID
	// Replicas are the voters and learners of the bucket's configuration
	// (the outgoing one, if the caller shows a joint configuration, which
	// it should only do for a Busy bucket).
	Replicas []Replica
	// Leader is the voter that leads the bucket's group, or 0 if none is
	// known. A leader that is not a voter on a live node is taken as
	// unknown: the group is electing, or the report is stale.
	Leader NodeID
	// Bytes is the bucket's size: what a snapshot of it copies.
	Bytes int64
	// Load is the bucket's recent request rate, in any unit that is the
	// same for every bucket. It only breaks ties: among equally good
	// moves the planner disturbs the coldest bucket.
	Load float64
	// Busy reports that the executor is changing the bucket's
	// configuration (a move in flight, a joint configuration not yet
	// left). The planner leaves the bucket alone but counts its replicas,
	// learners included, so that its plan accounts for the moves in
	// flight.
	Busy bool
}

// quorum is the number of voters that make a majority of n voters.
func quorum(n int) int { return n/2 + 1 }
