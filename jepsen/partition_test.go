package jepsen

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// sees returns, per node, the nodes whose packets it accepts (itself
// included).
func sees(g Grudge, nodes []int) map[int][]int {
	out := map[int][]int{}
	for _, n := range nodes {
		for _, m := range nodes {
			if !slices.Contains(g[n], m) {
				out[n] = append(out[n], m)
			}
		}
	}
	return out
}

// symmetric reports whether every cut link is cut both ways.
func symmetric(g Grudge) bool {
	for _, l := range g.Links() {
		if !slices.Contains(g[l.From], l.To) {
			return false
		}
	}
	return true
}

func TestPartitionShapes(t *testing.T) {
	for _, n := range []int{3, 4, 5} {
		nodes := make([]int, n)
		for i := range nodes {
			nodes[i] = i + 1
		}
		for seed := range uint64(20) {
			rng := rand.New(rand.NewPCG(seed, 9))
			for _, shape := range PartitionShapes() {
				g, victims, detail, err := shapeGrudge(shape, nodes, 2, rng)
				if err != nil {
					t.Fatalf("%s on %d: %v", shape, n, err)
				}
				view := sees(g, nodes)
				for _, l := range g.Links() {
					if l.From == l.To || l.From < 1 || l.From > n || l.To < 1 || l.To > n {
						t.Fatalf("%s on %d: bad link %+v", shape, n, l)
					}
				}
				switch shape {
				case ShapeOne, ShapeIsolateLeader:
					x := victims[0]
					if len(victims) != 1 || shape == ShapeIsolateLeader && x != 2 {
						t.Fatalf("%s: victims %v", shape, victims)
					}
					for _, m := range nodes {
						wantSee := len(nodes) - 1
						if m == x {
							wantSee = 1
						}
						if len(view[m]) != wantSee || !symmetric(g) {
							t.Fatalf("%s %s on %d: node %d sees %v", shape, detail, n, m, view[m])
						}
					}
				case ShapeMajority:
					if len(victims) != n/2 || !symmetric(g) {
						t.Fatalf("majority %s on %d: victims %v", detail, n, victims)
					}
					for _, m := range nodes {
						side := len(victims)
						if !slices.Contains(victims, m) {
							side = n - len(victims)
						}
						if len(view[m]) != side {
							t.Fatalf("majority %s: node %d sees %v", detail, m, view[m])
						}
					}
				case ShapeMajoritiesRing:
					seen := map[string]bool{}
					for _, m := range nodes {
						if len(view[m]) < n/2+1 {
							t.Fatalf("ring %s on %d: node %d sees only %v", detail, n, m, view[m])
						}
						key := nodeList(view[m])
						if seen[key] {
							t.Fatalf("ring %s on %d: two nodes see %s", detail, n, key)
						}
						seen[key] = true
					}
					if (n == 4 || n == 5) != symmetric(g) {
						t.Fatalf("ring %s on %d: symmetric %v", detail, n, symmetric(g))
					}
				case ShapeBridge:
					b := victims[0]
					if len(g[b]) != 0 || len(view[b]) != n {
						t.Fatalf("bridge %s on %d: bridge n%d drops %v", detail, n, b, g[b])
					}
					for _, m := range nodes {
						if slices.Contains(g[m], b) {
							t.Fatalf("bridge %s: n%d drops the bridge", detail, m)
						}
					}
					if len(g.Links()) == 0 || !symmetric(g) {
						t.Fatalf("bridge %s on %d cuts %v", detail, n, g.Links())
					}
				}
			}
		}
	}
	if _, _, _, err := shapeGrudge(ShapeBridge, []int{1, 2}, 0, rand.New(rand.NewPCG(1, 1))); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("bridge on 2 nodes: %v", err)
	}
	if _, _, detail, _ := shapeGrudge(ShapeIsolateLeader, []int{1, 2, 3}, 0, rand.New(rand.NewPCG(1, 1))); !strings.Contains(detail, "leader unknown") {
		t.Errorf("isolate-leader without a leader: %q", detail)
	}
}

func TestMajoritiesRingOnThreeIsOneWay(t *testing.T) {
	g := majoritiesRing([]int{1, 2, 3})
	// Windows [1 2], [2 3], [3 1]: their middles 2, 3, 1 drop 3, 1, 2.
	want := Grudge{2: {3}, 3: {1}, 1: {2}}
	for n, froms := range want {
		if !slices.Equal(g[n], froms) {
			t.Fatalf("ring on 3: %v, want %v", g, want)
		}
	}
	if got := linksString(g.Links()); got != "n1>n3 n2>n1 n3>n2" {
		t.Errorf("links %q", got)
	}
}

func TestMostLeaderAndNodeOfAddr(t *testing.T) {
	if got := mostLeader(map[int]int{1: 2, 2: 5, 3: 5}); got != 2 {
		t.Errorf("most leader %d, want 2 (lowest of a tie)", got)
	}
	if got := mostLeader(map[int]int{}); got != 0 {
		t.Errorf("no leaders: %d", got)
	}
	for addr, want := range map[string]int{"127.0.0.11:7000": 1, "127.0.0.13": 3, "127.0.0.1:80": 0, "10.0.0.12:1": 0, "x": 0} {
		if got := nodeOfAddr(addr); got != want {
			t.Errorf("nodeOfAddr(%q) = %d, want %d", addr, got, want)
		}
	}
}

// fakeNet records partitions instead of cutting anything.
type fakeNet struct {
	mu      sync.Mutex
	current Grudge
	log     []string
	closed  bool
}

func (f *fakeNet) Partition(_ context.Context, g Grudge) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.current = g
	f.log = append(f.log, "cut "+linksString(g.Links()))
	return nil
}

func (f *fakeNet) Heal(context.Context) (uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := uint64(len(f.current.Links()))
	f.current = nil
	f.log = append(f.log, "heal")
	return n, nil
}

func (f *fakeNet) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed, f.current = true, nil
	return nil
}

func TestPartitionNemesisUnderScheduler(t *testing.T) {
	fn := &fakeNet{}
	leaders := func(context.Context) (map[int]int, error) { return map[int]int{1: 1, 3: 4}, nil }
	nemeses, err := NewNemeses([]string{"partition"}, NemesisOptions{Targets: TargetOne, Net: fn, leaders: leaders,
		PartitionShapes: []string{ShapeIsolateLeader, ShapeMajority}})
	if err != nil {
		t.Fatal(err)
	}
	rec := NewRecorder()
	s := NewScheduler(SchedulerConfig{Interval: 4 * time.Millisecond, Duration: 2 * time.Millisecond, HealTimeout: time.Second},
		newMemCluster(3), nemeses, rec, rand.New(rand.NewPCG(5, 0)))
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := s.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if fn.current != nil {
		t.Fatalf("a partition outlived the scheduler: %v", fn.log)
	}
	evs := faultsOf(t, rec.Ops())
	shapes := map[string]int{}
	for i := 0; i+1 < len(evs); i += 2 {
		start, stop := evs[i], evs[i+1]
		shapes[start.Shape]++
		if start.Nemesis != "partition" || start.Phase != "start" || stop.Phase != "stop" || start.Detail == "" || len(start.Grudge) == 0 {
			t.Fatalf("entries %+v, %+v", start, stop)
		}
		if !strings.HasPrefix(stop.Note, "dropped ") {
			t.Errorf("stop entry without the heal's note: %+v", stop)
		}
		if start.Shape == ShapeIsolateLeader && !slices.Equal(start.Nodes, []int{3}) {
			t.Errorf("isolate-leader cut %v, want n3 (leads 4 buckets)", start.Nodes)
		}
	}
	if shapes[ShapeIsolateLeader] == 0 || shapes[ShapeMajority] == 0 {
		t.Errorf("shapes used %v", shapes)
	}
	if got := nemeses[0].(*partitionNemesis).Dropped(); got == 0 {
		t.Error("dropped packets not summed")
	}
	// Without a packet filter the nemesis is refused.
	if _, err := NewNemeses([]string{"partition"}, NemesisOptions{Targets: TargetOne}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("partition without a Net: %v", err)
	}
	if _, err := NewNemeses([]string{"partition"}, NemesisOptions{Targets: TargetOne, Net: fn, PartitionShapes: []string{"square"}}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("unknown shape: %v", err)
	}
}

// Fault windows come from the nemesis entries: the lease checker judges
// takeovers only outside them.
func TestFaultWindows(t *testing.T) {
	ops := []Op{
		{Process: NemesisProcess, Type: Info, F: "partition", Value: mustJSON(nemesisEvent{Phase: "start", Fault: Fault{Nemesis: "partition"}}), Time: 10},
		{Process: NemesisProcess, Type: Info, F: "partition", Value: mustJSON(nemesisEvent{Phase: "stop", Fault: Fault{Nemesis: "partition"}}), Time: 20},
		{Process: NemesisProcess, Type: Info, F: "kill", Value: mustJSON(nemesisEvent{Phase: "start", Fault: Fault{Nemesis: "kill", Nodes: []int{1}}}), Time: 50},
	}
	opts := CheckOptions{faults: faultWindows(ops)}
	for _, tc := range []struct {
		from, to int64
		fault    bool
	}{{0, 9, false}, {0, 10, true}, {15, 16, true}, {20, 30, true}, {21, 49, false}, {60, 70, true}} {
		if got := opts.faultDuring(tc.from, tc.to) != ""; got != tc.fault {
			t.Errorf("fault during [%d, %d]: %v, want %v", tc.from, tc.to, got, tc.fault)
		}
	}
}
