// Package mvcc is versioned storage on Pebble: the key layout of a node's
// single Pebble database, reads at a timestamp, writes of versions and
// records, scans and garbage collection. It knows nothing of Raft or locks.
// Its sstables (flushes, compactions, CreateSST) keep a key's older
// versions inline, never in value blocks, which a writer holds in Go
// memory until its table is finished (Open). Its block cache keeps
// CacheBytes for blocks besides two full memtables, which Pebble charges
// to the cache (Open). It counts Pebble's write stalls and their length
// (Engine.WriteStalls) and logs each stall as a warning.
//
// # Key layout
//
// Engine keys use CockroachDB's encoding and Pebble's cockroachkvs Comparer:
// prefix || 0x00 [|| version(8 bytes, big-endian timestamp) || 0x09]. The
// comparer orders keys by prefix, then the unversioned key, then versions
// newest first, and its Split returns the prefix, so bloom filters and
// NextPrefix work on the user key. Prefixes:
//
//	'b' bucket(2) 'd' userkey  @ts  committed versions of a user key
//	'b' bucket(2) 'k' userkey       key lock (restrictive locks) with provisional value
//	'b' bucket(2) 'f' userkey       highest fence accepted per lock name
//	'b' bucket(2) 'n' name          named-lock record
//	'b' bucket(2) 't' name          restrictive-lock (transaction) record
//	'b' bucket(2) 'q' request id    dedup record: the result of an applied release
//	'r' group(4) kind [index(8)]    Raft log, HardState, applied state (kv/raftlog)
//	'M' name                        the meta group's replicated state
//	'm' name                        this node's own metadata (identity)
//
// Invariants:
//
//  1. Everything of one bucket lies in BucketSpan(b), one contiguous span,
//     so a bucket can be snapshotted, ingested or deleted as a unit.
//  2. A user key's versions are stored newest first; a read at ts returns
//     the first version <= ts. A tombstone version hides older versions.
//     A version may keep the id of the request that wrote it (PutWrite),
//     which reads ignore. Builds before that format cannot read such a
//     version: a node is not rolled back across it.
//  3. Records (locks, fences, meta) are unversioned and marshalled
//     deterministically, so replicas applying the same commands hold the
//     same bytes. A cleared record (ClearRecord) is a one-byte marker that
//     GetRecord and ScanRecords treat as absent; PurgeCleared deletes the
//     markers.
//  4. GC below a timestamp keeps every version above it and the newest
//     version at or below it (unless that one is a tombstone), so reads at
//     any timestamp >= the GC timestamp are unchanged.
package mvcc
