package kv

import (
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/opencluster/opencluster/mvcc"
)

// metrics are the node's Prometheus collectors.
type metrics struct {
	lockWaits          prometheus.Counter
	lockExpired        prometheus.Counter
	staleRetry         prometheus.Counter
	handoffs           prometheus.Counter
	keyHandoffs        prometheus.Counter
	firstPassesSkipped prometheus.Counter
	// triesSkipped counts waits begun without proposing a lock that the
	// leader's applied state showed taken (takeInTurn, lockKeysHere).
	triesSkipped prometheus.Counter
	// keysGivenBack counts buckets whose key locks a Restrict took, or
	// tried, and gave back (giveBackKeys).
	keysGivenBack prometheus.Counter
	// beginsWithFirstStep counts restrictive locks whose record and first
	// key step went at once (beginWithFirstStep).
	beginsWithFirstStep prometheus.Counter
	// orphanedKeyLocks counts key locks released by the orphan sweeper.
	orphanedKeyLocks prometheus.Counter
	// leaseReads and readRounds count linearizable reads served under a
	// read lease and ReadIndex rounds started (lease.go).
	leaseReads, readRounds prometheus.Counter
	// acksServedDuringSync counts acknowledgements stepped while a round's
	// log write was being synced (sync_acks.go).
	acksServedDuringSync prometheus.Counter
	// commitAppendsSkipped counts commit-only appends not sent to a
	// caught-up follower (transport.go).
	commitAppendsSkipped prometheus.Counter
	// cycle times one scheduler cycle that had work (scheduler.cycle);
	// logSync the wait for its Raft log write to be durable.
	cycle, logSync prometheus.Histogram
	// tsoRemote times a round trip for timestamps to the meta leader
	// (remoteBatcher.run), for the callers it served.
	tsoRemote prometheus.Histogram
}

// counter is an opencluster_ counter.
func counter(name, help string) prometheus.Counter {
	return prometheus.NewCounter(prometheus.CounterOpts{Namespace: "opencluster", Name: name, Help: help})
}

// latency is an opencluster_ histogram of durations in seconds, with
// buckets from 100µs to about 1.6s, doubling.
func latency(name, help string) prometheus.Histogram {
	return prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "opencluster", Name: name, Help: help,
		Buckets: prometheus.ExponentialBuckets(0.0001, 2, 15),
	})
}

// storageCollector exports what the storage engine measures of itself,
// read from its metrics at scrape time:
//   - its own histogram of WAL fsyncs, converted from nanoseconds to
//     seconds: the disk's part of opencluster_raft_log_sync_duration_seconds,
//     which also holds the write and the wake-ups around it;
//   - its two large users of memory outside the Go heap, which a process's
//     resident set shows and Go's own metrics do not: the memtables (the
//     one being filled, those waiting for their flush, and a flushed one
//     kept for reuse) and the block cache, with the cache's hits and
//     misses, which say whether it is large enough;
//   - its background work, flushes and compactions, which share the
//     node's CPU and disk with the Raft loop, and the write stalls that
//     hold every write back when that work falls behind (so a tail
//     latency can be matched to them).
type storageCollector struct {
	eng                                                     *mvcc.Engine
	walFsync, memtables, blockCache, cacheHits, cacheMisses *prometheus.Desc
	flushes, compactions, compactionTime, l0Sublevels       *prometheus.Desc
	stalls, stallTime                                       *prometheus.Desc
}

func newStorageCollector(eng *mvcc.Engine) *storageCollector {
	return &storageCollector{
		eng: eng,
		walFsync: prometheus.NewDesc("opencluster_wal_fsync_duration_seconds",
			"Fsyncs of the storage engine's write-ahead log, which holds the Raft log (Pebble's own measure: the system call alone).", nil, nil),
		memtables: prometheus.NewDesc("opencluster_storage_memtable_bytes",
			"Bytes the storage engine holds in memtables, including flushed ones not yet freed or kept for reuse.", nil, nil),
		blockCache: prometheus.NewDesc("opencluster_storage_block_cache_bytes",
			"Bytes the storage engine's block cache holds.", nil, nil),
		cacheHits: prometheus.NewDesc("opencluster_storage_block_cache_hits_total",
			"Block reads the storage engine's block cache answered.", nil, nil),
		cacheMisses: prometheus.NewDesc("opencluster_storage_block_cache_misses_total",
			"Block reads the storage engine's block cache missed (read from a file and decompressed).", nil, nil),
		flushes: prometheus.NewDesc("opencluster_storage_flushes_total",
			"Memtable flushes of the storage engine.", nil, nil),
		compactions: prometheus.NewDesc("opencluster_storage_compactions_total",
			"Compactions the storage engine finished.", nil, nil),
		compactionTime: prometheus.NewDesc("opencluster_storage_compaction_seconds_total",
			"Time the storage engine's finished compactions took (they run beside the Raft loop and share its CPU and disk).", nil, nil),
		l0Sublevels: prometheus.NewDesc("opencluster_storage_l0_sublevels",
			"Sublevels of the storage engine's level 0; writes stall when they pile up.", nil, nil),
		stalls: prometheus.NewDesc("opencluster_storage_write_stalls_total",
			"Times the storage engine held every write back (too many memtables waiting for a flush, or too many L0 sublevels).", nil, nil),
		stallTime: prometheus.NewDesc("opencluster_storage_write_stall_seconds_total",
			"Time writes were held back by the storage engine's stalls that ended.", nil, nil),
	}
}

func (c *storageCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.walFsync, c.memtables, c.blockCache, c.cacheHits, c.cacheMisses,
		c.flushes, c.compactions, c.compactionTime, c.l0Sublevels, c.stalls, c.stallTime} {
		ch <- d
	}
}

func (c *storageCollector) Collect(ch chan<- prometheus.Metric) {
	m := c.eng.DB().Metrics()
	var fsync dto.Metric
	if err := m.LogWriter.FsyncLatency.Write(&fsync); err != nil {
		ch <- prometheus.NewInvalidMetric(c.walFsync, err)
	} else {
		h := fsync.GetHistogram()
		buckets := make(map[float64]uint64, len(h.GetBucket()))
		for _, b := range h.GetBucket() {
			buckets[b.GetUpperBound()/1e9] = b.GetCumulativeCount()
		}
		ch <- prometheus.MustNewConstHistogram(c.walFsync, h.GetSampleCount(), h.GetSampleSum()/1e9, buckets)
	}
	ch <- prometheus.MustNewConstMetric(c.memtables, prometheus.GaugeValue, float64(m.MemTable.Size+m.MemTable.ZombieSize))
	ch <- prometheus.MustNewConstMetric(c.blockCache, prometheus.GaugeValue, float64(m.BlockCache.Size))
	ch <- prometheus.MustNewConstMetric(c.cacheHits, prometheus.CounterValue, float64(m.BlockCache.Hits))
	ch <- prometheus.MustNewConstMetric(c.cacheMisses, prometheus.CounterValue, float64(m.BlockCache.Misses))
	ch <- prometheus.MustNewConstMetric(c.flushes, prometheus.CounterValue, float64(m.Flush.Count))
	ch <- prometheus.MustNewConstMetric(c.compactions, prometheus.CounterValue, float64(m.Compact.Count))
	ch <- prometheus.MustNewConstMetric(c.compactionTime, prometheus.CounterValue, m.Compact.Duration.Seconds())
	ch <- prometheus.MustNewConstMetric(c.l0Sublevels, prometheus.GaugeValue, float64(m.Levels[0].Sublevels))
	stalls, stalled := c.eng.WriteStalls()
	ch <- prometheus.MustNewConstMetric(c.stalls, prometheus.CounterValue, float64(stalls))
	ch <- prometheus.MustNewConstMetric(c.stallTime, prometheus.CounterValue, stalled.Seconds())
}

// newMetrics makes the node's collectors and registers them with reg, if
// any, with a storageCollector of eng, if any.
func newMetrics(reg prometheus.Registerer, eng *mvcc.Engine) *metrics {
	m := &metrics{
		lockWaits: counter("lock_waits_total",
			"Requests that had to wait for a lock or a locked key."),
		lockExpired: counter("locks_expired_total",
			"Locks released because their ttl ran out without a keep-alive."),
		staleRetry: counter("write_timestamp_retries_total",
			"Writes re-stamped because a newer version applied first."),
		handoffs: counter("lock_handoffs_total",
			"Named locks granted to a waiter in the releasing command's own Raft round."),
		firstPassesSkipped: counter("key_lock_first_passes_skipped_total",
			"Multi-bucket restrictive locks that took their buckets' keys in order at once, without first trying every bucket, because most such tries on this node fell short."),
		keyHandoffs: counter("key_lock_handoffs_total",
			"Waiting key-lock requests that took keys in the Raft round of the ResolveKeys that released them."),
		triesSkipped: counter("lock_tries_skipped_total",
			"Lock and key-lock requests that waited without a Raft round, the leader's applied state showing the lock taken."),
		keysGivenBack: counter("key_locks_given_back_total",
			"Buckets whose key locks a restrictive lock took, or tried, in its first, parallel pass and gave back: an earlier bucket's keys were taken, or its record could not be created."),
		beginsWithFirstStep: counter("restrictive_begins_with_key_locks_total",
			"Restrictive locks whose record was created while their first key locks were taken, the name looking free: one Raft round for both when nothing is held."),
		orphanedKeyLocks: counter("orphaned_key_locks_released_total",
			"Key locks released because their restrictive lock's record no longer accounted for them."),
		leaseReads: counter("lease_reads_total",
			"Linearizable reads served under the leader's read lease, without a ReadIndex round."),
		readRounds: counter("read_index_rounds_total",
			"ReadIndex rounds started (each serves every read queued for its group)."),
		acksServedDuringSync: counter("raft_acks_served_during_sync_total",
			"Acknowledgements a leader stepped, and the entries they committed applied, while a Raft log write of other groups was being synced, instead of after it."),
		commitAppendsSkipped: counter("raft_commit_appends_skipped_total",
			"Empty Raft appends, carrying only a moved commit index, not sent to a caught-up follower of a bucket (it learns the index from the next append or heartbeat)."),
		cycle: latency("raft_cycle_duration_seconds",
			"Scheduler cycles that had work: stepping, the Raft log write, applying every group's committed entries and sending."),
		logSync: latency("raft_log_sync_duration_seconds",
			"Raft log writes that had to be durable: from the write to the end of its fsync."),
		tsoRemote: latency("tso_remote_duration_seconds",
			"Answered round trips to the meta leader for timestamps, on a node that does not lead the meta group (each serves every caller queued when it left)."),
	}
	if reg != nil {
		reg.MustRegister(m.lockWaits, m.lockExpired, m.staleRetry, m.handoffs, m.keyHandoffs, m.firstPassesSkipped, m.triesSkipped, m.keysGivenBack, m.beginsWithFirstStep, m.orphanedKeyLocks, m.leaseReads, m.readRounds, m.acksServedDuringSync, m.commitAppendsSkipped, m.cycle, m.logSync, m.tsoRemote)
		if eng != nil {
			reg.MustRegister(newStorageCollector(eng))
		}
	}
	return m
}
