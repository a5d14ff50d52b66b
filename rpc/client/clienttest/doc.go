// Package clienttest is an in-memory fake of the OpenCluster gRPC API on
// bufconn, for testing code that uses rpc/client (the client itself and the
// CLI) without a real node.
//
// It has just enough semantics for those tests: versioned keys, fences,
// named locks with codes, fences and ttls, restrictive locks with
// provisional writes, request-id deduplication, and fault injection (queued
// error codes per method, dropped locks, aborted commits, stopped nodes).
// It is not a model of the server's consistency; the server's own tests
// and the Jepsen harness judge that.
package clienttest
