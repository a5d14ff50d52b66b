// Package peer is how OpenCluster nodes reach each other: the Raft
// transport over gRPC streams (one stream per destination node, messages
// batched per scheduler round), the Internal service that receives them and
// admits joining nodes, and memberlist gossip, the failure detector and
// address book.
//
// Invariants:
//   - Sending never blocks the scheduler: each destination has a bounded
//     queue, and a full queue drops (Raft retransmits).
//   - Every outgoing connection (Raft, forwarding, memberlist TCP and UDP)
//     leaves from the node's own advertised host, so a packet filter
//     between two node addresses really partitions those two nodes.
//   - memberlist never decides placement: it only says who is alive and
//     where; the meta group's registry is the source of truth.
package peer
