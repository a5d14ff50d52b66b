// Package raftlog implements raft.Storage (go.etcd.io/raft/v3) for one Raft
// group on the node's shared Pebble database.
//
// # Model
//
// A node runs many Raft groups (one per bucket plus the meta group) in one
// Pebble DB, and one scheduler goroutine drives them all. A Storage is that
// goroutine's view of one group's persistent Raft state:
//
//   - the log: entries (trunc.index, last.index], each at its own key;
//   - the truncated state trunc = (index, term): the position of the last
//     entry removed from the log by Bootstrap, Compact or ApplySnapshot;
//   - the ConfState as of the applied index;
//   - the HardState (term, vote, commit);
//   - the applied index.
//
// The write methods (Bootstrap, Append, SetApplied, SetConfState, Compact,
// ApplySnapshot) never write to the DB themselves: they check their
// arguments, stage writes into a caller-provided *pebble.Batch and update
// the in-memory view at once. The scheduler collects every group's writes
// of one round in one batch and commits it with one fsync before it sends
// the round's messages or calls RawNode.Advance. The raft.Storage methods
// answer from memory (indices, terms, the HardState, the ConfState and a
// bounded cache of the newest entries) and read older entries from the DB.
//
// Keys, from mvcc.RaftKey(group, kind, index):
//
//	'e' index   a raftpb.Entry (proto)
//	'h'         the raftpb.HardState (proto)
//	's'         the truncated state and ConfState, as a raftpb.SnapshotMetadata
//	            (proto): Index and Term are trunc, ConfState the ConfState
//	'a'         the applied index, 8 bytes big-endian
//
// A group is initialized once its 's' record exists (Bootstrap or
// ApplySnapshot staged it). An uninitialized group behaves like an empty
// raft.MemoryStorage (FirstIndex 1, LastIndex 0, Term(0) = 0) and may hold a
// HardState, so a replica waiting for its first snapshot can still vote.
//
// # Invariants
//
// Of the persisted state, once the batches holding it are committed:
//
//  1. The entries of the log are exactly the keys (trunc.index, last.index]
//     of the entry span: contiguous, no key at or below trunc.index.
//  2. trunc.index <= applied <= last.index, and HardState.Commit <=
//     last.index. The stored Commit may be below applied: a HardState
//     that only moves the commit index is not written (raft needs only
//     the term and vote durable), and Load takes max(Commit, applied) as
//     the commit index, so trunc.index <= applied <= commit <= last.index
//     holds in memory.
//  3. Entry terms never decrease along the log, and Term(trunc.index) is
//     trunc.term: the term of the entry before FirstIndex stays known.
//  4. Entries at or below HardState.Commit are never rewritten: Append
//     refuses to start at or below the commit index (raft never does).
//  5. The ConfState is the one in force after the applied index: the
//     caller stages SetConfState in the batch that applies the conf change.
//
// The in-memory view equals the state the DB will hold once every staged
// batch is committed, except for the commit index, which may be ahead of
// the stored one (invariant 2). If a batch is dropped or its commit fails,
// the view is ahead of the DB: the caller must discard the Storage and
// Load again.
// Reads answer from the view, except for entries that are not cached,
// which come from the DB: an entry staged in a batch not yet committed and
// already evicted from the cache cannot be read until the commit. Raft
// reads only entries of earlier Readies (after Advance), so the Ready loop
// never meets one; Compact reads through its batch if that is indexed.
//
// The write methods check invariants 2 and 3 and the cache's shape after
// every write when built with -tags invariants.
//
// # Snapshots
//
// Snapshot returns a placeholder, like CockroachDB's replicaRaftStorage:
// its metadata is (trunc.index, trunc.term) and the current ConfState, and
// it has no data. Raft only needs it to decide that a follower needs a
// snapshot and to track that follower's progress; the transport intercepts
// the MsgSnap and streams the bucket span from a Pebble snapshot, sending
// metadata read from that same Pebble snapshot with ReadSnapshotMetadata
// (applied index, its term, ConfState). That index is >= trunc.index, and
// raft accepts the acknowledgement of any snapshot from whose index the
// follower can be caught up from the log (Match+1 >= FirstIndex, in
// stepLeader's MsgAppResp case). So the placeholder only needs an index
// >= trunc.index with a known term: the truncated state is the one that
// always exists, while the real index is fixed only when the transport
// takes its Pebble snapshot. (The placeholder's ConfState is the current
// one, as of the applied index; no follower applies it, as the transport
// replaces the metadata.)
//
// # Errors
//
// The raft.Storage methods return raft.ErrCompacted and raft.ErrUnavailable
// unwrapped, because raft compares them with ==. Other errors wrap, with
// %w, one of this package's sentinels or an error of Pebble; raft treats
// any other error from Storage as fatal (it panics).
package raftlog
