package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestBenchMovesFlagErrors: bad sizes fail with InvalidArgument naming the
// flag, before anything is started.
func TestBenchMovesFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--bucket-mb", "0"}, "--bucket-mb must be at least 1"},
		{[]string{"--clients", "-1"}, "--clients must be at least 1"},
		{[]string{"--window", "0s"}, "--window, --join-timeout and --leader-wait must be positive"},
		{[]string{"--value-kb", "2048"}, "ValueKB = 2048"},
	} {
		r := benchCLI(t, 10*time.Second, append([]string{"bench", "moves"}, tc.args...)...).fails(t, "InvalidArgument")
		if !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%v: stderr %q, want %q", tc.args, r.stderr, tc.want)
		}
	}
}

// TestBenchMoves is a tiny real run of `bench moves`: it starts its nodes
// (this test binary re-executed as `opencluster start`), moves a 2 MiB
// bucket, runs puts around a move and lets a 4th node join 8 MiB, and the
// JSON result must hold every figure, sane.
func TestBenchMoves(t *testing.T) {
	if testing.Short() {
		t.Skip("starts server processes")
	}
	t.Setenv(execMainEnv, "1") // the server children run main, not the tests
	r := benchCLI(t, 3*time.Minute, "bench", "moves", "--bucket-mb", "2", "--cluster-mb", "8", "--buckets", "8",
		"--window", "1s", "--warmup", "200ms", "--leader-wait", "1s", "--host-base", "180", "-o", "json")
	if r.code != 0 {
		t.Fatalf("exit %d\nstderr:\n%s\nstdout:\n%s", r.code, r.stderr, r.stdout)
	}
	var res struct {
		Machine struct {
			CPUs     int   `json:"cpus"`
			MemoryMB int64 `json:"memory_mb"`
		} `json:"machine"`
		Move struct {
			From, To    string
			Keys        int     `json:"keys"`
			LoadedBytes int64   `json:"loaded_bytes"`
			Seconds     float64 `json:"seconds"`
			Growth      int64   `json:"data_dir_growth_bytes"`
			Method      string  `json:"method"`
		} `json:"move"`
		Workload struct {
			From, To   string
			Baseline   map[string]any `json:"baseline"`
			DuringMove map[string]any `json:"during_move"`
			InFlight   map[string]any `json:"in_flight"`
			MoveS      float64        `json:"move_s"`
			WindowS    float64        `json:"window_s"`
		} `json:"workload"`
		Join struct {
			LoadedBytes  int64            `json:"loaded_bytes"`
			Seconds      float64          `json:"seconds"`
			LeadersS     float64          `json:"leaders_s"`
			Replicas     int              `json:"replicas"`
			MeanReplicas float64          `json:"mean_replicas"`
			Growth       int64            `json:"data_dir_growth_bytes"`
			Members      []map[string]any `json:"members"`
		} `json:"join"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatalf("stdout is not the result object: %v\n%s", err, r.stdout)
	}
	mv := res.Move
	if mv.From == "" || mv.To == "" || mv.From == mv.To || mv.Keys < 1 || mv.LoadedBytes < 2<<20 || mv.Seconds <= 0 || mv.Method == "" {
		t.Errorf("move %+v", mv)
	}
	// The receiver holds the bucket's data: about what was loaded.
	if mv.Growth < mv.LoadedBytes/2 || mv.Growth > 10*mv.LoadedBytes {
		t.Errorf("the receiver's data dir grew %d bytes for %d loaded", mv.Growth, mv.LoadedBytes)
	}
	wl := res.Workload
	for name, l := range map[string]map[string]any{"baseline": wl.Baseline, "during_move": wl.DuringMove} {
		if l["ops"].(float64) < 1 || l["errors"] != 0.0 || l["p99_ms"].(float64) <= 0 || l["max_ms"].(float64) < l["p99_ms"].(float64) {
			t.Errorf("workload %s: %v", name, l)
		}
	}
	if wl.InFlight == nil || wl.MoveS <= 0 || wl.WindowS < 1 || wl.WindowS < wl.MoveS || wl.To == mv.To {
		t.Errorf("workload %+v", wl)
	}
	j := res.Join
	if j.LoadedBytes < 8<<20 || j.Seconds <= 0 || (j.LeadersS != -1 && j.LeadersS < j.Seconds) || len(j.Members) != 4 || j.Growth <= 0 {
		t.Errorf("join %+v", j)
	}
	if d := float64(j.Replicas) - j.MeanReplicas; j.MeanReplicas != 6 || d > 1 || d < -1 {
		t.Errorf("the new node holds %d replicas, mean %v", j.Replicas, j.MeanReplicas)
	}
	if res.Machine.CPUs < 1 || res.Machine.MemoryMB < 1 {
		t.Errorf("machine %+v", res.Machine)
	}
}
