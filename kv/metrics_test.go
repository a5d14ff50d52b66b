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
