// Package kvtest runs a cluster of kv.Nodes in one process for fast,
// deterministic multi-node tests: the nodes talk over an in-memory network
// that can cut any link in either direction, and each node keeps its data
// in its own in-memory filesystem so it can be stopped and restarted.
//
// Invariants: a message on a cut link, or to a stopped node, is dropped
// (Raft retransmits, as over a real lossy network), and so is every n-th
// batch of a link set to drop; a delayed link delivers later, possibly out
// of order. Nothing else is lost or reordered between two nodes.
package kvtest
