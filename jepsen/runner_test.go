package jepsen

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/opencluster/opencluster/rpc/client/clienttest"
)

// runAgainstFake runs a workload in-process against the client's fake
// server (no processes, no faults): it exercises the runner, the
// workload's client code and its checker together, fast.
func runAgainstFake(t *testing.T, workload string, tune ...func(*Config)) *Report {
	t.Helper()
	h := clienttest.Start(t, "n1")
	cfg := TestConfig()
	cfg.Workload = workload
	cfg.Endpoints = clienttest.Targets("n1")
	cfg.DialOptions = []grpc.DialOption{h.DialOption()}
	cfg.OutDir = t.TempDir()
	cfg.TimeLimit = 1500 * time.Millisecond
	cfg.Seed = 1
	var progressCalls int
	cfg.Progress = func(Progress) { progressCalls++ }
	cfg.ProgressInterval = 100 * time.Millisecond
	for _, f := range tune {
		f(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rep, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", rep.Summary())
	if progressCalls == 0 {
		t.Error("no progress reported")
	}
	for _, f := range []string{"history.jsonl", "results.json", "summary.txt"} {
		if _, err := os.Stat(filepath.Join(rep.Dir, f)); err != nil {
			t.Errorf("run directory: %v", err)
		}
	}
	return rep
}

// readRun loads a run directory's history.
func readRun(t *testing.T, dir string) []Op {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, "history.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ops, err := ReadHistory(f)
	if err != nil {
		t.Fatal(err)
	}
	return ops
}

func TestRunRegisterAgainstFake(t *testing.T) {
	rep := runAgainstFake(t, "register")
	if rep.Verdict != Valid {
		t.Fatalf("verdict %s", rep.Verdict)
	}
	summary, _ := os.ReadFile(filepath.Join(rep.Dir, "summary.txt"))
	if !strings.HasSuffix(string(summary), "1 passed, 0 failed\n") {
		t.Errorf("summary.txt does not end with the tally:\n%s", summary)
	}

	// The saved history checks the same offline…
	ops := readRun(t, rep.Dir)
	opts := CheckOptions{MinOK: 5, CheckTimeout: 20 * time.Second, ClockDrift: 0.05}
	results, err := CheckHistory(context.Background(), "register", ops, opts)
	if err != nil || results[0].Verdict != Valid {
		t.Fatalf("re-check: %+v, %v", results, err)
	}
	// …and a stale read planted in it is found: a read that returns the
	// value of a write that a later, completed write overwrote before the
	// read began.
	if !plantStaleRead(t, ops) {
		t.Fatal("no read to corrupt")
	}
	results, err = CheckHistory(context.Background(), "register", ops, opts)
	if err != nil || results[0].Verdict != Invalid {
		t.Fatalf("planted stale read: %+v, %v", results, err)
	}
	t.Logf("planted stale read: %s", results[0].Anomalies)
}

// plantStaleRead rewrites one ok read in ops to return an overwritten
// value, and reports whether it found one to rewrite.
func plantStaleRead(t *testing.T, ops []Op) bool {
	pairs, err := Pairs(ops)
	if err != nil {
		t.Fatal(err)
	}
	byIndex := map[int]int{} // op index → position in ops
	for i, op := range ops {
		byIndex[op.Index] = i
	}
	type write struct {
		value        string
		version      uint64
		invoke, done int64
	}
	writes := map[string][]write{}
	for _, p := range pairs {
		switch {
		case p.Invoke.F == fWrite && p.Type() == OK:
			var a registerArgs
			var r registerResult
			_ = json.Unmarshal(p.Invoke.Value, &a)
			_ = json.Unmarshal(p.Complete.Value, &r)
			writes[p.Invoke.Key] = append(writes[p.Invoke.Key], write{a.Value, r.Version, p.Invoke.Time, p.Complete.Time})
		case p.Invoke.F == fRead && p.Type() == OK:
			ws := writes[p.Invoke.Key]
			for i := range ws {
				for j := i + 1; j < len(ws); j++ {
					if ws[j].invoke > ws[i].done && ws[j].done < p.Invoke.Time {
						stale := registerResult{Found: true, Value: ws[i].value, Version: ws[i].version}
						ops[byIndex[p.Complete.Index]].Value = mustJSON(stale)
						return true
					}
				}
			}
		}
	}
	return false
}

func TestRunLockAgainstFake(t *testing.T) {
	rep := runAgainstFake(t, "lock")
	if rep.Verdict != Valid {
		t.Fatalf("verdict %s", rep.Verdict)
	}
	if rep.Results[0].Stats["acquire ok"] < 5 {
		t.Errorf("stats %v", rep.Results[0].Stats)
	}
}

// zombies makes every fenced-workload zombie collide with a successor:
// one lock name, a short zombie ttl.
func zombies(cfg *Config) {
	cfg.LockNames = 1
	cfg.ZombieTTL = 200 * time.Millisecond
	cfg.TimeLimit = 2 * time.Second
}

func TestRunFencedAgainstFake(t *testing.T) {
	rep := runAgainstFake(t, "fenced", zombies)
	if rep.Verdict != Valid {
		t.Fatalf("verdict %s", rep.Verdict)
	}
	if st := rep.Results[0].Stats; st["zombie write fail"] == 0 {
		t.Errorf("stats %v: no zombie write was refused", st)
	}
}

// The unfenced control must lose updates: it shows the checker finds
// what fencing prevents.
func TestRunUnfencedControlAgainstFake(t *testing.T) {
	rep := runAgainstFake(t, "unfenced", zombies)
	if rep.Verdict != Invalid || !strings.Contains(rep.Results[0].Anomalies[0], "lost update") {
		t.Fatalf("verdict %s, anomalies %q: want lost updates", rep.Verdict, rep.Results[0].Anomalies)
	}
}

func TestRunRejectsBadConfig(t *testing.T) {
	for _, cfg := range []Config{
		{Workload: "no-such-workload", Binary: "x"},
		{Binary: "x", Concurrency: -1},
		{Endpoints: []string{"a"}, Nemeses: []string{"kill"}},
		{Binary: "x", Nemeses: []string{"warp"}},
		{Binary: "x", Nodes: 3, Nemeses: []string{"move"}}, // no node to move a replica to
		{Endpoints: []string{"a"}, PlantedBugs: PlantedBugs{StaleReads: true}},
		{Binary: "x", ProcessesPerKey: 20},
		{Binary: "x", Nemeses: []string{"partition"}}, // one node: nothing to cut
		{Binary: "x", Nodes: 3, Nemeses: []string{"partition"}, PartitionShapes: []string{"square"}},
		{Endpoints: []string{"a"}, Workload: "lease"},                      // holders need Binary
		{Binary: "x", Workload: "lease", LeaseTTL: 500 * time.Millisecond}, // below the server's least ttl
		{},
	} {
		if _, err := Run(context.Background(), cfg); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("Run(%+v): %v, want ErrInvalidConfig", cfg, err)
		}
	}
}

// The lease workload against the fake server, with its holders as
// goroutines: holders die, the next ones take over once the ttl has run
// out, and the checker measures it. A grant planted early in the saved
// history is found.
func TestRunLeaseAgainstFake(t *testing.T) {
	rep := runAgainstFake(t, "lease", func(cfg *Config) {
		cfg.InProcessHolders = true
		cfg.LeaseTTL = time.Second
		cfg.ElectionTimeout = time.Second
		cfg.LockNames = 4
		cfg.Concurrency = 4
		cfg.TimeLimit = 3 * time.Second
		cfg.MinOK = 3
	})
	if rep.Verdict != Valid {
		t.Fatalf("verdict %s", rep.Verdict)
	}
	st := rep.Results[0].Stats
	if st["takeovers"] == 0 || st["kill ok"]+st["stop ok"] == 0 {
		t.Fatalf("stats %v: no holder died and was taken over", st)
	}
	// Takeovers come after the ttl, and not much later (no faults).
	if p50 := st["takeover p50 ms"]; p50 < 600 || p50 > 2500 {
		t.Errorf("takeover p50 %dms with a 1s ttl", p50)
	}

	// Move the grant that followed a dead holder to just after the death,
	// before that holder's ttl ran out.
	ops := readRun(t, rep.Dir)
	pairs, err := Pairs(ops)
	if err != nil {
		t.Fatal(err)
	}
	holds, _, err := leaseHolds(pairs, 0.05, map[string]int64{})
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(holds, func(a, b *leaseHoldInfo) int { return cmp.Compare(a.fence, b.fence) })
	planted := false
	for i, dead := range holds {
		if dead.death == 0 || planted {
			continue
		}
		for _, next := range holds[i+1:] {
			if next.name != dead.name {
				continue
			}
			for k := range ops {
				if ops[k].Time == next.acqReturn && ops[k].F == fAcquire && ops[k].Type == OK {
					ops[k].Time = max(next.acqInvoke, dead.death) + int64(time.Millisecond)
					planted = true
				}
			}
			break
		}
	}
	if !planted {
		t.Fatal("no takeover to plant an early grant in")
	}
	slices.SortStableFunc(ops, func(a, b Op) int { return cmp.Compare(a.Time, b.Time) })
	results, err := CheckHistory(context.Background(), "lease", ops, CheckOptions{MinOK: 3, ClockDrift: 0.05, ElectionTimeout: time.Second})
	if err != nil || results[0].Verdict != Invalid {
		t.Fatalf("planted early grant: %+v, %v", results, err)
	}
	t.Logf("planted early grant: %s", results[0].Anomalies)
}
