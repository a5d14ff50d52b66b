package rebalance

import (
	"fmt"
	"slices"
)

// Planner computes placement plans under one Config. It holds no state
// between calls and is safe for concurrent use.
type Planner struct {
	cfg Config
}

// NewPlanner returns a Planner for cfg, its zero fields set to the
// defaults.
func NewPlanner(cfg Config) (*Planner, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Planner{cfg: cfg.withDefaults()}, nil
}

// Config returns the planner's Config, defaults filled in.
func (p *Planner) Config() Config { return p.cfg }

// Plan returns the moves that bring v toward the placement goals (see the
// package documentation), at most one per bucket, in priority order. It
// reads v and never changes it; the same View, in any order, gives the
// same Plan. It fails only on a View that breaks its invariants
// (ErrInvalidView).
//
// Cost: O(buckets·(R + log buckets) + nodes·log nodes) to read the View
// and order the candidates, plus, per move, O(nodes·log nodes) and scans
// of candidate lists, so MaxMoves bounds it. At 100 nodes × 4096 buckets
// a call takes about 1 ms when there is nothing to do and 4 ms for a full
// plan (BenchmarkPlan).
func (p *Planner) Plan(v *View) (Plan, error) {
	s, err := newState(p.cfg, v)
	if err != nil {
		return Plan{}, err
	}
	s.repair()
	s.leadersOffDraining()
	s.balanceReplicas()
	s.balanceLeaders()
	return s.result(), nil
}

// full reports that the plan holds MaxMoves moves, and records that it was
// cut short.
func (s *state) full() bool {
	if len(s.moves) >= s.cfg.MaxMoves {
		s.limited = true
		return true
	}
	return false
}

// takeSlot uses one of n's move slots.
func (s *state) takeSlot(n int32) {
	nd := &s.nodes[n]
	if !nd.live {
		return
	}
	if nd.budget <= 0 {
		panic(fmt.Sprintf("rebalance: node %d has no move slot left", nd.id))
	}
	nd.budget--
}

// record appends m, marks b planned and checks the invariant of one move
// per bucket.
func (s *state) record(b *bucket, m Move) {
	if b.planned || b.busy || b.noQuorum {
		panic(fmt.Sprintf("rebalance: second move %v for bucket %d (planned=%t busy=%t noQuorum=%t)",
			m, b.id, b.planned, b.busy, b.noQuorum))
	}
	b.planned = true
	s.moves = append(s.moves, m)
}

// setLeader moves b's leadership to n (-1: none known) in the counts.
func (s *state) setLeader(b *bucket, n int32) {
	if b.leader >= 0 {
		s.nodes[b.leader].leaders--
	}
	b.leader = n
	if n >= 0 {
		s.nodes[n].leaders++
	}
}

// planAdd plans a new voter of b on to (promoting to's learner if it has
// one).
func (s *state) planAdd(b *bucket, to int32, reason Reason) {
	if slices.Contains(b.voters, to) || s.nodes[to].class != usable {
		panic(fmt.Sprintf("rebalance: bad target n%d for bucket %d", s.nodes[to].id, b.id))
	}
	m := Move{Kind: AddReplica, Bucket: b.id, To: s.nodes[to].id, Bytes: b.bytes, Reason: reason}
	if i := slices.Index(b.learners, to); i >= 0 {
		b.learners = slices.Delete(b.learners, i, i+1)
		m.Bytes = 0
	} else {
		s.nodes[to].replicas++
	}
	s.record(b, m)
	s.takeSlot(to)
	b.voters = append(b.voters, to)
	slices.Sort(b.voters)
}

// planRemove plans the removal of from's replica of b. If from leads, the
// leadership goes first to the voter newLeader picks.
func (s *state) planRemove(b *bucket, from int32, reason Reason) {
	m := Move{Kind: RemoveReplica, Bucket: b.id, From: s.nodes[from].id, Reason: reason}
	if i := slices.Index(b.learners, from); i >= 0 {
		s.record(b, m)
		b.learners = slices.Delete(b.learners, i, i+1)
	} else {
		i := slices.Index(b.voters, from)
		if i < 0 || !s.safeToRemove(b, from) {
			panic(fmt.Sprintf("rebalance: unsafe %v", m))
		}
		var next int32 = -1
		if b.leader == from {
			next = s.newLeader(b, from, -1)
			if next >= 0 {
				m.NewLeader = s.nodes[next].id
			}
		}
		s.record(b, m)
		b.voters = slices.Delete(b.voters, i, i+1)
		if b.leader == from {
			s.setLeader(b, next)
		}
	}
	s.nodes[from].replicas--
	s.takeSlot(from)
}

// planMove plans the replacement of from's voter of b by a new one on to.
// It is safe whenever b has a quorum now: in the joint configuration the
// old voters keep theirs, and the new ones are the old less from plus a
// caught-up voter on to, so they have at least as many up-to-date voters.
func (s *state) planMove(b *bucket, from, to int32, reason Reason) {
	i := slices.Index(b.voters, from)
	if i < 0 || b.hasReplicaOn(to) || s.nodes[to].class != usable {
		panic(fmt.Sprintf("rebalance: bad move of bucket %d from n%d to n%d", b.id, s.nodes[from].id, s.nodes[to].id))
	}
	m := Move{Kind: MoveReplica, Bucket: b.id, From: s.nodes[from].id, To: s.nodes[to].id, Bytes: b.bytes, Reason: reason}
	var next int32 = -1
	if b.leader == from {
		next = s.newLeader(b, from, to)
		m.NewLeader = s.nodes[next].id
	}
	s.record(b, m)
	b.voters[i] = to
	slices.Sort(b.voters)
	s.nodes[from].replicas--
	s.nodes[to].replicas++
	s.takeSlot(from)
	s.takeSlot(to)
	if b.leader == from {
		s.setLeader(b, next)
	}
}

// planTransfer plans the transfer of b's leadership to to.
func (s *state) planTransfer(b *bucket, to int32, reason Reason) {
	if b.leader < 0 || !s.canLead(b, to) || !slices.Contains(b.voters, to) {
		panic(fmt.Sprintf("rebalance: bad leader transfer of bucket %d to n%d", b.id, s.nodes[to].id))
	}
	s.record(b, Move{Kind: TransferLeader, Bucket: b.id, From: s.nodes[b.leader].id, To: s.nodes[to].id, Reason: reason})
	s.setLeader(b, to)
}

// newLeader picks who leads b once from's voter leaves: the voter that
// can lead with the fewest leaderships, the incoming one (incoming, or -1)
// included; -1 if none can (the leader steps down and an election
// follows: the voters left are lagging, down or draining).
func (s *state) newLeader(b *bucket, from, incoming int32) int32 {
	best := incoming
	for _, n := range b.voters {
		if n == from || !s.canLead(b, n) {
			continue
		}
		if best < 0 || s.nodes[n].leaders < s.nodes[best].leaders ||
			s.nodes[n].leaders == s.nodes[best].leaders && n < best {
			best = n
		}
	}
	return best
}

// safeToRemove reports that b keeps a quorum of up-to-date voters without
// n's voter.
func (s *state) safeToRemove(b *bucket, n int32) bool {
	if len(b.voters) <= 1 {
		return false
	}
	up := s.upToDateVoters(b)
	if s.upToDate(b, n) {
		up--
	}
	return up >= quorum(len(b.voters)-1)
}
