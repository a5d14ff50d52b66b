package jepsen

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"
)

// memCluster is the in-memory twin of ProcessCluster: node states only.
type memCluster struct {
	nodes int
	// failStart makes Start fail (a node that does not come back).
	failStart bool
	mu        struct {
		sync.Mutex
		dead, paused map[int]bool
		log          []string
	}
}

var _ Cluster = (*memCluster)(nil)

func newMemCluster(nodes int) *memCluster {
	c := &memCluster{nodes: nodes}
	c.mu.dead, c.mu.paused = map[int]bool{}, map[int]bool{}
	return c
}

func (c *memCluster) Nodes() []int {
	out := make([]int, c.nodes)
	for i := range out {
		out[i] = i + 1
	}
	return out
}

func (c *memCluster) set(verb string, n int, apply func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	apply()
	c.mu.log = append(c.mu.log, verb)
}

func (c *memCluster) Kill(_ context.Context, n int) error {
	c.set("kill", n, func() { c.mu.dead[n], c.mu.paused[n] = true, false })
	return nil
}

func (c *memCluster) Start(_ context.Context, n int) error {
	if c.failStart {
		return ErrNodeDown
	}
	c.set("start", n, func() { c.mu.dead[n] = false })
	return nil
}

func (c *memCluster) Pause(_ context.Context, n int) error {
	c.set("pause", n, func() { c.mu.paused[n] = !c.mu.dead[n] })
	return nil
}

func (c *memCluster) Resume(_ context.Context, n int) error {
	c.set("resume", n, func() { c.mu.paused[n] = false })
	return nil
}

// healthy reports whether every node runs unpaused.
func (c *memCluster) healthy() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for n := 1; n <= c.nodes; n++ {
		if c.mu.dead[n] || c.mu.paused[n] {
			return false
		}
	}
	return true
}

func runScheduler(t *testing.T, c Cluster, seed uint64, names []string, targets Targets, d time.Duration) (*Scheduler, []Op, error) {
	t.Helper()
	nemeses, err := NewNemeses(names, NemesisOptions{Targets: targets})
	if err != nil {
		t.Fatal(err)
	}
	rec := NewRecorder()
	s := NewScheduler(SchedulerConfig{Interval: 4 * time.Millisecond, Duration: 2 * time.Millisecond, HealTimeout: time.Second},
		c, nemeses, rec, rand.New(rand.NewPCG(seed, 0)))
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	err = s.Run(ctx)
	return s, rec.Ops(), err
}

// faultsOf decodes the nemesis entries of a history.
func faultsOf(t *testing.T, ops []Op) []nemesisEvent {
	t.Helper()
	var out []nemesisEvent
	for _, op := range ops {
		var ev nemesisEvent
		if err := json.Unmarshal(op.Value, &ev); err != nil || op.Process != NemesisProcess {
			t.Fatalf("entry %+v: %v", op, err)
		}
		out = append(out, ev)
	}
	return out
}

func TestSchedulerInjectsAndHealsEveryFault(t *testing.T) {
	c := newMemCluster(5)
	s, ops, err := runScheduler(t, c, 7, []string{"kill", "pause"}, TargetMajority, 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if !c.healthy() {
		t.Fatalf("a fault outlived the scheduler: %v", c.mu.log)
	}
	evs := faultsOf(t, ops)
	if len(evs) < 4 || len(evs)%2 != 0 {
		t.Fatalf("%d nemesis entries, want start/stop pairs", len(evs))
	}
	total := 0
	for i := 0; i < len(evs); i += 2 {
		start, stop := evs[i], evs[i+1]
		if start.Phase != "start" || stop.Phase != "stop" || !slices.Equal(start.Nodes, stop.Nodes) {
			t.Errorf("entries %d, %d: %+v then %+v", i, i+1, start, stop)
		}
		if len(start.Nodes) != 3 {
			t.Errorf("majority of 5 hit %v", start.Nodes)
		}
		total++
	}
	counts := s.Counts()
	if counts["kill"]+counts["pause"] != total || counts["kill"] == 0 || counts["pause"] == 0 {
		t.Errorf("counts %v for %d faults", counts, total)
	}
}

func TestSchedulerIsSeeded(t *testing.T) {
	faults := func() []string {
		_, ops, err := runScheduler(t, newMemCluster(3), 42, []string{"kill", "pause"}, TargetOne, 100*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, ev := range faultsOf(t, ops) {
			out = append(out, ev.Fault.String())
		}
		return out
	}
	a, b := faults(), faults()
	n := min(len(a), len(b))
	if n < 4 || !slices.Equal(a[:n], b[:n]) {
		t.Errorf("same seed, different faults:\n%v\n%v", a, b)
	}
}

func TestSchedulerStopsOnHealFailure(t *testing.T) {
	c := newMemCluster(1)
	c.failStart = true
	_, ops, err := runScheduler(t, c, 1, []string{"kill"}, TargetOne, 5*time.Second)
	if !errors.Is(err, ErrNodeDown) {
		t.Fatalf("Run: %v, want the heal error", err)
	}
	evs := faultsOf(t, ops)
	if last := evs[len(evs)-1]; last.Phase != "stop" || last.Error == "" {
		t.Errorf("last entry %+v: want a stop recording the error", last)
	}
}

func TestTargets(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	nodes := []int{1, 2, 3, 4, 5}
	for _, tc := range []struct {
		t    Targets
		want int
	}{{TargetOne, 1}, {TargetMinority, 2}, {TargetMajority, 3}, {TargetAll, 5}} {
		got := tc.t.pick(rng, nodes)
		if len(got) != tc.want || !slices.IsSorted(got) {
			t.Errorf("%s of 5: %v", tc.t, got)
		}
	}
	ctx := context.Background()
	named := func(n int) primaryFunc { return func(context.Context) (int, error) { return n, nil } }
	if got := TargetPrimary.choose(ctx, rng, nodes, named(4)); !slices.Equal(got, []int{4}) {
		t.Errorf("primary, node 4 named: %v", got)
	}
	if got := TargetOne.choose(ctx, rng, nodes, named(4)); len(got) != 1 {
		t.Errorf("one, with a primary named: %v", got)
	}
	for _, none := range []primaryFunc{named(0), named(9), nil, func(context.Context) (int, error) { return 0, errors.New("down") }} {
		if got := TargetPrimary.choose(ctx, rng, nodes, none); len(got) != 1 || !slices.Contains(nodes, got[0]) {
			t.Errorf("primary, none named: %v, want one random node", got)
		}
	}
	if got := TargetMinority.pick(rng, []int{1}); len(got) != 1 {
		t.Errorf("minority of one node: %v", got)
	}
	if _, err := NewNemeses([]string{"kill", "clock"}, NemesisOptions{Targets: TargetOne}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("unknown nemesis: %v", err)
	}
}
