package jepsen

import (
	"fmt"
	"log/slog"
	"slices"
	"time"

	"google.golang.org/grpc"
)

// Config configures a run. A zero field means its default
// (DefaultConfig); Run fills them in and calls Validate.
type Config struct {
	// Workload is register, lock, lease, bank, fenced or unfenced
	// (WorkloadNames).
	Workload string
	// Nemeses are the fault kinds to inject (kill, pause, partition,
	// clock, move); none: no faults. Partition needs a private network
	// namespace (RunInPrivateNetNS) and CAP_NET_ADMIN in it; clock starts
	// the servers with --test-admin; move needs at least 4 nodes.
	Nemeses []string
	// NemesisTargets picks the nodes kill and pause hit: one, minority,
	// majority, all, or primary (the meta group's leader).
	NemesisTargets Targets
	// PartitionShapes are the shapes the partition nemesis picks from at
	// random (empty: every shape that fits Nodes; see PartitionShapes).
	PartitionShapes []string
	// NemesisInterval is the mean quiet time before each fault.
	NemesisInterval time.Duration
	// FaultDuration is how long each fault lasts.
	FaultDuration time.Duration

	// Nodes is the server count; node n listens on NodeIP(n).
	Nodes int
	// TimeLimit is how long clients issue operations (setup, healing,
	// final reads and checking come on top).
	TimeLimit time.Duration
	// Rate is the target of operations per second over all clients.
	Rate float64
	// Concurrency is the number of client processes (goroutines).
	Concurrency int
	// Seed seeds every random choice; 0 picks one from the clock (the
	// report says which).
	Seed uint64
	// OutDir receives one run directory per run.
	OutDir string
	// KeepData keeps the nodes' data directories of a VALID run (they are
	// always kept otherwise).
	KeepData bool

	// Binary is the opencluster binary the nodes run (`Binary start …`).
	Binary string
	// TestAdmin starts the servers with --test-admin (their test-only
	// admin service). Run sets it when the clock nemesis or PlantedBugs
	// need it, and only then.
	TestAdmin bool
	// PlantedBugs are switched on in every server once all serve (a
	// negative control: the run must come out INVALID).
	PlantedBugs PlantedBugs
	// Env is added to the nodes' environment.
	Env []string
	// Buckets is the bucket count of the new cluster.
	Buckets int
	// Port is the gRPC port on every node address; 0 picks a free one.
	Port int
	// ReadyTimeout bounds each wait for a node to serve.
	ReadyTimeout time.Duration

	// Net, if set, is the packet filter the partition nemesis uses
	// (tests); by default it is nftables, in the private network namespace
	// this process must run in (RunInPrivateNetNS).
	Net Net

	// Endpoints, if set, are servers to test instead of starting nodes:
	// no process control, so no nemesis.
	Endpoints []string
	// DialOptions are added to every client's gRPC options.
	DialOptions []grpc.DialOption
	// OpTimeout bounds each request (a server-side wait comes on top).
	OpTimeout time.Duration

	// MinOK, CheckTimeout and ClockDrift: see CheckOptions.
	MinOK        int
	CheckTimeout time.Duration
	ClockDrift   float64

	// ProcessesPerKey is how many processes share a register key (porcupine
	// slows down sharply past 8).
	ProcessesPerKey int
	// OpsPerKey is how many operations a register key gets before its
	// processes move to a fresh key.
	OpsPerKey int

	// LockNames is the number of named locks the lock workload contends
	// on.
	LockNames int
	// LockTTL is the ttl of every lock and restrictive lock taken; it must
	// outlast FaultDuration plus a restart, or holders lose their locks.
	LockTTL time.Duration
	// LockWait bounds each wait for a lock or a locked key on the server.
	LockWait time.Duration
	// LockHold is the longest a lock is held (uniform in [0, LockHold]).
	LockHold time.Duration
	// ZombieTTL is the ttl of the locks the fenced workload lets expire
	// (their holders then sleep 1.5 times as long and write anyway).
	ZombieTTL time.Duration

	// LeaseTTL is the ttl of the lease workload's locks: short, so that
	// holders that die are taken over quickly.
	LeaseTTL time.Duration
	// InProcessHolders runs the lease workload's holders as goroutines
	// instead of processes (tests against an in-memory server, which a
	// process cannot dial); killing one closes its connections.
	InProcessHolders bool
	// ElectionTimeout is the longest a bucket may go without a leader
	// after one fault (detection, randomized election, slack): the lease
	// checker allows a dead holder's lock ttl plus this to be taken over.
	ElectionTimeout time.Duration

	// Accounts and Balance are the bank's accounts and opening balance.
	Accounts int
	Balance  int64

	// Warnings are printed at the top of the summary and saved in the
	// report (the CLI explains there a nemesis it had to leave out).
	Warnings []string

	// Logger receives harness events (default: discard).
	Logger *slog.Logger
	// Progress, if set, is called about every ProgressInterval from one
	// goroutine while the run lasts.
	Progress         func(Progress)
	ProgressInterval time.Duration
}

// Progress is a snapshot of a run for a live progress line.
type Progress struct {
	// Phase is starting, setup, running, healing, final, checking.
	Phase     string
	Elapsed   time.Duration
	TimeLimit time.Duration
	// OK, Fail and Info count client completions so far.
	OK, Fail, Info int
	// Faults counts injected faults; Active is the fault in place, or "".
	Faults int
	Active string
}

// DefaultConfig returns the defaults: one node, register, no faults, 30s
// at 100 ops/s from 10 processes.
func DefaultConfig() Config {
	return Config{
		Workload:         "register",
		NemesisTargets:   TargetOne,
		NemesisInterval:  5 * time.Second,
		FaultDuration:    3 * time.Second,
		Nodes:            1,
		TimeLimit:        30 * time.Second,
		Rate:             100,
		Concurrency:      10,
		OutDir:           "jepsen-runs",
		Buckets:          8,
		ReadyTimeout:     30 * time.Second,
		OpTimeout:        2 * time.Second,
		MinOK:            20,
		CheckTimeout:     60 * time.Second,
		ClockDrift:       0.05,
		ProcessesPerKey:  4,
		OpsPerKey:        150,
		LockNames:        3,
		LockTTL:          10 * time.Second,
		LockWait:         time.Second,
		LockHold:         50 * time.Millisecond,
		ZombieTTL:        time.Second,
		LeaseTTL:         2 * time.Second,
		ElectionTimeout:  3 * time.Second,
		Accounts:         8,
		Balance:          100,
		ProgressInterval: time.Second,
	}
}

// TestConfig returns a profile for tests: short, with faults every
// second or so and a low bar for successful operations.
func TestConfig() Config {
	cfg := DefaultConfig()
	cfg.TimeLimit = 3 * time.Second
	cfg.NemesisInterval = time.Second
	cfg.FaultDuration = 500 * time.Millisecond
	cfg.Rate = 100
	cfg.Concurrency = 6
	cfg.MinOK = 5
	cfg.CheckTimeout = 20 * time.Second
	cfg.OpsPerKey = 60
	return cfg
}

// withDefaults fills zero fields from DefaultConfig.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	setIfZero := func(p *time.Duration, v time.Duration) {
		if *p == 0 {
			*p = v
		}
	}
	setIntIfZero := func(p *int, v int) {
		if *p == 0 {
			*p = v
		}
	}
	if c.Workload == "" {
		c.Workload = d.Workload
	}
	if c.NemesisTargets == "" {
		c.NemesisTargets = d.NemesisTargets
	}
	if c.Rate == 0 {
		c.Rate = d.Rate
	}
	if c.OutDir == "" {
		c.OutDir = d.OutDir
	}
	if c.ClockDrift == 0 {
		c.ClockDrift = d.ClockDrift
	}
	if c.Balance == 0 {
		c.Balance = d.Balance
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	setIfZero(&c.NemesisInterval, d.NemesisInterval)
	setIfZero(&c.FaultDuration, d.FaultDuration)
	setIfZero(&c.TimeLimit, d.TimeLimit)
	setIfZero(&c.ReadyTimeout, d.ReadyTimeout)
	setIfZero(&c.OpTimeout, d.OpTimeout)
	setIfZero(&c.CheckTimeout, d.CheckTimeout)
	setIfZero(&c.LockTTL, d.LockTTL)
	setIfZero(&c.LockWait, d.LockWait)
	setIfZero(&c.LockHold, d.LockHold)
	setIfZero(&c.ZombieTTL, d.ZombieTTL)
	setIfZero(&c.LeaseTTL, d.LeaseTTL)
	setIfZero(&c.ElectionTimeout, d.ElectionTimeout)
	setIfZero(&c.ProgressInterval, d.ProgressInterval)
	setIntIfZero(&c.Nodes, d.Nodes)
	setIntIfZero(&c.Concurrency, d.Concurrency)
	setIntIfZero(&c.Buckets, d.Buckets)
	setIntIfZero(&c.MinOK, d.MinOK)
	setIntIfZero(&c.ProcessesPerKey, d.ProcessesPerKey)
	setIntIfZero(&c.OpsPerKey, d.OpsPerKey)
	setIntIfZero(&c.LockNames, d.LockNames)
	setIntIfZero(&c.Accounts, d.Accounts)
	return c
}

// maxNodes is the most nodes NodeIP can address with room to spare.
const maxNodes = 200

// Validate checks a Config after withDefaults; the error names the field.
func (c Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
	}
	switch {
	case workloads[c.Workload].newWorkload == nil:
		return bad("Workload %q (known: %v)", c.Workload, WorkloadNames())
	case c.Nodes < 1 || c.Nodes > maxNodes:
		return bad("Nodes %d not in 1..%d", c.Nodes, maxNodes)
	case c.TimeLimit < 0:
		return bad("TimeLimit %s is negative", c.TimeLimit)
	case c.Rate < 0:
		return bad("Rate %g is negative", c.Rate)
	case c.Concurrency < 1:
		return bad("Concurrency %d < 1", c.Concurrency)
	case c.Binary == "" && len(c.Endpoints) == 0:
		return bad("Binary is empty and no Endpoints are given")
	case c.Workload == "lease" && c.Binary == "" && !c.InProcessHolders:
		return bad("the lease workload runs its holders as `Binary jepsen lease-holder`: Binary is empty")
	case len(c.Endpoints) > 0 && len(nonEmpty(c.Nemeses)) > 0:
		return bad("Nemeses %v need nodes the harness starts, not Endpoints", c.Nemeses)
	case c.Buckets < 1:
		return bad("Buckets %d < 1", c.Buckets)
	case c.Port < 0 || c.Port > 65534:
		return bad("Port %d out of range", c.Port)
	case c.ProcessesPerKey < 1 || c.ProcessesPerKey > 8:
		return bad("ProcessesPerKey %d not in 1..8 (porcupine's limit)", c.ProcessesPerKey)
	case c.OpsPerKey < 1:
		return bad("OpsPerKey %d < 1", c.OpsPerKey)
	case c.LockNames < 1:
		return bad("LockNames %d < 1", c.LockNames)
	case c.Accounts < 2:
		return bad("Accounts %d < 2", c.Accounts)
	case c.Balance < 1:
		return bad("Balance %d < 1", c.Balance)
	case c.ClockDrift < 0 || c.ClockDrift >= 1:
		return bad("ClockDrift %g not in [0, 1)", c.ClockDrift)
	case c.MinOK < 1:
		return bad("MinOK %d < 1", c.MinOK)
	case c.NemesisInterval <= 0 || c.FaultDuration <= 0 || c.OpTimeout <= 0 || c.LockTTL <= 0 ||
		c.LockWait < 0 || c.LockHold < 0 || c.ZombieTTL <= 0 || c.CheckTimeout <= 0 || c.ReadyTimeout <= 0 ||
		c.LeaseTTL <= 0 || c.ElectionTimeout <= 0:
		return bad("durations must be positive")
	case c.LeaseTTL < time.Second:
		return bad("LeaseTTL %s < 1s (the server's least ttl)", c.LeaseTTL)
	}
	if err := validateNemeses(c.Nemeses, c.NemesisTargets, c.PartitionShapes); err != nil {
		return err
	}
	if slices.Contains(c.Nemeses, "move") && c.Nodes < minMoveNodes {
		return bad("the move nemesis needs at least %d nodes (a bucket has 3 replicas and a move needs a node without one), not %d", minMoveNodes, c.Nodes)
	}
	if (slices.Contains(c.Nemeses, "clock") || c.PlantedBugs.Any()) && len(c.Endpoints) > 0 {
		return bad("the clock nemesis and planted bugs need servers the harness starts with --test-admin, not Endpoints")
	}
	if slices.Contains(c.Nemeses, "partition") {
		fits := false
		for _, s := range c.partitionShapes() {
			fits = fits || c.Nodes >= minNodes(s)
		}
		if !fits {
			return bad("no partition shape of %v fits %d node(s)", c.partitionShapes(), c.Nodes)
		}
	}
	return nil
}

// needsTestAdmin reports whether the servers need --test-admin.
func (c Config) needsTestAdmin() bool {
	return c.TestAdmin || slices.Contains(c.Nemeses, "clock") || c.PlantedBugs.Any()
}

// partitionShapes returns PartitionShapes, or every shape if it is empty.
func (c Config) partitionShapes() []string {
	if len(c.PartitionShapes) == 0 {
		return PartitionShapes()
	}
	return c.PartitionShapes
}

func nonEmpty(names []string) []string {
	var out []string
	for _, n := range names {
		if n != "" && n != "none" {
			out = append(out, n)
		}
	}
	return out
}
