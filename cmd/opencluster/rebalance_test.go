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
func TestRebalanceGrowAndDrain(t *testing.T) {
	if testing.Short() {
		t.Skip("starts server processes")
	}
	base := t.TempDir()
	var addrs, gossips []string
	for i := range 5 {
		host := fmt.Sprintf("127.0.0.%d", 71+i)
		addrs, gossips = append(addrs, freeAddrOn(t, host)), append(gossips, freeAddrOn(t, host))
	}
	procs := make([]*serverProcess, 5)
	start := func(i int) {
		extra := []string{"--gossip-addr", gossips[i], "--fast-failure-detection"}
		if i > 0 {
			extra = append(extra, "--join", gossips[0])
		}
		procs[i] = startProcess(t, filepath.Join(base, fmt.Sprint("n", i+1)), addrs[i], extra...)
	}
	for i := range 3 {
		start(i)
	}
	c, err := client.New(context.Background(), addrs, client.WithRetry(40, 50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	// status returns the cluster's status and each member's replica and
	// leader counts, by address.
	var last *ocpb.StatusResponse
	defer func() {
		if t.Failed() && last != nil {
			var b bytes.Buffer
			writeStatus(&b, last)
			t.Logf("last status:\n%s", b.String())
		}
	}()
	balanced := func(members int) bool {
		st, err := c.Status(ctx)
		if err != nil {
			return false
		}
		last = st
		replicas, leaders := holdings(st)
		live := 0
		for _, m := range st.Members {
			if m.State == "active" {
				live++
			}
		}
		if live != members || len(st.Moves) > 0 {
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
	waitUntil(t, 60*time.Second, func() bool { return balanced(3) })

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

	start(3)
	start(4)
	waitUntil(t, 90*time.Second, func() bool { return balanced(5) })
	check("after growing to five nodes")

	// Drain the first node (it leads the meta group, most likely) from
	// the CLI, then remove it.
	drained := last.Members[0].Id
	var stdout, stderr bytes.Buffer
	code := run(ctx, []string{"--endpoints", strings.Join(addrs[1:], ","), "-o", "json", "node", "drain", drained, "--wait", "90s"},
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
		code = run(ctx, []string{"--endpoints", strings.Join(addrs[1:], ","), "node", "remove", drained},
			strings.NewReader(""), &stdout, &stderr, func(string) string { return "" })
		return code == 0 // refused while the meta group still has a voter there
	})
	procs[0].kill(t)
	waitUntil(t, 60*time.Second, func() bool { return balanced(4) })
	for _, b := range last.Buckets {
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
