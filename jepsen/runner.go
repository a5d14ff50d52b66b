package jepsen

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

	"github.com/opencluster/opencluster/rpc/client"
)

// testCluster is what the runner needs from the nodes under test.
type testCluster interface {
	Cluster
	Endpoints() []string
	StartAll(ctx context.Context) error
	Heal(ctx context.Context) error
	Close() error
}

// runner is one run in progress. Its goroutines (workers, scheduler,
// progress) all end before Run returns.
type runner struct {
	cfg     Config
	dir     string
	rec     *Recorder
	wl      workload
	nemeses []Nemesis
	pacer   *pacer
	cluster testCluster
	// net cuts links for the partition nemesis (nil without it); Run
	// closes it.
	net Net

	phase atomic.Pointer[string]
	sched atomic.Pointer[Scheduler]

	mu struct {
		sync.Mutex
		// crashes lists nodes that exited without the harness killing
		// them.
		crashes []string
	}
}

// crashEvent is the value of a history entry for a node that exited by
// itself.
type crashEvent struct {
	Node  int    `json:"node"`
	State string `json:"state"`
}

// noteCrash records a node that exited without being killed: a server
// crash (or a signal from outside the harness). Either way the run
// cannot vouch for what it saw, so it ends as a harness error.
func (r *runner) noteCrash(n int, state string) {
	op := r.rec.Nemesis("crash", crashEvent{Node: n, State: state})
	r.mu.Lock()
	defer r.mu.Unlock()
	r.mu.crashes = append(r.mu.crashes, fmt.Sprintf("node %d exited unexpectedly at %s (%s; see n%d.log)",
		n, time.Duration(op.Time).Round(time.Millisecond), state, n))
}

// crashErr returns the unexpected exits as an error, or nil.
func (r *runner) crashErr() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.mu.crashes) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrNodeDown, strings.Join(r.mu.crashes, "; "))
}

// Run runs one test as cfg describes (see the package doc's Model) and
// returns its report. The run directory is written even when Run fails.
// An error means the harness could not do its job (the cluster did not
// start or heal, setup failed, ctx ended): the report is then partial
// and its verdict is not to be trusted.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Seed == 0 {
		cfg.Seed = uint64(time.Now().UnixNano())
	}
	pnet, netDesc, err := partitionNet(cfg)
	if err != nil {
		return nil, err
	}
	if pnet != nil {
		defer func() {
			if cerr := pnet.Close(); cerr != nil {
				cfg.Logger.Warn("jepsen: close the packet filter", "err", cerr)
			}
		}()
	}
	dir, err := makeRunDir(cfg)
	if err != nil {
		return nil, err
	}
	r := &runner{
		cfg:   cfg,
		dir:   dir,
		rec:   NewRecorder(),
		wl:    workloads[cfg.Workload].newWorkload(&cfg),
		pacer: newPacer(cfg.Rate),
		net:   pnet,
	}
	rep := r.newReport()
	rep.Net = netDesc
	err = r.run(ctx, rep)
	if cerr := r.crashErr(); cerr != nil {
		err = errors.Join(cerr, err)
	}
	rep.Elapsed = r.rec.Elapsed()
	if err != nil {
		rep.Error = err.Error()
	}
	if werr := r.writeArtefacts(rep); werr != nil && err == nil {
		err = werr
	}
	return rep, err
}

// partitionNet opens the packet filter when cfg asks for partitions:
// cfg.Net, or nftables in the private network namespace this process
// must run in (ErrNoNetNS, ErrNoPartitions otherwise). It also describes
// the network for the report.
func partitionNet(cfg Config) (Net, string, error) {
	if !slices.Contains(cfg.Nemeses, "partition") {
		return nil, "", nil
	}
	if cfg.Net != nil {
		return cfg.Net, "given packet filter", nil
	}
	if err := PreparePrivateNetNS(); err != nil {
		return nil, "", err
	}
	n, err := NewNFTNet()
	if err != nil {
		return nil, "", err
	}
	return n, "nftables in a private network namespace", nil
}

// makeRunDir creates OutDir/<UTC time>-<workload>-<nemeses>-s<seed>.
func makeRunDir(cfg Config) (string, error) {
	if err := os.MkdirAll(cfg.OutDir, 0o755); err != nil {
		return "", fmt.Errorf("jepsen: out dir: %w", err)
	}
	base := fmt.Sprintf("%s-%s-%s-s%d", time.Now().UTC().Format("20060102T150405Z"), cfg.Workload, nemesisLabel(cfg.Nemeses), cfg.Seed)
	for i := 1; ; i++ {
		dir := filepath.Join(cfg.OutDir, base)
		if i > 1 {
			dir += fmt.Sprintf("-%d", i)
		}
		err := os.Mkdir(dir, 0o755)
		if err == nil {
			return dir, nil
		}
		if !errors.Is(err, os.ErrExist) || i > 100 {
			return "", fmt.Errorf("jepsen: run dir: %w", err)
		}
	}
}

func nemesisLabel(names []string) string {
	if n := nonEmpty(names); len(n) > 0 {
		return strings.Join(n, "+")
	}
	return "none"
}

func (r *runner) setPhase(p string) { r.phase.Store(&p) }

func (r *runner) run(ctx context.Context, rep *Report) (err error) {
	r.setPhase("starting")
	stopProgress := r.startProgress()
	defer stopProgress()

	if len(r.cfg.Endpoints) > 0 {
		r.cluster = endpointCluster(r.cfg.Endpoints)
	} else {
		pc, err := NewProcessCluster(ProcessConfig{
			Binary: r.cfg.Binary, Env: r.cfg.Env, Nodes: r.cfg.Nodes, Dir: r.dir, Port: r.cfg.Port,
			Buckets: r.cfg.Buckets, TestAdmin: r.cfg.needsTestAdmin(), ReadyTimeout: r.cfg.ReadyTimeout, Logger: r.cfg.Logger,
			OnUnexpectedExit: r.noteCrash,
		})
		if err != nil {
			return err
		}
		r.cluster = pc
		rep.Endpoints = pc.Endpoints()
	}
	defer func() {
		if cerr := r.cluster.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	if err := r.cluster.StartAll(ctx); err != nil {
		return err
	}
	if r.cfg.PlantedBugs.Any() {
		if err := setPlantedBugs(ctx, r.cluster.Endpoints(), r.cfg.DialOptions, r.cfg.PlantedBugs); err != nil {
			return err
		}
	}
	r.nemeses, err = NewNemeses(r.cfg.Nemeses, NemesisOptions{
		Targets: r.cfg.NemesisTargets, PartitionShapes: r.cfg.PartitionShapes, Net: r.net,
		Endpoints: r.cluster.Endpoints(), Dial: r.cfg.DialOptions,
		leaders: statusLeaders(r.cluster.Endpoints(), r.cfg.DialOptions),
		primary: statusPrimary(r.cluster.Endpoints(), r.cfg.DialOptions),
	})
	if err != nil {
		return err
	}

	procs := make([]*process, r.cfg.Concurrency)
	defer func() {
		for _, p := range procs {
			if p != nil {
				_ = p.Client.Close()
			}
		}
	}()
	for w := range procs {
		if procs[w], err = r.newProcess(w); err != nil {
			return err
		}
	}

	r.setPhase("setup")
	sctx, cancel := context.WithTimeout(ctx, r.cfg.ReadyTimeout)
	err = r.wl.Setup(sctx, procs[0])
	cancel()
	if err != nil {
		return err
	}

	r.setPhase("running")
	if err := r.drive(ctx, procs); err != nil {
		return err
	}

	r.setPhase("healing")
	if r.net != nil {
		// The scheduler heals every partition it makes; this is a guard.
		if _, err := r.net.Heal(ctx); err != nil {
			return fmt.Errorf("jepsen: heal the network before final reads: %w", err)
		}
	}
	if err := r.cluster.Heal(ctx); err != nil {
		return fmt.Errorf("jepsen: heal before final reads: %w", err)
	}
	r.setPhase("final")
	final := procs[0]
	for _, p := range procs {
		final.ID = max(final.ID, p.ID+1)
	}
	r.reconnect(final)
	fctx, cancel := context.WithTimeout(ctx, r.cfg.ReadyTimeout)
	r.wl.Final(fctx, final)
	cancel()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("jepsen: run interrupted: %w", err)
	}

	r.setPhase("checking")
	rep.Results, err = CheckHistory(ctx, r.cfg.Workload, r.rec.Ops(), CheckOptions{
		MinOK: r.cfg.MinOK, CheckTimeout: r.cfg.CheckTimeout, ClockDrift: r.cfg.ClockDrift, Dir: r.dir,
		ElectionTimeout: r.cfg.ElectionTimeout,
	})
	if err != nil {
		return err
	}
	verdicts := make([]Verdict, len(rep.Results))
	for i, res := range rep.Results {
		verdicts[i] = res.Verdict
	}
	rep.Verdict = Combine(verdicts...)
	return nil
}

// drive runs the workers and the nemesis scheduler for TimeLimit and
// waits for them. Workers stop taking new operations at the limit but
// finish the one in flight (ctx, not the limit, bounds it).
func (r *runner) drive(ctx context.Context, procs []*process) error {
	limitCtx, stop := context.WithTimeout(ctx, r.cfg.TimeLimit)
	defer stop()
	sched := NewScheduler(SchedulerConfig{
		Interval: r.cfg.NemesisInterval, Duration: r.cfg.FaultDuration,
		HealTimeout: r.cfg.ReadyTimeout + 10*time.Second, Logger: r.cfg.Logger,
	}, r.cluster, r.nemeses, r.rec, rand.New(rand.NewPCG(r.cfg.Seed, 0)))
	r.sched.Store(sched)

	var wg sync.WaitGroup
	var schedErr error
	wg.Go(func() {
		schedErr = sched.Run(limitCtx)
		if schedErr != nil {
			stop() // a fault that cannot be healed ends the run
		}
	})
	for _, p := range procs {
		p.limit = limitCtx
		wg.Go(func() {
			for r.pacer.wait(limitCtx) == nil {
				r.wl.Step(ctx, p)
				if p.crashed {
					r.reconnect(p)
				}
			}
		})
	}
	wg.Wait()
	return schedErr
}

// newProcess returns worker w's process with its own client and random
// source.
func (r *runner) newProcess(w int) (*process, error) {
	c, err := r.newClient(w)
	if err != nil {
		return nil, err
	}
	eps := r.cluster.Endpoints()
	k := w % len(eps)
	return &process{
		endpoints: append(eps[k:len(eps):len(eps)], eps[:k]...),
		ID:        w,
		Worker:    w,
		Rand:      rand.New(rand.NewPCG(r.cfg.Seed, uint64(w)+1)),
		Client:    c,
		OpTimeout: r.cfg.OpTimeout,
		rec:       r.rec,
		stride:    r.cfg.Concurrency,
		dial:      func() (*client.Client, error) { return r.newClient(w) },
	}, nil
}

// newClient returns a client whose first endpoint is picked by turn, so
// that processes spread over the nodes and a reconnect moves on.
//
// It never retries by itself (WithRetry(1)): a retried Put may apply
// twice (README, honest limits), and the workloads retry the operations
// that are idempotent with their request ids.
func (r *runner) newClient(turn int) (*client.Client, error) {
	eps := r.cluster.Endpoints()
	k := turn % len(eps)
	eps = append(eps[k:len(eps):len(eps)], eps[:k]...)
	dial := append([]grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
		// Reconnect to a restarted node quickly (gRPC's default backoff
		// grows to minutes).
		Backoff:           backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
		MinConnectTimeout: time.Second,
	})}, r.cfg.DialOptions...)
	return client.New(context.Background(), eps,
		client.WithRetry(1, 50*time.Millisecond),
		client.WithDialOptions(dial...),
		client.WithOwner(fmt.Sprintf("jepsen-%d", turn)),
		client.WithLogger(r.cfg.Logger))
}

// reconnect gives p a fresh client on the next endpoint after an info
// (the old connection may be wedged), as Jepsen's clients reopen.
func (r *runner) reconnect(p *process) {
	p.crashed = false
	c, err := r.newClient(p.ID)
	if err != nil {
		r.cfg.Logger.Warn("jepsen: reconnect failed; keeping the old client", "process", p.ID, "err", err)
		return
	}
	_ = p.Client.Close()
	p.Client = c
}

// startProgress calls cfg.Progress every ProgressInterval from one
// goroutine until the returned stop function is called (it waits).
func (r *runner) startProgress() (stop func()) {
	if r.cfg.Progress == nil {
		return func() {}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(r.cfg.ProgressInterval)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				r.cfg.Progress(r.progress())
			case <-ctx.Done():
				return
			}
		}
	}()
	return func() {
		cancel()
		<-done
	}
}

func (r *runner) progress() Progress {
	p := Progress{Phase: *r.phase.Load(), Elapsed: r.rec.Elapsed(), TimeLimit: r.cfg.TimeLimit}
	p.OK, p.Fail, p.Info = r.rec.Counts()
	if s := r.sched.Load(); s != nil {
		for _, n := range s.Counts() {
			p.Faults += n
		}
		p.Active = s.Active()
	}
	return p
}

// endpointCluster is servers the harness did not start: it can neither
// kill nor pause them, and has no nodes for a nemesis to pick.
type endpointCluster []string

var _ testCluster = endpointCluster(nil)

func (e endpointCluster) Nodes() []int                      { return nil }
func (e endpointCluster) Endpoints() []string               { return append([]string(nil), e...) }
func (e endpointCluster) StartAll(context.Context) error    { return nil }
func (e endpointCluster) Heal(context.Context) error        { return nil }
func (e endpointCluster) Close() error                      { return nil }
func (e endpointCluster) Kill(context.Context, int) error   { return errNoProcessControl }
func (e endpointCluster) Start(context.Context, int) error  { return errNoProcessControl }
func (e endpointCluster) Pause(context.Context, int) error  { return errNoProcessControl }
func (e endpointCluster) Resume(context.Context, int) error { return errNoProcessControl }
