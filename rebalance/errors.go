package rebalance

import "errors"

var (
	// ErrInvalidConfig reports a Config field out of range; the wrapping
	// error names the field and the value.
	ErrInvalidConfig = errors.New("rebalance: invalid config")
	// ErrInvalidView reports a View the planner cannot read: a node id of
	// 0, a node or bucket listed twice, a bucket with two replicas on one
	// node. It is the caller's bug; the wrapping error says where.
	ErrInvalidView = errors.New("rebalance: invalid view")
	// ErrInvalidMove reports a move that does not fit the view: an unknown
	// bucket, no such replica, a target that is not live, is draining or
	// already holds a voter of the bucket, a leader that cannot lead.
	ErrInvalidMove = errors.New("rebalance: invalid move")
	// ErrBusy reports a move of a bucket whose configuration is already
	// changing (Bucket.Busy).
	ErrBusy = errors.New("rebalance: bucket busy")
	// ErrNoQuorum reports a move of a bucket that has already lost the
	// quorum of up-to-date voters: it could not commit the change.
	ErrNoQuorum = errors.New("rebalance: bucket has no quorum")
	// ErrUnsafe reports a move after which (or in whose joint
	// configuration) the bucket would have fewer up-to-date voters than a
	// quorum.
	ErrUnsafe = errors.New("rebalance: move would leave the bucket without a quorum")
)
