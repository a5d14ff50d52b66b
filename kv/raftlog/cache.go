package raftlog

import (
	"fmt"

	"go.etcd.io/raft/v3/raftpb"
)

// entryCache holds the newest entries of the log, bounded by their encoded
// size, so that Term and Entries do not read the DB in steady state (the
// leader reads recent entries to replicate and apply them). It holds a
// suffix of the log: a read of an older entry misses and goes to the DB,
// and never refills the cache.
type entryCache struct {
	// ents[i] is the entry at index first+i.
	// Invariant: when ents is non-empty it is a suffix of the log, so its
	// last index is the Storage's last.index, and first > trunc.index.
	// Invariant: positions [0, len(ents)) are never written in place,
	// because Entries hands out sub-slices of ents (capped with a full slice
	// expression); truncate caps ents so the next push reallocates.
	ents []*raftpb.Entry
	// sizes[i] is proto.Size(ents[i]).
	// Invariant: len(sizes) == len(ents).
	sizes []int
	// first is the index of ents[0]; meaningless when ents is empty.
	first uint64
	// bytes is the sum of sizes.
	bytes int64
	// limit bounds bytes, except that the newest entry is always kept.
	limit int64
}

func (c *entryCache) len() int { return len(c.ents) }

// firstIndex returns the index of the oldest cached entry, or ok=false.
func (c *entryCache) firstIndex() (uint64, bool) {
	return c.first, len(c.ents) > 0
}

// get returns the cached entry at index i.
func (c *entryCache) get(i uint64) (*raftpb.Entry, bool) {
	if len(c.ents) == 0 || i < c.first || i-c.first >= uint64(len(c.ents)) {
		return nil, false
	}
	return c.ents[i-c.first], true
}

// slice returns the entries [lo, hi) limited like raft's limitSize: the
// first entry always, then entries while the running size stays within
// maxSize. If prior is set, the result continues prior entries of size
// used: used counts against maxSize and the first entry is not exempt. It
// requires c.first <= lo < hi <= c.first+len(c.ents). The result may not be
// written but may be appended to.
func (c *entryCache) slice(lo, hi, maxSize, used uint64, prior bool) []*raftpb.Entry {
	if lo < c.first || hi > c.first+uint64(len(c.ents)) || lo >= hi {
		panic(fmt.Sprintf("raftlog: cache slice [%d, %d) outside [%d, %d)",
			lo, hi, c.first, c.first+uint64(len(c.ents))))
	}
	i, j := int(lo-c.first), int(hi-c.first)
	size := used
	n := i
	for ; n < j; n++ {
		size += uint64(c.sizes[n])
		if size > maxSize && (n > i || prior) {
			break
		}
	}
	return c.ents[i:n:n]
}

// truncate drops the cached entries at index >= i.
func (c *entryCache) truncate(i uint64) {
	if len(c.ents) == 0 || i >= c.first+uint64(len(c.ents)) {
		return
	}
	k := 0
	if i > c.first {
		k = int(i - c.first)
	}
	for _, sz := range c.sizes[k:] {
		c.bytes -= int64(sz)
	}
	c.ents = c.ents[:k:k]
	c.sizes = c.sizes[:k]
}

// push appends e, of encoded size size, to the cache. e must be the entry
// right after the newest cached one (any entry if the cache is empty).
// Call evict after a run of pushes.
func (c *entryCache) push(e *raftpb.Entry, size int) {
	if len(c.ents) == 0 {
		c.first = e.GetIndex()
	} else if want := c.first + uint64(len(c.ents)); e.GetIndex() != want {
		panic(fmt.Sprintf("raftlog: cache push of index %d, want %d", e.GetIndex(), want))
	}
	c.ents = append(c.ents, e)
	c.sizes = append(c.sizes, size)
	c.bytes += int64(size)
}

// evict drops the oldest entries until the cache fits its limit or holds
// one entry.
func (c *entryCache) evict() {
	k := 0
	for c.bytes > c.limit && len(c.ents)-k > 1 {
		c.bytes -= int64(c.sizes[k])
		k++
	}
	c.dropFront(k)
}

// dropTo drops the cached entries at index <= i.
func (c *entryCache) dropTo(i uint64) {
	if len(c.ents) == 0 || i < c.first {
		return
	}
	k := min(int(i-c.first+1), len(c.ents))
	for _, sz := range c.sizes[:k] {
		c.bytes -= int64(sz)
	}
	c.dropFront(k)
}

// dropFront drops the k oldest entries; their bytes are already
// subtracted. The backing array keeps them until the next push
// reallocates it (ents[:k] may be shared with callers, so they are not
// cleared).
func (c *entryCache) dropFront(k int) {
	if k == 0 {
		return
	}
	c.ents = c.ents[k:]
	c.sizes = c.sizes[k:]
	c.first += uint64(k)
	if len(c.ents) == 0 {
		c.reset()
	}
}

// reset empties the cache.
func (c *entryCache) reset() {
	c.ents, c.sizes, c.first, c.bytes = nil, nil, 0, 0
}
