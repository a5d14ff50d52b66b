package kv

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/opencluster/opencluster/rpc/ocpb"
)

// histogramCount is the number of observations h holds.
func histogramCount(t *testing.T, h prometheus.Histogram) uint64 {
	t.Helper()
	var m dto.Metric
	if err := h.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram().GetSampleCount()
}

// TestCycleMetrics: a put goes through at least one scheduler cycle that
// writes and syncs the Raft log, and both are timed.
func TestCycleMetrics(t *testing.T) {
	n := openTestNode(t)
	ctx := ctxT(t)
	cycles, syncs := histogramCount(t, n.metrics.cycle), histogramCount(t, n.metrics.logSync)
	if _, err := n.Put(ctx, &ocpb.PutRequest{Key: []byte("a"), Value: []byte("1")}); err != nil {
		t.Fatal(err)
	}
	if got := histogramCount(t, n.metrics.cycle); got <= cycles {
		t.Errorf("cycles timed: %d before the put, %d after", cycles, got)
	}
	if got := histogramCount(t, n.metrics.logSync); got <= syncs {
		t.Errorf("log syncs timed: %d before the put, %d after", syncs, got)
	}
}

// TestStorageMetrics: a synced put shows in the WAL fsync histogram that
// the node exports from Pebble's, converted from nanoseconds to seconds,
// and in the memtable gauge.
func TestStorageMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	cfg := TestConfig()
	cfg.Registerer = reg
	n, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if _, err := n.Put(ctxT(t), &ocpb.PutRequest{Key: []byte("a"), Value: []byte("1")}); err != nil {
		t.Fatal(err)
	}
	// A flush is counted when it ends: Flush waits for it.
	if err := n.eng.DB().Flush(); err != nil {
		t.Fatal(err)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var h *dto.Histogram
	gauges := map[string]float64{}
	for _, f := range families {
		switch f.GetName() {
		case "opencluster_wal_fsync_duration_seconds":
			h = f.GetMetric()[0].GetHistogram()
		case "opencluster_storage_memtable_bytes", "opencluster_storage_block_cache_bytes":
			gauges[f.GetName()] = f.GetMetric()[0].GetGauge().GetValue()
		case "opencluster_storage_block_cache_hits_total", "opencluster_storage_block_cache_misses_total",
			"opencluster_storage_flushes_total", "opencluster_storage_compactions_total", "opencluster_storage_compaction_seconds_total",
			"opencluster_storage_write_stalls_total", "opencluster_storage_write_stall_seconds_total":
			gauges[f.GetName()] = f.GetMetric()[0].GetCounter().GetValue()
		case "opencluster_storage_l0_sublevels":
			gauges[f.GetName()] = f.GetMetric()[0].GetGauge().GetValue()
		}
	}
	// The put sits in the memtable, which Pebble allocates in steps of at
	// least 256 KiB.
	if got := gauges["opencluster_storage_memtable_bytes"]; got < 256<<10 {
		t.Errorf("opencluster_storage_memtable_bytes = %v, want the memtable's allocation (at least 256 KiB)", got)
	}
	for _, name := range []string{"opencluster_storage_block_cache_bytes", "opencluster_storage_block_cache_hits_total", "opencluster_storage_block_cache_misses_total",
		"opencluster_storage_compactions_total", "opencluster_storage_compaction_seconds_total", "opencluster_storage_write_stalls_total", "opencluster_storage_write_stall_seconds_total"} {
		if _, ok := gauges[name]; !ok {
			t.Errorf("%s not exported", name)
		}
	}
	if got := gauges["opencluster_storage_flushes_total"]; got < 1 {
		t.Errorf("opencluster_storage_flushes_total = %v after a flush, want at least 1", got)
	}
	if _, ok := gauges["opencluster_storage_l0_sublevels"]; !ok {
		t.Error("opencluster_storage_l0_sublevels not exported")
	}
	if h == nil {
		t.Fatal("opencluster_wal_fsync_duration_seconds not exported")
	}
	if h.GetSampleCount() == 0 {
		t.Fatal("no WAL fsync counted after a synced put")
	}
	// Pebble's buckets are 100µs apart, in nanoseconds: 1e-4 s here.
	if b := h.GetBucket(); len(b) < 2 || b[1].GetUpperBound() > 0.01 || b[1].GetUpperBound() <= 0 {
		t.Errorf("second bucket bound %v s: not converted to seconds", b[1].GetUpperBound())
	}
	if mean := h.GetSampleSum() / float64(h.GetSampleCount()); mean > 10 {
		t.Errorf("mean fsync %v s: not converted to seconds", mean)
	}
}
