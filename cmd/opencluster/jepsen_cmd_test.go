package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestJepsenSmoke runs `opencluster jepsen run` for real: one server
// process (this test binary re-executed as `opencluster start`), the
// register, lock, bank and fenced workloads for a few seconds each, under
// kill -9 and SIGSTOP faults. Each must come out VALID with enough operations to
// count, and `jepsen check` must agree on the saved history.
//
// The long runs are by hand (README): go run ./cmd/opencluster jepsen run
// --workload register,lock,bank,fenced --nemesis kill,pause --time-limit 60s
func TestJepsenSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts server processes")
	}
	// The servers are this binary re-executed; TestMain runs main in them.
	t.Setenv(execMainEnv, "1")
	out := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr strings.Builder
	code := run(ctx, []string{"jepsen", "run",
		"--workload", "register,lock,bank,fenced", "--nemesis", "kill,pause",
		"--time-limit", "4s", "--nemesis-interval", "800ms", "--fault-duration", "500ms",
		"--rate", "80", "--concurrency", "6", "--min-ok", "5", "--seed", "3", "--out", out,
	}, strings.NewReader(""), &stdout, &stderr, func(string) string { return "" })
	t.Logf("stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
	if code != exitJepsenValid {
		t.Fatalf("jepsen run exited %d, want %d (VALID)", code, exitJepsenValid)
	}
	if !strings.HasSuffix(stdout.String(), "4 passed, 0 failed\n") {
		t.Errorf("summary does not end with the tally")
	}

	dirs, err := filepath.Glob(filepath.Join(out, "*"))
	if err != nil || len(dirs) != 4 {
		t.Fatalf("run directories %v, %v", dirs, err)
	}
	faults := map[string]int{}
	for _, dir := range dirs {
		var rep struct {
			Workload string         `json:"workload"`
			Verdict  string         `json:"verdict"`
			OK       int            `json:"ok"`
			Faults   map[string]int `json:"faults"`
		}
		b, err := os.ReadFile(filepath.Join(dir, "results.json"))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, &rep); err != nil {
			t.Fatal(err)
		}
		if rep.Verdict != "VALID" || rep.OK < 20 {
			t.Errorf("%s: verdict %s with %d ok operations", rep.Workload, rep.Verdict, rep.OK)
		}
		for k, v := range rep.Faults {
			faults[k] += v
		}
		if _, err := os.Stat(filepath.Join(dir, "n1.log")); err != nil {
			t.Errorf("%s: server log: %v", rep.Workload, err)
		}

		var checkOut, checkErr strings.Builder
		code := run(ctx, []string{"jepsen", "check", dir}, strings.NewReader(""), &checkOut, &checkErr,
			func(string) string { return "" })
		if code != exitJepsenValid || !strings.Contains(checkOut.String(), "RESULT VALID") {
			t.Errorf("jepsen check %s: exit %d\n%s%s", dir, code, checkOut.String(), checkErr.String())
		}
	}
	if faults["kill"] == 0 || faults["pause"] == 0 {
		t.Errorf("faults %v: want both kill and pause injected", faults)
	}
}
