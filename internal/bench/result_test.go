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

// TestWriteJSONShape: -o json is exactly {"results":[…]} with the ten
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
	want := []string{"concurrency", "errors", "max_ms", "nodes", "ops_per_sec", "p50_ms", "p99_ms", "rss_mb", "target", "workload"}
	for _, r := range rows {
		keys := slices.Sorted(mapsKeys(r))
		if !reflect.DeepEqual(keys, want) {
			t.Fatalf("keys %v, want %v", keys, want)
		}
	}
	first := rows[0]
	for k, v := range map[string]any{"target": "opencluster", "workload": "put", "concurrency": 16.0, "nodes": 1.0,
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
