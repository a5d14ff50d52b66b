package kvtest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"google.golang.org/protobuf/proto"

	"github.com/opencluster/opencluster/kv"
	"github.com/opencluster/opencluster/mvcc"
	"github.com/opencluster/opencluster/mvcc/ts"
	"github.com/opencluster/opencluster/rpc/cmdpb"
	"github.com/opencluster/opencluster/rpc/ocpb"
)

// Network is the in-memory network between a Cluster's nodes.
type Network struct {
	mu struct {
		sync.Mutex
		nodes map[uint64]*kv.Node
		// cut holds the blocked directed links (from, to).
		cut map[[2]uint64]bool
		// delay holds the extra latency of directed links (from, to).
		delay map[[2]uint64]time.Duration
		// dropEvery drops every n-th message batch on a link (0: none).
		dropEvery map[[2]uint64]int
		sent      map[[2]uint64]int
		// proposed counts the proposals sent by RPC, by command type.
		proposed map[string]int
	}
}

// Proposed returns how many commands of cmd's type were proposed by RPC
// (BucketPropose) so far.
func (nw *Network) Proposed(cmd any) int {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	return nw.mu.proposed[fmt.Sprintf("%T", cmd)]
}

// transport is one node's sending side.
type transport struct {
	net  *Network
	from uint64
}

// Send delivers msgs unless the link is cut, drops this batch, or the
// peer is down; a delayed link delivers later (so batches may overtake
// each other, as Raft allows).
func (t transport) Send(to uint64, msgs []*cmdpb.GroupMessage) {
	link := [2]uint64{t.from, to}
	t.net.mu.Lock()
	peer, cut, delay := t.net.mu.nodes[to], t.net.mu.cut[link], t.net.mu.delay[link]
	t.net.mu.sent[link]++
	dropped := t.net.mu.dropEvery[link] > 0 && t.net.mu.sent[link]%t.net.mu.dropEvery[link] == 0
	t.net.mu.Unlock()
	if peer == nil || cut || dropped {
		return
	}
	if delay == 0 {
		peer.Deliver(t.from, to, msgs)
		return
	}
	time.AfterFunc(delay, func() {
		t.net.mu.Lock()
		alive := t.net.mu.nodes[to] == peer && !t.net.mu.cut[link]
		t.net.mu.Unlock()
		if alive {
			peer.Deliver(t.from, to, msgs)
		}
	})
}

// Delay adds latency d to every message between a and b, both ways.
func (nw *Network) Delay(a, b uint64, d time.Duration) {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	nw.mu.delay[[2]uint64{a, b}] = d
	nw.mu.delay[[2]uint64{b, a}] = d
}

// DropEvery drops every n-th batch between a and b, both ways (0 stops).
func (nw *Network) DropEvery(a, b uint64, n int) {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	nw.mu.dropEvery[[2]uint64{a, b}] = n
	nw.mu.dropEvery[[2]uint64{b, a}] = n
}

// SendSnapshot collects the chunks and delivers the whole snapshot,
// unless the link is cut or the peer is down.
func (t transport) SendSnapshot(ctx context.Context, to uint64, header *cmdpb.GroupMessage, next func() ([]*cmdpb.SnapshotKV, error)) error {
	var kvs []*cmdpb.SnapshotKV
	for {
		chunk, err := next()
		if err != nil {
			return err
		}
		if len(chunk) == 0 {
			break
		}
		kvs = append(kvs, chunk...)
	}
	t.net.mu.Lock()
	peer, cut := t.net.mu.nodes[to], t.net.mu.cut[[2]uint64{t.from, to}]
	t.net.mu.Unlock()
	if peer == nil || cut {
		return fmt.Errorf("kvtest: node %d unreachable", to)
	}
	m, err := kv.AssembleSnapshot(header, kvs)
	if err != nil {
		return err
	}
	peer.Deliver(t.from, to, []*cmdpb.GroupMessage{m})
	return nil
}

// remote is kv.Remote between the in-process nodes: a call on a cut link
// or to a stopped node fails with ErrUnavailable, as a lost connection
// would.
type remote struct {
	net  *Network
	from uint64
}

func (r remote) peer(to uint64) (*kv.Node, error) {
	r.net.mu.Lock()
	defer r.net.mu.Unlock()
	peer, cut := r.net.mu.nodes[to], r.net.mu.cut[[2]uint64{r.from, to}] || r.net.mu.cut[[2]uint64{to, r.from}]
	if peer == nil || cut {
		return nil, fmt.Errorf("%w: kvtest: node %d unreachable from %d", kv.ErrUnavailable, to, r.from)
	}
	return peer, nil
}

func (r remote) Timestamp(ctx context.Context, node uint64, count int) (ts.Timestamp, error) {
	p, err := r.peer(node)
	if err != nil {
		return 0, err
	}
	return p.ServeTimestamp(ctx, count)
}

func (r remote) Propose(ctx context.Context, node uint64, req *cmdpb.BucketProposeRequest) (*cmdpb.Result, error) {
	r.net.mu.Lock()
	r.net.mu.proposed[fmt.Sprintf("%T", req.GetCommand().GetBody())]++
	r.net.mu.Unlock()
	p, err := r.peer(node)
	if err != nil {
		return nil, err
	}
	return p.ServePropose(ctx, proto.Clone(req).(*cmdpb.BucketProposeRequest))
}

func (r remote) LockKeys(ctx context.Context, node uint64, req *cmdpb.BucketLockKeysRequest) (*cmdpb.BucketLockKeysResponse, error) {
	p, err := r.peer(node)
	if err != nil {
		return nil, err
	}
	return p.ServeLockKeys(ctx, req)
}

func (r remote) TxnLive(ctx context.Context, node uint64, req *cmdpb.BucketTxnLiveRequest) (bool, error) {
	p, err := r.peer(node)
	if err != nil {
		return false, err
	}
	return p.ServeTxnLive(ctx, req)
}

func (r remote) Read(ctx context.Context, node uint64, req *cmdpb.BucketReadRequest) ([]mvcc.Value, error) {
	p, err := r.peer(node)
	if err != nil {
		return nil, err
	}
	return p.ServeRead(ctx, req)
}

func (r remote) Scan(ctx context.Context, node uint64, req *cmdpb.BucketScanRequest) ([]mvcc.KV, bool, error) {
	p, err := r.peer(node)
	if err != nil {
		return nil, false, err
	}
	return p.ServeScan(ctx, req)
}

func (r remote) List(ctx context.Context, node uint64, req *cmdpb.BucketListRequest) ([]*ocpb.LockInfo, error) {
	p, err := r.peer(node)
	if err != nil {
		return nil, err
	}
	return p.ServeList(ctx, req)
}

func (r remote) Call(ctx context.Context, node uint64, method string, req, resp proto.Message) error {
	p, err := r.peer(node)
	if err != nil {
		return err
	}
	raw, err := proto.Marshal(req)
	if err != nil {
		return err
	}
	out, err := p.ServeCall(ctx, method, raw)
	if err != nil {
		return err
	}
	proto.Merge(resp, out)
	return nil
}

func (r remote) Change(ctx context.Context, node uint64, req *cmdpb.BucketChangeRequest) (*cmdpb.BucketChangeResponse, error) {
	p, err := r.peer(node)
	if err != nil {
		return nil, err
	}
	return p.ServeBucketChange(ctx, req)
}

// Cut blocks the links between a and b in both directions.
func (nw *Network) Cut(a, b uint64) {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	nw.mu.cut[[2]uint64{a, b}] = true
	nw.mu.cut[[2]uint64{b, a}] = true
}

// Isolate cuts every link of node id.
func (nw *Network) Isolate(id uint64, all []uint64) {
	for _, other := range all {
		if other != id {
			nw.Cut(id, other)
		}
	}
}

// Heal restores every link: no cuts, delays or drops.
func (nw *Network) Heal() {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	clear(nw.mu.cut)
	clear(nw.mu.delay)
	clear(nw.mu.dropEvery)
}

// Cluster is a set of nodes on one Network.
type Cluster struct {
	t          testing.TB
	Net        *Network
	cfg        kv.Config
	nodeConfig func(id uint64, cfg *kv.Config)
	mu         struct {
		sync.Mutex
		nodes map[uint64]*kv.Node
		fs    map[uint64]vfs.FS
	}
}

// Options configure a Cluster.
type Options struct {
	// Nodes is the number of nodes to start (default 3).
	Nodes int
	// Config is the base config of every node (default kv.TestConfig()).
	Config *kv.Config
	// Rebalance turns the rebalancer on (replica placement by the
	// planner), with a stopped node dead after DeadAfter (default 1s).
	Rebalance bool
	DeadAfter time.Duration
	// NodeConfig, if set, adjusts node id's config each time the node
	// starts, after the cluster's own settings (its FS, transport and
	// address): a test's registry of its metrics, or a filesystem
	// wrapping the one given.
	NodeConfig func(id uint64, cfg *kv.Config)
}

// directory is the failure detector of an in-process cluster: a node is
// alive while it runs.
type directory struct{ c *Cluster }

func (d directory) Addr(id uint64) string       { return fmt.Sprintf("node-%d", id) }
func (d directory) GossipAddr(id uint64) string { return "" }
func (d directory) Alive(id uint64) bool        { return d.c.Node(id) != nil }

// Start starts a cluster: node 1 bootstraps it, the others join, and Start
// returns once every bucket has min(Nodes, Replicas) voters and the meta
// group as many as it grows to (Config.MetaVoters). The nodes stop when the
// test ends.
func Start(t testing.TB, o Options) *Cluster {
	t.Helper()
	if o.Nodes == 0 {
		o.Nodes = 3
	}
	cfg := kv.TestConfig()
	if o.Config != nil {
		cfg = *o.Config
	}
	if o.Rebalance {
		cfg.Rebalance = true
		cfg.RebalanceInterval = 50 * time.Millisecond
		cfg.DeadAfter = cmp.Or(o.DeadAfter, time.Second)
	}
	if os.Getenv("KVTEST_LOG") != "" {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	c := &Cluster{t: t, Net: &Network{}, cfg: cfg, nodeConfig: o.NodeConfig}
	c.Net.mu.nodes = make(map[uint64]*kv.Node)
	c.Net.mu.cut = make(map[[2]uint64]bool)
	c.Net.mu.delay = make(map[[2]uint64]time.Duration)
	c.Net.mu.dropEvery = make(map[[2]uint64]int)
	c.Net.mu.sent = make(map[[2]uint64]int)
	c.Net.mu.proposed = make(map[string]int)
	c.mu.nodes = make(map[uint64]*kv.Node)
	c.mu.fs = make(map[uint64]vfs.FS)
	t.Cleanup(c.stopAll)
	for id := uint64(1); id <= uint64(o.Nodes); id++ {
		c.StartNode(id)
	}
	want := min(o.Nodes, cfg.Replicas)
	// The meta group grows to five voters where it can. A test that
	// stops or cuts off one node counts on the others electing a meta
	// leader, which they cannot while the group is still two voters.
	wantMeta := cfg.MetaVoters(o.Nodes)
	c.WaitFor(30*time.Second, fmt.Sprintf("every bucket on %d voters, the meta group on %d", want, wantMeta), func() bool {
		for _, n := range c.Nodes() {
			if local, _, _ := n.Route(); local {
				st, err := n.Status(context.Background(), nil)
				if err != nil || len(st.GetMeta().GetReplicas()) != wantMeta {
					return false
				}
				for _, b := range st.Buckets {
					if len(b.Replicas) != want {
						return false
					}
				}
				return true
			}
		}
		return false
	})
	return c
}

// StartNode starts (or restarts, with its data) node id.
func (c *Cluster) StartNode(id uint64) *kv.Node {
	c.t.Helper()
	c.mu.Lock()
	fs := c.mu.fs[id]
	fresh := fs == nil
	if fresh {
		fs = vfs.NewMem()
		c.mu.fs[id] = fs
	}
	c.mu.Unlock()
	cfg := c.cfg
	cfg.FS, cfg.NodeID = fs, id
	cfg.AdvertiseAddr = fmt.Sprintf("node-%d", id)
	cfg.Transport = transport{net: c.Net, from: id}
	cfg.Remote = remote{net: c.Net, from: id}
	if cfg.Rebalance {
		cfg.Directory = directory{c: c}
	}
	if id != 1 {
		cfg.Join = c.join
	}
	if c.nodeConfig != nil {
		c.nodeConfig(id, &cfg)
	}
	n, err := kv.Open(cfg)
	if err != nil {
		c.t.Fatalf("start node %d: %v", id, err)
	}
	c.mu.Lock()
	c.mu.nodes[id] = n
	c.mu.Unlock()
	c.Net.mu.Lock()
	c.Net.mu.nodes[id] = n
	c.Net.mu.Unlock()
	return n
}

// join asks every running node until the primary registers the new one.
func (c *Cluster) join(ctx context.Context, id uint64) (*cmdpb.JoinResponse, error) {
	for {
		for _, n := range c.Nodes() {
			resp, err := n.Join(ctx, &cmdpb.JoinRequest{NodeId: id, Addr: fmt.Sprintf("node-%d", id)})
			if err == nil {
				return resp, nil
			}
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// StopNode closes node id; its data stays for a restart.
func (c *Cluster) StopNode(id uint64) {
	c.t.Helper()
	c.Net.mu.Lock()
	delete(c.Net.mu.nodes, id)
	c.Net.mu.Unlock()
	c.mu.Lock()
	n := c.mu.nodes[id]
	delete(c.mu.nodes, id)
	c.mu.Unlock()
	if n != nil {
		if err := n.Close(); err != nil {
			c.t.Errorf("stop node %d: %v", id, err)
		}
	}
}

func (c *Cluster) stopAll() {
	for _, id := range c.IDs() {
		c.StopNode(id)
	}
}

// IDs returns the running nodes' ids in order.
func (c *Cluster) IDs() []uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var ids []uint64
	for id := range c.mu.nodes {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// Node returns running node id, or nil.
func (c *Cluster) Node(id uint64) *kv.Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mu.nodes[id]
}

// Nodes returns the running nodes in id order.
func (c *Cluster) Nodes() []*kv.Node {
	var out []*kv.Node
	for _, id := range c.IDs() {
		if n := c.Node(id); n != nil {
			out = append(out, n)
		}
	}
	return out
}

// Primary waits for a node that serves requests and returns it.
func (c *Cluster) Primary() *kv.Node {
	c.t.Helper()
	var p *kv.Node
	c.WaitFor(20*time.Second, "a primary", func() bool {
		for _, n := range c.Nodes() {
			if local, _, _ := n.Route(); local {
				p = n
				return true
			}
		}
		return false
	})
	return p
}

// Do runs op against the primary, retrying while the cluster is
// unavailable (a leader change), until ctx ends.
func Do[T any](ctx context.Context, c *Cluster, op func(n *kv.Node) (T, error)) (T, error) {
	for {
		var zero T
		var last error = kv.ErrUnavailable
		for _, n := range c.Nodes() {
			if local, _, _ := n.Route(); !local {
				continue
			}
			v, err := op(n)
			if err == nil || !errors.Is(err, kv.ErrUnavailable) {
				return v, err
			}
			last = err
		}
		select {
		case <-ctx.Done():
			return zero, fmt.Errorf("%w (last: %w)", ctx.Err(), last)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// On runs op on node n, retrying while it fails with kv.ErrUnavailable
// (a leadership moving), as the Go client does, until ctx ends. An
// ambiguous failure may have applied: ops must be idempotent (request ids)
// or harmless to repeat.
func On[T any](ctx context.Context, n *kv.Node, op func() (T, error)) (T, error) {
	for {
		v, err := op()
		if err == nil || !errors.Is(err, kv.ErrUnavailable) {
			return v, err
		}
		select {
		case <-ctx.Done():
			return v, err
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// WaitCaughtUp waits until node n has applied, in every bucket, at least
// what the primary had applied when asked.
func (c *Cluster) WaitCaughtUp(n *kv.Node) {
	c.t.Helper()
	ctx := context.Background()
	c.WaitFor(20*time.Second, fmt.Sprintf("node %d to catch up", n.ID()), func() bool {
		got, err := n.Status(ctx, nil)
		if err != nil {
			return false
		}
		// Every node's view, the leaders' included: the primary alone may
		// be a follower as far behind as n.
		for _, other := range c.Nodes() {
			want, err := other.Status(ctx, nil)
			if err != nil {
				return false
			}
			for i, b := range want.Buckets {
				if got.Buckets[i].Applied < b.Applied {
					return false
				}
			}
		}
		return true
	})
}

// WaitFor polls cond until it holds, failing the test after d.
func (c *Cluster) WaitFor(d time.Duration, what string, cond func() bool) {
	c.t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			c.t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
