package moves

import (
	"bufio"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/opencluster/opencluster/internal/bench"
	"github.com/opencluster/opencluster/internal/freeport"
	"github.com/opencluster/opencluster/rpc/client"
	"github.com/opencluster/opencluster/rpc/ocpb"
)

// pollEvery is how often the waits below ask for Status.
const pollEvery = 200 * time.Millisecond

// startTimeout bounds a node's start and join.
const startTimeout = time.Minute

// node is one server process of a cluster.
type node struct {
	name         string
	dir          string
	addr, gossip string
	proc         *bench.Proc
	// id is the node's id as Status prints it, known once it serves.
	id string
}

// cluster is the nodes of one part, all started with the same flags.
type cluster struct {
	cfg       Config
	dir       string
	rebalance bool
	hostBase  int
	nodes     []*node
	// c talks to the nodes that were started when it was (re)opened.
	c *client.Client
}

// newCluster returns an empty cluster under dir; its node i listens on
// 127.0.0.(hostBase+i).
func newCluster(cfg Config, dir string, hostBase int, rebalance bool) (*cluster, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("moves: %w", err)
	}
	return &cluster{cfg: cfg, dir: dir, rebalance: rebalance, hostBase: hostBase}, nil
}

// start starts the next node (the first bootstraps the cluster, the others
// join it), waits until it serves, and reopens c over every node.
func (cl *cluster) start(ctx context.Context) (*node, error) {
	i := len(cl.nodes)
	host := fmt.Sprintf("127.0.0.%d", cl.hostBase+i)
	addr, err := freeport.Addr(host)
	if err != nil {
		return nil, err
	}
	gossip, err := freeport.Addr(host)
	if err != nil {
		return nil, err
	}
	n := &node{name: fmt.Sprintf("n%d", i+1), addr: addr, gossip: gossip}
	n.dir = filepath.Join(cl.dir, n.name)
	argv := []string{cl.cfg.Exe, "start", "--data-dir", n.dir, "--addr", addr, "--http-addr", "",
		"--buckets", strconv.Itoa(cl.cfg.Buckets), "--log-level", "info",
		"--gossip-addr", gossip, "--fast-failure-detection", "--rebalance=" + strconv.FormatBool(cl.rebalance)}
	if i > 0 {
		argv = append(argv, "--join", cl.nodes[0].gossip)
	}
	n.proc, err = bench.StartProc(n.name, argv, filepath.Join(cl.dir, n.name+".log"))
	if err != nil {
		return nil, err
	}
	cl.nodes = append(cl.nodes, n)

	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	c, err := client.New(ctx, []string{addr}, client.WithRetry(1, 10*time.Millisecond))
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if err := n.proc.WaitReady(ctx, func(ctx context.Context) error {
		st, err := c.Status(ctx)
		if err == nil {
			n.id = st.GetNodeId()
		}
		return err
	}); err != nil {
		return nil, err
	}
	return n, cl.reopen(ctx)
}

// reopen replaces c with a client over every node.
func (cl *cluster) reopen(ctx context.Context) error {
	var addrs []string
	for _, n := range cl.nodes {
		addrs = append(addrs, n.addr)
	}
	c, err := client.New(ctx, addrs, client.WithRetry(20, 50*time.Millisecond))
	if err != nil {
		return err
	}
	if cl.c != nil {
		_ = cl.c.Close()
	}
	cl.c = c
	return nil
}

// clients opens n clients over every node; the caller closes them.
func (cl *cluster) clients(ctx context.Context, n int) ([]*client.Client, error) {
	var addrs []string
	for _, nd := range cl.nodes {
		addrs = append(addrs, nd.addr)
	}
	var cs []*client.Client
	for range n {
		c, err := client.New(ctx, addrs, client.WithRetry(20, 50*time.Millisecond))
		if err != nil {
			closeAll(cs)
			return nil, err
		}
		cs = append(cs, c)
	}
	return cs, nil
}

func closeAll(cs []*client.Client) {
	for _, c := range cs {
		_ = c.Close()
	}
}

// stop kills every node at once (SIGTERM and, at once, SIGKILL: the
// cluster is thrown away, and a graceful stop of nodes that all leave
// together waits seconds for leadership hand-offs that cannot happen),
// waits for them and closes c. Calling it again is a no-op.
func (cl *cluster) stop() {
	if cl.c != nil {
		_ = cl.c.Close()
		cl.c = nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var wg sync.WaitGroup
	for _, n := range cl.nodes {
		wg.Go(func() { _ = n.proc.Stop(ctx) })
	}
	wg.Wait()
	cl.nodes = nil
}

// alive returns an error naming a node that has exited.
func (cl *cluster) alive() error {
	for _, n := range cl.nodes {
		select {
		case <-n.proc.Done():
			return fmt.Errorf("%w: node %s exited\n%s", bench.ErrProcess, n.name, n.proc.LogTail())
		default:
		}
	}
	return nil
}

// logTails returns the last lines of every node's log, for an error.
func (cl *cluster) logTails() string {
	var b strings.Builder
	for _, n := range cl.nodes {
		fmt.Fprintf(&b, "--- %s (id %s, %s) ---\n%s\n", n.name, n.id, n.addr, n.proc.LogTail())
	}
	return b.String()
}

// waitStatus polls Status until ok holds, up to d. The error names what
// and carries the last status's summary and the nodes' log tails.
func (cl *cluster) waitStatus(ctx context.Context, d time.Duration, what string, ok func(*ocpb.StatusResponse) bool) (*ocpb.StatusResponse, error) {
	deadline := time.Now().Add(d)
	var last *ocpb.StatusResponse
	var lastErr error
	for {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		st, err := cl.c.Status(sctx)
		cancel()
		if err == nil {
			last = st
			if ok(st) {
				return st, nil
			}
		} else {
			lastErr = err
		}
		if err := cl.alive(); err != nil {
			return last, err
		}
		if time.Now().After(deadline) {
			lastMsg := "none"
			if lastErr != nil {
				lastMsg = lastErr.Error()
			}
			return last, fmt.Errorf("%w: %s after %s (last status error: %s)\n%s\n%s", ErrTimeout, what, d, lastMsg, summary(last), cl.logTails())
		}
		select {
		case <-ctx.Done():
			return last, ctx.Err()
		case <-time.After(pollEvery):
		}
	}
}

// summary prints the members' holdings and the moves of a status.
func summary(st *ocpb.StatusResponse) string {
	if st == nil {
		return "no status"
	}
	replicas, leaders := client.Holdings(st)
	var b strings.Builder
	for _, m := range st.GetMembers() {
		fmt.Fprintf(&b, "member %s %s alive=%v %s: %d replicas, %d leaders\n", m.GetId(), m.GetAddr(), m.GetAlive(), m.GetState(), replicas[m.GetId()], leaders[m.GetId()])
	}
	for _, mv := range st.GetMoves() {
		fmt.Fprintf(&b, "move bucket %d %s %s->%s (%s) by %s\n", mv.GetBucket(), mv.GetKind(), mv.GetFrom(), mv.GetTo(), mv.GetReason(), mv.GetExecutor())
	}
	return b.String()
}

// replicated reports whether every bucket has Replicas voters and a
// leader.
func replicated(st *ocpb.StatusResponse) bool {
	if len(st.GetBuckets()) == 0 {
		return false
	}
	for _, b := range st.GetBuckets() {
		if len(b.GetReplicas()) != Replicas || b.GetLeader() == "" {
			return false
		}
	}
	return true
}

// activeMember reports whether id is an alive, active member.
func activeMember(st *ocpb.StatusResponse, id string) bool {
	for _, m := range st.GetMembers() {
		if m.GetId() == id {
			return m.GetAlive() && m.GetState() == "active"
		}
	}
	return false
}

// balanced reports whether st is replicated, has no move in progress and
// members active members, each holding replicas within one of the mean
// (and leaderships too, with leaders).
func balanced(st *ocpb.StatusResponse, members int, leadersToo bool) bool {
	if !replicated(st) || len(st.GetMoves()) > 0 {
		return false
	}
	replicas, leaders := client.Holdings(st)
	nb := float64(len(st.GetBuckets()))
	meanR, meanL := Replicas*nb/float64(members), nb/float64(members)
	active := 0
	for _, m := range st.GetMembers() {
		if !m.GetAlive() || m.GetState() != "active" {
			continue
		}
		active++
		if d := float64(replicas[m.GetId()]) - meanR; d > 1 || d < -1 {
			return false
		}
		if d := float64(leaders[m.GetId()]) - meanL; leadersToo && (d > 1 || d < -1) {
			return false
		}
	}
	return active == members
}

// dirBytes returns the total size of the regular files under dir.
func dirBytes(dir string) (int64, error) {
	var total int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) {
				return nil // a file removed while walking (compaction)
			}
			return err
		}
		if d.Type().IsRegular() {
			if info, err := d.Info(); err == nil {
				total += info.Size()
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("moves: size of %s: %w", dir, err)
	}
	return total, nil
}

// writeBytes returns the bytes process pid has caused to be written to
// storage (write_bytes of /proc/PID/io), or -1 where that is unknown.
func writeBytes(pid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "write_bytes: "); ok {
			if n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil {
				return n
			}
		}
	}
	return -1
}
