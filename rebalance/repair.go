package rebalance

import (
	"cmp"
	"slices"
)

// repair plans one move for each bucket off its placement goal (stray
// learners, voters on leaving nodes, a voter count other than R), the
// buckets with the fewest spare up-to-date voters first: under the limits,
// the buckets closest to losing their quorum are served first (CRDB's
// replicate queue and PD's replica checker order their work the same way).
// It also records the goals no move can reach.
func (s *state) repair() {
	type item struct {
		spare int // up-to-date voters above a quorum
		b     int32
	}
	var items []item
	for i := range s.buckets {
		b := &s.buckets[i]
		if b.needsRepair && !b.busy && !b.noQuorum {
			items = append(items, item{s.upToDateVoters(b) - quorum(len(b.voters)), int32(i)})
		}
	}
	slices.SortFunc(items, func(x, y item) int {
		return cmp.Or(cmp.Compare(x.spare, y.spare), cmp.Compare(x.b, y.b))
	})
	for _, it := range items {
		s.repairBucket(&s.buckets[it.b])
	}
}

// repairBucket plans b's most urgent repair, or records why there is none.
// Once the plan is full it only records problems.
func (s *state) repairBucket(b *bucket) {
	r := s.cfg.Replicas

	// A learner with no move in flight: promote it where a voter is
	// wanted, else remove it (always safe: learners hold no vote).
	if len(b.learners) > 0 {
		l := b.learners[0]
		if s.nodes[l].class == usable && s.keptVoters(b) < r {
			if !s.full() && s.nodes[l].hasSlot() {
				s.planAdd(b, l, ReasonStrayLearner)
			} else {
				s.deferRepair(0)
			}
			return
		}
		if !s.full() && s.nodes[l].hasSlot() {
			s.planRemove(b, l, ReasonStrayLearner)
		} else {
			s.deferRepair(-s.usableCount(l))
		}
		return
	}

	// A voter on a leaving node: dead ones first, then by node id.
	leaving := int32(-1)
	for _, n := range b.voters {
		if c := s.nodes[n].class; c.leaving() && (leaving < 0 || c > s.nodes[leaving].class) {
			leaving = n
		}
	}
	if leaving >= 0 {
		reason := ReasonDraining
		if s.nodes[leaving].class == dead {
			reason = ReasonDead
		}
		if len(b.voters) > r {
			// Shrink first: drop the leaving voter, or, if that would
			// cost the quorum (a draining voter is up to date), the
			// cheapest other one; the next plan moves the leaving voter.
			if s.safeToRemove(b, leaving) {
				s.tryRemove(b, leaving, reason)
				return
			}
			if n := s.worstVoter(b); n >= 0 {
				s.tryRemove(b, n, ReasonOverReplicated)
				return
			}
		}
		to, exists := s.bestTarget(b)
		switch {
		case to >= 0 && s.nodes[leaving].hasSlot():
			if !s.full() {
				s.planMove(b, leaving, to, reason)
			}
		case exists || to >= 0:
			s.deferRepair(1)
		case reason == ReasonDead:
			// Nowhere to re-create it: drop the dead voter anyway. The
			// bucket keeps its quorum (the dead voter was not in it) and
			// a smaller configuration needs fewer voters for the next
			// quorum; the voter comes back when a node does.
			s.tooFew = append(s.tooFew, b.id)
			s.tryRemove(b, leaving, reason)
		default:
			// A draining node still serves: keep its replica rather than
			// lose redundancy. Balance may still move the bucket's other
			// replicas and its leadership.
			s.drainBlocked[leaving] = append(s.drainBlocked[leaving], b.id)
			b.needsRepair = false
		}
		return
	}

	switch {
	case len(b.voters) < r:
		to, exists := s.bestTarget(b)
		switch {
		case to >= 0:
			if !s.full() {
				s.planAdd(b, to, ReasonUnderReplicated)
			}
		case exists:
			s.deferRepair(1)
		default:
			// As good as it gets: balance may move its replicas and its
			// leadership like any other bucket's.
			s.tooFew = append(s.tooFew, b.id)
			b.needsRepair = false
		}
	case len(b.voters) > r:
		if n := s.worstVoter(b); n >= 0 {
			s.tryRemove(b, n, ReasonOverReplicated)
		}
	}
}

// tryRemove plans the removal of n's voter if the plan has room and n a
// slot. The callers only pick voters whose removal is safe.
func (s *state) tryRemove(b *bucket, n int32, reason Reason) {
	switch {
	case !s.safeToRemove(b, n):
	case s.full():
	case !s.nodes[n].hasSlot():
		s.deferRepair(-s.usableCount(n))
	default:
		s.planRemove(b, n, reason)
	}
}

// deferRepair records a repair due but out of slots: the plan is Limited,
// and the repair will change the replicas on usable nodes by delta.
// Replica balance counts that change already, so that it does not, say,
// empty full nodes down to a mean that a drain's replicas, still to come,
// will raise: it would copy more than needed.
func (s *state) deferRepair(delta int) {
	s.limited = true
	s.pendingReplicas += delta
}

// usableCount is 1 for a usable node and 0 for another.
func (s *state) usableCount(n int32) int {
	if s.nodes[n].class == usable {
		return 1
	}
	return 0
}

// keptVoters counts b's voters on nodes that are not leaving.
func (s *state) keptVoters(b *bucket) int {
	k := 0
	for _, n := range b.voters {
		if !s.nodes[n].class.leaving() {
			k++
		}
	}
	return k
}

// bestTarget returns the usable node with a free slot and no replica of b
// that holds the fewest replicas (then leaderships, then the lowest id), or
// -1; exists reports whether any usable node without a replica of b exists,
// slots aside. Like CRDB's allocator it fills the emptiest node, and
// because the counts include the plan's earlier moves, the replicas of a
// dead node spread over every node rather than piling on one.
func (s *state) bestTarget(b *bucket) (best int32, exists bool) {
	best = -1
	for _, n := range s.usableNodes {
		if b.hasReplicaOn(n) {
			continue
		}
		exists = true
		if !s.nodes[n].hasSlot() {
			continue
		}
		if best < 0 || fewerReplicas(&s.nodes[n], &s.nodes[best]) {
			best = n
		}
	}
	return best, exists
}

// fewerReplicas orders nodes by replicas, then leaderships; ties keep the
// earlier (lower id) node.
func fewerReplicas(a, b *node) bool {
	if a.replicas != b.replicas {
		return a.replicas < b.replicas
	}
	return a.leaders < b.leaders
}

// worstVoter picks the voter of an over-replicated bucket whose removal is
// safe and costs least: one on a suspect node, else a lagging one, else a
// follower before the leader, else the one on the fullest node, then the
// highest id. -1 if no removal is safe.
func (s *state) worstVoter(b *bucket) int32 {
	worst := int32(-1)
	var worstKey [4]int
	for _, n := range b.voters {
		if !s.safeToRemove(b, n) {
			continue
		}
		key := [4]int{0, 0, 0, s.nodes[n].replicas}
		if s.nodes[n].class == suspect {
			key[0] = 1
		}
		if slices.Contains(b.lagging, n) {
			key[1] = 1
		}
		if b.leader != n {
			key[2] = 1
		}
		// Voters are in id order, so >= lets the highest id win ties.
		if worst < 0 || slices.Compare(key[:], worstKey[:]) >= 0 {
			worst, worstKey = n, key
		}
	}
	return worst
}
