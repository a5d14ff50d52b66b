package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/opencluster/opencluster/kv"
)

// TestDebugPebbleShowsTheLSM: /debug/pebble answers with the engine's
// own description of its levels and memtables.
func TestDebugPebbleShowsTheLSM(t *testing.T) {
	resp, body := getPage(t, prometheus.NewRegistry(), "/debug/pebble")
	if resp.StatusCode != http.StatusOK || !strings.Contains(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	for _, want := range []string{"level", "MemTables:", "Block cache:"} {
		if !strings.Contains(string(body), want) {
			t.Fatalf("/debug/pebble lacks %q:\n%s", want, body)
		}
	}
}

// TestMetricsShowSchedulingLatency: /metrics carries the Go scheduler's
// latency histogram beside the node's own metrics.
func TestMetricsShowSchedulingLatency(t *testing.T) {
	_, body := getPage(t, newRegistry(), "/metrics")
	for _, want := range []string{"go_sched_latencies_seconds_bucket", "go_goroutines", "process_resident_memory_bytes"} {
		if !strings.Contains(string(body), want) {
			t.Fatalf("/metrics lacks %q", want)
		}
	}
}

// getPage serves a test node's HTTP pages with reg and GETs path.
func getPage(t *testing.T, reg *prometheus.Registry, path string) (*http.Response, []byte) {
	t.Helper()
	node, err := kv.Open(kv.TestConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { node.Close() })
	srv := httptest.NewServer(httpHandler(reg, node))
	t.Cleanup(srv.Close)
	resp, err := http.Get(srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}
