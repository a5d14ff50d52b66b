// Package ts defines cluster timestamps, the clock seam every deadline goes
// through, and the timestamp oracle's allocator.
//
// A Timestamp is physical milliseconds << 18 | logical, so it reads as a
// wall-clock time and still allows 262144 timestamps per millisecond. Zero
// means "no timestamp".
//
// The Oracle is a pure allocator (no goroutines, no clock reads): the meta
// group's leader feeds it the current time and the persisted upper bound.
// Invariants:
//
//  1. Next returns strictly increasing timestamps (T1), never above the
//     bound that has been persisted (SetBound).
//  2. After a restart or a leadership change, Reset(bound) makes the next
//     timestamp exceed every timestamp any earlier leader could have issued,
//     because no leader issued above the persisted bound.
//  3. The bound is raised ahead of time (NeedBound) so that Next rarely waits
//     for a Raft round.
package ts
