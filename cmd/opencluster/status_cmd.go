package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/opencluster/opencluster/rpc/client"
	"github.com/opencluster/opencluster/rpc/ocpb"
)

// newStatusCmd returns `opencluster status`: the members and buckets as
// seen by the node that answers.
func newStatusCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show the cluster's members and buckets",
		Long: `Show the cluster as the answering node sees it: its members (with their state,
active, draining or removed, and how many replicas and leaderships each
holds), the replica moves in progress, the meta group's replicas and leader,
then one row per bucket with its replicas, leader, epoch and applied Raft
index.
JSON: {"node_id","cluster_id","bucket_count","now",
       "members":[{"id","addr","gossip_addr","alive","state","replicas","leaders"}],
       "moves":[{"bucket","kind","from","to","reason","executor","started_unix_ms"}],
       "meta":{"bucket":65536,"replicas":[id...],"leader","epoch","applied"},
       "buckets":[{"bucket","replicas":[id...],"leader","epoch","applied"}]}
Ids are strings; an empty leader means none is known.`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				st, err := c.Status(ctx)
				if err != nil {
					return err
				}
				return a.emit(statusObject(st), func(w io.Writer) { writeStatus(w, st) })
			})
		},
	}
}

func statusObject(st *ocpb.StatusResponse) object {
	replicas, leaders := client.Holdings(st)
	members := make([]object, 0, len(st.GetMembers()))
	for _, m := range st.GetMembers() {
		members = append(members, object{
			{"id", m.GetId()}, {"addr", m.GetAddr()}, {"gossip_addr", m.GetGossipAddr()}, {"alive", m.GetAlive()},
			{"state", m.GetState()}, {"replicas", replicas[m.GetId()]}, {"leaders", leaders[m.GetId()]},
		})
	}
	moves := make([]object, 0, len(st.GetMoves()))
	for _, m := range st.GetMoves() {
		moves = append(moves, object{
			{"bucket", m.GetBucket()}, {"kind", m.GetKind()}, {"from", m.GetFrom()}, {"to", m.GetTo()},
			{"reason", m.GetReason()}, {"executor", m.GetExecutor()}, {"started_unix_ms", m.GetStartedUnixMs()},
		})
	}
	group := func(b *ocpb.BucketStatus) object {
		replicas := b.GetReplicas()
		if replicas == nil {
			replicas = []string{}
		}
		return object{
			{"bucket", b.GetBucket()}, {"replicas", replicas}, {"leader", b.GetLeader()},
			{"epoch", b.GetEpoch()}, {"applied", b.GetApplied()},
		}
	}
	buckets := make([]object, 0, len(st.GetBuckets()))
	for _, b := range st.GetBuckets() {
		buckets = append(buckets, group(b))
	}
	return object{
		{"node_id", st.GetNodeId()},
		{"cluster_id", st.GetClusterId()},
		{"bucket_count", st.GetBucketCount()},
		{"now", st.GetNow()},
		{"members", members},
		{"moves", moves},
		{"meta", group(st.GetMeta())},
		{"buckets", buckets},
	}
}

// writeStatus prints a summary line, the members table and the buckets
// table.
func writeStatus(w io.Writer, st *ocpb.StatusResponse) {
	fmt.Fprintf(w, "cluster %s, answered by node %s, %d buckets\n\n",
		st.GetClusterId(), st.GetNodeId(), st.GetBucketCount())
	replicas, leaders := client.Holdings(st)
	rows := [][]string{{"MEMBER", "ADDR", "GOSSIP", "ALIVE", "STATE", "REPLICAS", "LEADS"}}
	for _, m := range st.GetMembers() {
		rows = append(rows, []string{
			m.GetId(), m.GetAddr(), orDash(m.GetGossipAddr()), strconv.FormatBool(m.GetAlive()), orDash(m.GetState()),
			strconv.Itoa(replicas[m.GetId()]), strconv.Itoa(leaders[m.GetId()]),
		})
	}
	table(w, rows)
	fmt.Fprintln(w)
	if len(st.GetMoves()) > 0 {
		rows = [][]string{{"MOVING", "KIND", "FROM", "TO", "REASON", "BY", "FOR"}}
		now := time.Now()
		for _, m := range st.GetMoves() {
			age := now.Sub(time.UnixMilli(m.GetStartedUnixMs())).Round(100 * time.Millisecond)
			rows = append(rows, []string{
				"bucket " + strconv.FormatUint(uint64(m.GetBucket()), 10), m.GetKind(), orDash(m.GetFrom()), orDash(m.GetTo()),
				m.GetReason(), m.GetExecutor(), age.String(),
			})
		}
		table(w, rows)
		fmt.Fprintln(w)
	}
	if m := st.GetMeta(); m != nil {
		fmt.Fprintf(w, "meta group: replicas %s, leader %s\n\n", orDash(strings.Join(m.GetReplicas(), ",")), orDash(m.GetLeader()))
	}
	rows = [][]string{{"BUCKET", "REPLICAS", "LEADER", "EPOCH", "APPLIED"}}
	for _, b := range st.GetBuckets() {
		rows = append(rows, []string{
			strconv.FormatUint(uint64(b.GetBucket()), 10), orDash(strings.Join(b.GetReplicas(), ",")),
			orDash(b.GetLeader()), strconv.FormatUint(b.GetEpoch(), 10), strconv.FormatUint(b.GetApplied(), 10),
		})
	}
	table(w, rows)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
