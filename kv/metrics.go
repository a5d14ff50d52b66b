package kv

import "github.com/prometheus/client_golang/prometheus"

// metrics are the node's Prometheus collectors.
type metrics struct {
	lockWaits   prometheus.Counter
	lockExpired prometheus.Counter
	staleRetry  prometheus.Counter
	handoffs    prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		lockWaits: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "opencluster", Name: "lock_waits_total",
			Help: "Requests that had to wait for a lock or a locked key.",
		}),
		lockExpired: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "opencluster", Name: "locks_expired_total",
			Help: "Locks released because their ttl ran out without a keep-alive.",
		}),
		staleRetry: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "opencluster", Name: "write_timestamp_retries_total",
			Help: "Writes re-stamped because a newer version applied first.",
		}),
		handoffs: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "opencluster", Name: "lock_handoffs_total",
			Help: "Named locks granted to a waiter in the releasing command's own Raft round.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.lockWaits, m.lockExpired, m.staleRetry, m.handoffs)
	}
	return m
}
