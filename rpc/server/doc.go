// Package server serves the public gRPC API of a node: the services KV, Locks
// and Cluster of rpc/ocpb over a Backend (kv.Node in production), plus the
// standard gRPC health and reflection services, so that grpcurl works. The
// Backend routes each request to its bucket's leader itself.
//
// # Model
//
// A unary request passes through, in order:
//
//	interceptor (recover, metrics, debug log)
//	  -> handler: validate and normalise (validate.go)
//	  -> Backend (called again, for a few seconds, while it fails with
//	     kv.ErrNotApplied: an election or a leadership move)
//	  -> error table (errors.go)
//
// The KeepAlive stream does the same per message and keeps going when a lock
// is lost (keepalive.go). The Server holds no state between requests beyond
// its health status, and starts no goroutines.
//
// Invariants:
//
//  1. Every request is validated before the Backend sees it. The Backend
//     never receives a request outside the limits in validate.go (key
//     1..4096 bytes, value <= 1 MiB, lock name 1..1024 bytes of UTF-8, codes
//     of 32 lowercase hex characters, ttl 1s..1h, wait 0..1h, ...), and it
//     receives requests normalised: a missing ttl is the default, a Scan
//     limit of 0 is 1000, an empty fence is nil. A refused request is
//     answered with InvalidArgument and a message naming the field.
//  2. One error table maps errors to codes (codeTable in errors.go), with
//     errors.Is, so wrapped errors map like their sentinel. A gRPC status
//     passes through; anything unknown is Internal and logged. The status
//     message is the error's text.
//  3. No input makes the server panic: validation is total and fuzzed
//     (FuzzValidate). A panic in a handler or the Backend is recovered into
//     codes.Internal with a log line, and the process lives on.
//  4. Lock codes and values are never logged. The per-request log line
//     carries method, status code, duration and peer, never the request or
//     response; validation messages never echo a code or a value; logged
//     error texts and panic values are masked for anything shaped like a
//     code (32 hex characters).
package server
