package kvtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/opencluster/opencluster/bucket"
	"github.com/opencluster/opencluster/kv"
	"github.com/opencluster/opencluster/rpc/ocpb"
)

func TestReplicatedPutSurvivesPrimaryStop(t *testing.T) {
	c := Start(t, Options{Nodes: 3})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range 20 {
		k := fmt.Sprintf("k%d", i)
		if _, err := Do(ctx, c, func(n *kv.Node) (*ocpb.PutResponse, error) {
			return n.Put(ctx, &ocpb.PutRequest{Key: []byte(k), Value: []byte("v" + k)})
		}); err != nil {
			t.Fatal(err)
		}
	}
	lock, err := Do(ctx, c, func(n *kv.Node) (*ocpb.AcquireResponse, error) {
		return n.Acquire(ctx, &ocpb.AcquireRequest{Name: "m", Ttl: durationpb.New(time.Minute)})
	})
	if err != nil {
		t.Fatal(err)
	}
	old := c.Primary()
	start := time.Now()
	c.StopNode(old.ID())
	if _, err := Do(ctx, c, func(n *kv.Node) (*ocpb.PutResponse, error) {
		return n.Put(ctx, &ocpb.PutRequest{Key: []byte("after"), Value: []byte("x")})
	}); err != nil {
		t.Fatal(err)
	}
	t.Logf("first write %s after stopping the primary", time.Since(start).Round(time.Millisecond))
	for i := range 20 {
		k := fmt.Sprintf("k%d", i)
		got, err := Do(ctx, c, func(n *kv.Node) (*ocpb.GetResponse, error) {
			return n.Get(ctx, &ocpb.GetRequest{Key: []byte(k)})
		})
		if err != nil || string(got.Kv.Value) != "v"+k {
			t.Fatalf("get %s after failover: %v, %v", k, got, err)
		}
	}
	// The lock is still held: another acquire fails, the holder's release
	// works.
	if _, err := Do(ctx, c, func(n *kv.Node) (*ocpb.AcquireResponse, error) {
		return n.Acquire(ctx, &ocpb.AcquireRequest{Name: "m", Ttl: durationpb.New(time.Minute), Wait: durationpb.New(0)})
	}); !errors.Is(err, kv.ErrWaitTimeout) {
		t.Fatalf("second acquire after failover: %v, want ErrWaitTimeout", err)
	}
	if _, err := Do(ctx, c, func(n *kv.Node) (*ocpb.ReleaseResponse, error) {
		return n.Release(ctx, &ocpb.ReleaseRequest{Name: "m", Code: lock.Code})
	}); err != nil {
		t.Fatalf("release after failover: %v", err)
	}
	// The stopped node comes back and catches up.
	c.WaitCaughtUp(c.StartNode(old.ID()))
}

// TestJoinGrowsGroupsBySnapshot checks that nodes joining a cluster with
// data receive every group by snapshot and become voters, and that after
// the first node is gone the data is served from the newcomers.
func TestJoinGrowsGroupsBySnapshot(t *testing.T) {
	c := Start(t, Options{Nodes: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p := c.Primary()
	for i := range 50 {
		if _, err := p.Put(ctx, &ocpb.PutRequest{Key: []byte(fmt.Sprint("k", i)), Value: []byte("v")}); err != nil {
			t.Fatal(err)
		}
	}
	before, err := p.Status(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.StartNode(2)
	c.StartNode(3)
	c.WaitFor(20*time.Second, "three voters in every bucket", func() bool {
		st, err := c.Primary().Status(ctx, nil)
		if err != nil {
			return false
		}
		for _, b := range st.Buckets {
			if len(b.Replicas) != 3 {
				return false
			}
		}
		return len(st.Members) == 3
	})
	// Every node's meta replica records the new placement, each bucket at
	// a higher epoch than before the joins.
	c.WaitFor(10*time.Second, "the placement table on every node", func() bool {
		for _, n := range c.Nodes() {
			table := n.Placement()
			if len(table) != len(before.Buckets) {
				return false
			}
			for i, p := range table {
				if int(p.GetBucket()) != i || len(p.GetVoters()) != 3 || p.GetLeader() == 0 || p.GetEpoch() <= before.Buckets[i].Epoch {
					return false
				}
			}
		}
		return true
	})
	c.StopNode(1)
	readBack(ctx, t, c, "k", 50)
}

// TestHandOffMovesEveryLeadership checks that a node handing off before a
// planned stop ends up leading nothing, and that another node serves.
func TestHandOffMovesEveryLeadership(t *testing.T) {
	c := Start(t, Options{Nodes: 3})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	old := c.Primary()
	old.HandOff(ctx)
	if ctx.Err() != nil {
		t.Fatal("HandOff did not finish")
	}
	// HandOff returns once Raft says this node leads nothing; its Status
	// may still name it for a moment, while a bucket's new leader is not
	// known here yet (the placement table then answers, until the new
	// leader's report lands).
	c.WaitFor(5*time.Second, "no bucket led by the node that handed off", func() bool {
		st, err := old.Status(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range st.Buckets {
			if b.Leader == fmt.Sprint(old.ID()) {
				return false
			}
		}
		return true
	})
	if p := c.Primary(); p == old {
		t.Fatal("the node that handed off is still the primary")
	}
	if _, err := Do(ctx, c, func(n *kv.Node) (*ocpb.PutResponse, error) {
		return n.Put(ctx, &ocpb.PutRequest{Key: []byte("k"), Value: []byte("v")})
	}); err != nil {
		t.Fatal(err)
	}
}

// TestLaggingReplicaCatchesUpBySnapshot stops a node, writes enough that
// every log is truncated past what it has, restarts it, and checks that it
// catches up (by snapshot, as the entries it needs are gone).
func TestLaggingReplicaCatchesUpBySnapshot(t *testing.T) {
	cfg := kv.TestConfig()
	cfg.RaftLogKeep = 5
	c := Start(t, Options{Nodes: 3, Config: &cfg})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	lagging := c.IDs()[2]
	if c.Primary().ID() == lagging {
		lagging = c.IDs()[1]
	}
	c.StopNode(lagging)
	for i := range 300 {
		k := fmt.Sprint("lag/", i)
		if _, err := Do(ctx, c, func(n *kv.Node) (*ocpb.PutResponse, error) {
			return n.Put(ctx, &ocpb.PutRequest{Key: []byte(k), Value: []byte("v")})
		}); err != nil {
			t.Fatal(err)
		}
	}
	c.WaitCaughtUp(c.StartNode(lagging))
	// With the old primary gone, the caught-up node is needed for a
	// quorum: reads through it prove it holds the data.
	c.StopNode(c.Primary().ID())
	readBack(ctx, t, c, "lag/", 300)
}

// TestPartitionedPrimaryStopsServing cuts the primary off from the other
// two: it must stop acknowledging writes (CheckQuorum), the majority elects
// a new primary that serves, and after healing nothing acknowledged is
// lost.
func TestPartitionedPrimaryStopsServing(t *testing.T) {
	c := Start(t, Options{Nodes: 3})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	old := c.Primary()
	if _, err := old.Put(ctx, &ocpb.PutRequest{Key: []byte("before"), Value: []byte("1")}); err != nil {
		t.Fatal(err)
	}
	c.Net.Isolate(old.ID(), c.IDs())
	short, cancelShort := context.WithTimeout(ctx, 2*time.Second)
	_, err := old.Put(short, &ocpb.PutRequest{Key: []byte("minority"), Value: []byte("x")})
	cancelShort()
	if err == nil {
		t.Fatal("an isolated primary acknowledged a write")
	}
	if _, err := Do(ctx, c, func(n *kv.Node) (*ocpb.PutResponse, error) {
		if n == old {
			return nil, kv.ErrUnavailable
		}
		return n.Put(ctx, &ocpb.PutRequest{Key: []byte("majority"), Value: []byte("2")})
	}); err != nil {
		t.Fatal(err)
	}
	c.Net.Heal()
	for _, k := range []string{"before", "majority"} {
		if _, err := Do(ctx, c, func(n *kv.Node) (*ocpb.GetResponse, error) {
			return n.Get(ctx, &ocpb.GetRequest{Key: []byte(k)})
		}); err != nil {
			t.Fatalf("get %s after healing: %v", k, err)
		}
	}
	if _, err := Do(ctx, c, func(n *kv.Node) (*ocpb.GetResponse, error) {
		return n.Get(ctx, &ocpb.GetRequest{Key: []byte("minority")})
	}); !errors.Is(err, kv.ErrNotFound) {
		t.Fatalf("the unacknowledged minority write: %v, want not found", err)
	}
}

// TestLeadersSpreadAndEveryNodeServes checks that bucket leaderships
// spread over the three nodes, and that every node serves every request:
// a single-key request is forwarded to its bucket's leader, and a
// restrictive lock whose keys' buckets are led by different nodes commits
// atomically whichever node coordinates it.
func TestLeadersSpreadAndEveryNodeServes(t *testing.T) {
	c := Start(t, Options{Nodes: 3})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var st *ocpb.StatusResponse
	c.WaitFor(10*time.Second, "leaders on every node", func() bool {
		var err error
		if st, err = c.Primary().Status(ctx, nil); err != nil {
			return false
		}
		led := map[string]int{}
		for _, b := range st.Buckets {
			led[b.Leader]++
		}
		return len(led) == 3 && !slices.Contains(slices.Collect(maps.Keys(led)), "")
	})
	for i, n := range c.Nodes() {
		for j := range 16 {
			k := []byte(fmt.Sprintf("n%d/k%d", i, j))
			if _, err := On(ctx, n, func() (*ocpb.PutResponse, error) { return n.Put(ctx, &ocpb.PutRequest{Key: k, Value: k}) }); err != nil {
				t.Fatalf("put %s through node %d: %v", k, n.ID(), err)
			}
			got, err := On(ctx, n, func() (*ocpb.GetResponse, error) { return n.Get(ctx, &ocpb.GetRequest{Key: k}) })
			if err != nil || !bytes.Equal(got.Kv.Value, k) {
				t.Fatalf("get %s through node %d: %v, %v", k, n.ID(), got, err)
			}
		}
	}
	// Keys in buckets led by different nodes, coordinated by each node in
	// turn.
	keys := make([][]byte, 0, 8)
	for j := range 8 {
		keys = append(keys, []byte(fmt.Sprintf("acct/%d", j)))
	}
	for i, n := range c.Nodes() {
		name := fmt.Sprintf("tx/%d", i)
		specs := make([]*ocpb.KeyLockRequest, 0, len(keys))
		for _, k := range keys {
			specs = append(specs, &ocpb.KeyLockRequest{Key: k, Mode: ocpb.KeyMode_WRITE})
		}
		lock, err := On(ctx, n, func() (*ocpb.RestrictResponse, error) {
			return n.Restrict(ctx, &ocpb.RestrictRequest{Name: name, Keys: specs, Ttl: durationpb.New(time.Minute), RequestId: name})
		})
		if err != nil {
			t.Fatalf("restrict through node %d: %v", n.ID(), err)
		}
		for _, k := range keys {
			if _, err := On(ctx, n, func() (*ocpb.PutResponse, error) {
				return n.Put(ctx, &ocpb.PutRequest{Key: k, Value: []byte(name), Code: lock.Code})
			}); err != nil {
				t.Fatalf("provisional put %s: %v", k, err)
			}
		}
		commit, err := On(ctx, n, func() (*ocpb.CommitResponse, error) {
			return n.Commit(ctx, &ocpb.CommitRequest{Name: name, Code: lock.Code})
		})
		if err != nil {
			t.Fatalf("commit through node %d: %v", n.ID(), err)
		}
		other := c.Nodes()[(i+1)%3]
		res, err := On(ctx, other, func() (*ocpb.BatchGetResponse, error) { return other.BatchGet(ctx, &ocpb.BatchGetRequest{Keys: keys}) })
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range res.Results {
			if string(r.Value) != name || r.Version != commit.CommitVersion {
				t.Fatalf("after commit of %s at %d, %s reads %q@%d", name, commit.CommitVersion, r.Key, r.Value, r.Version)
			}
		}
	}
	n1, n2 := c.Nodes()[1], c.Nodes()[2]
	scan, err := On(ctx, n1, func() (*ocpb.ScanResponse, error) { return n1.Scan(ctx, &ocpb.ScanRequest{Prefix: []byte("acct/")}) })
	if err != nil || len(scan.Kvs) != len(keys) {
		t.Fatalf("scan through node 2: %d keys, %v", len(scan.GetKvs()), err)
	}
	list, err := On(ctx, n2, func() (*ocpb.ListResponse, error) { return n2.List(ctx, &ocpb.ListRequest{}) })
	if err != nil || len(list.Locks) != 3 {
		t.Fatalf("list through node 3: %d locks, %v", len(list.GetLocks()), err)
	}
}

// TestSlowLossyLinks runs writes, a lock and a restrictive lock over links
// that delay every batch by 5–20 ms and drop one batch in seven: slower,
// never wrong. Then the links heal and everything reads back.
func TestSlowLossyLinks(t *testing.T) {
	c := Start(t, Options{Nodes: 3})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ids := c.IDs()
	for i, a := range ids {
		for _, b := range ids[i+1:] {
			c.Net.Delay(a, b, time.Duration(5+5*i)*time.Millisecond)
			c.Net.DropEvery(a, b, 7)
		}
	}
	n := c.Nodes()[0]
	for i := range 20 {
		k := []byte(fmt.Sprint("slow/", i))
		if _, err := On(ctx, n, func() (*ocpb.PutResponse, error) {
			return n.Put(ctx, &ocpb.PutRequest{Key: k, Value: k, RequestId: string(k)})
		}); err != nil {
			t.Fatalf("put %s over slow links: %v", k, err)
		}
	}
	lock, err := On(ctx, n, func() (*ocpb.AcquireResponse, error) {
		return n.Acquire(ctx, &ocpb.AcquireRequest{Name: "slow-lock", Ttl: durationpb.New(time.Minute), RequestId: "a1"})
	})
	if err != nil {
		t.Fatal(err)
	}
	c.Net.Heal()
	other := c.Nodes()[2]
	for i := range 20 {
		k := []byte(fmt.Sprint("slow/", i))
		got, err := On(ctx, other, func() (*ocpb.GetResponse, error) { return other.Get(ctx, &ocpb.GetRequest{Key: k}) })
		if err != nil || !bytes.Equal(got.Kv.Value, k) {
			t.Fatalf("get %s after healing: %v, %v", k, got, err)
		}
	}
	if _, err := On(ctx, other, func() (*ocpb.ReleaseResponse, error) {
		return other.Release(ctx, &ocpb.ReleaseRequest{Name: "slow-lock", Code: lock.Code, RequestId: "r1"})
	}); err != nil {
		t.Fatalf("release after healing: %v", err)
	}
}

// TestFollowersLearnCommitsWithoutEmptyAppends checks that bucket leaders
// skip the empty appends that only carry a moved commit index, and that
// their followers still apply everything: after the last write, from
// heartbeats alone. (TestSlowLossyLinks checks that appends lost in flight
// are still resent.)
func TestFollowersLearnCommitsWithoutEmptyAppends(t *testing.T) {
	reg := &registry{}
	cfg := kv.TestConfig()
	cfg.Registerer = reg
	c := Start(t, Options{Nodes: 3, Config: &cfg})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n := c.Primary()
	for i := range 40 {
		k := []byte(fmt.Sprint("commit/", i))
		if _, err := On(ctx, n, func() (*ocpb.PutResponse, error) { return n.Put(ctx, &ocpb.PutRequest{Key: k, Value: k}) }); err != nil {
			t.Fatalf("put %s: %v", k, err)
		}
	}
	if skipped := reg.sum("opencluster_raft_commit_appends_skipped_total"); skipped == 0 {
		t.Fatal("no commit-only append was skipped")
	}
	for _, node := range c.Nodes() {
		c.WaitCaughtUp(node)
	}
}

// registry is a prometheus.Registerer that keeps what every node of a
// cluster registers, names repeated.
type registry struct {
	mu         sync.Mutex
	collectors []prometheus.Collector
}

func (r *registry) Register(c prometheus.Collector) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.collectors = append(r.collectors, c)
	return nil
}

func (r *registry) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		_ = r.Register(c)
	}
}

func (r *registry) Unregister(prometheus.Collector) bool { return false }

// sum adds up the value of every registered counter or gauge named name,
// whatever collector exports it (one metric or many).
func (r *registry) sum(name string) float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	total := 0.0
	for _, c := range r.collectors {
		// Drained while Collect sends: a collector may export any number
		// of metrics.
		metrics := make(chan prometheus.Metric)
		go func() {
			c.Collect(metrics)
			close(metrics)
		}()
		for m := range metrics {
			if !strings.Contains(m.Desc().String(), `fqName: "`+name+`"`) {
				continue
			}
			var out dto.Metric
			if err := m.Write(&out); err == nil {
				total += out.GetCounter().GetValue() + out.GetGauge().GetValue()
			}
		}
	}
	return total
}

// TestNodeWithoutBucketsServes runs four nodes with three replicas per
// bucket: the fourth holds no bucket but joins the meta group, learns the
// placement table from it, and serves requests by forwarding them to each
// bucket's leader.
func TestNodeWithoutBucketsServes(t *testing.T) {
	c := Start(t, Options{Nodes: 4})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	fourth := c.Node(4)
	c.WaitFor(10*time.Second, "the fourth node to learn the placement", func() bool {
		table := fourth.Placement()
		for _, p := range table {
			if slices.Contains(p.GetVoters(), 4) {
				t.Fatalf("bucket %d placed on node 4, beyond the first three", p.GetBucket())
			}
		}
		return len(table) == 8
	})
	for i := range 10 {
		k := []byte(fmt.Sprint("via4/", i))
		if _, err := On(ctx, fourth, func() (*ocpb.PutResponse, error) {
			return fourth.Put(ctx, &ocpb.PutRequest{Key: k, Value: k, RequestId: string(k)})
		}); err != nil {
			t.Fatalf("put %s through node 4: %v", k, err)
		}
		got, err := On(ctx, fourth, func() (*ocpb.GetResponse, error) { return fourth.Get(ctx, &ocpb.GetRequest{Key: k}) })
		if err != nil || !bytes.Equal(got.Kv.Value, k) {
			t.Fatalf("get %s through node 4: %v, %v", k, got, err)
		}
	}
	if _, err := On(ctx, fourth, func() (*ocpb.AcquireResponse, error) {
		return fourth.Acquire(ctx, &ocpb.AcquireRequest{Name: "via4", Ttl: durationpb.New(time.Minute), RequestId: "a"})
	}); err != nil {
		t.Fatalf("acquire through node 4: %v", err)
	}
	st, err := fourth.Status(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range st.Buckets {
		if len(b.Replicas) != 3 || b.Leader == "" {
			t.Errorf("node 4's status of bucket %d: replicas %v, leader %q", b.Bucket, b.Replicas, b.Leader)
		}
	}
}

// readBack fails the test unless keys prefix0..prefix(n-1) all read back.
func readBack(ctx context.Context, t *testing.T, c *Cluster, prefix string, n int) {
	t.Helper()
	for i := range n {
		k := fmt.Sprint(prefix, i)
		if _, err := Do(ctx, c, func(n *kv.Node) (*ocpb.GetResponse, error) {
			return n.Get(ctx, &ocpb.GetRequest{Key: []byte(k)})
		}); err != nil {
			t.Fatalf("get %s: %v", k, err)
		}
	}
}

// inBucket returns a key with the given prefix that hashes into bucket b.
func inBucket(prefix string, b, buckets int) []byte {
	for i := 0; ; i++ {
		k := []byte(fmt.Sprint(prefix, i))
		if bucket.Of(k, buckets) == b {
			return k
		}
	}
}

// TestMoveReplicaKeepsDataAndLocks moves a replica of a bucket, the one
// its leader holds, to a fourth node that held none, while the bucket
// holds a value, a named lock and a restrictive lock with a provisional
// write. Then the node the replica left is stopped: the bucket is served
// by the new configuration, the value reads back, the named lock keeps
// its fence and releases with its code, and the restrictive lock commits
// its write.
func TestMoveReplicaKeepsDataAndLocks(t *testing.T) {
	c := Start(t, Options{Nodes: 4})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const b, buckets = 3, 8
	n := c.Node(1)
	key, lockName, txName, txKey := inBucket("k", b, buckets), inBucket("lock", b, buckets), inBucket("tx", b, buckets), inBucket("acct", b, buckets)
	if _, err := On(ctx, n, func() (*ocpb.PutResponse, error) {
		return n.Put(ctx, &ocpb.PutRequest{Key: key, Value: []byte("before the move"), RequestId: "p"})
	}); err != nil {
		t.Fatal(err)
	}
	lock, err := On(ctx, n, func() (*ocpb.AcquireResponse, error) {
		return n.Acquire(ctx, &ocpb.AcquireRequest{Name: string(lockName), Ttl: durationpb.New(time.Minute), RequestId: "a"})
	})
	if err != nil {
		t.Fatal(err)
	}
	tx, err := On(ctx, n, func() (*ocpb.RestrictResponse, error) {
		return n.Restrict(ctx, &ocpb.RestrictRequest{Name: string(txName), Ttl: durationpb.New(time.Minute), RequestId: "r",
			Keys: []*ocpb.KeyLockRequest{{Key: txKey, Mode: ocpb.KeyMode_WRITE}}})
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := On(ctx, n, func() (*ocpb.PutResponse, error) {
		return n.Put(ctx, &ocpb.PutRequest{Key: txKey, Value: []byte("provisional"), Code: tx.Code})
	}); err != nil {
		t.Fatal(err)
	}

	st, err := n.Status(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	from := st.Buckets[b].Leader
	if from == "" || slices.Contains(st.Buckets[b].Replicas, "4") {
		t.Fatalf("bucket %d before the move: %+v", b, st.Buckets[b])
	}
	moved, err := n.MoveReplica(ctx, &ocpb.MoveReplicaRequest{Bucket: b, From: from, To: "4"})
	if err != nil {
		t.Fatalf("move bucket %d from node %s to node 4: %v", b, from, err)
	}
	c.WaitFor(10*time.Second, "the placement table to show the move", func() bool {
		for _, p := range c.Node(4).Placement() {
			if int(p.GetBucket()) == b {
				return p.GetEpoch() >= moved.Epoch && slices.Contains(p.GetVoters(), 4) && !slices.Contains(p.GetVoters(), mustID(t, from))
			}
		}
		return false
	})
	fromID := mustID(t, from)
	// The node the replica left still routes the bucket's requests: its
	// stale replica names an old leader, the placement table the new one.
	old := c.Node(fromID)
	if _, err := On(ctx, old, func() (*ocpb.BatchGetResponse, error) {
		return old.BatchGet(ctx, &ocpb.BatchGetRequest{Keys: [][]byte{key}})
	}); err != nil {
		t.Fatalf("batch get through node %d after its replica left: %v", fromID, err)
	}
	c.StopNode(fromID)
	other := c.Node(4)
	got, err := On(ctx, other, func() (*ocpb.GetResponse, error) { return other.Get(ctx, &ocpb.GetRequest{Key: key}) })
	if err != nil || string(got.Kv.Value) != "before the move" {
		t.Fatalf("after the move and a stop of node %d: %v, %v", fromID, got, err)
	}
	desc, err := On(ctx, other, func() (*ocpb.DescribeResponse, error) {
		return other.Describe(ctx, &ocpb.DescribeRequest{Name: string(lockName), Kind: ocpb.LockKind_NAMED})
	})
	if err != nil || !desc.Locks[0].Held || desc.Locks[0].Fence != lock.Fence {
		t.Fatalf("the named lock after the move: %v, %v", desc, err)
	}
	if _, err := On(ctx, other, func() (*ocpb.ReleaseResponse, error) {
		return other.Release(ctx, &ocpb.ReleaseRequest{Name: string(lockName), Code: lock.Code, RequestId: "rel"})
	}); err != nil {
		t.Fatalf("release after the move: %v", err)
	}
	// The key lock moved with the bucket: a plain write still waits for it
	// (the receiving replica counts the key locks its snapshot brought).
	if _, err := On(ctx, other, func() (*ocpb.PutResponse, error) {
		return other.Put(ctx, &ocpb.PutRequest{Key: txKey, Value: []byte("plain"), Wait: durationpb.New(100 * time.Millisecond)})
	}); !errors.Is(err, kv.ErrWaitTimeout) {
		t.Fatalf("plain put on a key locked before the move: %v, want ErrWaitTimeout", err)
	}
	commit, err := On(ctx, other, func() (*ocpb.CommitResponse, error) {
		return other.Commit(ctx, &ocpb.CommitRequest{Name: string(txName), Code: tx.Code})
	})
	if err != nil {
		t.Fatalf("commit after the move: %v", err)
	}
	got, err = On(ctx, other, func() (*ocpb.GetResponse, error) { return other.Get(ctx, &ocpb.GetRequest{Key: txKey}) })
	if err != nil || string(got.Kv.Value) != "provisional" || got.Kv.Version != commit.CommitVersion {
		t.Fatalf("the restrictive lock's write after commit: %v, %v", got, err)
	}
}

func mustID(t *testing.T, s string) uint64 {
	t.Helper()
	id, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// TestRebalancerSpreadsAndRepairs runs the rebalancer: a new cluster is
// replicated three ways, two joining nodes receive their share of replicas
// (within one of the mean), and when a node stops for good its replicas
// are re-created on the others after DeadAfter. Data written before reads
// back at the end. Leaders end within one of the mean per node too.
func TestRebalancerSpreadsAndRepairs(t *testing.T) {
	c := Start(t, Options{Nodes: 3, Rebalance: true})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	n := c.Node(1)
	for i := range 20 {
		k := []byte(fmt.Sprint("r", i))
		if _, err := On(ctx, n, func() (*ocpb.PutResponse, error) {
			return n.Put(ctx, &ocpb.PutRequest{Key: k, Value: k, RequestId: string(k)})
		}); err != nil {
			t.Fatal(err)
		}
	}
	c.StartNode(4)
	c.StartNode(5)
	var last string
	defer func() {
		if t.Failed() {
			t.Logf("last status: %s", last)
		}
	}()
	balanced := func(live []uint64) bool {
		st, err := c.Primary().Status(ctx, nil)
		if err != nil {
			return false
		}
		last = fmt.Sprint(st.Buckets)
		replicas, leaders := map[string]int{}, map[string]int{}
		for _, b := range st.Buckets {
			if len(b.Replicas) != 3 || b.Leader == "" {
				return false
			}
			for _, r := range b.Replicas {
				if !slices.Contains(live, mustID(t, r)) {
					return false
				}
				replicas[r]++
			}
			leaders[b.Leader]++
		}
		meanR := float64(3*len(st.Buckets)) / float64(len(live))
		meanL := float64(len(st.Buckets)) / float64(len(live))
		for _, id := range live {
			s := idStr(id)
			if d := float64(replicas[s]) - meanR; d > 1 || d < -1 {
				return false
			}
			if d := float64(leaders[s]) - meanL; d > 1 || d < -1 {
				return false
			}
		}
		return true
	}
	c.WaitFor(40*time.Second, "replicas spread over five nodes", func() bool { return balanced([]uint64{1, 2, 3, 4, 5}) })
	c.StopNode(5)
	c.WaitFor(40*time.Second, "node 5's replicas re-created on the other four", func() bool { return balanced([]uint64{1, 2, 3, 4}) })
	readBack(ctx, t, c, "r", 20)
}

func idStr(id uint64) string { return strconv.FormatUint(id, 10) }

// TestIsolatedLeaderReadsNothingStale: a leader serving reads under its
// read lease is cut off while a reader keeps reading from it. The majority
// elects a new leader and acknowledges a new value; no read that started
// after that acknowledgement returns the old value (the lease ended before
// anyone else could lead).
func TestIsolatedLeaderReadsNothingStale(t *testing.T) {
	c := Start(t, Options{Nodes: 3})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	old := c.Primary()
	key := []byte("leased")
	if _, err := old.Put(ctx, &ocpb.PutRequest{Key: key, Value: []byte("old")}); err != nil {
		t.Fatal(err)
	}
	sr := readWhile(ctx, key, "old", old)
	time.Sleep(50 * time.Millisecond) // reads under the lease
	c.Net.Isolate(old.ID(), c.IDs())
	if _, err := Do(ctx, c, func(n *kv.Node) (*ocpb.PutResponse, error) {
		if n == old {
			return nil, kv.ErrUnavailable
		}
		return n.Put(ctx, &ocpb.PutRequest{Key: key, Value: []byte("new")})
	}); err != nil {
		t.Fatal(err)
	}
	sr.acknowledged()
	time.Sleep(300 * time.Millisecond)
	stale, reads := sr.stop()
	if stale != 0 {
		t.Fatalf("%d reads on the isolated leader returned the old value after the new one was acknowledged", stale)
	}
	if reads == 0 {
		t.Fatal("the old leader served no read at all")
	}
}

// TestTransferredLeaderReadsNothingStale: while a bucket's leader serves
// reads under its lease, its leadership is handed to another node, which
// acknowledges a new value at once. No read that started after that
// acknowledgement, on any node, returns the old value: the lease was
// voided before the handover message left (MsgTimeoutNow).
func TestTransferredLeaderReadsNothingStale(t *testing.T) {
	c := Start(t, Options{Nodes: 3})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	key := []byte("handed-over")
	b := bucket.Of(key, kv.TestConfig().Buckets)
	for round := range 5 {
		old := fmt.Sprintf("v%d", round)
		if _, err := Do(ctx, c, func(n *kv.Node) (*ocpb.PutResponse, error) {
			return n.Put(ctx, &ocpb.PutRequest{Key: key, Value: []byte(old)})
		}); err != nil {
			t.Fatal(err)
		}
		st, err := c.Primary().Status(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		leader := st.Buckets[b].Leader
		var from, to *kv.Node
		for _, n := range c.Nodes() {
			if fmt.Sprint(n.ID()) == leader {
				from = n
			} else if to == nil {
				to = n
			}
		}
		if from == nil || to == nil {
			t.Fatalf("round %d: bucket %d led by %q", round, b, leader)
		}
		sr := readWhile(ctx, key, old, c.Nodes()...)
		time.Sleep(30 * time.Millisecond) // reads under the lease
		if _, err := from.TransferLeader(ctx, &ocpb.TransferLeaderRequest{Bucket: uint32(b), To: fmt.Sprint(to.ID())}); err != nil {
			t.Fatalf("round %d: transfer: %v", round, err)
		}
		if _, err := On(ctx, to, func() (*ocpb.PutResponse, error) {
			return to.Put(ctx, &ocpb.PutRequest{Key: key, Value: []byte("after-" + old)})
		}); err != nil {
			t.Fatal(err)
		}
		sr.acknowledged()
		time.Sleep(50 * time.Millisecond)
		if n, _ := sr.stop(); n != 0 {
			t.Fatalf("round %d: %d reads returned %q after the new value was acknowledged", round, n, old)
		}
	}
}

// staleReads reads a key in a loop on some nodes, counting the reads that
// started after a new value was acknowledged and still returned the old.
type staleReads struct {
	acked        atomic.Int64 // UnixNano of the acknowledgement (0: not yet)
	stale, reads atomic.Int32
	done         chan struct{}
	wg           sync.WaitGroup
}

// readWhile starts one reader of key on each of nodes; old is the value
// that must not be read after acknowledged.
func readWhile(ctx context.Context, key []byte, old string, nodes ...*kv.Node) *staleReads {
	sr := &staleReads{done: make(chan struct{})}
	for _, n := range nodes {
		sr.wg.Go(func() {
			for {
				select {
				case <-sr.done:
					return
				default:
				}
				start := time.Now().UnixNano()
				rctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
				got, err := n.Get(rctx, &ocpb.GetRequest{Key: key})
				cancel()
				if err != nil {
					continue
				}
				sr.reads.Add(1)
				if a := sr.acked.Load(); a != 0 && start > a && string(got.Kv.Value) == old {
					sr.stale.Add(1)
				}
			}
		})
	}
	return sr
}

// acknowledged marks the new value acknowledged now.
func (sr *staleReads) acknowledged() { sr.acked.Store(time.Now().UnixNano()) }

// stop stops the readers and returns the stale and total reads.
func (sr *staleReads) stop() (stale, reads int32) {
	close(sr.done)
	sr.wg.Wait()
	return sr.stale.Load(), sr.reads.Load()
}
