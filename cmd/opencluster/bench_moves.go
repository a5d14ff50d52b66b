package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"

	"github.com/opencluster/opencluster/internal/bench/moves"
)

// newBenchMovesCmd returns `opencluster bench moves`: time bucket moves and
// a node's join on real processes (internal/bench/moves).
func newBenchMovesCmd(a *app) *cobra.Command {
	cfg := moves.DefaultConfig()
	keep := false
	cmd := &cobra.Command{
		Use:   "moves",
		Short: "Measure bucket moves and rebalancing on local server processes",
		Long: `Start OpenCluster nodes on loopback (this binary's start command, each on its
own 127.0.0.x host with its own data directory in a temporary directory) and
measure:

  1. the time and bytes to move one bucket holding --bucket-mb to a new node
     (rebalancer off on every node, one MoveReplica; bytes are the growth of
     the receiving node's data directory);
  2. the latency (p50, p99, max) of a steady put workload (--clients, small
     values) for --window without a move and for --window during a move of
     that bucket;
  3. how long a 4th node takes to receive its share (replicas within one of
     the mean, no move in progress) of a 3-node cluster holding --cluster-mb,
     rebalancer on.

The defaults are the sizes the rebalancing issue asks about and take several
minutes; --bucket-mb 2 --cluster-mb 8 --window 2s is a quick run. Progress goes
to stderr, the results to stdout (-o json for one JSON object). On failure the
temporary directory with the nodes' logs is kept and named.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.runBenchMoves(cmd, cfg, keep)
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&cfg.BucketMB, "bucket-mb", cfg.BucketMB, "MiB loaded into the bucket that parts 1 and 2 move")
	fl.IntVar(&cfg.ClusterMB, "cluster-mb", cfg.ClusterMB, "MiB loaded over all buckets before a 4th node joins (part 3)")
	fl.IntVar(&cfg.Buckets, "buckets", cfg.Buckets, "bucket count of the clusters")
	fl.IntVar(&cfg.ValueKB, "value-kb", cfg.ValueKB, "size of a loaded value, KiB (1..1023)")
	fl.IntVar(&cfg.Clients, "clients", cfg.Clients, "put workload clients (part 2)")
	fl.IntVar(&cfg.PutBytes, "put-bytes", cfg.PutBytes, "value size of the put workload (part 2)")
	fl.DurationVar(&cfg.Window, "window", cfg.Window, "each measured window of part 2 (the move window lasts at least until the move ends)")
	fl.DurationVar(&cfg.Warmup, "warmup", cfg.Warmup, "warm-up before each window of part 2")
	fl.DurationVar(&cfg.JoinTimeout, "join-timeout", cfg.JoinTimeout, "how long part 3 waits for the new node's share")
	fl.DurationVar(&cfg.LeaderWait, "leader-wait", cfg.LeaderWait, "how much longer part 3 waits for balanced leaderships once the replicas are")
	fl.IntVar(&cfg.HostBase, "host-base", cfg.HostBase, "node i listens on 127.0.0.(host-base+i)")
	fl.Uint64Var(&cfg.Seed, "seed", cfg.Seed, "seed of the values and of the workload's keys")
	fl.BoolVar(&keep, "keep", false, "keep the temporary directory (data and logs) after a successful run")
	return cmd
}

// runBenchMoves runs the measurement and prints its result.
func (a *app) runBenchMoves(cmd *cobra.Command, cfg moves.Config, keep bool) error {
	for _, f := range []struct {
		name string
		v    int
	}{{"--bucket-mb", cfg.BucketMB}, {"--cluster-mb", cfg.ClusterMB}, {"--buckets", cfg.Buckets}, {"--value-kb", cfg.ValueKB}, {"--clients", cfg.Clients}, {"--put-bytes", cfg.PutBytes}} {
		if f.v < 1 {
			return usagef("%s must be at least 1, not %d", f.name, f.v)
		}
	}
	if cfg.Window <= 0 || cfg.JoinTimeout <= 0 || cfg.LeaderWait <= 0 {
		return usagef("--window, --join-timeout and --leader-wait must be positive")
	}
	if cfg.Warmup < 0 {
		return usagef("--warmup must not be negative, not %s", cfg.Warmup)
	}
	exe, err := os.Executable()
	if err != nil {
		return failf(codes.Internal, "find this binary: %s", err.Error())
	}
	work, err := os.MkdirTemp("", "opencluster-bench-moves-")
	if err != nil {
		return failf(codes.Internal, "temp dir: %s", err.Error())
	}
	cfg.Exe, cfg.WorkDir, cfg.Log = exe, work, a.stderr
	if _, err := cfg.Validate(); err != nil {
		os.RemoveAll(work)
		return usagef("%s", err.Error())
	}
	fmt.Fprintf(a.stderr, "moves: working in %s\n", work)
	res, err := moves.Run(cmd.Context(), cfg)
	if err != nil {
		return failf(codes.Unknown, "%s (data and logs kept in %s)", err.Error(), work)
	}
	if !keep {
		os.RemoveAll(work)
	}
	if a.flags.output == outputJSON {
		err = moves.WriteJSON(a.stdout, res)
	} else {
		err = moves.WriteText(a.stdout, res)
	}
	return ioError(err)
}
