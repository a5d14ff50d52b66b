package locks

import "github.com/opencluster/opencluster/mvcc/ts"

// VersionBound bounds a bucket's versions from above, so that a Put need
// not read its key's newest version to rule out a stale timestamp: a
// timestamp above the bound is above every version of the bucket. That
// read, a seek through every memtable and level, was a tenth of a
// cluster's CPU under puts.
//
// The bound is the apply path's own, like KeyLocks: only the scheduler
// goroutine touches it. It starts unknown, and becomes unknown again
// whenever the bucket's data is replaced (a snapshot, a wipe). Establish
// makes it known from a fresh oracle timestamp taken after it became
// unknown: every version the bucket held then was issued by the oracle
// before that timestamp, and every version written since is remembered
// here. A put at or below the bound reads the key, as before; so the
// bound only skips reads, it never changes a result, and replicas whose
// bounds differ still apply identically.
type VersionBound struct {
	known bool
	// max, once known: no version of the bucket is above it.
	max ts.Timestamp
	// seen is the newest version written since the bound became unknown.
	seen ts.Timestamp
	// gen counts invalidations, so that a fresh timestamp taken before
	// the latest one is not used.
	gen uint64
}

// Invalidate makes the bound unknown, in a new generation.
func (v *VersionBound) Invalidate() {
	v.known, v.max, v.seen = false, 0, 0
	v.gen++
}

// Unknown reports whether the bound is unknown, and its generation, to be
// passed to Establish with a fresh oracle timestamp taken after this call.
func (v *VersionBound) Unknown() (gen uint64, unknown bool) { return v.gen, !v.known }

// Establish makes the bound known from fresh, an oracle timestamp issued
// after Unknown returned gen, unless the bound was invalidated since.
func (v *VersionBound) Establish(gen uint64, fresh ts.Timestamp) {
	if v.known || gen != v.gen {
		return
	}
	v.known, v.max = true, max(fresh, v.seen)
}

// Above reports whether t is certainly above every version of the bucket.
func (v *VersionBound) Above(t ts.Timestamp) bool { return v != nil && v.known && t > v.max }

// wrote follows a version written at t.
func (v *VersionBound) wrote(t ts.Timestamp) {
	if v == nil {
		return
	}
	v.seen = max(v.seen, t)
	if v.known {
		v.max = max(v.max, t)
	}
}

// Cache is what the apply path keeps in memory about one bucket to skip
// reads: its key-lock count, its version bound, its lock records and its
// key locks.
type Cache struct {
	KeyLocks       KeyLocks
	Versions       VersionBound
	Records        Records
	KeyLockRecords Records
}

// NewCache returns a cache that knows nothing yet.
func NewCache() *Cache {
	c := &Cache{}
	c.Invalidate()
	return c
}

// Invalidate forgets everything: the bucket's data was replaced.
func (c *Cache) Invalidate() {
	c.KeyLocks.Invalidate()
	c.Versions.Invalidate()
	c.Records.Invalidate()
	c.KeyLockRecords.Invalidate()
}
