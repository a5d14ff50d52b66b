package main

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencluster/opencluster/bucket"
	"github.com/opencluster/opencluster/rpc/client"
	"github.com/opencluster/opencluster/rpc/ocpb"
)

// TestRebalanceGrowAndDrain runs the rebalancer on real processes: a
// three-node cluster holding data, a named lock and an open restrictive
// lock with provisional writes grows to five nodes, and the buckets spread
// to the new ones; then `node drain` empties one of the first three and
// `node remove` takes it out. After each step every key reads back, the
// named lock is still held with its fence, and at the end the lock
// releases with its code and the restrictive lock commits its writes
// atomically.
// procCluster is a cluster of real server processes for rebalancing
// tests, on hosts 127.0.0.<hostBase+i>.
type procCluster struct {
	t              *testing.T
	base           string
	addrs, gossips []string
	procs          []*serverProcess
	c              *client.Client
	ctx            context.Context
	// last is the last status balanced read, logged if the test fails.
	last *ocpb.StatusResponse
}

func newProcCluster(t *testing.T, ctx context.Context, hostBase, nodes int) *procCluster {
	pc := &procCluster{t: t, base: t.TempDir(), ctx: ctx, procs: make([]*serverProcess, nodes)}
	for i := range nodes {
		host := fmt.Sprintf("127.0.0.%d", hostBase+i)
		pc.addrs, pc.gossips = append(pc.addrs, freeAddrOn(t, host)), append(pc.gossips, freeAddrOn(t, host))
	}
	c, err := client.New(context.Background(), pc.addrs, client.WithRetry(40, 50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = c.Close()
		if t.Failed() && pc.last != nil {
			var b bytes.Buffer
			writeStatus(&b, pc.last)
			t.Logf("last status:\n%s", b.String())
		}
		if t.Failed() {
			for i, p := range pc.procs {
				if p != nil {
					out := p.stderr.String()
					t.Logf("node %d's log (last 4000 bytes):\n%s", i+1, out[max(0, len(out)-4000):])
				}
			}
		}
	})
	pc.c = c
	return pc
}

// start starts (or restarts, on its data) node i, joining through node 0.
func (pc *procCluster) start(i int) {
	extra := []string{"--gossip-addr", pc.gossips[i], "--fast-failure-detection"}
	if i > 0 {
		extra = append(extra, "--join", pc.gossips[0])
	}
	pc.procs[i] = startProcess(pc.t, filepath.Join(pc.base, fmt.Sprint("n", i+1)), pc.addrs[i], extra...)
}

// balanced reports whether the cluster has members active nodes, no move
// in progress, every bucket on three voters with a leader, and replicas
// and leaders within one of the mean on every active node.
func (pc *procCluster) balanced(members int) bool {
	st, err := pc.c.Status(pc.ctx)
	if err != nil {
		return false
	}
	pc.last = st
	replicas, leaders := client.Holdings(st)
	live := 0
	for _, m := range st.Members {
		if m.State == "active" && m.Alive {
			live++
		}
	}
	if live != members || len(st.Moves) > 0 || len(st.GetMeta().GetReplicas()) != min(members, 5) {
		return false
	}
	for _, b := range st.Buckets {
		if len(b.Replicas) != 3 || b.Leader == "" {
			return false
		}
	}
	meanR, meanL := float64(3*len(st.Buckets))/float64(members), float64(len(st.Buckets))/float64(members)
	for _, m := range st.Members {
		if m.State != "active" {
			continue
		}
		if d := float64(replicas[m.Id]) - meanR; d > 1 || d < -1 {
			return false
		}
		if d := float64(leaders[m.Id]) - meanL; d > 1 || d < -1 {
			return false
		}
	}
	return true
}

func TestRebalanceGrowAndDrain(t *testing.T) {
	if testing.Short() {
		t.Skip("starts server processes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	pc := newProcCluster(t, ctx, 71, 5)
	c := pc.c
	for i := range 3 {
		pc.start(i)
	}
	waitUntil(t, 60*time.Second, func() bool { return pc.balanced(3) })

	const keys = 40
	for i := range keys {
		if _, err := c.Put(ctx, fmt.Appendf(nil, "k%d", i), fmt.Appendf(nil, "v%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	lock, err := c.Lock(ctx, "held-across-moves", 10*time.Minute, client.WithLockWait(0))
	if err != nil {
		t.Fatal(err)
	}
	txWrites := map[string]string{}
	var specs []client.RestrictOption
	for i := range 4 { // four keys: most likely in several buckets
		k := fmt.Sprintf("tx/%d", i)
		txWrites[k] = fmt.Sprint("provisional ", i)
		specs = append(specs, client.Write([]byte(k)))
	}
	tx, err := c.Restrict(ctx, "txn-across-moves", append(specs, client.TTL(10*time.Minute), client.Wait(0))...)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range txWrites {
		if err := tx.Put(ctx, []byte(k), []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	check := func(step string) {
		t.Helper()
		for i := range keys {
			kv, err := c.Get(ctx, fmt.Appendf(nil, "k%d", i))
			if err != nil || string(kv.Value) != fmt.Sprint("v", i) {
				t.Fatalf("%s: k%d reads %q, %v", step, i, kv.Value, err)
			}
		}
		infos, err := c.Describe(ctx, "held-across-moves")
		if err != nil || len(infos) != 1 || !infos[0].Held || infos[0].Fence != lock.Fence() {
			t.Fatalf("%s: the named lock: %+v, %v", step, infos, err)
		}
		for k := range txWrites {
			if _, err := c.Get(ctx, []byte(k), client.WithReadWait(0)); err == nil {
				t.Fatalf("%s: the open transaction's write to %s is visible", step, k)
			}
		}
	}

	pc.start(3)
	pc.start(4)
	waitUntil(t, 90*time.Second, func() bool { return pc.balanced(5) })
	check("after growing to five nodes")

	// Drain the first node (it leads the meta group, most likely) from
	// the CLI, then remove it.
	drained := pc.last.Members[0].Id
	var stdout, stderr bytes.Buffer
	code := run(ctx, []string{"--endpoints", strings.Join(pc.addrs[1:], ","), "-o", "json", "node", "drain", drained, "--wait", "90s"},
		strings.NewReader(""), &stdout, &stderr, func(string) string { return "" })
	r := result{stdout: stdout.String(), stderr: stderr.String(), code: code}
	if code != 0 {
		t.Fatalf("node drain: exit %d, stderr %q", code, r.stderr)
	}
	if obj := r.obj(t); num(t, obj, "replicas") != 0 || obj["state"] != "draining" {
		t.Fatalf("node drain answered %v", obj)
	}
	stdout.Reset()
	stderr.Reset()
	waitUntil(t, 30*time.Second, func() bool {
		code = run(ctx, []string{"--endpoints", strings.Join(pc.addrs[1:], ","), "node", "remove", drained},
			strings.NewReader(""), &stdout, &stderr, func(string) string { return "" })
		return code == 0 // refused while the meta group still has a voter there
	})
	pc.procs[0].kill(t)
	waitUntil(t, 60*time.Second, func() bool { return pc.balanced(4) })
	for _, b := range pc.last.Buckets {
		if slices.Contains(b.Replicas, drained) {
			t.Fatalf("bucket %d still has a replica on removed node %s", b.Bucket, drained)
		}
	}
	check("after draining and removing a node")

	if err := lock.Unlock(ctx); err != nil {
		t.Fatalf("release the named lock with its code: %v", err)
	}
	version, err := tx.Commit(ctx)
	if err != nil {
		t.Fatalf("commit the restrictive lock: %v", err)
	}
	for k, want := range txWrites {
		kv, err := c.Get(ctx, []byte(k))
		if err != nil || string(kv.Value) != want || kv.Version != version {
			t.Errorf("after commit at %d: %s reads %q@%d, %v", version, k, kv.Value, kv.Version, err)
		}
	}
}

// TestMoveInterruptedByKill kills, with SIGKILL, first the target and then
// the source of a replica move while the bucket's data (24 MiB) is on its
// way, and restarts it at once. The rebalancer then finishes or undoes
// what the move left (a learner, a joint configuration) and the cluster
// converges; every key written before reads back.
func TestMoveInterruptedByKill(t *testing.T) {
	if testing.Short() {
		t.Skip("starts server processes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	pc := newProcCluster(t, ctx, 81, 4)
	for i := range 4 {
		pc.start(i)
	}
	const buckets = 8 // startProcess's --buckets
	idx := func(id string) int {
		for _, m := range pc.last.Members {
			if m.Id == id {
				return slices.IndexFunc(pc.addrs, func(a string) bool { return a == m.Addr })
			}
		}
		t.Fatalf("no member %s", id)
		return -1
	}
	values := map[string][]byte{}
	value := bytes.Repeat([]byte("x"), 256<<10)
	for phase, victim := range []string{"target", "source"} {
		waitUntil(t, 90*time.Second, func() bool { return pc.balanced(4) })
		// A bucket, a voter that does not lead it, and a node without a
		// replica of it; the move runs on the bucket's leader.
		b := pc.last.Buckets[phase]
		var from, to string
		for _, r := range b.Replicas {
			if r != b.Leader {
				from = r
				break
			}
		}
		for _, m := range pc.last.Members {
			if !slices.Contains(b.Replicas, m.Id) {
				to = m.Id
			}
		}
		for i, n := 0, 0; n < 96; i++ {
			k := fmt.Sprintf("big/%d", i)
			if bucket.Of([]byte(k), buckets) != int(b.Bucket) {
				continue
			}
			n++
			v := append(fmt.Appendf(nil, "%d:", i), value...)
			if _, err := pc.c.Put(ctx, []byte(k), v); err != nil {
				t.Fatal(err)
			}
			values[k] = v
		}
		killed := idx(to)
		if victim == "source" {
			killed = idx(from)
		}
		ec, err := client.New(ctx, []string{pc.addrs[idx(b.Leader)]}, client.WithRetry(1, 10*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		moveErr := make(chan error, 1)
		go func() {
			mctx, mcancel := context.WithTimeout(ctx, time.Minute)
			defer mcancel()
			_, err := ec.MoveReplica(mctx, b.Bucket, from, to)
			moveErr <- err
		}()
		waitUntil(t, 20*time.Second, func() bool {
			select {
			case err := <-moveErr:
				t.Fatalf("the move of bucket %d from %s to %s ended before the kill: %v", b.Bucket, from, to, err)
			default:
			}
			st, err := pc.c.Status(ctx)
			return err == nil && len(st.Moves) > 0
		})
		pc.procs[killed].kill(t)
		st, err := pc.c.Status(ctx)
		inFlight := err == nil && len(st.Moves) > 0
		pc.start(killed)
		err = <-moveErr
		t.Logf("killed the %s (node %d) of the move of bucket %d from %s to %s, in flight then: %v; the move returned %v",
			victim, killed+1, b.Bucket, from, to, inFlight, err)
		_ = ec.Close()
		waitUntil(t, 90*time.Second, func() bool { return pc.balanced(4) })
		for k, v := range values {
			kv, err := pc.c.Get(ctx, []byte(k))
			if err != nil || !bytes.Equal(kv.Value, v) {
				t.Fatalf("after killing the %s: %s reads %d bytes, %v", victim, k, len(kv.Value), err)
			}
		}
	}
}
