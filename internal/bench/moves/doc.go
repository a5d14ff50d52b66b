// Package moves measures bucket moves and rebalancing on real server
// processes (`opencluster bench moves`): the figures the rebalancing issue
// asks for.
//
// # Model
//
// Run starts OpenCluster nodes itself, each a re-execution of Config.Exe
// as `opencluster start` on a loopback host of its own (127.0.0.x), with a
// data directory and a log under Config.WorkDir, gossip on and fast
// failure detection. It loads data through the Go client with large,
// incompressible values and then measures three things, in two clusters:
//
//  1. Move. Three nodes with the rebalancer off (--rebalance=false on
//     every node, so only the moves Run asks for happen) hold a bucket of
//     Config.BucketMB. A fourth node joins (it receives no replica, the
//     rebalancer being off), and Run times one MoveReplica of the loaded
//     bucket from a voter that does not lead it to the new node. The bytes
//     moved are the growth of the receiving node's data directory across
//     the call (the nodes export no snapshot metric), next to the bytes the
//     receiving process wrote to disk (/proc/PID/io write_bytes).
//  2. Latency under a move. A fifth node joins the same cluster. A steady
//     put workload (Config.Clients goroutines, one client connection
//     each, small values over keys of every bucket) runs for a warm-up
//     plus Config.Window without a move, then again while the loaded
//     bucket moves to the fifth node; that window lasts Config.Window or
//     until the move ends, whichever is later. Each window reports the
//     latency of all puts and of the puts to the moving bucket; the move
//     window also reports the puts that completed while the move was in
//     flight.
//  3. Join. A new three-node cluster with the rebalancer on (the default)
//     is loaded with Config.ClusterMB spread over all buckets; when it is
//     balanced, a fourth node starts, and Run times, from that start,
//     until Status shows the new node holding its share: every bucket
//     with Config.Replicas voters and a leader, every active member's
//     replica count within one of the mean, no move in progress. It goes
//     on polling (up to Config.LeaderWait more) until the leaderships are
//     balanced too, and reports that time separately.
//
// # Invariants
//
//  1. Counting. A put is counted in a window if and only if it completed
//     inside the window; puts in flight when a window ends are let finish
//     and dropped. Latency is the Put call's, client retries included.
//     Quantiles are the bench histogram's (nearest rank, within 1/128).
//  2. Isolation. The two clusters are separate: the first is stopped
//     before the second starts, so the CPU of one does not load the
//     other.
//  3. Lifetimes. Run returns only after every process it started has been
//     stopped and reaped (bench.Proc), on success, error and cancellation.
//     It removes nothing: the caller removes WorkDir, or keeps it for the
//     nodes' logs.
package moves
