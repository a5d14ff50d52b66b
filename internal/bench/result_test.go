package bench

import (
	"bytes"
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func sampleResults() []Result {
	return []Result{
		{Target: OpenCluster, Workload: "put", Concurrency: 16, Nodes: 1, Ops: 30000, OpsPerSec: 3000.04,
			P50: 1234567 * time.Nanosecond, P99: 10 * time.Millisecond, Max: 31 * time.Millisecond, RSSMB: 61.26,
			CPUPerOp: 500 * time.Microsecond},
		{Target: Etcd, Workload: "put", Concurrency: 16, Nodes: 1, OpsPerSec: 1500,
			P50: 2 * time.Millisecond, P99: 20 * time.Millisecond, Max: 40 * time.Millisecond, Errors: 3, RSSMB: 50,
			CPUPerOp:    1250 * time.Microsecond,
			ErrorSample: "boom", Violations: 1, Notes: []string{"fence 2, not above"}},
		{Target: Redis, Workload: "put", Concurrency: 64, Nodes: 1, OpsPerSec: 50000, P99: time.Millisecond},
	}
}

// TestWriteJSONShape: -o json is exactly {"results":[…]} with the eleven
// documented fields, milliseconds rounded to µs.
func TestWriteJSONShape(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteJSON(&buf, sampleResults()); err != nil {
		t.Fatal(err)
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(buf.Bytes(), &top); err != nil {
		t.Fatal(err)
	}
	if len(top) != 1 || top["results"] == nil {
		t.Fatalf("top-level keys %v, want only results", slices.Collect(mapsKeys(top)))
	}
	var rows []map[string]any
	if err := json.Unmarshal(top["results"], &rows); err != nil {
		t.Fatal(err)
	}
	want := []string{"concurrency", "errors", "max_ms", "nodes", "ops_per_sec", "p50_ms", "p99_ms", "round", "rss_mb", "target", "workload"}
	for _, r := range rows {
		keys := slices.Sorted(mapsKeys(r))
		if !reflect.DeepEqual(keys, want) {
			t.Fatalf("keys %v, want %v", keys, want)
		}
	}
	first := rows[0]
	for k, v := range map[string]any{"target": "opencluster", "workload": "put", "concurrency": 16.0, "nodes": 1.0, "round": 1.0,
		"ops_per_sec": 3000.0, "p50_ms": 1.235, "p99_ms": 10.0, "max_ms": 31.0, "errors": 0.0, "rss_mb": 61.3} {
		if first[k] != v {
			t.Errorf("%s = %v, want %v", k, first[k], v)
		}
	}
	if rows[1]["errors"] != 3.0 {
		t.Errorf("errors = %v", rows[1]["errors"])
	}

	buf.Reset()
	if err := WriteJSON(&buf, nil); err != nil || strings.TrimSpace(buf.String()) != "{\n  \"results\": []\n}" {
		t.Fatalf("no results: %q %v", buf.String(), err)
	}
}

func mapsKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func TestRatios(t *testing.T) {
	got := Ratios(sampleResults(), OpenCluster)
	want := []Ratio{{Workload: "put", Concurrency: 16, Peer: Etcd, Throughput: 3000.04 / 1500, P99: 2, CPU: 2.5}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

func TestWriteTable(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteTable(&buf, sampleResults(), OpenCluster); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{"x ops/s", "2.00x", "1.23", "61", "x cpu", "0.500", "1.250", "2.50x", "etcd put c=16: first error: boom", "etcd put c=16: fence 2, not above", "above 1: opencluster is better"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

// roundResults is a three-round suite of ours and etcd on put at 16
// clients: throughput ratios 2, 1 and 4, p99 ratios 1, 3 and 2; etcd's
// CPU is known in two rounds only.
func roundResults() []Result {
	var rs []Result
	for i, peer := range []struct {
		ops float64
		p99 time.Duration
		cpu time.Duration
	}{{500, 10 * time.Millisecond, time.Millisecond}, {1000, 30 * time.Millisecond, 0}, {250, 20 * time.Millisecond, 3 * time.Millisecond}} {
		round := i + 1
		rs = append(rs,
			Result{Target: OpenCluster, Workload: "put", Concurrency: 16, Nodes: 3, Round: round, OpsPerSec: 1000,
				P99: 10 * time.Millisecond, CPUPerOp: time.Millisecond},
			Result{Target: Etcd, Workload: "put", Concurrency: 16, Nodes: 3, Round: round, OpsPerSec: peer.ops,
				P99: peer.p99, CPUPerOp: peer.cpu})
	}
	return rs
}

// TestRatiosPairWithinRounds: each peer run is compared with ours of the
// same round, not with the last of ours.
func TestRatiosPairWithinRounds(t *testing.T) {
	rs := roundResults()
	rs[4].OpsPerSec = 500 // ours in round 3
	got := Ratios(rs, OpenCluster)
	if len(got) != 3 {
		t.Fatalf("%d ratios, want 3: %+v", len(got), got)
	}
	for i, want := range []float64{2, 1, 2} {
		if got[i].Round != i+1 || got[i].Throughput != want {
			t.Errorf("ratio %d: round %d, x %.2f; want round %d, x %.2f", i, got[i].Round, got[i].Throughput, i+1, want)
		}
	}
}

// TestSummaries: the median and range over the rounds, zeros (unknown)
// left out, an even count's median the mean of the middle two.
func TestSummaries(t *testing.T) {
	sums := Summaries(Ratios(roundResults(), OpenCluster))
	if len(sums) != 1 {
		t.Fatalf("%d summaries, want 1: %+v", len(sums), sums)
	}
	s := sums[0]
	if s.Peer != Etcd || s.Workload != "put" || s.Concurrency != 16 || s.Rounds != 3 {
		t.Fatalf("summary of %+v", s)
	}
	if want := (Spread{Median: 2, Min: 1, Max: 4, N: 3}); s.Throughput != want {
		t.Errorf("throughput %+v, want %+v", s.Throughput, want)
	}
	if want := (Spread{Median: 2, Min: 1, Max: 3, N: 3}); s.P99 != want {
		t.Errorf("p99 %+v, want %+v", s.P99, want)
	}
	if want := (Spread{Median: 2, Min: 1, Max: 3, N: 2}); s.CPU != want {
		t.Errorf("cpu %+v, want %+v (the round without etcd's CPU left out)", s.CPU, want)
	}
	if got := Summaries(nil); len(got) != 0 {
		t.Errorf("no ratios: %+v", got)
	}
}

// TestWriteTableRounds: several rounds add a round column, the table of
// medians (a ratio fewer rounds knew says how many) and the round to the
// messages; one round prints none of them.
func TestWriteTableRounds(t *testing.T) {
	var buf bytes.Buffer
	rs := roundResults()
	rs[3].ErrorSample = "boom"
	if err := WriteTable(&buf, rs, OpenCluster); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{"round  ", "median over the rounds", "2.00x (1.00-4.00)", "2.00x (1.00-3.00)  ",
		"2.00x (1.00-3.00, 2 rounds)", "etcd put c=16 round 2: first error: boom"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	buf.Reset()
	if err := WriteTable(&buf, sampleResults(), OpenCluster); err != nil {
		t.Fatal(err)
	}
	if out := buf.String(); strings.Contains(out, "median over") || strings.HasPrefix(strings.TrimSpace(out), "round") {
		t.Errorf("one round printed rounds:\n%s", out)
	}
}
