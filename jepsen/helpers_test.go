package jepsen

import (
	"context"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// A test that needs a server process re-executes this binary as a
	// fake node (see fakeNodeMain).
	if os.Getenv(fakeNodeEnv) != "" {
		fakeNodeMain(os.Args[1:])
		return
	}
	goleak.VerifyTestMain(m)
}

// history builds a history by hand: each op gets explicit invoke and
// completion times (in ns), and build orders and indexes the entries.
type history struct {
	ops []Op
}

// add records an operation of process from invoke to complete: typ is
// its completion type ("" leaves it open).
func (h *history) add(process int, f, key string, args any, invoke, complete int64, typ OpType, result any) *history {
	h.ops = append(h.ops, Op{Process: process, Type: Invoke, F: f, Key: key, Value: mustJSON(args), Time: invoke})
	if typ != "" {
		if typ != OK {
			result = nil
		}
		h.ops = append(h.ops, Op{Process: process, Type: typ, F: f, Key: key, Value: mustJSON(result), Time: complete})
	}
	return h
}

func (h *history) build() []Op {
	ops := slices.Clone(h.ops)
	// Stable: an invoke and its completion at one instant keep their order.
	slices.SortStableFunc(ops, func(a, b Op) int { return int(a.Time - b.Time) })
	for i := range ops {
		ops[i].Index = i
	}
	return ops
}

// check runs workload's checkers on h and returns the single result.
func (h *history) check(t *testing.T, workload string, opts CheckOptions) Result {
	t.Helper()
	if opts.MinOK == 0 {
		opts.MinOK = 1
	}
	if opts.CheckTimeout == 0 {
		opts.CheckTimeout = 10 * time.Second
	}
	if opts.ClockDrift == 0 {
		opts.ClockDrift = 0.05
	}
	results, err := CheckHistory(context.Background(), workload, h.build(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 1 {
		t.Fatalf("%d results, want 1", len(results))
	}
	return results[0]
}

// wantVerdict fails unless res has verdict want and, for Invalid, an
// anomaly containing each of the fragments.
func wantVerdict(t *testing.T, res Result, want Verdict, fragments ...string) {
	t.Helper()
	if res.Verdict != want {
		t.Fatalf("verdict %s, want %s\nreason: %s\nanomalies: %q\nstats: %v", res.Verdict, want, res.Reason, res.Anomalies, res.Stats)
	}
	all := strings.Join(res.Anomalies, "\n") + "\n" + res.Reason
	t.Logf("%s: %s", res.Verdict, all)
	for _, frag := range fragments {
		if !strings.Contains(all, frag) {
			t.Errorf("no %q in:\n%s", frag, all)
		}
	}
}
