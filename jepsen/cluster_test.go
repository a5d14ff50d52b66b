package jepsen

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opencluster/opencluster/rpc/client"
)

func newFakeCluster(t *testing.T, nodes int, mode string) *ProcessCluster {
	t.Helper()
	return newFakeClusterConfig(t, ProcessConfig{Nodes: nodes, Env: []string{fakeNodeEnv + "=" + mode}})
}

func newFakeClusterConfig(t *testing.T, cfg ProcessConfig) *ProcessCluster {
	t.Helper()
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Binary, cfg.Dir, cfg.Buckets, cfg.ReadyTimeout = bin, t.TempDir(), 1, 20*time.Second
	c, err := NewProcessCluster(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Children are reaped even when the test fails.
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Error(err)
		}
	})
	return c
}

// statusOf asks node n for its status with a short deadline.
func statusOf(t *testing.T, c *ProcessCluster, n int) error {
	t.Helper()
	cl, err := client.New(context.Background(), []string{c.Endpoints()[n-1]}, client.WithRetry(1, time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err = cl.Status(ctx)
	return err
}

func pidOf(c *ProcessCluster, n int) int {
	pn := c.nodes[n-1]
	pn.ctl.Lock()
	defer pn.ctl.Unlock()
	if pn.proc == nil {
		return 0
	}
	return pn.proc.cmd.Process.Pid
}

// reaped reports whether pid no longer exists (killed and waited for: a
// zombie would still answer signal 0).
func reaped(pid int) bool {
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

func TestProcessClusterControl(t *testing.T) {
	c := newFakeCluster(t, 2, "1")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.StartAll(ctx); err != nil {
		t.Fatal(err)
	}
	for _, n := range c.Nodes() {
		if err := statusOf(t, c, n); err != nil {
			t.Fatalf("node %d after start: %v", n, err)
		}
	}
	if got := c.Endpoints(); !strings.HasPrefix(got[0], "127.0.0.11:") || !strings.HasPrefix(got[1], "127.0.0.12:") {
		t.Errorf("endpoints %v: want nodes on 127.0.0.11 and .12", got)
	}

	// kill -9 and restart on the same data directory.
	pid := pidOf(c, 1)
	if err := c.Kill(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if !reaped(pid) {
		t.Errorf("node 1 (pid %d) not reaped after Kill", pid)
	}
	if err := statusOf(t, c, 1); err == nil {
		t.Error("killed node 1 still answers")
	}
	if err := c.Kill(ctx, 1); err != nil {
		t.Errorf("killing a dead node: %v", err)
	}
	if err := c.Start(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if err := statusOf(t, c, 1); err != nil {
		t.Errorf("restarted node 1: %v", err)
	}
	starts, err := os.ReadFile(filepath.Join(c.nodes[0].dataDir, "starts"))
	if err != nil || strings.Count(string(starts), "\n") != 2 {
		t.Errorf("node 1 started %q times (%v), want twice on one data dir", starts, err)
	}

	// SIGSTOP: the node stops answering; SIGCONT: it answers again.
	if err := c.Pause(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if err := statusOf(t, c, 2); err == nil {
		t.Error("paused node 2 answers")
	}
	if err := c.Resume(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if err := statusOf(t, c, 2); err != nil {
		t.Errorf("resumed node 2: %v", err)
	}

	// A paused node can be killed, and Heal brings everything back.
	if err := c.Pause(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if err := c.Kill(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if err := c.Pause(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if err := c.Heal(ctx); err != nil {
		t.Fatal(err)
	}
	for _, n := range c.Nodes() {
		if err := statusOf(t, c, n); err != nil {
			t.Errorf("node %d after Heal: %v", n, err)
		}
	}

	// Close kills and reaps everything, paused nodes too.
	if err := c.Pause(ctx, 1); err != nil {
		t.Fatal(err)
	}
	pids := []int{pidOf(c, 1), pidOf(c, 2)}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		if !reaped(pid) {
			t.Errorf("pid %d survived Close", pid)
		}
	}
}

func TestProcessClusterNodeThatCannotStart(t *testing.T) {
	c := newFakeCluster(t, 1, "exit")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := c.StartAll(ctx)
	if !errors.Is(err, ErrNodeDown) || !strings.Contains(err.Error(), "refusing to start") {
		t.Fatalf("StartAll: %v; want ErrNodeDown quoting the node's log", err)
	}
}

// A node that exits without the harness killing it (a crash, or a signal
// from outside) is reported, and Heal starts it again.
func TestProcessClusterUnexpectedExit(t *testing.T) {
	exits := make(chan string, 1)
	c := newFakeClusterConfig(t, ProcessConfig{Nodes: 1, Env: []string{fakeNodeEnv + "=1"},
		OnUnexpectedExit: func(n int, state string) { exits <- fmt.Sprintf("n%d %s", n, state) }})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.StartAll(ctx); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pidOf(c, 1), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-exits:
		if got != "n1 signal: terminated" {
			t.Errorf("unexpected exit reported as %q", got)
		}
	case <-ctx.Done():
		t.Fatal("unexpected exit not reported")
	}
	if err := c.Heal(ctx); err != nil {
		t.Fatal(err)
	}
	if err := statusOf(t, c, 1); err != nil {
		t.Errorf("node 1 after Heal: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-exits:
		t.Errorf("Close reported as unexpected: %s", got)
	default:
	}
	log, _ := os.ReadFile(c.nodes[0].logPath)
	if !strings.Contains(string(log), "exited UNEXPECTEDLY") {
		t.Errorf("node log does not record the unexpected exit:\n%s", log)
	}
}
