package rebalance

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// BenchmarkPlan times one planning call at 100 nodes × 4096 buckets (R=3,
// default limits) from three starts: the skewed start of TestSimulation
// (a full plan of MaxMoves moves), a balanced cluster (the steady state:
// an empty plan) and a balanced cluster with one node dead (123 repairs,
// a full plan). Run and compare with
//
//	go test ./rebalance -run '^$' -bench Plan -count 10 > new.txt
//	benchstat old.txt new.txt
func BenchmarkPlan(b *testing.B) {
	starts := []struct {
		name string
		view func(*rand.Rand) *View
	}{
		{"skewed", skewedStart},
		{"balanced", balancedStart},
		{"one-dead", func(rng *rand.Rand) *View {
			v := balancedStart(rng)
			v.Nodes[37] = Node{ID: v.Nodes[37].ID, DownFor: 2 * time.Minute}
			return v
		}},
	}
	for _, st := range starts {
		b.Run(fmt.Sprintf("nodes=%d/buckets=%d/start=%s", simNodes, simBuckets, st.name), func(b *testing.B) {
			v := st.view(rand.New(rand.NewPCG(1, 2)))
			p := mustPlanner(b, DefaultConfig())
			b.ReportAllocs()
			moves := 0
			for b.Loop() {
				plan, err := p.Plan(v)
				if err != nil {
					b.Fatal(err)
				}
				moves = len(plan.Moves)
			}
			b.ReportMetric(float64(moves), "moves/plan")
		})
	}
}
