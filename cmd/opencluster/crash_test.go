package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/opencluster/opencluster/rpc/client"
)

// execMainEnv, when set, makes the test binary run main (see TestMain).
const execMainEnv = "OPENCLUSTER_TEST_EXEC_MAIN"

// serverProcess is `opencluster start` running as a child process.
type serverProcess struct {
	cmd    *exec.Cmd
	stderr *bytes.Buffer
	done   chan error
}

// startProcess runs `opencluster start` on dir and addr and waits until it
// answers Status.
func startProcess(t *testing.T, dir, addr string, extra ...string) *serverProcess {
	t.Helper()
	args := append([]string{"start", "--data-dir", dir, "--addr", addr,
		"--http-addr", "", "--buckets", "8", "--log-level", "warn"}, extra...)
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), execMainEnv+"=1")
	p := &serverProcess{cmd: cmd, stderr: new(bytes.Buffer), done: make(chan error, 1)}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start server: %v", err)
	}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() { p.kill(t) })

	c := newTestClient(t, addr)
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := c.Status(ctx)
		cancel()
		if err == nil {
			return p
		}
		select {
		case err := <-p.done:
			t.Fatalf("server exited before serving: %v\n%s", err, p.stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("server not serving after 30s: %v\n%s", err, p.stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill sends SIGKILL and reaps the process; killing a dead one is a no-op.
func (p *serverProcess) kill(t *testing.T) {
	if p.cmd.ProcessState != nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-p.done:
		p.done <- nil // later kills return at once
	case <-time.After(10 * time.Second):
		t.Errorf("server did not die after SIGKILL")
	}
}

func newTestClient(t *testing.T, addr string) *client.Client {
	t.Helper()
	c, err := client.New(context.Background(), []string{addr}, client.WithRetry(1, 10*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func freeAddr(t *testing.T) string { return freeAddrOn(t, "127.0.0.1") }

// freeAddrOn returns host:port with a port free for TCP on host.
func freeAddrOn(t *testing.T, host string) string {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

// crashLoad is what the clients were told before the crash.
type crashLoad struct {
	mu      sync.Mutex
	puts    map[string]string // acknowledged key → value; each key written once
	tried   map[string]string // every attempted key → value
	locks   map[string]heldLock
	commits map[string]uint64 // acknowledged transaction → commit version
	pending []pendingTxn      // restrictive locks granted with acknowledged writes, not committed
	racing  *pendingTxn       // a transaction whose commit the kill interrupted
}

type heldLock struct {
	code  string
	fence uint64
}

type pendingTxn struct {
	name, code string
	writes     map[string]string
}

// TestCrashRecovery kills the server with SIGKILL in the middle of a load
// of puts, lock grants and transactions, restarts it on the same data
// directory, and checks that everything acknowledged survived: every put
// reads back its value, every granted lock is held by its code with its
// fence, every committed transaction's writes are visible at its commit
// version, and every open transaction keeps its provisional writes and
// commits. Nothing unacknowledged may be half there: a transaction's
// writes are all visible or none.
func TestCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("starts server processes")
	}
	dir, addr := t.TempDir(), freeAddr(t)
	srv := startProcess(t, dir, addr)
	c := newTestClient(t, addr)

	load := &crashLoad{
		puts: map[string]string{}, tried: map[string]string{},
		locks: map[string]heldLock{}, commits: map[string]uint64{},
	}
	ctx, stopLoad := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() { putLoad(ctx, c, load, w) })
	}
	wg.Go(func() { lockLoad(ctx, c, load) })
	wg.Go(func() { txnLoad(ctx, c, load) })

	// Kill once every kind of operation has been acknowledged a few times,
	// while the load is still running.
	waitUntil(t, 30*time.Second, func() bool {
		load.mu.Lock()
		defer load.mu.Unlock()
		return len(load.puts) >= 200 && len(load.locks) >= 5 && len(load.commits) >= 5 && len(load.pending) >= 2
	})
	srv.kill(t)
	stopLoad()
	wg.Wait()

	startProcess(t, dir, addr)
	c2 := newTestClient(t, addr)
	vctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	checkStatusCommand(t, addr, 8)

	load.mu.Lock()
	defer load.mu.Unlock()
	t.Logf("acknowledged before the kill: %d puts, %d locks, %d commits, %d open transactions",
		len(load.puts), len(load.locks), len(load.commits), len(load.pending))
	for k, want := range load.puts {
		kv, err := c2.Get(vctx, []byte(k))
		if err != nil || string(kv.Value) != want {
			t.Errorf("acknowledged put %s=%s: after restart got %q, %v", k, want, kv.Value, err)
		}
	}
	for k, want := range load.tried {
		if _, acked := load.puts[k]; acked {
			continue
		}
		kv, err := c2.Get(vctx, []byte(k))
		if err == nil && string(kv.Value) != want {
			t.Errorf("unacknowledged put %s=%s: after restart reads %q", k, want, kv.Value)
		} else if err != nil && !errors.Is(err, client.ErrNotFound) {
			t.Errorf("unacknowledged put %s: %v", k, err)
		}
	}
	for name, l := range load.locks {
		infos, err := c2.Describe(vctx, name)
		if err != nil || len(infos) != 1 || !infos[0].Held || infos[0].Fence != l.fence {
			t.Errorf("lock %s (fence %d) after restart: %+v, %v", name, l.fence, infos, err)
			continue
		}
		if err := c2.Release(vctx, name, l.code); err != nil {
			t.Errorf("release %s with its code after restart: %v", name, err)
		}
		again, err := c2.Lock(vctx, name, time.Minute, client.WithLockWait(0))
		if err != nil {
			t.Errorf("reacquire %s: %v", name, err)
			continue
		}
		if again.Fence() <= l.fence {
			t.Errorf("lock %s: fence %d after restart, not above %d", name, again.Fence(), l.fence)
		}
		_ = again.Unlock(vctx)
	}
	for name, version := range load.commits {
		for i := range 2 {
			k := fmt.Sprintf("%s/%d", name, i)
			kv, err := c2.Get(vctx, []byte(k))
			if err != nil || kv.Version != version {
				t.Errorf("committed %s (version %d): %s reads version %d, %v", name, version, k, kv.Version, err)
			}
		}
	}
	if p := load.racing; p != nil {
		// The commit may or may not have happened; either way it is all or
		// nothing. Abort settles an undecided one.
		abortErr := c2.Abort(vctx, p.name, p.code)
		var versions []uint64
		for k, want := range p.writes {
			kv, err := c2.Get(vctx, []byte(k))
			switch {
			case errors.Is(err, client.ErrNotFound):
			case err != nil || string(kv.Value) != want:
				t.Errorf("interrupted commit %s: %s reads %q, %v", p.name, k, kv.Value, err)
			default:
				versions = append(versions, kv.Version)
			}
		}
		switch {
		case len(versions) == 0:
		case len(versions) == len(p.writes) && versions[0] == versions[1]:
			if abortErr == nil {
				t.Errorf("interrupted commit %s: writes visible yet Abort succeeded", p.name)
			}
		default:
			t.Errorf("interrupted commit %s: partly visible, versions %v of %d writes", p.name, versions, len(p.writes))
		}
	}
	for _, p := range load.pending {
		for k := range p.writes {
			if _, err := c2.Get(vctx, []byte(k), client.WithReadWait(0)); err == nil {
				t.Errorf("open transaction %s: its write to %s is visible before commit", p.name, k)
			}
		}
		version, err := c2.Commit(vctx, p.name, p.code)
		if err != nil {
			t.Errorf("commit open transaction %s after restart: %v", p.name, err)
			continue
		}
		for k, want := range p.writes {
			kv, err := c2.Get(vctx, []byte(k))
			if err != nil || string(kv.Value) != want || kv.Version != version {
				t.Errorf("transaction %s committed at %d after restart: %s reads %q@%d, %v", p.name, version, k, kv.Value, kv.Version, err)
			}
		}
	}
}

func putLoad(ctx context.Context, c *client.Client, load *crashLoad, worker int) {
	for i := 0; ctx.Err() == nil; i++ {
		k, v := fmt.Sprintf("put/%d/%d", worker, i), fmt.Sprintf("value-%d-%d", worker, i)
		load.mu.Lock()
		load.tried[k] = v
		load.mu.Unlock()
		if _, err := c.Put(ctx, []byte(k), []byte(v)); err != nil {
			return
		}
		load.mu.Lock()
		load.puts[k] = v
		load.mu.Unlock()
	}
}

func lockLoad(ctx context.Context, c *client.Client, load *crashLoad) {
	for i := 0; ctx.Err() == nil; i++ {
		name := fmt.Sprintf("lock/%d", i)
		l, err := c.Lock(ctx, name, 10*time.Minute, client.WithLockWait(0))
		if err != nil {
			return
		}
		load.mu.Lock()
		load.locks[name] = heldLock{code: l.Code(), fence: l.Fence()}
		load.mu.Unlock()
	}
}

// txnLoad alternates committed transactions and open ones (granted, with
// acknowledged provisional writes, never committed). Each writes two keys
// in different buckets, most likely.
func txnLoad(ctx context.Context, c *client.Client, load *crashLoad) {
	for i := 0; ctx.Err() == nil; i++ {
		name := fmt.Sprintf("txn/%d", i)
		writes := map[string]string{}
		var specs []client.RestrictOption
		for j := range 2 {
			k := fmt.Sprintf("%s/%d", name, j)
			writes[k] = fmt.Sprintf("v%d", j)
			specs = append(specs, client.Write([]byte(k)))
		}
		tx, err := c.Restrict(ctx, name, append(specs, client.TTL(10*time.Minute), client.Wait(0))...)
		if err != nil {
			return
		}
		for k, v := range writes {
			if err := tx.Put(ctx, []byte(k), []byte(v)); err != nil {
				return
			}
		}
		if i%2 == 1 {
			// Left open for another client to commit after the restart:
			// the writes must be on the server, as provisional writes.
			if err := tx.Flush(ctx); err != nil {
				return
			}
			load.mu.Lock()
			load.pending = append(load.pending, pendingTxn{name: name, code: tx.Code(), writes: writes})
			load.mu.Unlock()
			continue
		}
		version, err := tx.Commit(ctx)
		if err != nil {
			load.mu.Lock()
			load.racing = &pendingTxn{name: name, code: tx.Code(), writes: writes}
			load.mu.Unlock()
			return
		}
		load.mu.Lock()
		load.commits[name] = version
		load.mu.Unlock()
	}
}

func waitUntil(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s", d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// checkStatusCommand runs `opencluster status -o json` against a real node
// and checks that it reports one live member and every bucket with a
// leader among its replicas.
func checkStatusCommand(t *testing.T, addr string, buckets int) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	code := run(ctx, []string{"--endpoints", addr, "-o", "json", "status"}, strings.NewReader(""), &stdout, &stderr,
		func(string) string { return "" })
	r := result{stdout: stdout.String(), stderr: stderr.String(), code: code}
	var st struct {
		Members []struct {
			ID    string `json:"id"`
			Addr  string `json:"addr"`
			Alive bool   `json:"alive"`
		} `json:"members"`
		Buckets []struct {
			Bucket   int      `json:"bucket"`
			Replicas []string `json:"replicas"`
			Leader   string   `json:"leader"`
			Applied  uint64   `json:"applied"`
		} `json:"buckets"`
	}
	if err := json.Unmarshal([]byte(r.ok(t).stdout), &st); err != nil {
		t.Fatalf("status -o json: %v in %q", err, r.stdout)
	}
	if len(st.Members) != 1 || !st.Members[0].Alive || st.Members[0].Addr != addr {
		t.Errorf("status members: %+v, want one live member at %s", st.Members, addr)
	}
	if len(st.Buckets) != buckets {
		t.Fatalf("status lists %d buckets, want %d", len(st.Buckets), buckets)
	}
	for i, b := range st.Buckets {
		if b.Bucket != i || len(b.Replicas) != 1 || b.Leader != b.Replicas[0] || b.Applied == 0 {
			t.Errorf("status bucket %d: %+v", i, b)
		}
	}
}
