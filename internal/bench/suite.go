package bench

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Target names.
const (
	OpenCluster = "opencluster"
	Etcd        = "etcd"
	Redis       = "redis"
)

// knownTargets are the systems the bench can measure.
var knownTargets = []string{OpenCluster, Etcd, Redis}

// MaxConcurrency bounds --concurrency.
const MaxConcurrency = 1024

// MaxRounds bounds --rounds (each round adds to every system's data).
const MaxRounds = 20

// Config is one invocation of the bench. A zero field means its default
// (DefaultConfig); Validate names the first bad field.
type Config struct {
	// Targets are the systems to measure, in the order each round runs
	// them; the first is the base of the ratios. Default: opencluster.
	Targets []string
	// Workloads run in this order. Default: every workload.
	Workloads []Workload
	// Concurrency lists the client goroutine counts (1..1024) each
	// workload runs at. Default: 16, 64.
	Concurrency []int
	// Duration is the measured window of each run. Default: 10s.
	Duration time.Duration
	// Warmup precedes each window and is not counted. Default: 2s; set
	// NoWarmup for none.
	Warmup   time.Duration
	NoWarmup bool
	// Nodes is the server count of every system the bench starts.
	// Default 1. The bench starts OpenCluster with 1 node only (3-node
	// runs are the next step) and Redis with 1.
	Nodes int
	// Endpoints of a running OpenCluster cluster: the bench measures it
	// instead of starting one (Nodes is then len(Endpoints)).
	Endpoints []string
	// EtcdEndpoints are the client addresses (host:port, plain HTTP) of a
	// running etcd cluster, measured instead of starting one; its peak
	// RSS and CPU are then not known.
	EtcdEndpoints []string
	// Seed seeds the clients' random sources and names the runs.
	Seed uint64
	// Rounds is how many times the whole plan runs, on the same servers
	// (each round on the data the earlier ones left, so rounds are not
	// exact repeats: etcd's history and our logs grow). Ratios pair runs
	// of one round; Summaries gives their median over the rounds, which
	// from three rounds on one burst of noise on a shared machine cannot
	// move. Default 1.
	Rounds int
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		Targets:     []string{OpenCluster},
		Workloads:   Workloads(),
		Concurrency: []int{16, 64},
		Duration:    10 * time.Second,
		Warmup:      2 * time.Second,
		Nodes:       1,
		Rounds:      1,
	}
}

// withDefaults fills the zero fields.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if len(c.Targets) == 0 {
		c.Targets = d.Targets
	}
	if len(c.Workloads) == 0 {
		c.Workloads = d.Workloads
	}
	if len(c.Concurrency) == 0 {
		c.Concurrency = d.Concurrency
	}
	if c.Duration == 0 {
		c.Duration = d.Duration
	}
	if c.Warmup == 0 && !c.NoWarmup {
		c.Warmup = d.Warmup
	}
	if c.Nodes == 0 {
		c.Nodes = d.Nodes
	}
	if c.Rounds == 0 {
		c.Rounds = d.Rounds
	}
	if len(c.Endpoints) > 0 {
		c.Nodes = len(c.Endpoints)
	}
	return c
}

// Validate fills the defaults and checks c; errors match ErrInvalid and
// name the field and the value.
func (c Config) Validate() (Config, error) {
	c = c.withDefaults()
	bad := func(format string, args ...any) (Config, error) {
		return c, fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
	}
	seen := map[string]bool{}
	for _, t := range c.Targets {
		if !slices.Contains(knownTargets, t) {
			return bad("Targets: unknown target %q (known: opencluster, etcd, redis)", t)
		}
		if seen[t] {
			return bad("Targets: %q given twice", t)
		}
		seen[t] = true
	}
	for _, n := range c.Concurrency {
		if n < 1 || n > MaxConcurrency {
			return bad("Concurrency: %d is not in 1..%d", n, MaxConcurrency)
		}
	}
	if c.Duration < 0 {
		return bad("Duration: %s is negative", c.Duration)
	}
	if c.Warmup < 0 {
		return bad("Warmup: %s is negative", c.Warmup)
	}
	if c.Nodes < 1 {
		return bad("Nodes: %d < 1", c.Nodes)
	}
	if c.Rounds < 1 || c.Rounds > MaxRounds {
		return bad("Rounds: %d is not in 1..%d", c.Rounds, MaxRounds)
	}
	if len(c.Endpoints) > 0 && !seen[OpenCluster] {
		return bad("Endpoints: given, but opencluster is not a target")
	}
	if len(c.EtcdEndpoints) > 0 && !seen[Etcd] {
		return bad("EtcdEndpoints: given, but etcd is not a target")
	}
	if c.Nodes > 1 && seen[Redis] {
		return bad("Nodes: %d, but redis runs as one server only", c.Nodes)
	}
	return c, nil
}

// System is a running system under test: its servers and a way to drive
// them.
type System interface {
	// Name is the target's name.
	Name() string
	// Nodes is its server count.
	Nodes() int
	// Supports reports whether it implements the workload.
	Supports(w Workload) bool
	// Run measures one run and fills the result's RSSMB.
	Run(ctx context.Context, spec Spec, progress func(Progress)) (Result, error)
	// Stop stops the servers the bench started, and waits for them.
	Stop(ctx context.Context) error
}

// Hooks let the caller report a suite in flight. Each may be nil; all are
// called on the goroutine of RunSuite.
type Hooks struct {
	// Start is called before each run, with its index and the total.
	Start func(spec Spec, i, n int)
	// Progress is called during each run.
	Progress func(spec Spec, p Progress)
	// Done is called after each run, with its result or error.
	Done func(spec Spec, res Result, err error)
}

// Plan returns the specs of a suite in the order RunSuite runs them:
// round after round, for each workload, for each concurrency, every
// system in turn (ours, then each peer), so that the systems alternate
// and slow drifts of the machine hit all of them alike. A system that
// does not support a workload is skipped.
func Plan(cfg Config, systems []System) []Spec {
	var specs []Spec
	for round := 1; round <= max(cfg.Rounds, 1); round++ {
		for _, w := range cfg.Workloads {
			for _, c := range cfg.Concurrency {
				for _, s := range systems {
					if !s.Supports(w) {
						continue
					}
					specs = append(specs, Spec{
						Target:      s.Name(),
						Nodes:       s.Nodes(),
						Workload:    w.Name,
						Concurrency: c,
						Warmup:      cfg.Warmup,
						Duration:    cfg.Duration,
						RunID:       fmt.Sprintf("%x-%d", cfg.Seed&0xffffffff, len(specs)),
						Seed:        cfg.Seed + uint64(len(specs))<<32,
						Round:       round,
					})
				}
			}
		}
	}
	return specs
}

// RunSuite runs the plan of cfg over systems (named by Spec.Target). A
// failed run does not stop the suite: its error is joined into the
// returned error and its result left out. Violations of safety checks
// are reported in the results and as an error matching ErrCheck.
func RunSuite(ctx context.Context, cfg Config, systems []System, hooks Hooks) ([]Result, error) {
	byName := map[string]System{}
	for _, s := range systems {
		byName[s.Name()] = s
	}
	specs := Plan(cfg, systems)
	var results []Result
	var errs []error
	for i, spec := range specs {
		if err := ctx.Err(); err != nil {
			errs = append(errs, err)
			break
		}
		if hooks.Start != nil {
			hooks.Start(spec, i, len(specs))
		}
		var progress func(Progress)
		if hooks.Progress != nil {
			progress = func(p Progress) { hooks.Progress(spec, p) }
		}
		res, err := byName[spec.Target].Run(ctx, spec, progress)
		res.Round = spec.Round
		label := runLabel(spec.Target, spec.Workload, spec.Concurrency, spec.Round, cfg.Rounds > 1)
		if hooks.Done != nil {
			hooks.Done(spec, res, err)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", label, err))
			continue
		}
		if res.Violations > 0 {
			errs = append(errs, fmt.Errorf("%w: %s: %d violation(s), first: %s",
				ErrCheck, label, res.Violations, res.Notes[0]))
		}
		results = append(results, res)
	}
	return results, errors.Join(errs...)
}

// LocalSystem is a system driven from this process through a Target.
type LocalSystem struct {
	name    string
	nodes   int
	servers *Cluster
	target  Target
}

// NewLocalSystem returns a system of servers (nil: not started by the
// bench) driven through target. Stop closes the target and stops the
// servers.
func NewLocalSystem(name string, nodes int, servers *Cluster, target Target) *LocalSystem {
	if servers == nil {
		servers = &Cluster{}
	}
	return &LocalSystem{name: name, nodes: nodes, servers: servers, target: target}
}

func (s *LocalSystem) Name() string             { return s.name }
func (s *LocalSystem) Nodes() int               { return s.nodes }
func (s *LocalSystem) Supports(w Workload) bool { return s.target.Supports(w) }

// Run resets the servers' peak RSS, measures, and reads it and the
// servers' CPU per operation.
func (s *LocalSystem) Run(ctx context.Context, spec Spec, progress func(Progress)) (Result, error) {
	if err := s.servers.Alive(); err != nil {
		return Result{}, err
	}
	s.servers.ResetPeakRSS()
	cpu := &cpuMeter{servers: s.servers, warmup: spec.Warmup}
	res, err := Run(ctx, s.target, spec, cpu.wrap(progress))
	res.RSSMB = s.servers.PeakRSSMB()
	res.CPUPerOp = cpu.perOp()
	return res, err
}

// Stop closes the target and stops the servers.
func (s *LocalSystem) Stop(ctx context.Context) error {
	return errors.Join(s.target.Close(), s.servers.Stop(ctx))
}

// PeerSystem is a system driven by a peer process per run (see
// RunPeer).
type PeerSystem struct {
	name      string
	servers   *Cluster
	bin       string
	endpoints []string
	supports  func(Workload) bool
}

// NewPeerSystem returns a system of servers at endpoints, driven by the
// peer binary bin; servers is nil for a system the bench did not start
// (its RSS and CPU are then not known).
func NewPeerSystem(name string, servers *Cluster, bin string, endpoints []string, supports func(Workload) bool) *PeerSystem {
	if servers == nil {
		servers = &Cluster{}
	}
	return &PeerSystem{name: name, servers: servers, bin: bin, endpoints: endpoints, supports: supports}
}

func (s *PeerSystem) Name() string { return s.name }

// Nodes is the count of servers the bench started, or of the endpoints
// of a system it did not.
func (s *PeerSystem) Nodes() int {
	if n := len(s.servers.Procs); n > 0 {
		return n
	}
	return len(s.endpoints)
}
func (s *PeerSystem) Supports(w Workload) bool { return s.supports(w) }

// Run resets the servers' peak RSS, has a peer measure, and reads it and
// the servers' CPU per operation.
func (s *PeerSystem) Run(ctx context.Context, spec Spec, progress func(Progress)) (Result, error) {
	if err := s.servers.Alive(); err != nil {
		return Result{}, err
	}
	s.servers.ResetPeakRSS()
	cpu := &cpuMeter{servers: s.servers, warmup: spec.Warmup}
	res, err := RunPeer(ctx, s.bin, PeerRequest{Target: s.name, Endpoints: s.endpoints, Spec: spec}, cpu.wrap(progress))
	res.RSSMB = s.servers.PeakRSSMB()
	res.CPUPerOp = cpu.perOp()
	return res, err
}

// Stop stops the servers.
func (s *PeerSystem) Stop(ctx context.Context) error { return s.servers.Stop(ctx) }
