package rebalance

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"testing"
	"time"
)

// The simulation: a large cluster from a bad start, with plans applied
// round after round (each round: plan, then every move completes) until a
// plan is empty. It reports the rounds, the final spread of replicas and
// leaderships over the nodes (every node must end within one of the mean),
// and the bytes copied against a lower bound of what balance requires
// (within 10%, issue 6).
//
// The lower bound: a node holding c replicas more than one above the mean
// (the band counts within one of it as balanced) must lose c - ⌊mean+1⌋ of
// them, each copied at least once, and at best those are its smallest
// buckets; moves off different nodes are different moves. Likewise a node
// more than one below must gain ⌈mean-1⌉ - c replicas, at best the
// smallest buckets of the cluster. The bound is the larger of the sums.
//
// TestSimulation runs the skewed start the issue names (10 full nodes, 90
// empty, 100 × 4096, R=3) on every test run; REBALANCE_SIM=all adds a node
// death, a drain and a join on a balanced cluster of the same size.

const (
	simNodes   = 100
	simBuckets = 4096
	simFull    = 10
)

func TestSimulation(t *testing.T) {
	scenarios := []simScenario{{name: "skewed", start: skewedStart}}
	if os.Getenv("REBALANCE_SIM") == "all" {
		scenarios = append(scenarios,
			simScenario{name: "one-dead", start: func(rng *rand.Rand) *View {
				v := balancedStart(rng)
				v.Nodes[37] = Node{ID: v.Nodes[37].ID, DownFor: 2 * time.Minute}
				return v
			}},
			simScenario{name: "drain", start: func(rng *rand.Rand) *View {
				v := balancedStart(rng)
				v.Nodes[37].Draining = true
				return v
			}},
			simScenario{name: "join-10", start: func(rng *rand.Rand) *View {
				v := balancedStart(rng)
				for i := range 10 {
					v.Nodes = append(v.Nodes, Node{ID: NodeID(simNodes + 1 + i), Live: true})
				}
				return v
			}},
		)
	}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, 2))
			r := runSimulation(t, rng, DefaultConfig(), sc.start(rng))
			t.Logf("%s: %s", sc.name, r)
			if !r.final.replicasWithin || !r.final.leadWithin {
				t.Errorf("not within one of the mean: %s", r.final)
			}
			if float64(r.bytesMoved) > 1.10*float64(r.lowerBound) {
				t.Errorf("moved %d bytes, more than 10%% over the lower bound %d", r.bytesMoved, r.lowerBound)
			}
		})
	}
}

type simScenario struct {
	name  string
	start func(*rand.Rand) *View
}

// simResult is what a simulation reports.
type simResult struct {
	rounds                 int
	moves                  map[MoveKind]int
	bytesMoved, lowerBound int64
	final                  spread
	planTime               time.Duration // all Plan calls
}

func (r simResult) String() string {
	return fmt.Sprintf("%d rounds (%d moves, %d replica moves, %d leader transfers); final %s; "+
		"moved %d MiB, lower bound %d MiB (%.3f×); planning took %s in all",
		r.rounds, r.moves[AddReplica]+r.moves[RemoveReplica]+r.moves[MoveReplica]+r.moves[TransferLeader],
		r.moves[MoveReplica], r.moves[TransferLeader], r.final,
		r.bytesMoved>>20, r.lowerBound>>20, float64(r.bytesMoved)/float64(max(1, r.lowerBound)),
		r.planTime.Round(time.Millisecond))
}

// simBucketBytes draws a bucket size: 1 to 64 MiB, uniform.
func simBucketBytes(rng *rand.Rand) int64 { return 1<<20 + rng.Int64N(63<<20) }

// skewedStart: every bucket on nodes 1..10 (consecutive triples, led by
// the first), nodes 11..100 empty.
func skewedStart(rng *rand.Rand) *View {
	v := &View{}
	for i := range simNodes {
		v.Nodes = append(v.Nodes, Node{ID: NodeID(i + 1), Live: true})
	}
	for b := range simBuckets {
		bk := Bucket{ID: BucketID(b), Bytes: simBucketBytes(rng), Load: float64(rng.IntN(100))}
		for j := range 3 {
			bk.Replicas = append(bk.Replicas, Replica{Node: NodeID((b+j)%simFull + 1)})
		}
		bk.Leader = bk.Replicas[0].Node
		v.Buckets = append(v.Buckets, bk)
	}
	return v
}

// balancedStart: the skewed start, planned to its fixed point.
func balancedStart(rng *rand.Rand) *View {
	v := skewedStart(rng)
	p, _ := NewPlanner(DefaultConfig())
	for {
		plan, err := p.Plan(v)
		if err != nil {
			panic(err)
		}
		if len(plan.Moves) == 0 {
			return v
		}
		applyPlan(nopTB{}, v, plan)
	}
}

// runSimulation plans and applies until a plan is empty. Between rounds
// Raft elects a leader, at random among the live voters, for every bucket
// whose leader is gone (a dead node's, or a removed leader's when the plan
// named no successor).
func runSimulation(t *testing.T, rng *rand.Rand, cfg Config, v *View) simResult {
	p := mustPlanner(t, cfg)
	r := simResult{moves: map[MoveKind]int{}, lowerBound: balanceLowerBound(p.Config(), v)}
	for {
		elect(rng, v)
		start := time.Now()
		plan, err := p.Plan(v)
		r.planTime += time.Since(start)
		if err != nil {
			t.Fatal(err)
		}
		if len(plan.Moves) == 0 {
			if len(plan.Problems) > 0 || plan.Limited {
				t.Fatalf("final plan: %s", fmtPlan(plan))
			}
			break
		}
		r.rounds++
		if r.rounds > 10_000 {
			t.Fatal("no fixed point after 10000 rounds")
		}
		for _, m := range plan.Moves {
			r.moves[m.Kind]++
			r.bytesMoved += m.Bytes
		}
		applyPlan(t, v, plan)
	}
	r.final = spreadOf(p.Config(), v)
	return r
}

// elect gives every bucket without a live voter as leader one, at random.
func elect(rng *rand.Rand, v *View) {
	live := map[NodeID]bool{}
	for _, n := range v.Nodes {
		live[n.ID] = n.Live
	}
	for i := range v.Buckets {
		b := &v.Buckets[i]
		if j := replicaIndex(b, b.Leader); j >= 0 && !b.Replicas[j].Learner && live[b.Leader] {
			continue
		}
		var candidates []NodeID
		for _, r := range b.Replicas {
			if !r.Learner && !r.Lagging && live[r.Node] {
				candidates = append(candidates, r.Node)
			}
		}
		if len(candidates) > 0 {
			b.Leader = candidates[rng.IntN(len(candidates))]
		}
	}
}

// balanceLowerBound bounds from below the bytes any plan must copy to
// bring v within one of the mean (see the comment at the top), counting
// the replicas on nodes that are not usable as ones to re-create.
func balanceLowerBound(cfg Config, v *View) int64 {
	var usableNodes []NodeID
	onNode := map[NodeID][]int64{}
	var all, homeless []int64
	for _, n := range v.Nodes {
		if classify(cfg, n) == usable {
			usableNodes = append(usableNodes, n.ID)
		}
	}
	for _, b := range v.Buckets {
		for _, r := range b.Replicas {
			all = append(all, b.Bytes)
			c := dead
			if n := findNode(v, r.Node); n != nil {
				c = classify(cfg, *n)
			}
			switch {
			case c == usable:
				onNode[r.Node] = append(onNode[r.Node], b.Bytes)
			case c.leaving():
				homeless = append(homeless, b.Bytes)
			}
		}
	}
	slices.Sort(all)
	n := len(usableNodes)
	total := len(all)
	hi := (total + n) / n         // ⌊mean+1⌋
	lo := (total - n + n - 1) / n // ⌈mean-1⌉
	var out, in int64
	for _, b := range homeless {
		out += b // every one is copied once
	}
	need := 0
	for _, id := range usableNodes {
		sizes := onNode[id]
		slices.SortFunc(sizes, cmp.Compare)
		for _, b := range sizes[:max(0, len(sizes)-hi)] {
			out += b
		}
		need += max(0, lo-len(sizes))
	}
	for _, b := range all[:min(need, len(all))] {
		in += b
	}
	return max(out, in)
}

// nopTB lets applyPlan run outside a test; it panics on failure.
type nopTB struct{ testing.TB }

func (nopTB) Helper()                      {}
func (nopTB) Fatalf(f string, args ...any) { panic(fmt.Sprintf(f, args...)) }
