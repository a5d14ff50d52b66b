package kv

import "github.com/prometheus/client_golang/prometheus"

// metrics are the node's Prometheus collectors.
type metrics struct {
	lockWaits   prometheus.Counter
	lockExpired prometheus.Counter
	staleRetry  prometheus.Counter
	handoffs    prometheus.Counter
	// triesSkipped counts waits begun without proposing a lock that the
	// leader's applied state showed taken (takeInTurn, lockKeysHere).
	triesSkipped prometheus.Counter
	// orphanedKeyLocks counts key locks released by the orphan sweeper.
	orphanedKeyLocks prometheus.Counter
	// leaseReads and readRounds count linearizable reads served under a
	// read lease and ReadIndex rounds started (lease.go).
	leaseReads, readRounds prometheus.Counter
	// cycle times one scheduler cycle that had work (scheduler.cycle);
	// logSync the wait for its Raft log write to be durable.
	cycle, logSync prometheus.Histogram
}

// latencyBuckets span 100µs to about 1.6s, doubling.
var latencyBuckets = prometheus.ExponentialBuckets(0.0001, 2, 15)

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
		triesSkipped: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "opencluster", Name: "lock_tries_skipped_total",
			Help: "Lock and key-lock requests that waited without a Raft round, the leader's applied state showing the lock taken.",
		}),
		orphanedKeyLocks: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "opencluster", Name: "orphaned_key_locks_released_total",
			Help: "Key locks released because their restrictive lock's record no longer accounted for them.",
		}),
		leaseReads: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "opencluster", Name: "lease_reads_total",
			Help: "Linearizable reads served under the leader's read lease, without a ReadIndex round.",
		}),
		readRounds: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "opencluster", Name: "read_index_rounds_total",
			Help: "ReadIndex rounds started (each serves every read queued for its group).",
		}),
		cycle: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "opencluster", Name: "raft_cycle_duration_seconds", Buckets: latencyBuckets,
			Help: "Scheduler cycles that had work: stepping, the Raft log write, applying every group's committed entries and sending.",
		}),
		logSync: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "opencluster", Name: "raft_log_sync_duration_seconds", Buckets: latencyBuckets,
			Help: "Raft log writes that had to be durable: from the write to the end of its fsync.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.lockWaits, m.lockExpired, m.staleRetry, m.handoffs, m.triesSkipped, m.orphanedKeyLocks, m.leaseReads, m.readRounds, m.cycle, m.logSync)
	}
	return m
}
