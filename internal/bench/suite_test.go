package bench

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	cfg, err := Config{}.Validate()
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Targets) != 1 || cfg.Targets[0] != OpenCluster || len(cfg.Workloads) != 8 ||
		len(cfg.Concurrency) != 2 || cfg.Duration != 10*time.Second || cfg.Warmup != 2*time.Second || cfg.Nodes != 1 || cfg.Rounds != 1 {
		t.Fatalf("defaults %+v", cfg)
	}
	if cfg, _ := (Config{NoWarmup: true}).Validate(); cfg.Warmup != 0 {
		t.Fatalf("NoWarmup: warm-up %s", cfg.Warmup)
	}
	if cfg, _ := (Config{Endpoints: []string{"a:1", "b:1", "c:1"}}).Validate(); cfg.Nodes != 3 {
		t.Fatalf("endpoints: nodes %d", cfg.Nodes)
	}
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Targets: []string{"mysql"}}, `Targets: unknown target "mysql"`},
		{Config{Targets: []string{Etcd, Etcd}}, `Targets: "etcd" given twice`},
		{Config{Concurrency: []int{16, 0}}, "Concurrency: 0 is not in 1..1024"},
		{Config{Concurrency: []int{2000}}, "Concurrency: 2000"},
		{Config{Duration: -time.Second}, "Duration: -1s"},
		{Config{Warmup: -time.Second}, "Warmup: -1s"},
		{Config{Nodes: -1}, "Nodes: -1"},
		{Config{Rounds: -1}, "Rounds: -1 is not in 1..20"},
		{Config{Rounds: 21}, "Rounds: 21 is not in 1..20"},
		{Config{Targets: []string{Etcd}, Endpoints: []string{"x:1"}}, "Endpoints: given, but opencluster"},
		{Config{Targets: []string{OpenCluster, Redis}, EtcdEndpoints: []string{"x:1"}}, "EtcdEndpoints: given, but etcd"},
		{Config{Targets: []string{Etcd, Redis}, Nodes: 3}, "Nodes: 3, but redis"},
	} {
		_, err := tc.cfg.Validate()
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: err %v, want ErrInvalid with %q", tc.cfg, err, tc.want)
		}
	}
	if _, err := (Config{Targets: []string{Etcd}, Nodes: 3}).Validate(); err != nil {
		t.Errorf("3 etcd members: %v", err)
	}
	if _, err := (Config{Targets: []string{OpenCluster, Etcd}, EtcdEndpoints: []string{"x:1", "y:1"}}).Validate(); err != nil {
		t.Errorf("a running etcd: %v", err)
	}
}

// TestPeerSystemNodes: a peer system counts the servers the bench
// started, or the endpoints of one it did not start.
func TestPeerSystemNodes(t *testing.T) {
	started := NewPeerSystem(Etcd, &Cluster{Procs: []*Proc{{}, {}, {}}}, "peer", []string{"a:1", "b:1", "c:1"}, nil)
	if n := started.Nodes(); n != 3 {
		t.Errorf("started system: %d nodes, want 3", n)
	}
	running := NewPeerSystem(Etcd, nil, "peer", []string{"a:1", "b:1", "c:1", "d:1", "e:1"}, nil)
	if n := running.Nodes(); n != 5 {
		t.Errorf("running system: %d nodes, want 5", n)
	}
	if rss := running.servers.PeakRSSMB(); rss != 0 {
		t.Errorf("running system: RSS %v, want 0 (not known)", rss)
	}
}

// fakeSystem is a System over the in-memory twin; redis-like ones do
// not support transfers.
type fakeSystem struct {
	name     string
	transfer bool
	target   *memTarget
	runs     []string
}

func (s *fakeSystem) Name() string { return s.name }
func (s *fakeSystem) Nodes() int   { return 1 }
func (s *fakeSystem) Supports(w Workload) bool {
	return s.transfer || w.Kind != KindTransfer
}
func (s *fakeSystem) Run(ctx context.Context, spec Spec, progress func(Progress)) (Result, error) {
	s.runs = append(s.runs, spec.Workload)
	return Run(ctx, s.target, spec, progress)
}
func (s *fakeSystem) Stop(context.Context) error { return nil }

// TestRunSuite: the systems alternate run by run, unsupported workloads
// are skipped, run ids differ, and a violation fails the suite with
// ErrCheck while keeping the results.
func TestRunSuite(t *testing.T) {
	ours := &fakeSystem{name: OpenCluster, transfer: true, target: newMemTarget(memFaults{})}
	peer := &fakeSystem{name: Redis, target: newMemTarget(memFaults{leak: true})}
	ws, _ := ParseWorkloads("put,transfer-10")
	cfg, err := Config{Targets: []string{OpenCluster, Redis}, Workloads: ws, Concurrency: []int{1, 2},
		Duration: 50 * time.Millisecond, NoWarmup: true, Seed: 9}.Validate()
	if err != nil {
		t.Fatal(err)
	}
	systems := []System{ours, peer}
	var order, ids []string
	results, err := RunSuite(context.Background(), cfg, systems, Hooks{
		Start: func(s Spec, i, n int) { order = append(order, s.Target+"/"+s.Workload); ids = append(ids, s.RunID) },
	})
	if err != nil {
		t.Fatalf("clean suite: %v", err)
	}
	want := "opencluster/put redis/put opencluster/put redis/put opencluster/transfer-10 opencluster/transfer-10"
	if got := strings.Join(order, " "); got != want {
		t.Fatalf("order %s, want %s", got, want)
	}
	if len(results) != 6 || ids[0] == ids[1] {
		t.Fatalf("%d results, ids %v", len(results), ids)
	}

	// Now the peer loses money, and transfers run on it.
	peer.transfer = true
	results, err = RunSuite(context.Background(), cfg, systems, Hooks{})
	if !errors.Is(err, ErrCheck) || !strings.Contains(err.Error(), "redis transfer-10 c=1") {
		t.Fatalf("err %v, want ErrCheck for redis transfer-10", err)
	}
	if len(results) != 8 {
		t.Fatalf("%d results, want 8 (failed checks keep their results)", len(results))
	}
}

// TestRunSuiteRounds: the whole plan runs once per round, in order, with
// fresh run ids, and every result carries its round.
func TestRunSuiteRounds(t *testing.T) {
	ours := &fakeSystem{name: OpenCluster, target: newMemTarget(memFaults{})}
	peer := &fakeSystem{name: Redis, target: newMemTarget(memFaults{})}
	ws, _ := ParseWorkloads("put,get")
	cfg, err := Config{Targets: []string{OpenCluster, Redis}, Workloads: ws, Concurrency: []int{1},
		Duration: 20 * time.Millisecond, NoWarmup: true, Seed: 3, Rounds: 2}.Validate()
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	ids := map[string]bool{}
	results, err := RunSuite(context.Background(), cfg, []System{ours, peer}, Hooks{
		Start: func(s Spec, i, n int) {
			order = append(order, fmt.Sprintf("%d:%s/%s", s.Round, s.Target, s.Workload))
			ids[s.RunID] = true
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := "1:opencluster/put 1:redis/put 1:opencluster/get 1:redis/get 2:opencluster/put 2:redis/put 2:opencluster/get 2:redis/get"
	if got := strings.Join(order, " "); got != want {
		t.Fatalf("order %s, want %s", got, want)
	}
	if len(ids) != 8 {
		t.Fatalf("%d distinct run ids, want 8", len(ids))
	}
	if len(results) != 8 || results[0].Round != 1 || results[7].Round != 2 {
		t.Fatalf("results %d, rounds %d..%d", len(results), results[0].Round, results[len(results)-1].Round)
	}
	if rs := Ratios(results, OpenCluster); len(rs) != 4 {
		t.Fatalf("%d ratios, want 4 (two workloads x two rounds)", len(rs))
	}
}
