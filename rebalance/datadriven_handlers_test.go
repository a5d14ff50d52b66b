package rebalance

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"
)

// The handlers of TestDataDriven's commands, one per command; the DSL is
// documented on TestDataDriven.

func (env *ddEnv) handleConfig(t *testing.T, d *datadriven.TestData) (string, error) {
	var cfg Config
	d.MaybeScanArgs(t, "r", &cfg.Replicas)
	cfg.DeadAfter = durationArg(t, d, "dead-after")
	d.MaybeScanArgs(t, "max-moves", &cfg.MaxMoves)
	d.MaybeScanArgs(t, "max-per-node", &cfg.MaxMovesPerNode)
	env.reset(t, cfg)
	return "", nil
}

func (env *ddEnv) handleNode(t *testing.T, d *datadriven.TestData) (string, error) {
	down := durationArg(t, d, "down")
	var inFlight int
	d.MaybeScanArgs(t, "in-flight", &inFlight)
	for _, id := range nodeListArg(t, d, "id") {
		n := Node{ID: id, Live: !d.HasArg("down"), DownFor: down, Draining: d.HasArg("draining"), MovesInFlight: inFlight}
		if old := findNode(&env.view, id); old != nil {
			*old = n
		} else {
			env.view.Nodes = append(env.view.Nodes, n)
		}
	}
	return "", nil
}

func (env *ddEnv) handleBuckets(t *testing.T, d *datadriven.TestData) (string, error) {
	var count int
	d.ScanArgs(t, "count", &count)
	nodes := nodeListArg(t, d, "nodes")
	first := 0
	for _, b := range env.view.Buckets {
		first = max(first, int(b.ID)+1)
	}
	d.MaybeScanArgs(t, "first", &first)
	var bytes int64 = 100
	d.MaybeScanArgs(t, "bytes", &bytes)
	var leader uint64
	d.MaybeScanArgs(t, "leader", &leader)
	r := env.planner.Config().Replicas
	for i := range count {
		b := Bucket{ID: BucketID(first + i), Bytes: bytes, Leader: NodeID(leader)}
		for j := range min(r, len(nodes)) {
			b.Replicas = append(b.Replicas, Replica{Node: nodes[(i+j)%len(nodes)]})
		}
		if leader == 0 {
			b.Leader = b.Replicas[0].Node
		}
		env.putBucket(b)
	}
	return "", nil
}

func (env *ddEnv) handleBucket(t *testing.T, d *datadriven.TestData) (string, error) {
	var id int
	d.ScanArgs(t, "id", &id)
	b := Bucket{ID: BucketID(id), Bytes: 100, Busy: d.HasArg("busy")}
	lagging := nodeListArg(t, d, "lagging")
	for _, n := range nodeListArg(t, d, "voters") {
		b.Replicas = append(b.Replicas, Replica{Node: n, Lagging: slices.Contains(lagging, n)})
	}
	for _, n := range nodeListArg(t, d, "learners") {
		b.Replicas = append(b.Replicas, Replica{Node: n, Learner: true})
	}
	var leader uint64
	d.MaybeScanArgs(t, "leader", &leader)
	b.Leader = NodeID(leader)
	d.MaybeScanArgs(t, "bytes", &b.Bytes)
	d.MaybeScanArgs(t, "load", &b.Load)
	env.putBucket(b)
	return "", nil
}

func (env *ddEnv) putBucket(b Bucket) {
	if old := findBucket(&env.view, b.ID); old != nil {
		*old = b
	} else {
		env.view.Buckets = append(env.view.Buckets, b)
	}
}

func (env *ddEnv) handlePlan(t *testing.T, d *datadriven.TestData) (string, error) {
	p, err := env.planner.Plan(&env.view)
	if err != nil {
		return "", err
	}
	return fmtPlan(p), nil
}

func (env *ddEnv) handleApply(t *testing.T, d *datadriven.TestData) (string, error) {
	rounds := 1
	d.MaybeScanArgs(t, "rounds", &rounds)
	var sb strings.Builder
	for i := range rounds {
		p, err := env.planner.Plan(&env.view)
		if err != nil {
			return sb.String(), err
		}
		if rounds > 1 {
			fmt.Fprintf(&sb, "round %d:\n", i+1)
		}
		sb.WriteString(fmtPlan(p))
		applyPlan(t, &env.view, p)
	}
	return sb.String(), nil
}

func (env *ddEnv) handleConverge(t *testing.T, d *datadriven.TestData) (string, error) {
	maxRounds := 100
	d.MaybeScanArgs(t, "max-rounds", &maxRounds)
	var (
		kinds  = map[MoveKind]int{}
		bytes  int64
		last   Plan
		rounds int
	)
	for {
		p, err := env.planner.Plan(&env.view)
		if err != nil {
			return "", err
		}
		last = p
		if len(p.Moves) == 0 {
			break
		}
		if rounds == maxRounds {
			return "", fmt.Errorf("no fixed point after %d rounds; last plan:\n%s", rounds, fmtPlan(p))
		}
		rounds++
		for _, m := range p.Moves {
			kinds[m.Kind]++
			bytes += m.Bytes
		}
		applyPlan(t, &env.view, p)
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "%d rounds;", rounds)
	for k := AddReplica; k <= TransferLeader; k++ {
		if kinds[k] > 0 {
			fmt.Fprintf(&sb, " %s=%d", k, kinds[k])
		}
	}
	fmt.Fprintf(&sb, "; bytes=%d\n", bytes)
	for _, pr := range last.Problems {
		fmt.Fprintf(&sb, "problem %s\n", pr)
	}
	sb.WriteString(env.show(false))
	return sb.String(), nil
}

func (env *ddEnv) handleShow(t *testing.T, d *datadriven.TestData) (string, error) {
	return env.show(d.HasArg("buckets")), nil
}

func (env *ddEnv) show(buckets bool) string {
	sortView(&env.view)
	cfg := env.planner.Config()
	counts := countByNode(&env.view)
	var sb strings.Builder
	for _, n := range env.view.Nodes {
		c := counts[n.ID]
		fmt.Fprintf(&sb, "n%d: replicas=%d leaders=%d", n.ID, c.replicas, c.leaders)
		if !n.Live {
			fmt.Fprintf(&sb, " down=%s", n.DownFor)
		}
		if cl := classify(cfg, n); cl != usable {
			fmt.Fprintf(&sb, " (%s)", cl)
		}
		sb.WriteString("\n")
	}
	if s := spreadOf(cfg, &env.view); s.nodes > 0 {
		fmt.Fprintf(&sb, "%s\n", s)
	}
	if buckets {
		for _, b := range env.view.Buckets {
			fmt.Fprintf(&sb, "b%d:", b.ID)
			for _, r := range b.Replicas {
				sb.WriteString(" ")
				if r.Learner {
					sb.WriteString("+")
				}
				fmt.Fprintf(&sb, "%d", r.Node)
				if r.Node == b.Leader {
					sb.WriteString("*")
				}
				if r.Lagging {
					sb.WriteString("~")
				}
			}
			if b.Busy {
				sb.WriteString(" busy")
			}
			sb.WriteString("\n")
		}
	}
	return sb.String()
}

func fmtPlan(p Plan) string {
	var sb strings.Builder
	for _, m := range p.Moves {
		fmt.Fprintf(&sb, "%s\n", m)
	}
	for _, pr := range p.Problems {
		fmt.Fprintf(&sb, "problem %s\n", pr)
	}
	if p.Limited {
		sb.WriteString("limited\n")
	}
	if sb.Len() == 0 {
		return "no moves\n"
	}
	return sb.String()
}

// nodeListArg reads key=(1,2,3) or key=1; nil if key is absent.
func nodeListArg(t *testing.T, d *datadriven.TestData, key string) []NodeID {
	arg, ok := d.Arg(key)
	if !ok {
		return nil
	}
	var out []NodeID
	for _, v := range arg.Vals {
		if v == "" {
			continue
		}
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("%s: %s=%s: %v", d.Pos, key, v, err)
		}
		out = append(out, NodeID(n))
	}
	return out
}

// durationArg reads key=<Go duration>; 0 if key is absent.
func durationArg(t *testing.T, d *datadriven.TestData, key string) time.Duration {
	if !d.HasArg(key) {
		return 0
	}
	var s string
	d.ScanArgs(t, key, &s)
	dur, err := time.ParseDuration(s)
	if err != nil {
		t.Fatalf("%s: %s=%s: %v", d.Pos, key, s, err)
	}
	return dur
}
