// Package kv is a node: it owns the node's Pebble engine, one Raft group per
// bucket plus the meta group, the scheduler that drives them, the timestamp
// oracle, and the request paths that turn client requests into replicated
// commands.
//
// # Model
//
// A request becomes a deterministic command (timestamps and codes chosen by
// the bucket's leader), is proposed to the bucket's Raft group, persisted,
// committed and applied by locks.Apply; apply is the only place state
// changes. One scheduler goroutine drives every group: it persists all
// groups' new entries and HardStates in one Pebble batch with one fsync,
// then applies all committed entries in one batch, then answers proposers.
//
// # Invariants
//
//  1. Nothing is acknowledged before the entry that carries it is durable
//     in the Raft log and applied; a restart replays the log from the
//     applied index, so it loses nothing acknowledged and half-applies
//     nothing (apply and the applied index commit in one batch).
//  2. A leader serves reads and proposes only after it applied every entry
//     of earlier terms (leader ready); then it restarts every lock
//     deadline at now + ttl, so no lock expires early.
//  3. Write timestamps come from the oracle; apply refuses a write that is
//     not above the key's newest version (STALE_TS) and the leader retries
//     with a fresh timestamp, so versions grow in apply order (T3).
//  4. A snapshot read at R first waits for every write that took its
//     timestamp before R was chosen to apply (the proposal gate plus
//     ReadIndex), so no version <= R appears after the read (T4).
//  5. A restrictive lock commits by prepare -> oracle timestamp -> record
//     COMMITTED -> resolve keys; readers that meet a prepared key lock at or
//     above its min_commit_ts wait for the resolution (T4, T5).
package kv
