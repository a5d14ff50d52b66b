package rebalance

import (
	"cmp"
	"fmt"
	"slices"
)

// nodeClass is what the planner may do with a node, from its liveness,
// how long it has been down and its drain flag.
type nodeClass uint8

const (
	// usable: live and not draining. The only class that receives
	// replicas and leaderships.
	usable nodeClass = iota
	// suspect: down for less than DeadAfter. It keeps its replicas (it is
	// likely restarting, and re-creating them would copy data for
	// nothing) but receives none, and its voters are not up to date.
	suspect
	// draining: to be emptied. Its replicas and leaderships leave as far
	// as targets allow.
	draining
	// dead: down for DeadAfter or longer, or absent from the View. Its
	// replicas are re-created on usable nodes.
	dead
)

func (c nodeClass) String() string {
	switch c {
	case usable:
		return "usable"
	case suspect:
		return "suspect"
	case draining:
		return "draining"
	case dead:
		return "dead"
	}
	return fmt.Sprintf("nodeClass(%d)", uint8(c))
}

// leaving reports a class whose replicas must go.
func (c nodeClass) leaving() bool { return c == draining || c == dead }

// node is the planner's working copy of a node.
type node struct {
	id    NodeID
	class nodeClass
	live  bool
	// replicas and leaders count the voters, learners and leaderships
	// on the node as the plan so far leaves them.
	replicas int
	leaders  int
	// budget is how many more replica adds or removals the plan may give
	// the node. Invariant: >= 0; ignored for a node that is not live.
	budget int
	// movable lists the buckets that were balanceable, with a voter here,
	// when replica balance started, cheapest first (see
	// buildReplicaCandidates). movable[:movableNext] are all planned.
	movable     []int32
	movableNext int
	// led lists the buckets that were balanceable, led from here, when
	// leader balance first needed them; sorted on first use (see
	// leaderCandidates). Transfers make entries stale: users skip
	// buckets no longer balanceable or led from here.
	led       []int32
	ledSorted bool
}

// hasSlot reports that a move may add a replica to n or remove one from
// it. A node that is not live does no work to lose a replica.
func (n *node) hasSlot() bool { return n.budget > 0 || !n.live }

// bucket is the planner's working copy of a bucket. Node references are
// indexes into state.nodes.
type bucket struct {
	id BucketID
	// voters and learners are as the plan so far leaves them. Invariant:
	// no node index appears twice across both.
	voters   []int32
	learners []int32
	// lagging are the voters the View marks Lagging.
	lagging []int32
	// leader is the index of the live voter that leads, or -1.
	leader int32
	bytes  int64
	load   float64
	busy   bool
	// noQuorum: fewer up-to-date voters than a quorum; never touched.
	noQuorum bool
	// needsRepair: stray learners, voters on leaving nodes or a voter
	// count other than R. Only repairs move such a bucket; repair clears
	// the flag when no move can help (too few nodes, a blocked drain), so
	// that balance may still move the bucket.
	needsRepair bool
	// planned: the plan holds this bucket's one move.
	planned bool
}

// balanceable reports a bucket that balance moves may touch.
func (b *bucket) balanceable() bool {
	return !b.busy && !b.noQuorum && !b.needsRepair && !b.planned
}

func (b *bucket) hasReplicaOn(n int32) bool {
	return slices.Contains(b.voters, n) || slices.Contains(b.learners, n)
}

// state is one planning call: the working copy of the View, which the
// planned moves update as they are chosen, so that each choice sees the
// effect of the earlier ones (PD's "operator influence").
type state struct {
	cfg     Config
	nodes   []node   // sorted by id
	buckets []bucket // sorted by id
	// usableNodes indexes the usable nodes, by id.
	usableNodes []int32

	moves   []Move
	limited bool
	// pendingReplicas is the net number of replicas that repairs the
	// plan had no slots for will add to usable nodes.
	pendingReplicas int
	noQuorum        []BucketID
	tooFew          []BucketID
	// drainBlocked maps a draining node's index to its stuck buckets.
	drainBlocked map[int32][]BucketID

	// movableBuilt and ledBuilt: the nodes' movable and led lists are
	// built (each on the first need, as a balanced cluster needs neither).
	movableBuilt, ledBuilt bool

	// Scratch space of leaderChain: reachedBy[v] is how the search
	// reached node v.
	reachedBy []reach
	queue     []int32
}

// newState copies v into a state, checking the View's invariants.
func newState(cfg Config, v *View) (*state, error) {
	s := &state{cfg: cfg, drainBlocked: map[int32][]BucketID{}}
	s.nodes = make([]node, 0, len(v.Nodes))
	for _, n := range v.Nodes {
		if n.ID == 0 {
			return nil, fmt.Errorf("%w: node id 0", ErrInvalidView)
		}
		s.nodes = append(s.nodes, node{
			id:     n.ID,
			class:  classify(cfg, n),
			live:   n.Live,
			budget: max(0, cfg.MaxMovesPerNode-n.MovesInFlight),
		})
	}
	index, err := s.sortNodes()
	if err != nil {
		return nil, err
	}

	// Every replica's node index, in View order; -1 for a node the View
	// does not list (removed from the registry): such a node is dead.
	replicaCount := 0
	for i := range v.Buckets {
		replicaCount += len(v.Buckets[i].Replicas)
	}
	resolved := make([]int32, 0, replicaCount)
	var unknown []NodeID
	for i := range v.Buckets {
		for _, r := range v.Buckets[i].Replicas {
			n, ok := index[r.Node]
			if !ok {
				if r.Node == 0 {
					return nil, fmt.Errorf("%w: bucket %d has a replica on node 0", ErrInvalidView, v.Buckets[i].ID)
				}
				n = -1
				unknown = append(unknown, r.Node)
			}
			resolved = append(resolved, n)
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		for _, id := range slices.Compact(unknown) {
			s.nodes = append(s.nodes, node{id: id, class: dead})
		}
		if index, err = s.sortNodes(); err != nil {
			return nil, err
		}
		k := 0
		for i := range v.Buckets {
			for _, r := range v.Buckets[i].Replicas {
				resolved[k] = index[r.Node]
				k++
			}
		}
	}
	for i := range s.nodes {
		if s.nodes[i].class == usable {
			s.usableNodes = append(s.usableNodes, int32(i))
		}
	}

	// One arena for every bucket's node lists; each voters slice has room
	// for the one voter an AddReplica appends.
	arena := make([]int32, 0, replicaCount+len(v.Buckets))
	s.buckets = make([]bucket, 0, len(v.Buckets))
	k := 0
	for i := range v.Buckets {
		in := &v.Buckets[i]
		nodes := resolved[k : k+len(in.Replicas)]
		k += len(in.Replicas)
		b := bucket{id: in.ID, leader: -1, bytes: in.Bytes, load: in.Load, busy: in.Busy}
		for j, n := range nodes {
			if slices.Contains(nodes[:j], n) {
				return nil, fmt.Errorf("%w: bucket %d has two replicas on node %d", ErrInvalidView, in.ID, s.nodes[n].id)
			}
		}
		start := len(arena)
		for j, r := range in.Replicas {
			if !r.Learner {
				arena = append(arena, nodes[j])
			}
		}
		b.voters = arena[start : len(arena) : len(arena)+1]
		arena = arena[:len(arena)+1]
		start = len(arena)
		for j, r := range in.Replicas {
			if r.Learner {
				arena = append(arena, nodes[j])
			}
		}
		b.learners = arena[start:len(arena):len(arena)]
		for j, r := range in.Replicas {
			if r.Lagging && !r.Learner {
				b.lagging = append(b.lagging, nodes[j])
			}
			if r.Node == in.Leader && !r.Learner && s.nodes[nodes[j]].live {
				b.leader = nodes[j]
			}
		}
		// In node order (indexes follow ids), so that the order of
		// Replicas in the View cannot change a choice.
		slices.Sort(b.voters)
		slices.Sort(b.learners)
		s.buckets = append(s.buckets, b)
	}
	slices.SortFunc(s.buckets, func(a, b bucket) int { return cmp.Compare(a.id, b.id) })
	for i := 1; i < len(s.buckets); i++ {
		if s.buckets[i].id == s.buckets[i-1].id {
			return nil, fmt.Errorf("%w: bucket %d listed twice", ErrInvalidView, s.buckets[i].id)
		}
	}

	for bi := range s.buckets {
		b := &s.buckets[bi]
		for _, n := range b.voters {
			s.nodes[n].replicas++
		}
		for _, n := range b.learners {
			s.nodes[n].replicas++
		}
		if b.leader >= 0 {
			s.nodes[b.leader].leaders++
		}
		b.noQuorum = s.upToDateVoters(b) < quorum(len(b.voters))
		if b.noQuorum {
			s.noQuorum = append(s.noQuorum, b.id)
		}
		b.needsRepair = len(b.learners) > 0 || len(b.voters) != cfg.Replicas ||
			slices.ContainsFunc(b.voters, func(n int32) bool { return s.nodes[n].class.leaving() })
	}
	return s, nil
}

// sortNodes sorts s.nodes by id and returns the index of each id.
func (s *state) sortNodes() (map[NodeID]int32, error) {
	slices.SortFunc(s.nodes, func(a, b node) int { return cmp.Compare(a.id, b.id) })
	index := make(map[NodeID]int32, len(s.nodes))
	for i := range s.nodes {
		if i > 0 && s.nodes[i].id == s.nodes[i-1].id {
			return nil, fmt.Errorf("%w: node %d listed twice", ErrInvalidView, s.nodes[i].id)
		}
		index[s.nodes[i].id] = int32(i)
	}
	return index, nil
}

// classify sorts n into a class.
func classify(cfg Config, n Node) nodeClass {
	switch {
	case !n.Live && n.DownFor >= cfg.DeadAfter:
		return dead
	case n.Draining:
		return draining
	case !n.Live:
		return suspect
	}
	return usable
}

// upToDate reports that n's voter of b can count toward a quorum: its node
// is live and the leader does not report it behind.
func (s *state) upToDate(b *bucket, n int32) bool {
	return s.nodes[n].live && !slices.Contains(b.lagging, n)
}

func (s *state) upToDateVoters(b *bucket) int {
	k := 0
	for _, n := range b.voters {
		if s.upToDate(b, n) {
			k++
		}
	}
	return k
}

// canLead reports that n may take b's leadership: a voter on a usable
// node, up to date. (A voter that a move adds is up to date by the time
// it is promoted.)
func (s *state) canLead(b *bucket, n int32) bool {
	return s.nodes[n].class == usable && s.upToDate(b, n)
}

// result assembles the Plan.
func (s *state) result() Plan {
	p := Plan{Moves: s.moves, Limited: s.limited}
	slices.Sort(s.noQuorum)
	slices.Sort(s.tooFew)
	if len(s.noQuorum) > 0 {
		p.Problems = append(p.Problems, Problem{Kind: ProblemNoQuorum, Buckets: s.noQuorum})
	}
	if len(s.tooFew) > 0 {
		p.Problems = append(p.Problems, Problem{Kind: ProblemTooFewNodes, Buckets: s.tooFew})
	}
	blocked := make([]int32, 0, len(s.drainBlocked))
	for n := range s.drainBlocked {
		blocked = append(blocked, n)
	}
	slices.Sort(blocked)
	for _, n := range blocked {
		bs := s.drainBlocked[n]
		slices.Sort(bs)
		p.Problems = append(p.Problems, Problem{Kind: ProblemDrainBlocked, Node: s.nodes[n].id, Buckets: bs})
	}
	return p
}
