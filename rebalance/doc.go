// Package rebalance is the replica-placement planner: from a View of the
// cluster (nodes with their liveness and drain flag; buckets with their
// voters, learners, leader, size and load) it computes the moves that
// bring the cluster toward its placement goals. It is a pure function of
// its input: no goroutines, no clock, no I/O. The executor on the meta
// leader builds the View, runs the moves (add learner, snapshot, joint
// promote, leadership transfer, leave joint, remove; design anchors
// §4.2) and asks again.
//
// # Model
//
// A node is usable (live, not draining), suspect (down for less than
// Config.DeadAfter), draining, or dead (down for DeadAfter or longer, or
// absent from the View). Only usable nodes receive replicas and
// leaderships. A suspect node keeps its replicas: it is most likely
// restarting, and memberlist also reports false deaths under load
// (anchors §4.4), so re-creating its replicas at once would copy data for
// nothing. The replicas of draining and dead nodes leave.
//
// A voter is up to date if its node is live and the leader does not report
// it lagging; a bucket has a quorum if a majority of its voters are up to
// date. A move of a bucket without a quorum could not commit, so such a
// bucket is reported (ProblemNoQuorum) and never touched.
//
// Goals, in the order the planner serves them (each plan: repairs, the
// most endangered buckets first; leaderships off draining nodes; replica
// balance; leader balance):
//
//   - every bucket has R voters on distinct nodes, none on a dead or
//     draining node, and no learner left over from an interrupted move;
//   - no leadership on a draining node;
//   - each usable node holds within one of the mean number of replicas
//     (voters and learners) over the usable nodes, and leads within one of
//     the mean number of buckets;
//   - at the least copying: repairs re-create each lost replica once, on
//     the usable node with the fewest replicas; balance moves the smallest
//     buckets, only off nodes above the band and onto nodes below it while
//     there are any, and leaves counts within one of the mean alone (CRDB's
//     allocator and PD's balance schedulers keep the same tolerance, so a
//     balanced cluster does not churn). Redundancy comes first, though:
//     when the emptiest nodes are out of move slots a lost replica is
//     re-created on the next emptiest rather than wait, which in a small,
//     unbalanced cluster can cost a second copy later.
//
// Where a goal cannot be met the plan says so instead (ProblemTooFewNodes,
// ProblemDrainBlocked): a draining node keeps replicas that no usable node
// can take, since it still serves and removing them would lose
// redundancy; a dead node's replica that no usable node can take is
// removed, which costs no redundancy (it held none) and lets the bucket's
// quorum shrink with it.
//
// # Invariants
//
// Of every Plan returned for a View v:
//
//  1. Safety. Every move, applied to v, leaves its bucket with a quorum of
//     up-to-date voters in every configuration it passes through; a bucket
//     without a quorum, or Busy, gets no move. CheckMove checks exactly
//     this, and every planned move passes it.
//  2. One move per bucket. So no plan removes two replicas of a bucket,
//     the moves commute, and the executor may run them in any order or at
//     once.
//  3. Placement. A move never adds a replica to a node that holds one of
//     the bucket, nor to a node that is not usable; leadership
//     (TransferLeader.To, Move.NewLeader) goes only to up-to-date voters on
//     usable nodes.
//  4. Add before remove. Replacing a voter is a MoveReplica (the new voter
//     is caught up before the joint configuration drops the old one); a
//     plain RemoveReplica happens only to a learner, to a bucket above R
//     voters, or to a dead voter that nothing can replace.
//  5. Determinism. The Plan is a function of Config and of v as sets: the
//     order of Nodes, Buckets and Replicas does not matter, and ties are
//     broken by ids, never by map iteration.
//  6. Bounded work. At most Config.MaxMoves moves; per live node at most
//     Config.MaxMovesPerNode less Node.MovesInFlight adds and removals.
//     Plan costs O(buckets·(R + log buckets) + nodes·log nodes) plus, per
//     move, a sort of the nodes and scans of candidate lists.
//  7. Progress. Applying all of a plan's moves strictly decreases, in
//     lexicographic order, (defects, Σ replicas², Σ leaders²), where
//     defects counts stray learners, voters on leaving nodes, voters short
//     of or above R where a move can fix it, and leaderships on draining
//     nodes, and the sums run over usable nodes. So planning and applying
//     repeatedly, with the nodes unchanged, reaches a plan with no moves.
//  8. The fixed point. When a plan has no moves and is not Limited, every
//     bucket with a quorum that is not Busy meets the first goal or is in a
//     Problem; and if no bucket is pinned (Busy or without a quorum) the
//     replica counts are within one of the mean.
//
// # Proof sketches
//
// Invariant 1. Let a bucket have n voters of which u are up to date, u >=
// n/2+1. Adding a caught-up voter gives u+1 >= (n+1)/2+1. A MoveReplica
// passes through the joint configuration (old voters, new voters): the old
// ones keep u; the new ones are the old less From plus a caught-up To, so
// they keep at least u. Removing a voter is checked directly: the
// up-to-date voters left must be a quorum of n-1. A voter that is not up
// to date (a dead one, say) can always be removed, since u >= n/2+1 >=
// (n-1)/2+1.
//
// Invariant 7. A repair removes a defect and, since targets are usable
// nodes, adds none. A replica balance move goes from a node with a to one
// with b replicas, a-b >= 2, so the sum of squares drops by 2(a-b)-2 > 0;
// it changes no defect. A leader transfer, direct or the ends of a chain,
// does the same for leaderships and changes neither replicas nor defects.
// Replica moves may change the leader sum, but that comes last in the
// order. Within a plan each move is chosen on the state the earlier ones
// leave, so the whole plan decreases the potential; the potential is a
// non-negative integer vector, so the sequence of plans ends.
//
// Invariant 8, replicas. Take the fullest usable node s and the emptiest
// t. If a count is off the band, worthMoving(s, t) holds: s above mean+1
// implies t below the mean, t below mean-1 implies s above it, and either
// way s-t >= 2. As s holds more replicas than t, some bucket has a voter
// on s and none on t; with no bucket pinned and no learners left it is
// balanceable, so a move exists and the plan was not empty.
package rebalance
