// Package kv is a node: it owns the node's Pebble engine, one Raft group per
// bucket plus the meta group, the scheduler that drives them, the timestamp
// oracle, and the request paths that turn client requests into replicated
// commands; with a Transport and a Remote it is one node of a cluster.
//
// # Model
//
// A request becomes a deterministic command (timestamps and codes chosen by
// the bucket's leader), is proposed to the bucket's Raft group, persisted,
// committed and applied by locks.Apply; apply is the only place state
// changes. One scheduler goroutine drives every group (asking for a Ready
// only of the groups a step, a hand-off or an Advance touched, and of all
// of them after a tick or a submitted function): it writes all
// groups' new entries and changed terms and votes (raftlog: a commit
// index alone is not written) to the WAL in one Pebble batch and,
// while that batch's fsync runs, applies all committed entries in one
// batch and answers proposers; Raft messages for other nodes go out
// through the Transport once the round is durable, except a steady
// leader's, which go before its own fsync so the followers' overlap it.
// Until that fsync ends, the scheduler steps acknowledgements to leaders
// in their term of groups outside the round and runs a round of those
// groups alone, so that entries they commit are applied and answered at
// once (sync_acks.go); a group is never in two rounds at a time
// (snapshots stream in chunks, transport.go; a big one is ingested as SSTs,
// snapshot_ingest.go). A bucket leader does not send a caught-up follower
// the empty append that only moves its commit index: the next append or
// heartbeat carries it (transport.go), unless it is the first to announce
// a committed configuration change. A contended named lock passes to its
// next waiter in the releasing command (handoff.go), and a contended key
// lock in the ResolveKeys that releases it, proposed on the key's leader
// (key_handoff.go). A waiter never proposes a lock that
// its leader's applied state shows taken: it joins the queue, then looks,
// and waits (takeInTurn, lockKeysHere). The look only saves rounds; a
// client's refusal comes from a committed command, or for a key lock with
// no wait from a look under the read lease.
//
// # Cluster
//
// The meta group holds the node registry, the oracle's bound and the
// placement table {bucket -> voters, learners, leader, term, epoch}; each
// bucket's leader reports its configuration there. A group grows onto live
// nodes in the order they joined (buckets to Replicas voters, the meta
// group to five, both off draining and removed nodes); MoveReplica moves a
// replica (learner, catch-up, joint swap), and the rebalancer
// (Config.Rebalance, rebalancer.go) plans moves with package rebalance and
// then owns bucket placement and leader balance; without it bucket
// leaderships spread by a fixed preference (cluster.go). Operator commands
// (drain, remove, transfer-leader) and the record of moves in progress are
// in nodes.go; a replica moved away deletes its data (replica_gc.go). A
// request about one key or lock name runs on its bucket's leader: another
// node forwards it there once (forward.go). Multi-bucket work is
// coordinated where it arrives and each per-bucket step runs on
// that bucket's leader, here or through Remote (buckets.go); a node with no
// replica of a bucket finds its leader in the placement table.
//
// # Invariants
//
//  0. The oracle's leader hands out a timestamp only after confirming,
//     under its read lease or by a ReadIndex round, that it still led the
//     meta group after issuing it (tso.go), so a successor never issued a
//     higher one earlier (T1, T2).
//  1. Nothing is acknowledged before the entry that carries it is
//     committed (durable in a quorum's Raft logs) and applied here; a
//     restart replays the log from the applied index, so it loses nothing
//     acknowledged and half-applies nothing (apply and the applied index
//     commit in one batch, written to the WAL after the log batch of its
//     round, and a snapshot's data and Raft state in one batch or one
//     ingest).
//  2. A leader serves reads and proposes only after it applied every entry
//     of earlier terms (leader ready); then it restarts every lock
//     deadline at now + ttl, so no lock expires early. A linearizable read
//     runs after a ReadIndex round, or under the leader's read lease
//     (lease.go): within (ElectionTicks-2) ticks, less a margin, of the
//     start of a round a quorum answered, no other leader can exist. The
//     lease is voided on a configuration change, a new term and before a
//     MsgTimeoutNow is sent (then for the rest of the leadership), a
//     restarted node refuses votes for an election timeout, and a read is
//     checked against the lease, by a clock that counts suspended time,
//     after it ran.
//  3. Write timestamps come from the oracle; apply refuses a write that is
//     not above the key's newest version (STALE_TS) and the leader retries
//     with a fresh timestamp, so versions grow in apply order (T3).
//  4. A snapshot read at R first waits for every write that took its
//     timestamp before R was chosen to apply (the proposal gate, then a
//     ReadIndex round that also waits for every entry appended when it
//     started: the commit index alone does not cover writes still in
//     flight), so no version <= R appears after the read (T4). Both cover
//     only their own leader, so a write reaches Raft only under the
//     leadership, term included, it took its timestamp in; otherwise it
//     fails with ErrNotApplied and is retried (replica.propose: no
//     bucket command is forwarded by Raft).
//  5. A restrictive lock commits by oracle timestamp -> record COMMITTED
//     (a strict lock's record carries its writes; a snapshot lock prepares
//     its keys first) -> answer -> resolve keys; readers wait for a strict
//     WRITE lock, and for a prepared key lock at or above its min_commit_ts,
//     until the resolution (T4, T5). A finished lock whose resolution failed
//     midway is resolved again by its bucket's leader every second, so no
//     key stays locked by it; its name is free once it is finished. The
//     mark that a record's keys are all released rides on the name's next
//     TxnBegin or TxnFinish (resolved_marks.go); a lost mark only means a
//     second, idempotent resolution. A key lock its record no longer
//     accounts for (a LockKeys that applied after the lock's keys were
//     resolved, or before a record that never came) is released by its
//     bucket's leader within a few Config.OrphanSweepInterval
//     (orphan_keys.go); the record's leader counts as live the codes
//     whose record it is creating (Restrict creates the record while it
//     takes its first key locks, beginWithFirstStep). A read skips the look
//     for a key lock only while replica.noKeyLocks says its bucket holds
//     none; the scheduler clears that flag before it commits a batch that
//     may hold a key lock, so a lock is never acknowledged while it is set.
//  6. A write, CAS or Release applies at most once per request id: a retry
//     (marked so by the client) finds the first attempt's version (a write
//     or CAS keeps its request id in the version it writes) or dedup record
//     (a Release) in the bucket and gets its result back. A Restrict
//     retried with its request id gets its first grant back only if it
//     repeats its keys, modes and isolation (locks invariant 5). A fenced
//     write's token must be one its lock granted (checkFenceGranted): the
//     key keeps the highest token it accepted and refuses lower ones.
//  7. An error that matches ErrNotApplied changed nothing and may be
//     retried as it is; any other ErrUnavailable is ambiguous.
//  8. Only the leader of a bucket tracks its lock deadlines; a node that
//     loses the leadership forgets them and the new leader restarts them.
//  9. A proposal's result goes only to the waiter that proposed it: the
//     entry names its proposer (Command.proposer), and a node's proposal
//     ids start at a random value on every open, so an entry proposed
//     before a restart never answers one made after it.
package kv
