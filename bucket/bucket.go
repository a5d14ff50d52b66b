// Package bucket is the cluster's sharding function, shared by the
// servers (mvcc) and the Go client (which routes requests to each
// bucket's leader): a key, or a lock name, belongs to bucket
// xxhash64(key) mod n. It must never change for an existing cluster.
package bucket

import "github.com/cespare/xxhash/v2"

// Of returns the bucket of key among n buckets (n > 0).
func Of(key []byte, n int) int {
	return int(xxhash.Sum64(key) % uint64(n))
}
