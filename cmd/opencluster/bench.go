package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"

	"github.com/opencluster/opencluster/internal/bench"
	"github.com/opencluster/opencluster/internal/bench/systems"
)

// benchFlags are the flags of `opencluster bench`.
type benchFlags struct {
	target      string
	compare     string
	workload    string
	duration    time.Duration
	warmup      time.Duration
	concurrency string
	nodes       int
	rounds      int
	buckets     int
	seed        uint64
	cacheDir    string
	source      string
	cpuProfile  string
	etcd        string
}

// newBenchCmd returns `opencluster bench`: measure OpenCluster, etcd and
// Redis on this machine in one run.
func newBenchCmd(a *app) *cobra.Command {
	f := benchFlags{}
	d := bench.DefaultConfig()
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Benchmark OpenCluster against etcd and Redis on this machine",
		Long: `Measure throughput, latency (p50, p99, max), errors, the servers' peak RSS and
their CPU time per operation (table only) for each workload at each client
concurrency, after a warm-up.

The bench starts the servers it measures, in a temporary directory: OpenCluster
by running this binary's start command; Redis from Debian's redis-server package
(installed with apt-get if missing); etcd ` + systems.EtcdVersion + `, built from the Go module proxy
into the cache directory on first use (about 2 minutes), and driven by a helper
built from cmd/ocbench-peers (so run it inside the source tree, or pass --source).
With --endpoints (a global flag) it measures a running OpenCluster instead, and
with --etcd-endpoints a running etcd cluster (both, say, on machines of their
own; the servers' RSS and CPU are then not known).

--compare runs the peers alternately with OpenCluster, workload by workload, and
prints ours÷peer throughput ratios. --rounds N (3 or more) runs the whole plan N
times on the same servers and adds each ratio's median over the rounds, with its
range: on a shared machine one run's ratio can be off by a fifth. Lock workloads check mutual exclusion and
fences while they run, transfers check the account total after; a failed check
makes the command exit 1 after printing the results.

Workloads: ` + bench.WorkloadNames() + `.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := f.config(cmd)
			if err != nil {
				return err
			}
			return a.runBench(cmd, cfg, f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.target, "target", bench.OpenCluster, "system to measure: opencluster, etcd or redis")
	fl.StringVar(&f.compare, "compare", "", "peers to run alternately with --target, comma-separated (etcd, redis)")
	fl.StringVar(&f.workload, "workload", "all", "workloads, comma-separated")
	fl.DurationVar(&f.duration, "duration", d.Duration, "measured window of each run")
	fl.DurationVar(&f.warmup, "warmup", d.Warmup, "warm-up before each window (not counted)")
	fl.StringVar(&f.concurrency, "concurrency", "16,64", "client goroutine counts, comma-separated")
	fl.IntVar(&f.nodes, "nodes", d.Nodes, "servers per system (opencluster and etcd: 1 or more; redis: 1)")
	fl.IntVar(&f.rounds, "rounds", d.Rounds, "times to run the whole plan; with --compare, also prints each ratio's median over them")
	fl.IntVar(&f.buckets, "buckets", 0, "bucket count of the opencluster node (0: the server's default)")
	fl.Uint64Var(&f.seed, "seed", 0, "seed of the clients' random choices (0: from the clock; printed)")
	fl.StringVar(&f.cacheDir, "cache-dir", "", "where etcd and its driver are built (default: $XDG_CACHE_HOME/opencluster)")
	fl.StringVar(&f.source, "source", "", "OpenCluster source tree, to build the etcd driver from (default: found from the working directory)")
	fl.StringVar(&f.etcd, "etcd-endpoints", "", "client addresses (host:port, plain HTTP) of a running etcd cluster to measure instead of starting one, comma-separated")
	fl.StringVar(&f.cpuProfile, "cpuprofile", "", "write the bench process's CPU profile (OpenCluster's clients, not the servers) to this file")
	cmd.AddCommand(newBenchMovesCmd(a))
	return cmd
}

// config turns the flags into a validated bench.Config; bad input is an
// InvalidArgument error naming the flag.
func (f benchFlags) config(cmd *cobra.Command) (bench.Config, error) {
	cfg := bench.Config{
		Duration: f.duration,
		Warmup:   f.warmup,
		NoWarmup: f.warmup == 0,
		Nodes:    f.nodes,
		Seed:     f.seed,
		Rounds:   f.rounds,
	}
	if f.duration <= 0 {
		return cfg, usagef("--duration must be positive, not %s", f.duration)
	}
	if f.warmup < 0 {
		return cfg, usagef("--warmup must not be negative, not %s", f.warmup)
	}
	if f.nodes < 1 {
		return cfg, usagef("--nodes must be at least 1, not %d", f.nodes)
	}
	if f.buckets < 0 {
		return cfg, usagef("--buckets must not be negative, not %d", f.buckets)
	}
	if f.rounds < 1 || f.rounds > bench.MaxRounds {
		return cfg, usagef("--rounds must be in 1..%d, not %d", bench.MaxRounds, f.rounds)
	}
	cfg.Targets = append(cfg.Targets, f.target)
	for _, p := range splitList(f.compare) {
		if p == f.target {
			return cfg, usagef("--compare %s: that is the --target", p)
		}
		cfg.Targets = append(cfg.Targets, p)
	}
	w, err := bench.ParseWorkloads(f.workload)
	if err != nil {
		return cfg, usagef("--workload: %s", strings.TrimPrefix(err.Error(), bench.ErrInvalid.Error()+": "))
	}
	cfg.Workloads = w
	conc := splitList(f.concurrency)
	if len(conc) == 0 {
		return cfg, usagef("--concurrency is empty")
	}
	for _, s := range conc {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > bench.MaxConcurrency {
			return cfg, usagef("--concurrency: %q is not a number in 1..%d", s, bench.MaxConcurrency)
		}
		cfg.Concurrency = append(cfg.Concurrency, n)
	}
	if cmd.Flags().Changed("endpoints") {
		root := cmd.Root().PersistentFlags().Lookup("endpoints")
		cfg.Endpoints = splitList(root.Value.String())
	}
	cfg.EtcdEndpoints = splitList(f.etcd)
	if cfg.Seed == 0 {
		cfg.Seed = uint64(time.Now().UnixNano())
	}
	cfg, err = cfg.Validate()
	if err != nil {
		msg := strings.TrimPrefix(err.Error(), bench.ErrInvalid.Error()+": ")
		// EtcdEndpoints before Endpoints, which it contains.
		for _, r := range [][2]string{{"Targets", "--target/--compare"}, {"Nodes", "--nodes"}, {"EtcdEndpoints", "--etcd-endpoints"}, {"Endpoints", "--endpoints"}} {
			if strings.HasPrefix(msg, r[0]+":") {
				msg = r[1] + strings.TrimPrefix(msg, r[0])
				break
			}
		}
		return cfg, usagef("%s", msg)
	}
	return cfg, nil
}

func splitList(s string) []string {
	var out []string
	for _, e := range strings.Split(s, ",") {
		if e = strings.TrimSpace(e); e != "" {
			out = append(out, e)
		}
	}
	return out
}

// runBench starts the systems, runs the suite, prints the results and
// stops the systems (also on failure and on Ctrl-C).
func (a *app) runBench(cmd *cobra.Command, cfg bench.Config, f benchFlags) (err error) {
	ctx := cmd.Context()
	exe, err := os.Executable()
	if err != nil {
		return failf(codes.Internal, "find this binary: %s", err.Error())
	}
	work, err := os.MkdirTemp("", "opencluster-bench-")
	if err != nil {
		return failf(codes.Internal, "temp dir: %s", err.Error())
	}
	defer os.RemoveAll(work)
	if f.cpuProfile != "" {
		prof, err := os.Create(f.cpuProfile)
		if err != nil {
			return failf(codes.InvalidArgument, "--cpuprofile: %s", err.Error())
		}
		defer prof.Close()
		if err := pprof.StartCPUProfile(prof); err != nil {
			return failf(codes.FailedPrecondition, "--cpuprofile: %s", err.Error())
		}
		defer pprof.StopCPUProfile()
	}
	scfg := systems.Config{
		Exe:           exe,
		WorkDir:       work,
		CacheDir:      f.cacheDir,
		SourceDir:     f.source,
		Nodes:         cfg.Nodes,
		Buckets:       f.buckets,
		Endpoints:     cfg.Endpoints,
		EtcdEndpoints: cfg.EtcdEndpoints,
		Notes:         a.stderr,
	}
	if scfg.CacheDir == "" {
		if dir, err := os.UserCacheDir(); err == nil {
			scfg.CacheDir = filepath.Join(dir, "opencluster")
		} else {
			scfg.CacheDir = filepath.Join(os.TempDir(), "opencluster-cache")
		}
	}
	for _, t := range cfg.Targets {
		if t == bench.Etcd && scfg.SourceDir == "" {
			wd, _ := os.Getwd()
			if scfg.SourceDir, err = systems.FindSource(wd); err != nil {
				return failf(codes.FailedPrecondition, "%s", err.Error())
			}
		}
	}

	fmt.Fprintf(a.stderr, "bench: seed %d, %d round(s) of %d workload(s) x %v clients x %s, %s warm-up + %s each\n",
		cfg.Seed, cfg.Rounds, len(cfg.Workloads), cfg.Concurrency, strings.Join(cfg.Targets, ", "), cfg.Warmup, cfg.Duration)
	var started []bench.System
	defer func() {
		if serr := systems.StopAll(started); serr != nil && err == nil {
			fmt.Fprintf(a.stderr, "bench: stopping servers: %s\n", serr.Error())
		}
	}()
	for _, t := range cfg.Targets {
		fmt.Fprintf(a.stderr, "bench: starting %s\n", t)
		s, err := systems.Start(ctx, scfg, t)
		if err != nil {
			return failf(codes.Unavailable, "start %s: %s", t, err.Error())
		}
		started = append(started, s)
	}

	p := newProgressLine(a.stderr, cfg.Rounds > 1)
	results, runErr := bench.RunSuite(ctx, cfg, started, bench.Hooks{
		Start:    p.start,
		Progress: p.progress,
		Done:     p.done,
	})
	if a.flags.output == outputJSON {
		err = bench.WriteJSON(a.stdout, results)
	} else {
		err = bench.WriteTable(a.stdout, results, cfg.Targets[0])
	}
	if err != nil {
		return ioError(err)
	}
	if runErr != nil {
		code := codes.Unknown
		if errors.Is(runErr, bench.ErrCheck) {
			code = codes.DataLoss
		}
		return failf(code, "%s", strings.ReplaceAll(runErr.Error(), "\n", "; "))
	}
	return nil
}

// progressLine reports the suite on stderr: a line that rewrites itself
// on a terminal, and one line per finished run everywhere.
type progressLine struct {
	w     io.Writer
	tty   bool
	label string
	spec  bench.Spec
	// rounds: the suite has several rounds, and labels name them.
	rounds bool
}

func newProgressLine(w io.Writer, severalRounds bool) *progressLine {
	p := &progressLine{w: w, rounds: severalRounds}
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			p.tty = true
		}
	}
	return p
}

func (p *progressLine) start(spec bench.Spec, i, n int) {
	p.spec = spec
	p.label = fmt.Sprintf("[%d/%d] %s %s c=%d", i+1, n, spec.Target, spec.Workload, spec.Concurrency)
	if p.rounds {
		p.label = fmt.Sprintf("[%d/%d] round %d: %s %s c=%d", i+1, n, spec.Round, spec.Target, spec.Workload, spec.Concurrency)
	}
	if p.tty {
		fmt.Fprintf(p.w, "\r\033[K%s: preparing", p.label)
	}
}

func (p *progressLine) progress(spec bench.Spec, pr bench.Progress) {
	if !p.tty {
		return
	}
	phase := "warm-up"
	rate := ""
	if in := pr.Elapsed - spec.Warmup; in > 0 {
		phase = "measuring"
		rate = fmt.Sprintf(", %.0f ops/s", float64(pr.Ops)/in.Seconds())
	}
	fmt.Fprintf(p.w, "\r\033[K%s: %s %.1fs/%.1fs, %d ops%s, %d errors", p.label, phase,
		pr.Elapsed.Seconds(), pr.Total.Seconds(), pr.Ops, rate, pr.Errors)
}

func (p *progressLine) done(spec bench.Spec, res bench.Result, err error) {
	if p.tty {
		fmt.Fprint(p.w, "\r\033[K")
	}
	if err != nil {
		fmt.Fprintf(p.w, "%s: failed: %s\n", p.label, err.Error())
		return
	}
	fmt.Fprintf(p.w, "%s: %.0f ops/s, p50 %.2fms, p99 %.2fms, %d errors, rss %.0f MB\n", p.label,
		res.OpsPerSec, float64(res.P50)/1e6, float64(res.P99)/1e6, res.Errors, res.RSSMB)
}
