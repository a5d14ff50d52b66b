package rebalance

import (
	"errors"
	"math/rand/v2"
	"os"
	"reflect"
	"slices"
	"strconv"
	"testing"
	"time"
)

// TestPlanProperties plans for random views (a few nodes of every class,
// buckets with dead, lagging, learner and busy replicas, random limits)
// and checks, for every plan, the invariants of doc.go:
//
//   - the View is not changed, and a shuffled copy of it gives the same
//     plan (determinism, invariant 5);
//   - at most MaxMoves moves, one per bucket, and per live node no more
//     adds and removals than its slots (invariants 2 and 6);
//   - every move passes CheckMove, applied one after the other: no bucket
//     drops below a quorum of up-to-date voters, none without a quorum or
//     busy is touched, no node gets a second replica of a bucket
//     (invariants 1 to 3); leaderships go only to usable nodes;
//
// then applies plans until one is empty, which must happen (invariant 7),
// and checks the fixed point against the placement goals (invariant 8).
//
// The seed is random and logged; replay a failure with
//
//	REBALANCE_SEED=<seed> go test ./rebalance -run TestPlanProperties
func TestPlanProperties(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("REBALANCE_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("REBALANCE_SEED=%q: %v", s, err)
		}
	}
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	iterations := 400
	if raceEnabled || testing.Short() {
		iterations = 100
	}
	for i := range iterations {
		cfg, v := randomView(rng)
		checkConvergence(t, i, rng, cfg, v)
		if t.Failed() {
			t.Fatalf("iteration %d failed (seed %d)", i, seed)
		}
	}
}

// randomView draws a small cluster in a random state.
func randomView(rng *rand.Rand) (Config, *View) {
	cfg := Config{
		Replicas:        1 + rng.IntN(5),
		DeadAfter:       time.Minute,
		MaxMoves:        1 + rng.IntN(40),
		MaxMovesPerNode: 1 + rng.IntN(5),
	}
	v := &View{}
	ids := rng.Perm(20)[:1+rng.IntN(10)]
	for _, id := range ids {
		n := Node{ID: NodeID(id + 1), Live: true}
		switch x := rng.IntN(10); {
		case x == 0:
			n.Draining = true
		case x == 1:
			n.Live, n.DownFor = false, time.Duration(rng.IntN(59))*time.Second
		case x == 2:
			n.Live, n.DownFor = false, time.Minute+time.Duration(rng.IntN(100))*time.Second
		}
		if rng.IntN(5) == 0 {
			n.MovesInFlight = rng.IntN(3)
		}
		v.Nodes = append(v.Nodes, n)
	}
	// Replicas may sit on a node the View does not list (removed).
	candidates := append(slices.Clone(ids), 40)
	for b := range 1 + rng.IntN(30) {
		bk := Bucket{ID: BucketID(b * 3), Bytes: 1 + rng.Int64N(1000), Load: float64(rng.IntN(4))}
		order := rng.Perm(len(candidates))
		voters := 1 + rng.IntN(min(len(candidates), cfg.Replicas+2))
		learners := 0
		if rng.IntN(5) == 0 && voters < len(candidates) {
			learners = 1
		}
		for j, k := range order[:voters+learners] {
			r := Replica{Node: NodeID(candidates[k] + 1), Learner: j >= voters}
			r.Lagging = !r.Learner && rng.IntN(10) == 0
			bk.Replicas = append(bk.Replicas, r)
		}
		switch x := rng.IntN(20); {
		case x == 0:
			bk.Leader = 0
		case x == 1:
			bk.Leader = bk.Replicas[len(bk.Replicas)-1].Node // maybe a learner: taken as unknown
		default:
			bk.Leader = bk.Replicas[rng.IntN(voters)].Node
		}
		bk.Busy = rng.IntN(20) == 0
		v.Buckets = append(v.Buckets, bk)
	}
	return cfg, v
}

// checkConvergence checks every plan from v to its fixed point.
func checkConvergence(t *testing.T, iter int, rng *rand.Rand, cfg Config, v *View) {
	p := mustPlanner(t, cfg)
	const maxRounds = 2000
	for round := 0; ; round++ {
		if round == maxRounds {
			t.Errorf("iteration %d: no fixed point after %d rounds", iter, maxRounds)
			return
		}
		plan := checkPlan(t, iter, rng, p, v)
		if t.Failed() {
			return
		}
		inFlight := false
		for i := range v.Nodes {
			inFlight = inFlight || v.Nodes[i].MovesInFlight > 0
		}
		if len(plan.Moves) == 0 && !inFlight {
			checkFixedPoint(t, iter, p.Config(), v, plan)
			return
		}
		applyPlan(t, v, plan)
		// The executor finished the moves it had in flight, too.
		for i := range v.Nodes {
			v.Nodes[i].MovesInFlight = 0
		}
	}
}

// checkPlan plans for v and checks the per-plan invariants.
func checkPlan(t *testing.T, iter int, rng *rand.Rand, p *Planner, v *View) Plan {
	before := cloneView(v)
	plan, err := p.Plan(v)
	if err != nil {
		t.Fatalf("iteration %d: %v", iter, err)
	}
	if !reflect.DeepEqual(before, v) {
		t.Fatalf("iteration %d: Plan changed its View", iter)
	}
	shuffled := cloneView(v)
	rng.Shuffle(len(shuffled.Nodes), func(i, j int) { shuffled.Nodes[i], shuffled.Nodes[j] = shuffled.Nodes[j], shuffled.Nodes[i] })
	rng.Shuffle(len(shuffled.Buckets), func(i, j int) {
		shuffled.Buckets[i], shuffled.Buckets[j] = shuffled.Buckets[j], shuffled.Buckets[i]
	})
	for _, b := range shuffled.Buckets {
		rng.Shuffle(len(b.Replicas), func(i, j int) { b.Replicas[i], b.Replicas[j] = b.Replicas[j], b.Replicas[i] })
	}
	if again, _ := p.Plan(shuffled); !reflect.DeepEqual(plan, again) {
		t.Fatalf("iteration %d: the same View in another order gives another plan:\n%s\nvs\n%s", iter, fmtPlan(plan), fmtPlan(again))
	}

	cfg := p.Config()
	if len(plan.Moves) > cfg.MaxMoves {
		t.Errorf("iteration %d: %d moves > MaxMoves %d", iter, len(plan.Moves), cfg.MaxMoves)
	}
	slotsUsed := map[NodeID]int{}
	for _, m := range plan.Moves {
		if m.Kind != TransferLeader {
			if m.From != 0 {
				slotsUsed[m.From]++
			}
			if m.To != 0 {
				slotsUsed[m.To]++
			}
		}
		for _, leader := range []NodeID{m.NewLeader, map[bool]NodeID{true: m.To}[m.Kind == TransferLeader]} {
			if n := findNode(v, leader); leader != 0 && (n == nil || classify(cfg, *n) != usable) {
				t.Errorf("iteration %d: %v gives a leadership to a node that is not usable", iter, m)
			}
		}
	}
	for id, used := range slotsUsed {
		if n := findNode(v, id); n != nil && n.Live && used > cfg.MaxMovesPerNode-n.MovesInFlight {
			t.Errorf("iteration %d: n%d takes part in %d moves, limit %d less %d in flight", iter, id, used, cfg.MaxMovesPerNode, n.MovesInFlight)
		}
	}
	// Every move is checked against the View as the earlier ones left it.
	applyPlan(t, cloneView(v), plan)
	return plan
}

// checkFixedPoint checks the placement goals on a View whose plan is
// empty, for every bucket the planner may touch.
func checkFixedPoint(t *testing.T, iter int, cfg Config, v *View, plan Plan) {
	class := map[NodeID]nodeClass{}
	var usableNodes []NodeID
	for _, n := range v.Nodes {
		class[n.ID] = classify(cfg, n)
		if class[n.ID] == usable {
			usableNodes = append(usableNodes, n.ID)
		}
	}
	blocked := map[BucketID]bool{}
	pinned := false
	for _, pr := range plan.Problems {
		for _, b := range pr.Buckets {
			if pr.Kind == ProblemDrainBlocked {
				blocked[b] = true
			}
			if pr.Kind == ProblemNoQuorum {
				pinned = true
			}
		}
	}
	for _, b := range v.Buckets {
		if b.Busy {
			pinned = true
			continue
		}
		if errors.Is(CheckMove(&View{Nodes: v.Nodes, Buckets: []Bucket{b}}, Move{Kind: AddReplica, Bucket: b.ID, To: 1 << 40}), ErrNoQuorum) {
			continue
		}
		voters := 0
		for _, r := range b.Replicas {
			c, ok := class[r.Node]
			if !ok {
				c = dead
			}
			switch {
			case r.Learner:
				t.Errorf("iteration %d: fixed point keeps a learner: b%d %v", iter, b.ID, b.Replicas)
			case c == dead:
				t.Errorf("iteration %d: fixed point keeps a voter on a dead node: b%d %v", iter, b.ID, b.Replicas)
			case c == draining && !blocked[b.ID]:
				t.Errorf("iteration %d: fixed point keeps a voter on a draining node, unreported: b%d %v", iter, b.ID, b.Replicas)
			}
			voters++
		}
		if voters > cfg.Replicas {
			t.Errorf("iteration %d: fixed point over-replicated: b%d %v", iter, b.ID, b.Replicas)
		}
		if voters < cfg.Replicas {
			for _, n := range usableNodes {
				if replicaIndex(&b, n) < 0 {
					t.Errorf("iteration %d: fixed point under-replicated although n%d could take a replica: b%d %v", iter, n, b.ID, b.Replicas)
				}
			}
		}
	}
	s := spreadOf(cfg, v)
	if !pinned && !s.replicasWithin {
		t.Errorf("iteration %d: fixed point off replica balance: %s", iter, s)
	}
	// Leaderships can only go to voters that can lead, so with R = 1 or
	// lagging voters they may be stuck; otherwise direct and chained
	// transfers should balance them.
	lagging := slices.ContainsFunc(v.Buckets, func(b Bucket) bool {
		return slices.ContainsFunc(b.Replicas, func(r Replica) bool { return r.Lagging })
	})
	if !pinned && !lagging && cfg.Replicas >= 2 && !s.leadWithin {
		t.Errorf("iteration %d: fixed point off leader balance: %s", iter, s)
	}
	if plan.Limited {
		t.Errorf("iteration %d: an empty plan is Limited", iter)
	}
}
