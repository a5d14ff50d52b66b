package rebalance

import (
	"cmp"
	"fmt"
	"slices"
	"testing"
)

// applyMove changes v as the executor would once m completes: the new
// voter is caught up (not lagging), a removed leader's leadership is on
// NewLeader (or unknown), and a move's joint configuration is left. It
// fails the test on a move CheckMove refuses.
func applyMove(t testing.TB, v *View, m Move) {
	t.Helper()
	if err := CheckMove(v, m); err != nil {
		t.Fatalf("applying %v: %v", m, err)
	}
	b := findBucket(v, m.Bucket)
	switch m.Kind {
	case AddReplica:
		if i := replicaIndex(b, m.To); i >= 0 {
			b.Replicas[i] = Replica{Node: m.To}
		} else {
			b.Replicas = append(b.Replicas, Replica{Node: m.To})
		}
	case RemoveReplica:
		i := replicaIndex(b, m.From)
		b.Replicas = slices.Delete(b.Replicas, i, i+1)
		if b.Leader == m.From {
			b.Leader = m.NewLeader
		}
	case MoveReplica:
		i := replicaIndex(b, m.From)
		if j := replicaIndex(b, m.To); j >= 0 {
			b.Replicas[j] = Replica{Node: m.To}
			b.Replicas = slices.Delete(b.Replicas, i, i+1)
		} else {
			b.Replicas[i] = Replica{Node: m.To}
		}
		if b.Leader == m.From {
			b.Leader = m.NewLeader
		}
	case TransferLeader:
		b.Leader = m.To
	}
	checkDistinct(t, b)
}

// applyPlan applies every move of p in order (they commute: one per
// bucket).
func applyPlan(t testing.TB, v *View, p Plan) {
	t.Helper()
	seen := map[BucketID]bool{}
	for _, m := range p.Moves {
		if seen[m.Bucket] {
			t.Fatalf("two moves for bucket %d in one plan: %v", m.Bucket, p.Moves)
		}
		seen[m.Bucket] = true
		applyMove(t, v, m)
	}
}

func findBucket(v *View, id BucketID) *Bucket {
	for i := range v.Buckets {
		if v.Buckets[i].ID == id {
			return &v.Buckets[i]
		}
	}
	return nil
}

func findNode(v *View, id NodeID) *Node {
	for i := range v.Nodes {
		if v.Nodes[i].ID == id {
			return &v.Nodes[i]
		}
	}
	return nil
}

func replicaIndex(b *Bucket, n NodeID) int {
	return slices.IndexFunc(b.Replicas, func(r Replica) bool { return r.Node == n })
}

func checkDistinct(t testing.TB, b *Bucket) {
	t.Helper()
	seen := map[NodeID]bool{}
	for _, r := range b.Replicas {
		if seen[r.Node] {
			t.Fatalf("bucket %d has two replicas on node %d: %v", b.ID, r.Node, b.Replicas)
		}
		seen[r.Node] = true
	}
}

// nodeCounts are one node's replicas (voters and learners) and
// leaderships in a View.
type nodeCounts struct {
	replicas, leaders int
}

func countByNode(v *View) map[NodeID]nodeCounts {
	out := map[NodeID]nodeCounts{}
	for _, b := range v.Buckets {
		for _, r := range b.Replicas {
			c := out[r.Node]
			c.replicas++
			out[r.Node] = c
		}
		if b.Leader != 0 {
			c := out[b.Leader]
			c.leaders++
			out[b.Leader] = c
		}
	}
	return out
}

// spread summarises the counts over the usable nodes of v.
type spread struct {
	nodes                      int
	replicaMean, leaderMean    float64
	minReplicas, maxReplicas   int
	minLeaders, maxLeaders     int
	replicasWithin, leadWithin bool // every node within one of the mean
}

func (s spread) String() string {
	return fmt.Sprintf("replicas %d..%d (mean %.2f), leaders %d..%d (mean %.2f)",
		s.minReplicas, s.maxReplicas, s.replicaMean, s.minLeaders, s.maxLeaders, s.leaderMean)
}

func spreadOf(cfg Config, v *View) spread {
	counts := countByNode(v)
	var s spread
	var rs, ls []int
	for _, n := range v.Nodes {
		if classify(cfg.withDefaults(), n) != usable {
			continue
		}
		c := counts[n.ID]
		rs = append(rs, c.replicas)
		ls = append(ls, c.leaders)
	}
	s.nodes = len(rs)
	if s.nodes == 0 {
		s.replicasWithin, s.leadWithin = true, true
		return s
	}
	s.minReplicas, s.maxReplicas = slices.Min(rs), slices.Max(rs)
	s.minLeaders, s.maxLeaders = slices.Min(ls), slices.Max(ls)
	sum := func(xs []int) (t int) {
		for _, x := range xs {
			t += x
		}
		return t
	}
	s.replicaMean = float64(sum(rs)) / float64(s.nodes)
	s.leaderMean = float64(sum(ls)) / float64(s.nodes)
	within := func(lo, hi int, mean float64) bool {
		return float64(hi) <= mean+1 && float64(lo) >= mean-1
	}
	s.replicasWithin = within(s.minReplicas, s.maxReplicas, s.replicaMean)
	s.leadWithin = within(s.minLeaders, s.maxLeaders, s.leaderMean)
	return s
}

// cloneView deep-copies v.
func cloneView(v *View) *View {
	out := &View{Nodes: slices.Clone(v.Nodes), Buckets: slices.Clone(v.Buckets)}
	for i := range out.Buckets {
		out.Buckets[i].Replicas = slices.Clone(out.Buckets[i].Replicas)
	}
	return out
}

// sortView puts v in id order, for printing.
func sortView(v *View) {
	slices.SortFunc(v.Nodes, func(a, b Node) int { return cmp.Compare(a.ID, b.ID) })
	slices.SortFunc(v.Buckets, func(a, b Bucket) int { return cmp.Compare(a.ID, b.ID) })
}

func mustPlanner(t testing.TB, cfg Config) *Planner {
	t.Helper()
	p, err := NewPlanner(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
