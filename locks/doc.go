// Package locks holds the replicated semantics of OpenCluster's data and
// locks as deterministic functions over an mvcc batch, plus the leader-side
// machinery (wait queues, expiry deadlines) that needs no replication.
//
// # Model
//
// Every bucket command (cmdpb.Command) is decided by the leader that
// proposes it: timestamps, lock codes and ttl are inside it. Apply reads
// and writes only the bucket's own keys through the batch it is given, and
// never reads a clock or a random source, so every replica that applies the
// same commands holds the same bytes and returns the same results.
//
// Named locks are records n/<name> that keep their fence across releases.
// Restrictive locks are transactions: a record t/<name> in bucket(name) is
// the commit point, key locks k/<key> in each key's bucket hold the
// provisional values inline, and ResolveKeys turns them into versions at
// the commit timestamp (or drops them) after the record is finished. A
// ResolveKeys may carry the LockKeys of the released keys' next holders
// (handoffs): each applies after the release, in order, exactly as it
// would as a command of its own.
// ApplyCached also keeps a bucket's Cache: its count of key locks
// (KeyLocks), so a plain write or a LockKeys looks for a key lock only when
// the bucket has one (and a read, through ReadUnlocked, only when the
// caller knows it may have one), a bound on its versions (VersionBound), so
// a Put reads its key's newest version only when its timestamp is not
// above them all, and its lock records and key locks as last read or
// written (two Records, so that many keys do not push out the hot names),
// so a lock command reads a record or a key lock from the engine only when
// the cache does not know it.
//
// # Invariants
//
//  1. A named lock record is held by at most one code; its fence grows by
//     one with every grant and never decreases.
//  2. A key lock has either one WRITE holder or any number of READ holders.
//  3. A Put, Delete or CAS never applies to a key that has a key lock, and
//     never below the key's newest version (T3): it returns KEY_LOCKED or
//     STALE_TS and changes nothing.
//  4. A provisional value is written only by the key's WRITE holder, and
//     not once the key is prepared (a snapshot lock's prepare stamps every
//     WRITE key, written or not); it is invisible to everyone else until
//     ResolveKeys commits it at the record's commit timestamp (T5); it is
//     never committed after the record was ABORTED, because the
//     coordinator resolves with the record's outcome and a record leaves
//     PENDING exactly once.
//  5. A transaction record moves PENDING -> COMMITTED or PENDING -> ABORTED
//     once; a missing record is never created as ABORTED. The name is free
//     again as soon as the record is finished: TxnBegin keeps a finished
//     record whose key locks are not all resolved in the new record's
//     unresolved list, and only TxnResolved drops it, so its outcome and
//     its keys are never forgotten while a key lock of it is left. A
//     TxnBegin with the pending record's request id gets the first grant
//     back only if it names the same keys, modes and isolation
//     (REQUEST_REUSED otherwise): keys taken under the first code that the
//     record does not list would never be committed.
//  6. A fenced write is refused when its token is below the highest token
//     the key accepted for that lock name.
//
// Key locks are waited for in (bucket, key) order by every restrictive
// lock, so restrictive locks cannot deadlock among themselves (a first
// pass may take later keys without waiting; it gives them back before it
// waits). A named lock's Release may carry its head waiter's acquire
// (NamedRelease.handoff): the grant then applies in the release's command.
package locks
