package bench

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// A test that needs a peer process re-executes this binary with
	// peerEnv set; it then serves the peer protocol (see peer_test.go).
	if servePeerIfAsked() {
		return
	}
	goleak.VerifyTestMain(m)
}

// shortSpec is a run short enough for CI.
func shortSpec(workload string, conc int) Spec {
	return Spec{Target: "mem", Nodes: 1, Workload: workload, Concurrency: conc,
		Warmup: 20 * time.Millisecond, Duration: 150 * time.Millisecond, RunID: "t", Seed: 1}
}

// TestRunWorkloads runs every workload against the in-memory twin: every
// run does operations, without errors or violations.
func TestRunWorkloads(t *testing.T) {
	for _, w := range Workloads() {
		t.Run(w.Name, func(t *testing.T) {
			var calls atomic.Int64
			res, err := Run(context.Background(), newMemTarget(memFaults{}), shortSpec(w.Name, 4), func(Progress) { calls.Add(1) })
			if err != nil {
				t.Fatal(err)
			}
			if res.Ops == 0 || res.OpsPerSec <= 0 || res.Errors != 0 || res.Violations != 0 {
				t.Fatalf("result %+v", res)
			}
			if res.Target != "mem" || res.Workload != w.Name || res.Concurrency != 4 || res.Nodes != 1 {
				t.Fatalf("labels %+v", res)
			}
			if res.P50 > res.P99 || res.P99 > res.Max {
				t.Fatalf("p50 %s, p99 %s, max %s out of order", res.P50, res.P99, res.Max)
			}
		})
	}
}

// TestRunDetectsViolations: each fault of the twin breaks one property
// the run checks, and the run reports it.
func TestRunDetectsViolations(t *testing.T) {
	for _, tc := range []struct {
		name     string
		workload string
		faults   memFaults
		want     string
	}{
		{"stale fence", "lock-uncontended", memFaults{staleFence: true}, "not above the previous grant's"},
		{"money lost", "transfer-10", memFaults{leak: true}, "account total"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := Run(context.Background(), newMemTarget(tc.faults), shortSpec(tc.workload, 8), nil)
			if err != nil {
				t.Fatal(err)
			}
			if res.Violations == 0 || len(res.Notes) == 0 || !strings.Contains(res.Notes[0], tc.want) {
				t.Fatalf("violations %d, notes %q; want one containing %q", res.Violations, res.Notes, tc.want)
			}
			if len(res.Notes) > maxReported {
				t.Fatalf("%d notes kept, want at most %d", len(res.Notes), maxReported)
			}
		})
	}
}

// TestExclusion checks the checker itself on fixed interleavings (the
// runs above cannot force two holders to overlap in time).
func TestExclusion(t *testing.T) {
	x := newExclusion()
	x.enter("a", 1)
	x.exit("a")
	x.enter("b", 7) // names are independent
	x.enter("a", 2)
	x.exit("a")
	x.exit("b")
	x.enter("c", 0) // no fences: only overlap is checked
	x.exit("c")
	x.enter("c", 0)
	x.exit("c")
	if n, notes := x.report(); n != 0 {
		t.Fatalf("clean history: %d violations %q", n, notes)
	}

	x.enter("a", 3)
	x.enter("a", 4) // a second holder
	x.exit("a")
	x.exit("a")
	x.enter("a", 4) // a fence that did not grow
	x.exit("a")
	n, notes := x.report()
	if n != 2 || !strings.Contains(notes[0], "1 other holder") || !strings.Contains(notes[1], "fence 4, not above the previous grant's 4") {
		t.Fatalf("got %d violations %q", n, notes)
	}
	for range 2 * maxReported {
		x.violation("total")
	}
	if n, notes := x.report(); n != 2+2*maxReported || len(notes) != maxReported {
		t.Fatalf("got %d violations, %d notes", n, len(notes))
	}
}

// TestRunCountsErrors: failed operations are counted, not timed, and the
// first one is kept.
func TestRunCountsErrors(t *testing.T) {
	res, err := Run(context.Background(), newMemTarget(memFaults{getFails: true}), shortSpec("mixed-b", 2), nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Errors == 0 || !strings.Contains(res.ErrorSample, errMemGet.Error()) {
		t.Fatalf("errors %d, sample %q", res.Errors, res.ErrorSample)
	}
	if res.Ops == 0 { // the 5% of Puts still succeed
		t.Fatalf("no puts counted: %+v", res)
	}
}

func TestRunRejectsBadSpecs(t *testing.T) {
	for _, tc := range []struct {
		spec Spec
		want string
	}{
		{Spec{Workload: "nope", Concurrency: 1, Duration: time.Second, RunID: "x"}, "Spec.Workload"},
		{Spec{Workload: "put", Concurrency: 0, Duration: time.Second, RunID: "x"}, "Spec.Concurrency"},
		{Spec{Workload: "put", Concurrency: 1, RunID: "x"}, "Spec.Duration"},
		{Spec{Workload: "put", Concurrency: 1, Duration: time.Second, Warmup: -1, RunID: "x"}, "Spec.Warmup"},
		{Spec{Workload: "put", Concurrency: 1, Duration: time.Second}, "Spec.RunID"},
	} {
		_, err := Run(context.Background(), newMemTarget(memFaults{}), tc.spec, nil)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("spec %+v: err %v, want ErrInvalid naming %s", tc.spec, err, tc.want)
		}
	}
}

// TestRunCancelled: a cancelled context ends the run promptly with its
// error (and, through goleak, with every goroutine stopped).
func TestRunCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	spec := shortSpec("lock-contended", 8)
	spec.Duration = time.Minute
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	_, err := Run(ctx, newMemTarget(memFaults{}), spec, nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("cancelled run took %s", d)
	}
}

func TestParseWorkloads(t *testing.T) {
	for _, tc := range []struct {
		in, want string
	}{
		{"put", "put"},
		{"get, put,get", "get,put"},
		{"mixed,transfer", "mixed-a,mixed-b,transfer-100,transfer-10"},
		{"lock", "lock-uncontended,lock-contended"},
		{"all", "put,get,mixed-a,mixed-b,lock-uncontended,lock-contended,transfer-100,transfer-10"},
	} {
		ws, err := ParseWorkloads(tc.in)
		if err != nil {
			t.Fatalf("%q: %v", tc.in, err)
		}
		var names []string
		for _, w := range ws {
			names = append(names, w.Name)
		}
		if got := strings.Join(names, ","); got != tc.want {
			t.Errorf("%q: got %s, want %s", tc.in, got, tc.want)
		}
	}
	for _, bad := range []string{"", " , ", "put,nope"} {
		if _, err := ParseWorkloads(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("%q: err %v, want ErrInvalid", bad, err)
		}
	}
}
