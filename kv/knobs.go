package kv

import "github.com/opencluster/opencluster/mvcc/ts"

// TestingKnobs are hooks that let a test hold a request at a point where a
// race would otherwise need luck to hit, as CockroachDB's testing knobs do.
// A production node has none (Config.Knobs nil). A hook runs on the
// request's goroutine and may block it; it must not call back into the
// node that runs it.
type TestingKnobs struct {
	// AfterWriteStamped runs when a write (Put, Delete, CompareAndSwap) on
	// node has taken its timestamp, before its proposal is queued; the
	// node holds the bucket's proposal gate shared meanwhile, so a
	// snapshot read on the same node waits for it.
	AfterWriteStamped func(node uint64, key []byte, t ts.Timestamp)
	// BeforeCycle runs on node's scheduler goroutine before each of its
	// cycles: blocking it stalls the node's Raft groups (no ticks, no
	// messages stepped) while its request paths go on, as when a paused
	// process resumes with requests queued.
	BeforeCycle func(node uint64)
}
