package raftlog

import "fmt"

// DefaultCacheBytes is the default bound of a Storage's entry cache. A node
// holds one cache per group (thousands of buckets), so the bound is small:
// enough for the entries between their append, their replication and
// their application in steady state (a few cycles' worth; at 64KB a
// group holds some 300 entries of a put, seconds of its busiest load).
// At 256KB the caches were most of a server's live heap under load, and
// the heap, growing to twice that between collections, most of its RSS.
const DefaultCacheBytes = 64 << 10

// Config configures a Storage. The zero value of every field means its
// default.
type Config struct {
	// CacheBytes bounds the entry cache, in bytes of encoded entries
	// (proto.Size, the size raft counts against maxSize). The cache holds
	// the newest entries of the log; it always keeps the newest entry, even
	// one larger than the bound. Zero means DefaultCacheBytes; negative is
	// invalid. A node's total is about CacheBytes times its group count.
	CacheBytes int64
}

// Validate reports the first field out of range.
func (c Config) Validate() error {
	if c.CacheBytes < 0 {
		return fmt.Errorf("%w: CacheBytes = %d, want >= 0", ErrInvalidConfig, c.CacheBytes)
	}
	return nil
}

// withDefaults returns c with zero fields replaced by their defaults.
func (c Config) withDefaults() Config {
	if c.CacheBytes == 0 {
		c.CacheBytes = DefaultCacheBytes
	}
	return c
}
