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
)

// TestClusterFailover runs three real `opencluster start` processes on
// their own loopback addresses, writes keys, holds a named lock and a
// restrictive lock with provisional writes, kills -9 the node that serves
// (the primary), and checks that within 5 s writes succeed again, every
// key reads back, the named lock releases with its code, and the
// restrictive lock commits with its code, its writes appearing together.
func TestClusterFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("starts server processes")
	}
	base := t.TempDir()
	type node struct{ addr, gossip, dir string }
	var nodes []node
	for i := range 3 {
		host := fmt.Sprintf("127.0.0.%d", 31+i)
		nodes = append(nodes, node{addr: freeAddrOn(t, host), gossip: freeAddrOn(t, host), dir: filepath.Join(base, fmt.Sprint("n", i+1))})
	}
	procs := make([]*serverProcess, 3)
	for i, n := range nodes {
		extra := []string{"--gossip-addr", n.gossip, "--fast-failure-detection"}
		if i > 0 {
			extra = append(extra, "--join", nodes[0].gossip)
		}
		procs[i] = startProcess(t, n.dir, n.addr, extra...)
	}
	var endpoints []string
	for _, n := range nodes {
		endpoints = append(endpoints, n.addr)
	}
	c, err := client.New(context.Background(), endpoints, client.WithRetry(20, 50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	waitUntil(t, 30*time.Second, func() bool {
		st, err := c.Status(ctx)
		// The meta group (the timestamp oracle) must survive the kill too.
		if err != nil || len(st.Members) != 3 || len(st.GetMeta().GetReplicas()) != 3 {
			return false
		}
		for _, b := range st.Buckets {
			if len(b.Replicas) != 3 {
				return false
			}
		}
		return true
	})
	// status names each member's gRPC and gossip addresses.
	gossipOf := map[string]string{}
	for _, n := range nodes {
		gossipOf[n.addr] = n.gossip
	}
	waitUntil(t, 10*time.Second, func() bool {
		st, err := c.Status(ctx)
		if err != nil {
			return false
		}
		for _, m := range st.Members {
			if !m.Alive || gossipOf[m.Addr] == "" || m.GossipAddr != gossipOf[m.Addr] {
				return false
			}
		}
		return true
	})
	for i := range 30 {
		if _, err := c.Put(ctx, []byte(fmt.Sprint("key/", i)), []byte(fmt.Sprint("value-", i))); err != nil {
			t.Fatal(err)
		}
	}
	lock, err := c.Lock(ctx, "failover-lock", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	tx, err := c.Restrict(ctx, "failover-tx", client.Write([]byte("acct/a")), client.Write([]byte("acct/b")), client.TTL(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"acct/a", "acct/b"} {
		if err := tx.Put(ctx, []byte(k), []byte("moved")); err != nil {
			t.Fatal(err)
		}
	}

	st, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	primary := -1
	for _, m := range st.Members {
		if m.Id == st.NodeId {
			for i, n := range nodes {
				if n.addr == m.Addr {
					primary = i
				}
			}
		}
	}
	if primary < 0 {
		t.Fatalf("no member is the answering node %s: %v", st.NodeId, st.Members)
	}
	killed := time.Now()
	procs[primary].kill(t)
	waitUntil(t, 5*time.Second, func() bool {
		short, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		_, err := c.Put(short, []byte("after-kill"), []byte("x"))
		return err == nil
	})
	t.Logf("first write %s after kill -9 of the primary", time.Since(killed).Round(time.Millisecond))

	for i := range 30 {
		kv, err := c.Get(ctx, []byte(fmt.Sprint("key/", i)))
		if err != nil || string(kv.Value) != fmt.Sprint("value-", i) {
			t.Errorf("key/%d after failover: %q, %v", i, kv.Value, err)
		}
	}
	if err := c.Release(ctx, "failover-lock", lock.Code()); err != nil {
		t.Errorf("release the named lock with its code after failover: %v", err)
	}
	version, err := c.Commit(ctx, "failover-tx", tx.Code())
	if err != nil {
		t.Fatalf("commit the restrictive lock after failover: %v", err)
	}
	for _, k := range []string{"acct/a", "acct/b"} {
		kv, err := c.Get(ctx, []byte(k))
		if err != nil || string(kv.Value) != "moved" || kv.Version != version {
			t.Errorf("%s after commit at %d: %q@%d, %v", k, version, kv.Value, kv.Version, err)
		}
	}

	// The killed node restarts with its data and serves again (through
	// forwarding, or as primary).
	procs[primary] = startProcess(t, nodes[primary].dir, nodes[primary].addr, "--gossip-addr", nodes[primary].gossip,
		"--fast-failure-detection", "--join", nodes[(primary+1)%3].gossip)
	back, err := client.New(ctx, []string{nodes[primary].addr}, client.WithRetry(20, 50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer back.Close()
	if kv, err := back.Get(ctx, []byte("after-kill")); err != nil || string(kv.Value) != "x" {
		t.Errorf("restarted node: after-kill = %q, %v", kv.Value, err)
	}
}

// TestJoinWithBigBucket has new nodes catch up on a bucket far larger
// than a gRPC message (5 MiB against the 4 MiB limit): the snapshot must
// stream in chunks. Then the first node dies and the newcomers serve it.
func TestJoinWithBigBucket(t *testing.T) {
	if testing.Short() {
		t.Skip("starts server processes")
	}
	base := t.TempDir()
	var addrs, gossips []string
	for i := range 3 {
		host := fmt.Sprintf("127.0.0.%d", 41+i)
		addrs, gossips = append(addrs, freeAddrOn(t, host)), append(gossips, freeAddrOn(t, host))
	}
	first := startProcess(t, filepath.Join(base, "n1"), addrs[0], "--gossip-addr", gossips[0], "--fast-failure-detection", "--buckets", "1")
	c, err := client.New(context.Background(), addrs, client.WithRetry(20, 50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	value := make([]byte, 1<<20)
	for i := range 5 {
		value[0] = byte(i)
		if _, err := c.Put(ctx, []byte(fmt.Sprint("big/", i)), value); err != nil {
			t.Fatal(err)
		}
	}
	for i := 1; i < 3; i++ {
		startProcess(t, filepath.Join(base, fmt.Sprint("n", i+1)), addrs[i], "--gossip-addr", gossips[i], "--fast-failure-detection", "--join", gossips[0])
	}
	waitUntil(t, 60*time.Second, func() bool {
		st, err := c.Status(ctx)
		return err == nil && len(st.Buckets) == 1 && len(st.Buckets[0].Replicas) == 3 && len(st.GetMeta().GetReplicas()) == 3
	})
	first.kill(t)
	for i := range 5 {
		kv, err := c.Get(ctx, []byte(fmt.Sprint("big/", i)))
		if err != nil || len(kv.Value) != 1<<20 || kv.Value[0] != byte(i) {
			t.Fatalf("big/%d from the joined nodes: %d bytes, %v", i, len(kv.Value), err)
		}
	}
}

// TestBucketMoveCommand runs four real nodes (three replicas per bucket)
// and moves a replica of bucket 0 to the fourth node with the CLI; status
// then shows it there, and a key of that bucket still reads back.
func TestBucketMoveCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("starts server processes")
	}
	base := t.TempDir()
	var addrs, gossips []string
	for i := range 4 {
		host := fmt.Sprintf("127.0.0.%d", 51+i)
		addrs, gossips = append(addrs, freeAddrOn(t, host)), append(gossips, freeAddrOn(t, host))
	}
	for i := range 4 {
		// Without the rebalancer, placement stays where growth put it (the
		// first three nodes), so the moved replica stays moved.
		extra := []string{"--gossip-addr", gossips[i], "--fast-failure-detection", "--rebalance=false"}
		if i > 0 {
			extra = append(extra, "--join", gossips[0])
		}
		startProcess(t, filepath.Join(base, fmt.Sprint("n", i+1)), addrs[i], extra...)
	}
	c, err := client.New(context.Background(), addrs, client.WithRetry(20, 50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var fourth, leader string
	waitUntil(t, 30*time.Second, func() bool {
		st, err := c.Status(ctx)
		if err != nil || len(st.Members) != 4 || st.Buckets[0].Leader == "" || len(st.Buckets[0].Replicas) != 3 {
			return false
		}
		for _, m := range st.Members {
			if m.Addr == addrs[3] {
				fourth = m.Id
			}
		}
		leader = st.Buckets[0].Leader
		return fourth != "" && !slices.Contains(st.Buckets[0].Replicas, fourth)
	})
	var key []byte
	for i := 0; key == nil; i++ {
		if k := []byte(fmt.Sprint("b0/", i)); bucket.Of(k, 8) == 0 {
			key = k
		}
	}
	if _, err := c.Put(ctx, key, []byte("v")); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	code := run(ctx, []string{"--endpoints", strings.Join(addrs, ","), "-o", "json", "bucket", "move", "0", "--from", leader, "--to", fourth},
		strings.NewReader(""), &stdout, &stderr, func(string) string { return "" })
	r := result{stdout: stdout.String(), stderr: stderr.String(), code: code}
	if obj := r.ok(t).obj(t); num(t, obj, "epoch") == 0 || obj["to"] != fourth {
		t.Fatalf("bucket move answered %v", obj)
	}
	waitUntil(t, 10*time.Second, func() bool {
		st, err := c.Status(ctx)
		return err == nil && slices.Contains(st.Buckets[0].Replicas, fourth) && !slices.Contains(st.Buckets[0].Replicas, leader)
	})
	if kv, err := c.Get(ctx, key); err != nil || string(kv.Value) != "v" {
		t.Fatalf("%s after the move: %q, %v", key, kv.Value, err)
	}
}
