// Package jepsen is OpenCluster's black-box consistency harness: it starts
// real server processes, drives concurrent clients against them while a
// nemesis injects faults, records every operation, and checks the history
// against what the store promises.
//
// It sees the store only through rpc/client and rpc/ocpb, exactly as a
// user does (plus, from rpc/cmdpb, the test-only admin service that
// servers started with --test-admin expose: clock skew and planted bugs);
// it never imports the server's packages. What it checks is
// therefore what a user can rely on.
//
// # Model
//
// A run (Run) has phases: start the nodes and wait until each serves;
// set up the workload's keys; let Concurrency client processes issue
// operations at Rate for TimeLimit while the nemesis scheduler injects
// and heals faults (kill -9 and restart, SIGSTOP and SIGCONT, network
// partitions, oracle clock skew, bucket replica moves, leadership-transfer
// storms; kill and pause hit one node, a minority, a majority, all, or the
// primary: the meta leader, which serves the timestamp oracle, as most
// nodes' Status names it); heal everything and wait for every node; run the workload's
// final reads; check the history; write the run directory (history.jsonl,
// results.json, summary.txt, test.json, latency.svg and throughput.svg
// with the faults shaded, register-<key>.html for a non-linearizable key,
// the servers' logs).
//
// The history is a list of Ops. A client process records an invoke
// before it sends a request and a completion after the answer:
//
//   - ok: the operation happened, with this result;
//   - fail: the operation certainly did not happen (the server refused it
//     before applying, a CAS found another version, a wait timed out on
//     the server, a transaction was never committed);
//   - info: the outcome is unknown (timeout, broken connection). The
//     operation may take effect at any time after its invoke, or never.
//
// A failed read is recorded as fail whatever the error, since reads have
// no effect. After an info the process takes a new id (id+Concurrency),
// as in Jepsen: it may still have a request in flight, and each process
// id must have at most one operation open at a time.
//
// Workloads and their checkers:
//
//   - register: get, put and CAS on keys with unique values, checked for
//     linearizability with porcupine, one key at a time; a group of at
//     most a few processes shares a key and moves to a fresh key after a
//     bounded number of operations, which keeps porcupine's search small.
//     A tenth of the operations are snapshot reads: a BatchGet at a fresh
//     snapshot (checked as a read) read again at that snapshot a moment
//     later, which must answer the same (T4).
//   - lock: acquire and release of a few named locks, checked as a mutex
//     with fences: fences unique and growing in real-time order, and no
//     grant while an earlier holder (smaller fence) still held the lock.
//   - lease: holders of a few named locks with a short ttl, each a
//     separate process (`opencluster jepsen lease-holder`) that the
//     harness drives one request at a time over its standard input, so
//     every renewal is an operation in the history. A holder renews a few
//     times and then releases, stops renewing (and may renew once more
//     later, a zombie), or is killed with SIGKILL, sometimes with a
//     renewal in flight; the same worker then waits for the lock with a
//     new holder. Checked: no early grant (a grant before the previous
//     holder's lease could have run out, counting from its last ok
//     renewal's invoke), and takeover within ttl*(1+ClockDrift) +
//     ElectionTimeout of the dead holder's last possible renewal, judged
//     only when no fault was in place; takeover latencies are reported.
//   - bank: transfers between accounts under restrictive locks (both
//     accounts WRITE, strict or snapshot mode) and reads (BatchGet at the
//     newest or an older snapshot, and under a READ lock on every
//     account): every read sees the conserved total and no negative or
//     missing balance, and two reads at one snapshot version agree.
//   - append: Elle-style list-append transactions (appends of unique
//     integers to a few hot keys, each a comma-separated list, and reads
//     of whole lists) under restrictive locks (WRITE on appended keys,
//     READ on keys only read, strict or snapshot mode; unlock commits),
//     plus lock-free BatchGet snapshot reads. Each key's longest read
//     gives its version order (every read must be a prefix of it), from
//     which come ww, wr and rw edges between committed transactions (an
//     info transaction whose value was read committed); Tarjan's SCCs
//     then a short cycle in each, explained edge by edge. Checked: no G0,
//     G1a, G1b, G1c, G-single (read skew), lost update, internal
//     inconsistency, non-atomic commit, acknowledged append missing from
//     the read after healing, or commit and snapshot versions that
//     disagree with the edges; G2 (write skew, allowed by snapshot
//     isolation) is only noted.
//   - fenced: holders of a few named locks write the key each lock guards
//     with the lock's fence; one iteration in ten is a zombie that lets
//     its lock expire (its client is closed, as if frozen), sleeps past
//     the ttl and writes anyway, and one in twenty is a forger that writes
//     without the lock, with a token it never granted. In the store's
//     version order accepted fences never go down, the final value is the
//     last acknowledged write, and no forged write is acknowledged or read
//     after healing. The unfenced workload is the same without fences: a control
//     that must come out INVALID (lost updates). Both also run the lock
//     checker.
//
// # Invariants
//
//  1. One clock. Every Op time is time.Since(run start) read from the
//     harness's monotonic clock, under the recorder's mutex, so Op indexes
//     and times grow together. Server clocks are never compared.
//  2. Conservative outcomes. An operation is ok or fail only when the
//     answer proves it; everything else is info. Checkers treat an info
//     write as possibly applied at any time after its invoke (porcupine:
//     return time +inf), never as ok or fail. Lock operations are retried
//     with their request id while the outcome is unknown; a refusal that
//     follows an unknown attempt is info too, since the first attempt may
//     have done the work (a release applied but unanswered is refused
//     once another client holds the lock). A node that exits without the
//     harness killing it ends the run as a harness error.
//  3. Conservative times. A lock grant happened somewhere between the
//     acquire's invoke and its completion, a release somewhere between its
//     invoke and completion; the mutex checker reports two holders only
//     when every placement of those points overlaps. A lock the holder
//     lost is assumed held at least ttl*(1-ClockDrift) after its
//     acquire's invoke (the server never expires a lock before ttl after
//     the grant; ClockDrift bounds the servers' clock rate error).
//  4. No vacuous pass. A checker that saw fewer than MinOK successful
//     operations of a kind it needs answers Inconclusive, never Valid;
//     so does porcupine when it runs out of time.
//  5. Lifetimes. Run owns every goroutine it starts (clients, nemesis
//     scheduler, progress) and every child process, and stops, kills and
//     reaps them before it returns, also on error. Children get SIGKILL if
//     the harness dies (Linux: Pdeathsig).
//  6. Replayable. Every random choice comes from rand sources seeded from
//     Config.Seed; the seed is printed and saved. A history saved in a run
//     directory can be checked again offline (CheckHistory).
//
// # Partitions
//
// Nodes are numbered 1..N and listen on 127.0.0.(10+i); the servers bind
// every outgoing connection to their own address, so a packet filter rule
// between two node addresses really cuts that link, while clients (from
// 127.0.0.1) still reach every node, as in Jepsen. The partition nemesis
// programs nftables over netlink (github.com/google/nftables, no nft
// binary): one table, a chain on the input hook, one `iifname "lo" ip
// saddr A ip daddr B counter drop` rule per cut direction, installed in
// one atomic batch; healing reads the counters (the packets dropped go
// into the history and the report: a partition that dropped nothing cut
// nothing) and deletes the table. Shapes (PartitionShapes): one node
// cut off, the node leading the most buckets (by the nodes' Status) cut
// off, random minority and majority halves, a majorities ring, and a
// bridge.
//
// The rules never touch the host: partitions run only in a private
// network namespace (NewNFTNet refuses otherwise). `jepsen run` asked for
// partitions re-executes itself in a new one (RunInPrivateNetNS: clone
// with CLONE_NEWNET, Pdeathsig), brings its loopback up
// (PreparePrivateNetNS), and starts servers and lease holders there; the
// namespace and its rules vanish when the run ends, even if it crashes.
// Without CAP_SYS_ADMIN and CAP_NET_ADMIN the command says so loudly (and
// in the summary) and runs the other faults.
//
// # Extending
//
// A Nemesis acts on a Cluster (kill, start, pause, resume nodes) and
// records its faults; nemeses that need more than Cluster get it through
// their constructors: the partition nemesis its Net and a view of the
// leaders, the clock nemesis the nodes' addresses (it calls the test-only
// cmdpb.TestAdmin service of servers started with --test-admin, which Run
// asks for only when the clock nemesis or planted bugs need it), the move
// and transfer nemeses the nodes' endpoints (Status, then MoveReplica of
// one replica of a random bucket to a node without one, at least 4 nodes;
// or TransferLeader of up to 8 buckets at once).
//
// # Negative controls
//
// Config.PlantedBugs switches the servers' planted bugs on once they all
// serve (stale reads, no fence check, early lock expiry); such a run must
// come out INVALID, and `opencluster jepsen selftest` checks that each is
// caught (SelftestCases).
package jepsen
