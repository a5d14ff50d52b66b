package rebalance

import (
	"cmp"
	"slices"
)

// leadersOffDraining plans a leadership transfer for every bucket led from
// a draining node whose replica is not moving this plan, to the voter that
// can lead with the fewest leaderships. A draining node should stop
// serving before it loses its replicas, and a transfer costs no data.
func (s *state) leadersOffDraining() {
	for i := range s.buckets {
		b := &s.buckets[i]
		if b.leader < 0 || s.nodes[b.leader].class != draining || b.planned || b.busy || b.noQuorum {
			continue
		}
		to := int32(-1)
		for _, n := range b.voters {
			if s.canLead(b, n) && (to < 0 || s.nodes[n].leaders < s.nodes[to].leaders) {
				to = n
			}
		}
		if to < 0 {
			continue // its replicas move first, leadership with them
		}
		if s.full() {
			return
		}
		s.planTransfer(b, to, ReasonDraining)
	}
}

// band says whether a count is off balance: more than one above the mean
// of total over n nodes, or more than one below. Integer arithmetic, so
// that no rounding can make two equal views plan differently.
type band struct{ total, n int }

func (bd band) over(c int) bool  { return c*bd.n > bd.total+bd.n }
func (bd band) under(c int) bool { return c*bd.n < bd.total-bd.n }

// worthMoving reports that moving one unit from a node at from to a node at
// to converges: the two end no further apart than they started (from-to >=
// 2, so the sum of squared counts drops) and one of them is off balance.
// This is CRDB's "converges on the mean" test with PD's tolerance: counts
// within one of the mean are left alone, so the plan never churns a
// balanced cluster.
func (bd band) worthMoving(from, to int) bool {
	return from-to >= 2 && (bd.over(from) || bd.under(to))
}

// balanceReplicas moves voters of balanceable buckets toward the usable
// node with the fewest replicas, while worthMoving allows, each time the
// cheapest bucket (fewest bytes) any eligible source has. While some node
// is more than one above the mean, only such nodes are sources; while some
// node is more than one below, only such nodes are targets, slots or not.
// Every replica above the band must leave and every one below must come
// anyway, so a move between two nodes inside the band, made because the
// nodes off balance are out of slots, would be an extra copy later. A
// node out of slots that is still off balance makes the plan Limited.
func (s *state) balanceReplicas() {
	if len(s.usableNodes) < 2 {
		return
	}
	total := s.pendingReplicas
	for _, n := range s.usableNodes {
		total += s.nodes[n].replicas
	}
	bd := band{total, len(s.usableNodes)}
	count := func(n int32) int { return s.nodes[n].replicas }
	for !s.full() {
		byCount := s.nodesBy(count)
		if !s.balanceReplicaStep(bd, byCount) {
			s.noteOutOfSlots(bd, count)
			return
		}
	}
}

// balanceReplicaStep plans one replica balance move, to the emptiest
// eligible target for which some source has a bucket to give; it reports
// whether it found one. byCount is the usable nodes, fullest first.
func (s *state) balanceReplicaStep(bd band, byCount []int32) bool {
	overOnly := bd.over(s.nodes[byCount[0]].replicas)
	underOnly := bd.under(s.nodes[byCount[len(byCount)-1]].replicas)
	for j := len(byCount) - 1; j >= 0; j-- {
		to := byCount[j]
		if underOnly && !bd.under(s.nodes[to].replicas) {
			break // targets only get fuller from here on
		}
		if !s.nodes[to].hasSlot() {
			continue
		}
		from, bi := int32(-1), int32(-1)
		for _, src := range byCount {
			nd := &s.nodes[src]
			if !bd.worthMoving(nd.replicas, s.nodes[to].replicas) || overOnly && !bd.over(nd.replicas) {
				break // sources only get emptier from here on
			}
			if !nd.hasSlot() {
				continue
			}
			if b := s.pickReplica(src, to); b >= 0 && (bi < 0 || s.buckets[b].bytes < s.buckets[bi].bytes) {
				from, bi = src, b
			}
		}
		if bi >= 0 {
			s.planMove(&s.buckets[bi], from, to, ReasonReplicaBalance)
			return true
		}
	}
	return false
}

// pickReplica returns the first bucket of from's candidates that to holds
// no replica of, or -1. Among candidates of equal size it prefers one
// from does not lead, so that a leadership stays where leader balance put
// it.
func (s *state) pickReplica(from, to int32) int32 {
	if !s.movableBuilt {
		s.buildReplicaCandidates()
	}
	nd := &s.nodes[from]
	pick := int32(-1)
	for i := nd.movableNext; i < len(nd.movable); i++ {
		b := &s.buckets[nd.movable[i]]
		if !b.balanceable() {
			if i == nd.movableNext {
				nd.movableNext++
			}
			continue
		}
		if pick >= 0 && b.bytes != s.buckets[pick].bytes {
			break
		}
		if b.hasReplicaOn(to) {
			continue
		}
		if b.leader != from {
			return nd.movable[i]
		}
		if pick < 0 {
			pick = nd.movable[i]
		}
	}
	return pick
}

// buildReplicaCandidates lists, per usable node, the balanceable buckets
// with a voter there, in the order balance moves them: fewest bytes first
// (the least data for the same gain), then the coldest, then by id. One
// sort of the buckets orders every node's list.
func (s *state) buildReplicaCandidates() {
	s.movableBuilt = true
	order := make([]int32, 0, len(s.buckets))
	for i := range s.buckets {
		if s.buckets[i].balanceable() {
			order = append(order, int32(i))
		}
	}
	slices.SortFunc(order, func(x, y int32) int {
		a, b := &s.buckets[x], &s.buckets[y]
		return cmp.Or(cmp.Compare(a.bytes, b.bytes), cmp.Compare(a.load, b.load), cmp.Compare(x, y))
	})
	for _, i := range order {
		for _, n := range s.buckets[i].voters {
			if s.nodes[n].class == usable {
				s.nodes[n].movable = append(s.nodes[n].movable, i)
			}
		}
	}
}

// balanceLeaders transfers leaderships of balanceable buckets from the
// usable node with the most toward the node with the fewest, while
// worthMoving allows. For each source, in descending order, it takes the
// direct transfer to the voter with the fewest leaderships (the coldest
// bucket on ties). A leadership can only go to a voter, so when no
// bucket the source leads has a voter on a node with few enough, it looks
// for a chain of transfers through nodes in between (shortest first):
// each of those gives one leadership and takes one, and only the ends
// change.
func (s *state) balanceLeaders() {
	if len(s.usableNodes) < 2 {
		return
	}
	total := 0
	for _, n := range s.usableNodes {
		total += s.nodes[n].leaders
	}
	bd := band{total, len(s.usableNodes)}
	count := func(n int32) int { return s.nodes[n].leaders }
	for !s.full() {
		byCount := s.nodesBy(count)
		fewest := s.nodes[byCount[len(byCount)-1]].leaders
		found := false
		for _, from := range byCount {
			if !bd.worthMoving(s.nodes[from].leaders, fewest) {
				break // nor for any later, smaller source
			}
			if b, to := s.pickLeadership(bd, from); b >= 0 {
				s.planTransfer(&s.buckets[b], to, ReasonLeaderBalance)
				found = true
				break
			}
			if path := s.leaderChain(bd, from); path != nil {
				for _, hop := range path {
					s.planTransfer(&s.buckets[hop.bucket], hop.to, ReasonLeaderBalance)
				}
				found = true
				break
			}
		}
		if !found {
			return
		}
	}
}

// pickLeadership returns the bucket led by from and the voter to hand it to
// that minimise the voter's leaderships, or -1.
func (s *state) pickLeadership(bd band, from int32) (bucket, to int32) {
	nd := &s.nodes[from]
	bucket, to = -1, -1
	for _, bi := range s.leaderCandidates(from) {
		b := &s.buckets[bi]
		if !b.balanceable() || b.leader != from {
			continue
		}
		for _, v := range b.voters {
			if v == from || !s.canLead(b, v) || !bd.worthMoving(nd.leaders, s.nodes[v].leaders) {
				continue
			}
			if to < 0 || s.nodes[v].leaders < s.nodes[to].leaders {
				bucket, to = bi, v
			}
		}
	}
	return bucket, to
}

// hop is one leadership transfer of a chain: bucket's leadership goes to
// node to.
type hop struct{ bucket, to int32 }

// reach is how leaderChain reached a node: by a transfer of bucket from
// node from. from is -1 for a node not reached.
type reach struct{ bucket, from int32 }

// leaderChain searches breadth first from from, along "u leads a
// balanceable bucket with a voter on v that can lead", for the nearest
// node worth moving one of from's leaderships to, and returns the
// transfers that do it, or nil. The chain fits in what is left of
// MaxMoves, and uses each bucket once (a node is visited once).
func (s *state) leaderChain(bd band, from int32) []hop {
	if s.reachedBy == nil {
		s.reachedBy = make([]reach, len(s.nodes))
	}
	for i := range s.reachedBy {
		s.reachedBy[i] = reach{bucket: -1, from: -1}
	}
	s.reachedBy[from] = reach{bucket: -1, from: from}
	queue := append(s.queue[:0], from)
	room := s.cfg.MaxMoves - len(s.moves)
	for depth := 0; len(queue) > 0 && depth < room; depth++ {
		next := queue[len(queue):]
		for _, u := range queue {
			for _, bi := range s.leaderCandidates(u) {
				b := &s.buckets[bi]
				if !b.balanceable() || b.leader != u {
					continue
				}
				for _, v := range b.voters {
					if s.reachedBy[v].from >= 0 || !s.canLead(b, v) {
						continue
					}
					s.reachedBy[v] = reach{bucket: bi, from: u}
					if bd.worthMoving(s.nodes[from].leaders, s.nodes[v].leaders) {
						return s.chainTo(from, v)
					}
					next = append(next, v)
				}
			}
		}
		queue = next
	}
	s.queue = queue[:0]
	return nil
}

// chainTo unwinds reachedBy from t back to from into transfers, in order.
func (s *state) chainTo(from, t int32) []hop {
	var path []hop
	for v := t; v != from; v = s.reachedBy[v].from {
		path = append(path, hop{bucket: s.reachedBy[v].bucket, to: v})
	}
	slices.Reverse(path)
	return path
}

// buildLeaderCandidates lists, per node, the balanceable buckets it leads,
// in one pass over the buckets.
func (s *state) buildLeaderCandidates() {
	s.ledBuilt = true
	for i := range s.buckets {
		b := &s.buckets[i]
		if b.balanceable() && b.leader >= 0 {
			s.nodes[b.leader].led = append(s.nodes[b.leader].led, int32(i))
		}
	}
}

// leaderCandidates returns n's led list, coldest bucket first (a transfer
// briefly stalls the bucket's requests), then by id.
func (s *state) leaderCandidates(n int32) []int32 {
	if !s.ledBuilt {
		s.buildLeaderCandidates()
	}
	nd := &s.nodes[n]
	if !nd.ledSorted {
		nd.ledSorted = true
		slices.SortFunc(nd.led, func(x, y int32) int {
			return cmp.Or(cmp.Compare(s.buckets[x].load, s.buckets[y].load), cmp.Compare(x, y))
		})
	}
	return nd.led
}

// nodesBy returns the usable nodes by count, highest first, ties by id.
func (s *state) nodesBy(count func(int32) int) []int32 {
	out := slices.Clone(s.usableNodes)
	slices.SortFunc(out, func(x, y int32) int {
		return cmp.Or(cmp.Compare(count(y), count(x)), cmp.Compare(x, y))
	})
	return out
}

// noteOutOfSlots marks the plan Limited if a node without free slots is
// off balance: balance stopped for the limits, not for lack of work.
func (s *state) noteOutOfSlots(bd band, count func(int32) int) {
	for _, n := range s.usableNodes {
		if !s.nodes[n].hasSlot() && (bd.over(count(n)) || bd.under(count(n))) {
			s.limited = true
			return
		}
	}
}
