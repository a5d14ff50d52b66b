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
	}
	if reg != nil {
		reg.MustRegister(m.lockWaits, m.lockExpired, m.staleRetry, m.handoffs, m.triesSkipped, m.orphanedKeyLocks, m.leaseReads, m.readRounds)
	}
	return m
}
