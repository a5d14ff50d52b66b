package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/opencluster/opencluster/rpc/client"
)

// newNodeCmd returns `opencluster node`: taking nodes out of service.
func newNodeCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "node",
		Short: "Drain or remove a node",
	}
	cmd.AddCommand(newNodeDrainCmd(a), newNodeRemoveCmd(a))
	return cmd
}

func newNodeDrainCmd(a *app) *cobra.Command {
	var (
		undo bool
		wait time.Duration
	)
	cmd := &cobra.Command{
		Use:   "drain ID",
		Short: "Move a node's replicas and leaderships to the other nodes",
		Long: `Mark node ID draining: it receives no new replicas, and the rebalancer moves
its replicas and leaderships to the other nodes, as far as the replication
factor allows (with three replicas on three nodes, a drained node keeps its
replicas until another node joins). With --wait (default 10m) the command
prints progress and returns once the node holds nothing, failing if that
takes longer; --wait 0 returns at once. --undo makes the node active again.
JSON: {"node","state","replicas","leaders"}.`,
		Args: exactArgs(1, "a node id"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			return a.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				if err := c.DrainNode(ctx, id, undo); err != nil {
					return err
				}
				replicas, leaders, err := nodeHoldings(ctx, c, id)
				if err != nil {
					return err
				}
				if !undo && wait > 0 {
					if replicas, leaders, err = awaitDrained(ctx, c, id, wait, cmd.ErrOrStderr()); err != nil {
						return err
					}
				}
				state := "draining"
				if undo {
					state = "active"
				}
				return a.emit(object{{"node", id}, {"state", state}, {"replicas", replicas}, {"leaders", leaders}}, func(w io.Writer) {
					fmt.Fprintf(w, "node %s is %s: %d replicas, %d leaderships\n", id, state, replicas, leaders)
				})
			})
		},
	}
	cmd.Flags().BoolVar(&undo, "undo", false, "make the node active again")
	cmd.Flags().DurationVar(&wait, "wait", 10*time.Minute, "wait until the node is empty, at most this long (0: do not wait)")
	return cmd
}

// nodeHoldings counts the replicas and leaderships node id holds, per
// Status.
func nodeHoldings(ctx context.Context, c *client.Client, id string) (replicas, leaders int, err error) {
	st, err := c.Status(ctx)
	if err != nil {
		return 0, 0, err
	}
	r, l := client.Holdings(st)
	return r[id], l[id], nil
}

// awaitDrained polls Status until node id holds no replica, printing
// progress to w whenever it changes.
func awaitDrained(ctx context.Context, c *client.Client, id string, wait time.Duration, w io.Writer) (replicas, leaders int, err error) {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	last := -1
	for {
		replicas, leaders, err = nodeHoldings(ctx, c, id)
		if err == nil {
			if replicas == 0 && leaders == 0 {
				return 0, 0, nil
			}
			if replicas != last {
				fmt.Fprintf(w, "draining node %s: %d replicas, %d leaderships left\n", id, replicas, leaders)
				last = replicas
			}
		}
		select {
		case <-ctx.Done():
			return replicas, leaders, fmt.Errorf("node %s still holds %d replicas and %d leaderships after %v (is there another node to take them?)", id, replicas, leaders, wait)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func newNodeRemoveCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "remove ID",
		Short: "Take a node out of the cluster for good",
		Long: `Remove node ID from the cluster: its replicas are re-created on other nodes at
once (without waiting for --dead-after), and it may not rejoin with its data.
A live node must be drained first ("node drain ID"); a dead one may be
removed as it is.
JSON: {"node","state"}.`,
		Args: exactArgs(1, "a node id"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			return a.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				if err := c.RemoveNode(ctx, id); err != nil {
					return err
				}
				return a.emit(object{{"node", id}, {"state", "removed"}}, func(w io.Writer) {
					fmt.Fprintf(w, "node %s removed\n", id)
				})
			})
		},
	}
}
