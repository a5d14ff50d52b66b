package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/opencluster/opencluster/rpc/client"
)

// newBucketCmd returns `opencluster bucket`: operations on buckets.
func newBucketCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bucket",
		Short: "Operate on buckets (move a replica, transfer a leadership)",
	}
	cmd.AddCommand(newBucketMoveCmd(a), newBucketTransferLeaderCmd(a))
	return cmd
}

func newBucketMoveCmd(a *app) *cobra.Command {
	var from, to string
	cmd := &cobra.Command{
		Use:   "move BUCKET --from ID --to ID",
		Short: "Move one replica of a bucket to another node",
		Long: `Move the replica of BUCKET on node --from to node --to (ids as "status"
prints them). The new replica catches up as a learner, leadership leaves the
old node if it leads, then the two change places in one joint configuration.
The bucket's data and locks move with it. Waits until the move is done.
JSON: {"bucket","from","to","epoch"}.`,
		Args: exactArgs(1, "a bucket number"),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := strconv.ParseUint(args[0], 10, 32)
			if err != nil {
				return usagef("bucket %q is not a number", args[0])
			}
			if from == "" || to == "" {
				return usagef("--from and --to are required")
			}
			return a.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
				defer cancel()
				epoch, err := c.MoveReplica(ctx, uint32(b), from, to)
				if err != nil {
					return err
				}
				return a.emit(object{{"bucket", b}, {"from", from}, {"to", to}, {"epoch", epoch}}, func(w io.Writer) {
					fmt.Fprintf(w, "moved bucket %d from node %s to node %s (epoch %d)\n", b, from, to, epoch)
				})
			})
		},
	}
	cmd.Flags().StringVar(&from, "from", "", "node id the replica leaves")
	cmd.Flags().StringVar(&to, "to", "", "node id the replica goes to")
	return cmd
}

func newBucketTransferLeaderCmd(a *app) *cobra.Command {
	var to string
	cmd := &cobra.Command{
		Use:   "transfer-leader BUCKET --to ID",
		Short: "Hand a bucket's leadership to another of its voters",
		Long: `Hand the leadership of BUCKET to its voter on node --to (an id as "status"
prints it) and wait until that node leads. The rebalancer may move it again
if leaders end up out of balance.
JSON: {"bucket","leader"}.`,
		Args: exactArgs(1, "a bucket number"),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := strconv.ParseUint(args[0], 10, 32)
			if err != nil {
				return usagef("bucket %q is not a number", args[0])
			}
			if to == "" {
				return usagef("--to is required")
			}
			return a.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				ctx, cancel := context.WithTimeout(ctx, time.Minute)
				defer cancel()
				leader, err := c.TransferLeader(ctx, uint32(b), to)
				if err != nil {
					return err
				}
				return a.emit(object{{"bucket", b}, {"leader", leader}}, func(w io.Writer) {
					fmt.Fprintf(w, "bucket %d is led by node %s\n", b, leader)
				})
			})
		},
	}
	cmd.Flags().StringVar(&to, "to", "", "node id to lead the bucket")
	return cmd
}
