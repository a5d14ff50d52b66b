// Package bench measures OpenCluster against its peers (etcd, Redis) on
// one machine, in one run: the workloads, the client loop, the safety
// checks, latency aggregation, the results (table and JSON), the server
// processes, and the protocol of the peer process that drives etcd.
//
// # Model
//
// A Spec is one run: a workload at a concurrency for a warm-up plus a
// measured window. Run drives a Target (one system's client library behind
// five operations: Put, Get, Lock/Unlock, Transfer, Total) with
// Concurrency goroutines, each doing one operation after another until the
// window ends. A System is a running system under test (its server
// processes and a way to drive them); RunSuite runs every workload at
// every concurrency on every System in turn, so that the systems alternate
// and slow drifts of a shared machine hit all of them alike; with
// Config.Rounds it runs that plan several times on the same servers, and
// Summaries gives each ours÷peer ratio's median over the rounds (ratios
// pair runs of one round only).
//
// Targets live where their client library may live: octarget (our Go
// client) and redistarget (a small RESP client) here, the etcd target in
// the nested module cmd/ocbench-peers, which imports this package and runs
// the same Run in a child process (peer.go). So every system is driven by
// the same loop, checked by the same checks and summarised by the same
// histogram; only the five operations differ.
//
// # Invariants
//
//  1. Counting. An operation is counted (ops, latency, or error) if and
//     only if it completes inside [start+Warmup, start+Warmup+Duration];
//     ops/s is that count over Duration. Operations in flight at the end
//     are let finish (bounded by drainGrace), not cancelled, so no lock or
//     transaction is left half done, and not counted.
//  2. Latency. A KV operation's latency is the call's; a lock cycle's is
//     the acquire's (the release is done but not timed); a transfer's is
//     the committed transfer's, retries included. Quantiles are
//     nearest-rank over a log-linear histogram, within 1/128 of the exact
//     value; the maximum is exact.
//  3. Mutual exclusion. A holder's interval is from the return of Lock to
//     the call of Unlock, observed in this process (all clients of a run
//     are here). A grant while another holder's interval is open, or a
//     fence not above the previous grant's of that name, is a violation.
//     Warm-up grants are checked too.
//  4. Conservation. After a transfer run the accounts, read at one point
//     in time, sum to InitialBalance times their number.
//  5. Isolation of runs. Lock names and account keys carry the run's id,
//     so a run never meets a lock or an account that another run left
//     behind; the key space of the KV workloads is loaded once per server.
//  6. Lifetimes. Run returns only after its client goroutines and its
//     progress goroutine have ended. Every server process is reaped: Stop
//     waits for it (SIGTERM, then SIGKILL when its context ends), Start
//     stops what it started when it fails half way, and on Linux the
//     kernel kills children if the bench dies (Pdeathsig).
//
// Violations do not stop a run: they are counted in its Result, and
// RunSuite returns an error matching ErrCheck after all runs, so that the
// table still shows what happened.
package bench
