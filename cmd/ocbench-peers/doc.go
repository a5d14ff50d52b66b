// Command ocbench-peers drives the peer systems of `opencluster bench`
// whose client libraries must stay out of OpenCluster's own module: today
// etcd, through go.etcd.io/etcd/client/v3 (KV, concurrency.Mutex and
// concurrency.NewSTM with SerializableSnapshot).
//
// # Design
//
// This directory is a Go module of its own (go.mod, with
// `replace github.com/opencluster/opencluster => ../..`), so the etcd
// client and its dependencies never enter the product's go.mod, and
// `go test ./...` at the repository root does not build it. It imports
// internal/bench from the main module, so the workloads, the client
// loop, the safety checks (mutual exclusion with fences, account totals)
// and the latency aggregation are the very code the bench runs for
// OpenCluster; this module adds only the etcd Target.
//
// `opencluster bench` builds this command on first use into its cache
// directory, under a name that carries a hash of its sources, and runs it
// once per measured run, speaking the peer protocol of internal/bench
// (peer.go): one PeerRequest JSON line on stdin; PeerEvent JSON lines on
// stdout (progress every 500ms, then one result or error); exit 0. A
// process per run keeps runs independent (fresh clients and sessions)
// and costs a few milliseconds outside the measured window.
//
// The etcd server itself is built from the module in etcdserver/, a
// wrapper that requires go.etcd.io/etcd/server/v3 v3.7.3 (etcd's own
// go.mod has replace directives, so `go install …@v3.7.3` cannot build
// it; see shared/reference/etcd-baseline.md). Its go.mod and go.sum pin
// exactly what is built; it is a separate module from this one so that
// the server keeps the dependency versions etcd was released with.
//
// # Invariants
//
//  1. The bench process never links the etcd client: only this binary
//     does.
//  2. A peer process exits when its run ends or when its stdin request
//     is bad; the bench kills it if the bench's context ends, and the
//     kernel kills it if the bench dies (Pdeathsig on Linux).
//  3. The etcd target uses the same connection count as OpenCluster's
//     (8 clients, goroutines round-robin) and the same key, value, lock
//     name and account layouts, which come from internal/bench.
package main
