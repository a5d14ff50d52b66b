package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
)

// newStartCmd returns `opencluster start`: run one node until SIGINT or
// SIGTERM.
func newStartCmd() *cobra.Command {
	var cfg serverConfig
	var logLevel string
	cmd := &cobra.Command{
		Use:   "start",
		Short: "Run an OpenCluster node",
		Long: `Run an OpenCluster node in the foreground until SIGINT or SIGTERM.

An empty --data-dir is initialised as a new one-node cluster with --buckets
buckets, or, with --join, joins the cluster of the nodes at those gossip
addresses; an existing one is reopened with its own identity and data.
Clustering needs --gossip-addr. Use the same host in --addr and
--gossip-addr: connections to other nodes leave from it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var level slog.Level
			if err := level.UnmarshalText([]byte(logLevel)); err != nil {
				return fmt.Errorf("--log-level: %w", err)
			}
			cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
			rs, err := startServer(cfg)
			if err != nil {
				return err
			}
			cfg.Logger.Info("serving", "addr", rs.addr, "http", rs.httpAddr, "data-dir", cfg.DataDir)
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			select {
			case <-ctx.Done():
			case err := <-rs.done:
				cfg.Logger.Error("server stopped", "err", err)
			}
			rs.Stop()
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.DataDir, "data-dir", "opencluster-data", "directory of the node's data")
	f.StringVar(&cfg.Addr, "addr", "127.0.0.1:7400", "gRPC listen address")
	f.StringVar(&cfg.HTTPAddr, "http-addr", "127.0.0.1:7401", "HTTP address for /metrics, /status and /debug/pprof (empty: none)")
	f.IntVar(&cfg.Buckets, "buckets", 64, "bucket count of a new cluster (1..4096)")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&cfg.GossipAddr, "gossip-addr", "", "memberlist address (host:port, TCP and UDP); enables clustering")
	f.StringSliceVar(&cfg.Join, "join", nil, "gossip addresses of existing nodes to join (a new data directory joins their cluster)")
	f.IntVar(&cfg.Replicas, "replicas", 3, "replicas of every bucket (and of the meta group)")
	f.BoolVar(&cfg.FastGossip, "fast-failure-detection", false, "detect dead nodes in about a second (loopback tests)")
	f.BoolVar(&cfg.Rebalance, "rebalance", true, "the meta leader moves replicas and leaderships to keep nodes balanced, empties draining nodes and re-creates a dead node's replicas (false: buckets only grow to --replicas voters in join order)")
	f.DurationVar(&cfg.DeadAfter, "dead-after", time.Minute, "how long a node is down before the rebalancer re-creates its replicas elsewhere")
	f.BoolVar(&cfg.NoLeaseReads, "no-lease-reads", false, "serve every linearizable read, and confirm every timestamp the oracle issues, after a ReadIndex round instead of under the leader's read lease (which counts on Raft's election timeout in real time)")
	f.IntVar(&cfg.SnapshotMiBps, "snapshot-rate", 64, "MiB/s this node streams snapshots at, all moves together (negative: unbounded)")
	f.BoolVar(&cfg.TestAdmin, "test-admin", false, "serve the test-only fault-injection service (clock skew, planted bugs); never in production")
	return cmd
}
