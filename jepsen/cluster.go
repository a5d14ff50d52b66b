package jepsen

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/opencluster/opencluster/internal/freeport"
	"github.com/opencluster/opencluster/rpc/client"
	"github.com/opencluster/opencluster/rpc/ocpb"
)

// Cluster is the set of server nodes a nemesis acts on, numbered 1..N.
// Every method is safe for concurrent use, blocks until done or until ctx
// ends, and is idempotent: killing a dead node, starting a running one,
// pausing a paused or dead one and resuming a running one do nothing.
type Cluster interface {
	// Nodes returns the node numbers, ascending.
	Nodes() []int
	// Kill stops node n at once (SIGKILL), without any chance to flush,
	// and reaps it.
	Kill(ctx context.Context, n int) error
	// Start starts node n on its data directory and waits until it
	// serves.
	Start(ctx context.Context, n int) error
	// Pause freezes node n (SIGSTOP): its sockets stay open, nothing
	// answers.
	Pause(ctx context.Context, n int) error
	// Resume thaws a paused node n (SIGCONT).
	Resume(ctx context.Context, n int) error
}

// NodeIP returns node n's loopback address, 127.0.0.(10+n), so that
// packet filters can later tell nodes apart.
func NodeIP(n int) string { return "127.0.0." + strconv.Itoa(10+n) }

// ProcessConfig configures a ProcessCluster.
type ProcessConfig struct {
	// Binary is the opencluster binary, run as `Binary start …`.
	Binary string
	// Env is added to the environment of every node (tests use it to make
	// a re-executed test binary run main).
	Env []string
	// Nodes is the node count (node n listens on NodeIP(n):Port).
	Nodes int
	// Dir holds node n's data in Dir/data/n<n> and its log (stdout and
	// stderr, appended across restarts) in Dir/n<n>.log.
	Dir string
	// Port is the gRPC port on every node's address; 0 picks one that is
	// free on all of them.
	Port int
	// Buckets is the bucket count of the new cluster.
	Buckets int
	// TestAdmin starts the nodes with --test-admin.
	TestAdmin bool
	// ReadyTimeout bounds how long Start waits for a node to serve.
	ReadyTimeout time.Duration
	// Logger receives process events.
	Logger *slog.Logger
	// OnUnexpectedExit, if set, is called (from the node's reaper
	// goroutine) when a node exits without Kill or Close asking it to: a
	// crash, or a signal from outside the harness.
	OnUnexpectedExit func(n int, state string)
}

// ProcessCluster runs each node as a child process of the harness.
//
// Lifetimes: every child has one reaper goroutine (it waits for the
// process and closes its log), counted in reapers; Close kills every
// child and waits for all reapers.
type ProcessCluster struct {
	cfg     ProcessConfig
	nodes   []*procNode // nodes[n-1] is node n
	reapers sync.WaitGroup

	closeOnce sync.Once
}

// procNode is one node's process state.
type procNode struct {
	n       int
	addr    string
	dataDir string
	logPath string
	// ctl serialises control operations (start, kill, pause, resume, close)
	// on the node and is held across them, waits included. It guards proc
	// and paused.
	ctl sync.Mutex
	// proc is the running process, nil while the node is down.
	proc *childProcess
	// paused reports that proc was sent SIGSTOP and not SIGCONT.
	// Invariant: paused implies proc != nil.
	paused bool
}

// childProcess is one execution of a node.
type childProcess struct {
	cmd *exec.Cmd
	// killed is set before the harness sends SIGKILL, so the reaper can
	// tell an exit it caused from a crash.
	killed atomic.Bool
	// done is closed by the reaper once cmd.Wait returned; err is its
	// result, readable after done.
	done chan struct{}
	err  error
}

var _ Cluster = (*ProcessCluster)(nil)

// NewProcessCluster prepares the nodes' directories and address; it
// starts nothing (StartAll does).
func NewProcessCluster(cfg ProcessConfig) (*ProcessCluster, error) {
	if cfg.Binary == "" {
		return nil, fmt.Errorf("%w: ProcessConfig.Binary is empty", ErrInvalidConfig)
	}
	if cfg.Nodes < 1 {
		return nil, fmt.Errorf("%w: ProcessConfig.Nodes %d < 1", ErrInvalidConfig, cfg.Nodes)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Port == 0 {
		port, err := freePort(cfg.Nodes)
		if err != nil {
			return nil, err
		}
		cfg.Port = port
	}
	c := &ProcessCluster{cfg: cfg}
	for n := 1; n <= cfg.Nodes; n++ {
		pn := &procNode{
			n:       n,
			addr:    net.JoinHostPort(NodeIP(n), strconv.Itoa(cfg.Port)),
			dataDir: filepath.Join(cfg.Dir, "data", "n"+strconv.Itoa(n)),
			logPath: filepath.Join(cfg.Dir, "n"+strconv.Itoa(n)+".log"),
		}
		if err := os.MkdirAll(pn.dataDir, 0o755); err != nil {
			return nil, fmt.Errorf("jepsen: node %d data dir: %w", n, err)
		}
		c.nodes = append(c.nodes, pn)
	}
	return c, nil
}

// freePort finds a port free on the addresses of nodes 1..count, with the
// next one (gossip, TCP and UDP) free too, outside the ephemeral range
// (package freeport): a killed node restarts on them, and a client's
// outgoing connection from node 1's address must not have taken one
// meanwhile.
func freePort(count int) (int, error) {
	hosts := make([]string, count)
	for i := range hosts {
		hosts[i] = NodeIP(i + 1)
	}
	port, err := freeport.PickSpan(2, hosts...)
	if err != nil {
		return 0, fmt.Errorf("jepsen: %w", err)
	}
	return port, nil
}

// Nodes returns 1..N.
func (c *ProcessCluster) Nodes() []int {
	out := make([]int, len(c.nodes))
	for i := range out {
		out[i] = i + 1
	}
	return out
}

// Endpoints returns the nodes' gRPC addresses, node 1 first.
func (c *ProcessCluster) Endpoints() []string {
	out := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		out[i] = n.addr
	}
	return out
}

func (c *ProcessCluster) node(n int) (*procNode, error) {
	if n < 1 || n > len(c.nodes) {
		return nil, fmt.Errorf("%w: no node %d", ErrInvalidConfig, n)
	}
	return c.nodes[n-1], nil
}

// args returns node n's command line. Nodes after the first join the
// first through gossip: the flags `start` gains with replication; a
// binary without them fails to start, and its log says why.
func (c *ProcessCluster) args(pn *procNode) []string {
	args := []string{"start", "--data-dir", pn.dataDir, "--addr", pn.addr, "--http-addr", "",
		"--buckets", strconv.Itoa(c.cfg.Buckets), "--log-level", "warn"}
	if c.cfg.TestAdmin {
		args = append(args, "--test-admin")
	}
	if c.cfg.Nodes > 1 {
		gossip := func(n int) string { return net.JoinHostPort(NodeIP(n), strconv.Itoa(c.cfg.Port+1)) }
		// Loopback nodes can afford second-scale failure detection.
		args = append(args, "--gossip-addr", gossip(pn.n), "--fast-failure-detection")
		if pn.n > 1 {
			args = append(args, "--join", gossip(1))
		}
	}
	return args
}

// StartAll starts every node and waits until each serves.
func (c *ProcessCluster) StartAll(ctx context.Context) error {
	for _, n := range c.Nodes() {
		if err := c.Start(ctx, n); err != nil {
			return err
		}
	}
	return nil
}

// Start starts node n unless it runs, and waits until it serves; a node
// that exits or does not serve within ReadyTimeout is killed, and the
// error quotes its log.
func (c *ProcessCluster) Start(ctx context.Context, n int) error {
	pn, err := c.node(n)
	if err != nil {
		return err
	}
	pn.ctl.Lock()
	defer pn.ctl.Unlock()
	if pn.proc != nil && !pn.proc.exited() {
		return nil
	}
	pn.proc, pn.paused = nil, false
	proc, err := c.spawn(pn)
	if err != nil {
		return err
	}
	pn.proc = proc
	if err := c.waitReady(ctx, pn, proc); err != nil {
		c.killLocked(pn)
		return fmt.Errorf("%w: node %d: %w\n%s", ErrNodeDown, n, err, logTail(pn.logPath))
	}
	c.cfg.Logger.Info("jepsen: node serving", "node", n, "addr", pn.addr, "pid", proc.cmd.Process.Pid)
	return nil
}

// spawn starts node pn's process with its reaper.
func (c *ProcessCluster) spawn(pn *procNode) (*childProcess, error) {
	logFile, err := os.OpenFile(pn.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("jepsen: node %d log: %w", pn.n, err)
	}
	_, _ = fmt.Fprintf(logFile, "--- jepsen: starting node %d at %s\n", pn.n, time.Now().UTC().Format(time.RFC3339Nano))
	// Not CommandContext: the process lives until Kill or Close, whatever
	// context started it.
	cmd := exec.Command(c.cfg.Binary, c.args(pn)...)
	cmd.Env = append(os.Environ(), c.cfg.Env...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = childProcAttr()
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		return nil, fmt.Errorf("jepsen: start node %d: %w", pn.n, err)
	}
	proc := &childProcess{cmd: cmd, done: make(chan struct{})}
	c.reapers.Go(func() {
		proc.err = cmd.Wait()
		state := cmd.ProcessState.String()
		unexpected := !proc.killed.Load()
		how := "exited"
		if unexpected {
			how = "exited UNEXPECTEDLY"
		}
		_, _ = fmt.Fprintf(logFile, "--- jepsen: node %d %s at %s: %s\n", pn.n, how,
			time.Now().UTC().Format(time.RFC3339Nano), state)
		_ = logFile.Close()
		close(proc.done)
		if unexpected && c.cfg.OnUnexpectedExit != nil {
			c.cfg.OnUnexpectedExit(pn.n, state)
		}
	})
	return proc, nil
}

// waitReady polls Status until the node answers with a leader for every
// bucket, the process exits, ReadyTimeout passes or ctx ends.
func (c *ProcessCluster) waitReady(ctx context.Context, pn *procNode, proc *childProcess) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.ReadyTimeout)
	defer cancel()
	cl, err := client.New(ctx, []string{pn.addr}, client.WithRetry(1, 10*time.Millisecond))
	if err != nil {
		return err
	}
	defer cl.Close()
	for {
		sctx, scancel := context.WithTimeout(ctx, time.Second)
		st, err := cl.Status(sctx)
		scancel()
		if err == nil && allBucketsLed(st.GetBuckets()) {
			return nil
		}
		select {
		case <-proc.done:
			return fmt.Errorf("exited before serving: %w", proc.exitErr())
		case <-ctx.Done():
			if err == nil {
				err = errors.New("some buckets have no leader")
			}
			return fmt.Errorf("not serving after %s: %w", c.cfg.ReadyTimeout, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// exited reports whether the process has been reaped.
func (p *childProcess) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// exitErr returns why a finished process ended (a nil Wait error means
// exit status 0, which for a server is still unexpected).
func (p *childProcess) exitErr() error {
	if p.err != nil {
		return p.err
	}
	return errors.New("exit status 0")
}

// Kill sends SIGKILL to node n and waits until it is reaped.
func (c *ProcessCluster) Kill(ctx context.Context, n int) error {
	pn, err := c.node(n)
	if err != nil {
		return err
	}
	pn.ctl.Lock()
	defer pn.ctl.Unlock()
	proc := pn.proc
	if proc == nil {
		return nil
	}
	proc.killed.Store(true)
	_ = proc.cmd.Process.Signal(syscall.SIGKILL) // fails only if already reaped
	pn.proc, pn.paused = nil, false
	select {
	case <-proc.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("jepsen: node %d not reaped after SIGKILL: %w", n, ctx.Err())
	}
}

// killLocked kills pn's process without waiting (Close waits for the
// reaper). pn.ctl must be held.
func (c *ProcessCluster) killLocked(pn *procNode) {
	if pn.proc != nil {
		pn.proc.killed.Store(true)
		_ = pn.proc.cmd.Process.Signal(syscall.SIGKILL)
		pn.proc, pn.paused = nil, false
	}
}

// Pause sends SIGSTOP to node n and waits until it has stopped.
func (c *ProcessCluster) Pause(ctx context.Context, n int) error {
	return c.signal(ctx, n, syscall.SIGSTOP, true)
}

// Resume sends SIGCONT to a paused node n.
func (c *ProcessCluster) Resume(ctx context.Context, n int) error {
	return c.signal(ctx, n, syscall.SIGCONT, false)
}

func (c *ProcessCluster) signal(ctx context.Context, n int, sig syscall.Signal, pause bool) error {
	pn, err := c.node(n)
	if err != nil {
		return err
	}
	pn.ctl.Lock()
	defer pn.ctl.Unlock()
	if pn.proc == nil || pn.paused == pause {
		return nil
	}
	if err := pn.proc.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("jepsen: node %d: %s: %w", n, sig, err)
	}
	pn.paused = pause
	if pause {
		return waitStopped(ctx, pn.proc.cmd.Process.Pid)
	}
	return nil
}

// Heal resumes every paused node and starts every dead one (also one
// that exited by itself).
func (c *ProcessCluster) Heal(ctx context.Context) error {
	var errs []error
	for _, n := range c.Nodes() {
		errs = append(errs, c.Resume(ctx, n), c.Start(ctx, n))
	}
	return errors.Join(errs...)
}

// Close kills every node and waits for every reaper. It returns an error
// if a process does not die within 10s of SIGKILL (then its reaper is
// left behind).
func (c *ProcessCluster) Close() error {
	var err error
	c.closeOnce.Do(func() {
		for _, pn := range c.nodes {
			pn.ctl.Lock()
			c.killLocked(pn)
			pn.ctl.Unlock()
		}
		reaped := make(chan struct{})
		go func() {
			c.reapers.Wait()
			close(reaped)
		}()
		select {
		case <-reaped:
		case <-time.After(10 * time.Second):
			err = fmt.Errorf("%w: a node survived SIGKILL for 10s", ErrNodeDown)
		}
	})
	return err
}

// logTail returns the end of a node's log, for error messages.
func logTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	const tail = 2048
	if len(b) > tail {
		b = b[len(b)-tail:]
	}
	return string(b)
}

// allBucketsLed reports whether every bucket the node lists has a
// leader.
func allBucketsLed(buckets []*ocpb.BucketStatus) bool {
	for _, b := range buckets {
		if b.GetLeader() == "" {
			return false
		}
	}
	return true
}
