package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/opencluster/opencluster/jepsen"
)

// Exit statuses of `jepsen run` and `jepsen check` (CI reads them).
const (
	exitJepsenValid        = 0
	exitJepsenInvalid      = 1
	exitJepsenInconclusive = 2
	exitJepsenHarnessError = 3
)

// newJepsenCmd returns `opencluster jepsen`: the consistency harness.
func newJepsenCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "jepsen",
		Short: "Test the store's guarantees under faults (Jepsen-style)",
		Long: `jepsen starts real server processes (this binary, "start"), drives concurrent
clients against them while faults are injected, records every operation and
checks the history. See package jepsen for the model and the checkers.`,
	}
	cmd.AddCommand(newJepsenRunCmd(a), newJepsenCheckCmd(a), newJepsenSelftestCmd(a), newJepsenLeaseHolderCmd(a))
	return cmd
}

// jepsenRunOpts are the flags of `jepsen run`. A profile's runs are each
// parsed into a fresh jepsenRunOpts (jepsenProfilePlan).
type jepsenRunOpts struct {
	cfg                                 jepsen.Config
	workloads, nemeses, targets, shapes string
	minOK                               int
	profile                             string
}

func newJepsenRunOpts() *jepsenRunOpts {
	return &jepsenRunOpts{cfg: jepsen.DefaultConfig()}
}

// addFlags declares the flags of `jepsen run` on f, bound to o.
func (o *jepsenRunOpts) addFlags(f *pflag.FlagSet) {
	cfg := &o.cfg
	f.StringVar(&o.profile, "profile", "", "run a fixed suite instead of --workload: "+strings.Join(slices.Sorted(maps.Keys(jepsenProfiles())), ", ")+" (see above)")
	f.StringVar(&o.workloads, "workload", cfg.Workload, "workloads to run, comma-separated: "+strings.Join(jepsen.WorkloadNames(), ", "))
	f.StringVar(&o.nemeses, "nemesis", "none", "faults to inject, comma-separated: "+strings.Join(jepsen.NemesisNames(), ", ")+", or none")
	f.StringVar(&o.targets, "nemesis-targets", string(cfg.NemesisTargets), "nodes kill and pause hit: one, minority, majority, all, or primary (the meta leader, which serves the timestamp oracle)")
	f.StringVar(&o.shapes, "partition-shapes", strings.Join(jepsen.PartitionShapes(), ","), "partition shapes to pick from, comma-separated")
	f.DurationVar(&cfg.NemesisInterval, "nemesis-interval", cfg.NemesisInterval, "mean quiet time before each fault")
	f.DurationVar(&cfg.FaultDuration, "fault-duration", cfg.FaultDuration, "how long each fault lasts")
	f.IntVar(&cfg.Nodes, "nodes", cfg.Nodes, "server count (more than 1 needs a replicating server)")
	f.DurationVar(&cfg.TimeLimit, "time-limit", cfg.TimeLimit, "how long clients issue operations, per workload")
	f.Float64Var(&cfg.Rate, "rate", cfg.Rate, "target operations per second over all clients")
	f.IntVar(&cfg.Concurrency, "concurrency", cfg.Concurrency, "client processes")
	f.Uint64Var(&cfg.Seed, "seed", 0, "seed of every random choice (0: from the clock; printed either way)")
	f.StringVar(&cfg.OutDir, "out", cfg.OutDir, "directory that receives one run directory per run")
	f.BoolVar(&cfg.KeepData, "keep-data", false, "keep the servers' data directories of VALID runs too")
	f.IntVar(&cfg.Buckets, "buckets", cfg.Buckets, "bucket count of the new cluster")
	f.DurationVar(&cfg.OpTimeout, "op-timeout", cfg.OpTimeout, "deadline of each request")
	f.DurationVar(&cfg.CheckTimeout, "check-timeout", cfg.CheckTimeout, "time the linearizability checker may take")
	f.IntVar(&o.minOK, "min-ok", cfg.MinOK, "fewest successful operations of each kind for a pass (fewer: INCONCLUSIVE)")
	f.IntVar(&cfg.LockNames, "lock-names", cfg.LockNames, "named locks the lock, lease and fenced workloads contend on")
	f.DurationVar(&cfg.LeaseTTL, "lease-ttl", cfg.LeaseTTL, "ttl of the lease workload's locks (at least 1s)")
	f.DurationVar(&cfg.ElectionTimeout, "election-timeout", cfg.ElectionTimeout, "time a dead holder's lock may take beyond its ttl to be taken over (lease)")
}

// configs returns the runs the flags ask for: one Config per workload.
func (o *jepsenRunOpts) configs() []jepsen.Config {
	var out []jepsen.Config
	for _, w := range jepsenList(o.workloads) {
		cfg := o.cfg
		cfg.Workload = w
		cfg.Nemeses = jepsenList(o.nemeses)
		cfg.NemesisTargets = jepsen.Targets(o.targets)
		cfg.PartitionShapes = jepsenList(o.shapes)
		cfg.MinOK = o.minOK
		out = append(out, cfg)
	}
	return out
}

// jepsenProfile is a fixed suite: runs, each `jepsen run` with these
// flags, then optionally the selftest with its flags. Flags the user
// gives with --profile go on top of every run's (and --out on the
// selftest's too).
type jepsenProfile struct {
	// about is the profile's line in the help.
	about string
	runs  [][]string
	// selftest are the flags of the selftest that ends the profile; nil:
	// no selftest.
	selftest []string
}

// jepsenCIWorkloads are the ci profile's workloads, each with its fixed
// seed and the nodes kill and pause hit; append joins once it is a
// workload. The seeds are picked so that the scheduler's first three
// faults are a kill, a pause and a partition in some order (about six
// fit in a run). The register's hit the meta leader, whose failover the
// timestamps it checks depend on (a deposed oracle once served stale
// ones).
var jepsenCIWorkloads = []struct {
	workload string
	seed     uint64
	targets  jepsen.Targets
}{{"register", 11, jepsen.TargetPrimary}, {"lock", 17, jepsen.TargetOne}, {"bank", 34, jepsen.TargetOne}, {"append", 36, jepsen.TargetOne}}

// jepsenProfiles returns the profiles by name.
//
//   - ci: a few minutes on 2 cores. register, lock, bank (and append)
//     for 20s each on 3 nodes with kill, pause and partition faults
//     every 1.5s or so (the register's kills and pauses aimed at the meta
//     leader), fixed seeds; then the selftest, 6s per planted bug. About
//     2.5 minutes in all.
//   - soak: hours, by hand. Every workload but the unfenced control for
//     5 minutes on 5 nodes under each of kill+pause, partition,
//     clock+move+transfer and all of them together (minority targets), seeds
//     from the clock (printed); then the selftest.
func jepsenProfiles() map[string]jepsenProfile {
	ci := jepsenProfile{
		about: "for CI, about 2.5 minutes, fixed seeds: register, lock, bank (and\n" +
			"append), 20s each on 3 nodes under kill, pause and partition (the\n" +
			"register's aimed at the meta leader); then the selftest, 6s per planted bug",
		selftest: []string{"--time-limit=6s", "--seed=5"},
	}
	for _, w := range jepsenCIWorkloads {
		if !slices.Contains(jepsen.WorkloadNames(), w.workload) {
			continue
		}
		ci.runs = append(ci.runs, []string{
			"--workload=" + w.workload, "--nodes=3", "--nemesis=kill,pause,partition", "--nemesis-targets=" + string(w.targets),
			"--time-limit=20s", "--nemesis-interval=1500ms", "--fault-duration=1500ms",
			"--rate=100", "--concurrency=10", fmt.Sprintf("--seed=%d", w.seed),
		})
	}
	soak := jepsenProfile{
		about: "by hand, hours, seeds from the clock: every workload but unfenced,\n" +
			"5m each on 5 nodes under kill+pause, partition, clock+move+transfer and all\n" +
			"of them (minority targets); then the selftest",
		selftest: []string{},
	}
	for _, w := range jepsen.WorkloadNames() {
		if w == "unfenced" { // a control that must come out INVALID
			continue
		}
		for _, nem := range []string{"kill,pause", "partition", "clock,move,transfer", "kill,pause,partition,clock,move,transfer"} {
			soak.runs = append(soak.runs, []string{
				"--workload=" + w, "--nodes=5", "--nemesis=" + nem, "--nemesis-targets=minority",
				"--time-limit=5m", "--nemesis-interval=5s", "--fault-duration=3s",
			})
		}
	}
	return map[string]jepsenProfile{"ci": ci, "soak": soak}
}

// jepsenPlan is what a `jepsen run` invocation runs.
type jepsenPlan struct {
	runs []jepsen.Config
	// runArgs are the runs' flags (for people to replay one), and
	// selftestArgs the selftest's.
	runArgs, selftestArgs [][]string
	// selftest is the selftest to run after the runs, if any.
	selftest *jepsenSelftestOpts
}

// jepsenProfilePlan expands profile name into its runs, with the flags
// the user gave (user, as "--name=value") on top of each run's.
func jepsenProfilePlan(name string, user []string) (jepsenPlan, error) {
	prof, ok := jepsenProfiles()[name]
	if !ok {
		return jepsenPlan{}, fmt.Errorf("unknown profile %q (known: %s)", name, strings.Join(slices.Sorted(maps.Keys(jepsenProfiles())), ", "))
	}
	var plan jepsenPlan
	var out string
	for _, args := range prof.runs {
		o := newJepsenRunOpts()
		fs := pflag.NewFlagSet("jepsen run --profile "+name, pflag.ContinueOnError)
		fs.SetOutput(io.Discard)
		o.addFlags(fs)
		args = append(slices.Clone(args), user...)
		if err := fs.Parse(args); err != nil {
			return jepsenPlan{}, err
		}
		if fs.Changed("profile") {
			return jepsenPlan{}, fmt.Errorf("profile %s: a run sets --profile", name)
		}
		plan.runs = append(plan.runs, o.configs()...)
		plan.runArgs = append(plan.runArgs, args)
		out = o.cfg.OutDir
	}
	if prof.selftest != nil {
		st := newJepsenSelftestOpts()
		fs := pflag.NewFlagSet("jepsen selftest", pflag.ContinueOnError)
		fs.SetOutput(io.Discard)
		st.addFlags(fs)
		args := append(slices.Clone(prof.selftest), "--out="+out)
		if err := fs.Parse(args); err != nil {
			return jepsenPlan{}, err
		}
		plan.selftest, plan.selftestArgs = st, [][]string{args}
	}
	return plan, nil
}

// jepsenUserArgs returns the `jepsen run` flags the user set, as
// "--name=value", for a profile to apply on top of its own; --workload
// is refused (the profile picks the workloads).
func jepsenUserArgs(cmd *cobra.Command) ([]string, error) {
	known := pflag.NewFlagSet("", pflag.ContinueOnError)
	newJepsenRunOpts().addFlags(known)
	var args []string
	var err error
	cmd.Flags().Visit(func(f *pflag.Flag) {
		switch {
		case f.Name == "workload":
			err = errors.New("--workload cannot be combined with --profile (the profile picks the workloads)")
		case f.Name != "profile" && known.Lookup(f.Name) != nil:
			args = append(args, "--"+f.Name+"="+f.Value.String())
		}
	})
	return args, err
}

func newJepsenRunCmd(a *app) *cobra.Command {
	o := newJepsenRunOpts()
	var profiles strings.Builder
	for _, name := range slices.Sorted(maps.Keys(jepsenProfiles())) {
		about := strings.ReplaceAll(jepsenProfiles()[name].about, "\n", "\n        ")
		fmt.Fprintf(&profiles, "  %-5s %s\n", name, about)
	}
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run workloads against fresh local servers under faults",
		Long: `Run each workload (comma-separated) against a fresh cluster of --nodes servers
on 127.0.0.11, .12, …, started by re-executing this binary, for --time-limit
while the nemeses inject faults. Each run writes a directory under --out with
history.jsonl, results.json, summary.txt, latency.svg and throughput.svg
(fault windows shaded) and the servers' logs.

Workloads: ` + strings.Join(jepsen.WorkloadNames(), ", ") + `. Nemeses: ` + strings.Join(jepsen.NemesisNames(), ", ") + ` (or none).

Partitions drop packets between node addresses with nftables rules, inside a
private network namespace: unless it already runs in one, jepsen run
re-executes itself in a new one (servers and clients all live there, and the
rules vanish with it). That needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN);
without it, jepsen run says so loudly and injects the other faults only.
Shapes (--partition-shapes): ` + strings.Join(jepsen.PartitionShapes(), ", ") + `.

The clock nemesis skews the timestamp oracle's clock of random nodes (an
offset of up to ±5 minutes, or a rate of 0.25 to 4) through the servers'
test-only admin service: with it, the servers are started with --test-admin.
The move nemesis moves one replica of a random bucket to a node without one
(MoveReplica); it needs --nodes 4 or more. The transfer nemesis is a
leadership-transfer storm: it hands the leadership of up to 8 random buckets
to other voters at once (TransferLeader).

--profile runs a fixed suite of runs and then the selftest (jepsen selftest);
the flags it is given (not --workload) apply to every run of it, and --out to
the selftest too. It prints each run's flags first, to replay one by hand:
` + profiles.String() + `
Exit status: 0 every run VALID (and with --profile, every planted bug
caught), 1 an anomaly (INVALID), 2 a run INCONCLUSIVE (too few successful
operations, or the checker ran out of time), 3 a harness error (with
--profile, also a planted bug the selftest missed). The summary's last line
is "N passed, N failed" (with --profile, selftest cases count as runs).`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			bin, err := os.Executable()
			if err != nil {
				return fmt.Errorf("find own binary: %w", err)
			}
			plan := jepsenPlan{runs: o.configs()}
			if o.profile != "" {
				user, err := jepsenUserArgs(cmd)
				if err == nil {
					plan, err = jepsenProfilePlan(o.profile, user)
				}
				if err != nil {
					fmt.Fprintf(a.stderr, "Error: InvalidArgument: %s\n", err.Error())
					return &exitError{code: exitJepsenHarnessError}
				}
			}
			for i := range plan.runs {
				plan.runs[i].Binary = bin
			}
			if slices.ContainsFunc(plan.runs, func(c jepsen.Config) bool { return slices.Contains(c.Nemeses, "partition") }) {
				if jepsen.InPrivateNetNS() {
					a.checkPartitions(plan.runs)
				} else {
					code, err := jepsen.RunInPrivateNetNS(cmd.Context(), bin, jepsenRerunArgs(cmd), a.stdin, a.stdout, a.stderr)
					switch {
					case err == nil:
						return &exitError{code: code}
					case errors.Is(err, jepsen.ErrNoNetNS):
						a.dropPartitions(plan.runs, err)
					default:
						fmt.Fprintf(a.stderr, "jepsen: %s\n", err.Error())
						return &exitError{code: exitJepsenHarnessError}
					}
				}
			}
			if o.profile != "" {
				return a.runJepsenProfile(cmd.Context(), o.profile, plan, bin)
			}
			reports, harnessErr, err := a.runJepsenAll(cmd.Context(), plan.runs)
			if err != nil {
				return err
			}
			if err := a.emitJepsen(reports); err != nil {
				return err
			}
			return &exitError{code: jepsenExitCode(reports, harnessErr)}
		},
	}
	o.addFlags(cmd.Flags())
	return cmd
}

// runJepsenAll runs the runs one after the other until ctx ends.
// harnessErr reports a run cut short by a harness error; the error (an
// exitError) is a configuration the harness refuses, after which nothing
// more runs.
func (a *app) runJepsenAll(ctx context.Context, runs []jepsen.Config) (reports []*jepsen.Report, harnessErr bool, err error) {
	for _, cfg := range runs {
		rep, err := a.runJepsen(ctx, cfg)
		if rep == nil {
			fmt.Fprintf(a.stderr, "Error: InvalidArgument: %s\n", err.Error())
			return nil, false, &exitError{code: exitJepsenHarnessError}
		}
		reports = append(reports, rep)
		harnessErr = harnessErr || err != nil
		if ctx.Err() != nil {
			break
		}
	}
	return reports, harnessErr, nil
}

// runJepsenProfile runs a profile's plan: the runs, then the selftest;
// it prints the plan first (to stderr), then every summary, the
// selftest's table, and the tally over runs and selftest cases.
func (a *app) runJepsenProfile(ctx context.Context, name string, plan jepsenPlan, bin string) error {
	start := time.Now()
	fmt.Fprintf(a.stderr, "jepsen profile %s: %d runs", name, len(plan.runs))
	if plan.selftest != nil {
		fmt.Fprintf(a.stderr, ", then the selftest")
	}
	fmt.Fprintln(a.stderr)
	for _, args := range plan.runArgs {
		fmt.Fprintf(a.stderr, "  opencluster jepsen run %s\n", strings.Join(args, " "))
	}
	for _, args := range plan.selftestArgs {
		fmt.Fprintf(a.stderr, "  opencluster jepsen selftest %s\n", strings.Join(args, " "))
	}
	reports, harnessErr, err := a.runJepsenAll(ctx, plan.runs)
	if err != nil {
		return err
	}
	var rows []jepsenSelftestRow
	var selftestText string
	selftestOK, ncases := true, 0
	if plan.selftest != nil {
		cases, err := plan.selftest.cases()
		if err == nil && ctx.Err() == nil {
			st := plan.selftest.cfg
			st.Binary = bin
			rows, err = a.runSelftest(ctx, st, cases)
		}
		if err != nil {
			fmt.Fprintf(a.stderr, "Error: InvalidArgument: %s\n", err.Error())
			return &exitError{code: exitJepsenHarnessError}
		}
		ncases = len(cases)
		selftestText, selftestOK = selftestTable(rows, ncases)
	}
	passed := 0
	for _, rep := range reports {
		if rep.Verdict == jepsen.Valid && rep.Error == "" {
			passed++
		}
	}
	for _, r := range rows {
		if r.caught() {
			passed++
		}
	}
	// A selftest case that did not run (ctx ended) counts as failed.
	tally := fmt.Sprintf("%d passed, %d failed", passed, len(reports)+ncases-passed)
	elapsed := time.Since(start).Round(time.Second)
	if a.flags.output == outputJSON {
		enc := json.NewEncoder(a.stdout)
		if err := enc.Encode(map[string]any{"profile": name, "reports": reports, "selftest": rows, "elapsed_ns": elapsed, "tally": tally}); err != nil {
			return ioError(err)
		}
	} else {
		var b strings.Builder
		for _, rep := range reports {
			b.WriteString(rep.Summary())
		}
		b.WriteString(selftestText)
		fmt.Fprintf(&b, "profile %s: %d runs, %d planted bugs in %s\n%s\n", name, len(reports), len(rows), elapsed, tally)
		if _, err := io.WriteString(a.stdout, b.String()); err != nil {
			return ioError(err)
		}
	}
	code := jepsenExitCode(reports, harnessErr)
	if !selftestOK && code != exitJepsenInvalid {
		code = exitJepsenHarnessError
	}
	return &exitError{code: code}
}

// jepsenSelftestOpts are the flags of `jepsen selftest`.
type jepsenSelftestOpts struct {
	cfg  jepsen.Config
	bugs string
}

func newJepsenSelftestOpts() *jepsenSelftestOpts {
	cfg := jepsen.DefaultConfig()
	cfg.TimeLimit = 8 * time.Second
	cfg.MinOK = 5
	cfg.OutDir = "jepsen-selftest"
	return &jepsenSelftestOpts{cfg: cfg}
}

// addFlags declares the flags of `jepsen selftest` on f, bound to o.
func (o *jepsenSelftestOpts) addFlags(f *pflag.FlagSet) {
	cfg := &o.cfg
	f.StringVar(&o.bugs, "bugs", "", "planted bugs to test, comma-separated (default: all): "+jepsen.BugStaleReads+", "+jepsen.BugNoFenceCheck+", "+jepsen.BugEarlyExpiry)
	f.IntVar(&cfg.Nodes, "nodes", cfg.Nodes, "server count")
	f.DurationVar(&cfg.TimeLimit, "time-limit", cfg.TimeLimit, "how long clients issue operations, per bug")
	f.Float64Var(&cfg.Rate, "rate", cfg.Rate, "target operations per second over all clients")
	f.IntVar(&cfg.Concurrency, "concurrency", cfg.Concurrency, "client processes")
	f.Uint64Var(&cfg.Seed, "seed", 0, "seed of every random choice (0: from the clock; printed either way)")
	f.StringVar(&cfg.OutDir, "out", cfg.OutDir, "directory that receives one run directory per run")
	f.IntVar(&cfg.MinOK, "min-ok", cfg.MinOK, "fewest successful operations of each kind for a pass")
}

// cases returns the selftest cases --bugs picks (all by default).
func (o *jepsenSelftestOpts) cases() ([]jepsen.SelftestCase, error) {
	for _, b := range jepsenList(o.bugs) {
		if _, err := jepsen.ParsePlantedBug(b); err != nil {
			return nil, err
		}
	}
	var cases []jepsen.SelftestCase
	for _, c := range jepsen.SelftestCases() {
		if o.bugs == "" || slices.Contains(jepsenList(o.bugs), c.Bug) {
			cases = append(cases, c)
		}
	}
	return cases, nil
}

// jepsenSelftestRow is one planted bug's run: Got is the run's verdict,
// or ERROR for a harness error.
type jepsenSelftestRow struct {
	Bug      string `json:"bug"`
	Workload string `json:"workload"`
	Got      string `json:"got"`
	Dir      string `json:"dir"`
}

// caught reports whether the run caught the planted bug.
func (r jepsenSelftestRow) caught() bool { return r.Got == jepsen.Invalid.String() }

// runSelftest runs cfg once per case with the case's bug planted. The
// error is a configuration the harness refuses (nothing more ran).
func (a *app) runSelftest(ctx context.Context, cfg jepsen.Config, cases []jepsen.SelftestCase) ([]jepsenSelftestRow, error) {
	var rows []jepsenSelftestRow
	for _, c := range cases {
		rc := cfg
		rc.Workload = c.Workload
		rc.PlantedBugs, _ = jepsen.ParsePlantedBug(c.Bug)
		rep, err := a.runJepsen(ctx, rc)
		if rep == nil {
			return rows, err
		}
		r := jepsenSelftestRow{Bug: c.Bug, Workload: c.Workload, Got: "ERROR", Dir: rep.Dir}
		if rep.Error == "" && err == nil {
			r.Got = rep.Verdict.String()
		}
		rows = append(rows, r)
		if ctx.Err() != nil {
			break
		}
	}
	return rows, nil
}

// selftestTable renders the selftest's table and its last line; ok is
// false unless all of the want cases ran and were caught.
func selftestTable(rows []jepsenSelftestRow, want int) (text string, ok bool) {
	var b strings.Builder
	fmt.Fprintf(&b, "%-16s %-10s %-10s %-14s %s\n", "BUG", "WORKLOAD", "EXPECTED", "GOT", "RUN")
	ok = len(rows) == want
	for _, r := range rows {
		mark := ""
		if !r.caught() {
			mark = "  <- NOT CAUGHT"
			ok = false
		}
		fmt.Fprintf(&b, "%-16s %-10s %-10s %-14s %s%s\n", r.Bug, r.Workload, jepsen.Invalid, r.Got, r.Dir, mark)
	}
	if ok {
		fmt.Fprintf(&b, "selftest: all %d planted bugs caught\n", len(rows))
	} else {
		fmt.Fprintf(&b, "selftest: FAILED: a planted bug was not caught\n")
	}
	return b.String(), ok
}

// newJepsenSelftestCmd returns `jepsen selftest`: the negative controls.
func newJepsenSelftestCmd(a *app) *cobra.Command {
	o := newJepsenSelftestOpts()
	cmd := &cobra.Command{
		Use:   "selftest",
		Short: "Check that the harness catches the server's planted bugs",
		Long: `Run short runs against servers started with --test-admin and one planted bug
switched on each, and check that every run comes out INVALID:

` + selftestCasesText() + `
Prints a table (bug, workload, expected, got, run directory). Exit status: 0
every planted bug caught, 1 one was not (VALID, INCONCLUSIVE or a harness
error: the harness would miss such a bug).`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			bin, err := os.Executable()
			if err != nil {
				return fmt.Errorf("find own binary: %w", err)
			}
			cases, err := o.cases()
			if err != nil {
				fmt.Fprintf(a.stderr, "Error: InvalidArgument: %s\n", err.Error())
				return &exitError{code: exitJepsenHarnessError}
			}
			cfg := o.cfg
			cfg.Binary = bin
			rows, err := a.runSelftest(cmd.Context(), cfg, cases)
			if err != nil {
				fmt.Fprintf(a.stderr, "Error: InvalidArgument: %s\n", err.Error())
				return &exitError{code: exitJepsenHarnessError}
			}
			text, caught := selftestTable(rows, len(cases))
			if _, err := io.WriteString(a.stdout, text); err != nil {
				return ioError(err)
			}
			if !caught {
				return &exitError{code: exitJepsenInvalid}
			}
			return &exitError{code: exitJepsenValid}
		},
	}
	o.addFlags(cmd.Flags())
	return cmd
}

// selftestCasesText lists the selftest's cases for its help.
func selftestCasesText() string {
	var b strings.Builder
	for _, c := range jepsen.SelftestCases() {
		fmt.Fprintf(&b, "  %-16s caught by the %s workload\n", c.Bug, c.Workload)
	}
	return b.String()
}

// jepsenRerunArgs rebuilds the command line of `jepsen run` from the flags
// given, to run it again in a private network namespace.
func jepsenRerunArgs(cmd *cobra.Command) []string {
	args := []string{"jepsen", "run"}
	cmd.Flags().Visit(func(f *pflag.Flag) {
		args = append(args, "--"+f.Name+"="+f.Value.String())
	})
	return args
}

// checkPartitions, in the private namespace, checks that the packet filter
// can be programmed there; if not, partitions are left out of the runs,
// loudly.
func (a *app) checkPartitions(runs []jepsen.Config) {
	err := jepsen.PreparePrivateNetNS()
	if err == nil {
		var n jepsen.Net
		if n, err = jepsen.NewNFTNet(); err == nil {
			err = n.Close()
		}
	}
	if err != nil {
		a.dropPartitions(runs, err)
	}
}

// dropPartitions removes the partition nemesis from the runs, says why on
// stderr (once) in a way nobody can miss, and records it in each run's
// report.
func (a *app) dropPartitions(runs []jepsen.Config, why error) {
	bar := strings.Repeat("!", 78)
	fmt.Fprintf(a.stderr, "%s\n!! NO PARTITIONS: %s. Partitions need root (CAP_SYS_ADMIN for a private network namespace, CAP_NET_ADMIN for nftables); running the other nemeses only.\n%s\n", bar, why.Error(), bar)
	for i := range runs {
		cfg := &runs[i]
		if !slices.Contains(cfg.Nemeses, "partition") {
			continue
		}
		cfg.Nemeses = slices.DeleteFunc(slices.Clone(cfg.Nemeses), func(n string) bool { return n == "partition" })
		rest := strings.Join(cfg.Nemeses, ",")
		if rest == "" {
			rest = "none"
		}
		cfg.Warnings = append(cfg.Warnings, fmt.Sprintf("NO PARTITIONS: %s. Partitions need root (CAP_SYS_ADMIN for a private network namespace, CAP_NET_ADMIN for nftables); running with nemesis %s only.", why.Error(), rest))
	}
}

// newJepsenLeaseHolderCmd returns the hidden `jepsen lease-holder`: one
// lease holder process of the lease workload, driven by the harness over
// its standard input and output.
func newJepsenLeaseHolderCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:    "lease-holder",
		Short:  "Hold a lock for the lease workload (driven by jepsen run)",
		Hidden: true,
		Args:   exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return jepsen.ServeLeaseHolder(cmd.Context(), a.endpointList(), a.dialOpts, a.stdin, a.stdout)
		},
	}
}

// runJepsen runs one workload with a live progress line on stderr.
func (a *app) runJepsen(ctx context.Context, cfg jepsen.Config) (*jepsen.Report, error) {
	live := jepsenIsTerminal(a.stderr)
	ticks := 0
	cfg.Progress = func(p jepsen.Progress) {
		line := fmt.Sprintf("jepsen %s  %-8s %5.1fs/%s  ok %d  fail %d  info %d  faults %d",
			cfg.Workload, p.Phase, p.Elapsed.Seconds(), p.TimeLimit, p.OK, p.Fail, p.Info, p.Faults)
		if p.Active != "" {
			line += "  [" + p.Active + "]"
		}
		switch {
		case live:
			fmt.Fprintf(a.stderr, "\r\033[K%s", line)
		case ticks%10 == 0:
			fmt.Fprintln(a.stderr, line)
		}
		ticks++
	}
	rep, err := jepsen.Run(ctx, cfg)
	if live {
		fmt.Fprint(a.stderr, "\r\033[K")
	}
	if err != nil && rep != nil {
		fmt.Fprintf(a.stderr, "jepsen %s: harness error: %s\n", cfg.Workload, err.Error())
	}
	return rep, err
}

// emitJepsen prints the summaries and the tally (text), or one JSON
// object {"reports":[…],"tally":…}.
func (a *app) emitJepsen(reports []*jepsen.Report) error {
	if a.flags.output == outputJSON {
		enc := json.NewEncoder(a.stdout)
		return ioError(enc.Encode(map[string]any{"reports": reports, "tally": jepsen.Tally(reports)}))
	}
	for _, rep := range reports {
		if _, err := io.WriteString(a.stdout, rep.Summary()); err != nil {
			return ioError(err)
		}
	}
	_, err := fmt.Fprintln(a.stdout, jepsen.Tally(reports))
	return ioError(err)
}

// jepsenExitCode ranks outcomes: an anomaly first, then a harness error,
// then an inconclusive run.
func jepsenExitCode(reports []*jepsen.Report, harnessErr bool) int {
	code := exitJepsenValid
	for _, rep := range reports {
		switch {
		case rep.Verdict == jepsen.Invalid:
			return exitJepsenInvalid
		case rep.Error != "" || harnessErr:
			code = exitJepsenHarnessError
		case rep.Verdict == jepsen.Inconclusive && code == exitJepsenValid:
			code = exitJepsenInconclusive
		}
	}
	return code
}

func newJepsenCheckCmd(a *app) *cobra.Command {
	opts := jepsen.CheckOptions{}
	defaults := jepsen.DefaultConfig()
	cmd := &cobra.Command{
		Use:   "check DIR",
		Short: "Check a saved run directory's history again",
		Long: `Re-run the checkers of the run in DIR on its history.jsonl (the workload, and
unless given the --min-ok and --clock-drift, come from its results.json),
draw its plots again, and print the summary. Exit status as for run.`,
		Args: exactArgs(1, "a run directory"),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := args[0]
			var rep jepsen.Report
			b, err := os.ReadFile(filepath.Join(dir, "results.json"))
			if err != nil {
				return err
			}
			if err := json.Unmarshal(b, &rep); err != nil {
				return fmt.Errorf("%s: %w", filepath.Join(dir, "results.json"), err)
			}
			f, err := os.Open(filepath.Join(dir, "history.jsonl"))
			if err != nil {
				return err
			}
			ops, err := jepsen.ReadHistory(f)
			_ = f.Close()
			if err != nil {
				return err
			}
			// Judge by the run's own bar unless told otherwise.
			if !cmd.Flags().Changed("min-ok") && rep.MinOK > 0 {
				opts.MinOK = rep.MinOK
			}
			if !cmd.Flags().Changed("clock-drift") && rep.ClockDrift > 0 {
				opts.ClockDrift = rep.ClockDrift
			}
			if !cmd.Flags().Changed("election-timeout") && rep.ElectionTimeout > 0 {
				opts.ElectionTimeout = rep.ElectionTimeout
			}
			opts.Dir = dir
			start := time.Now()
			rep.Results, err = jepsen.CheckHistory(cmd.Context(), rep.Workload, ops, opts)
			if err != nil {
				return err
			}
			verdicts := make([]jepsen.Verdict, len(rep.Results))
			for i, r := range rep.Results {
				verdicts[i] = r.Verdict
			}
			rep.Verdict, rep.Error, rep.Dir, rep.Elapsed = jepsen.Combine(verdicts...), "", dir, time.Since(start)
			// Draw the plots again (a run from before them gets them now).
			if rep.Plots, err = jepsen.WritePlots(dir, ops); err != nil {
				fmt.Fprintf(a.stderr, "jepsen check: %s\n", err.Error())
			}
			if err := a.emitJepsen([]*jepsen.Report{&rep}); err != nil {
				return err
			}
			return &exitError{code: jepsenExitCode([]*jepsen.Report{&rep}, false)}
		},
	}
	f := cmd.Flags()
	f.IntVar(&opts.MinOK, "min-ok", defaults.MinOK, "fewest successful operations of each kind for a pass (default: the run's)")
	f.DurationVar(&opts.CheckTimeout, "check-timeout", defaults.CheckTimeout, "time the linearizability checker may take")
	f.Float64Var(&opts.ClockDrift, "clock-drift", defaults.ClockDrift, "bound on servers' clock rate error assumed by the lock checker (default: the run's)")
	f.DurationVar(&opts.ElectionTimeout, "election-timeout", defaults.ElectionTimeout, "lease takeover allowance beyond the ttl (default: the run's)")
	return cmd
}

// jepsenList splits a comma-separated flag, dropping empty items.
func jepsenList(s string) []string {
	var out []string
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// jepsenIsTerminal reports whether w is a terminal (then progress redraws one
// line).
func jepsenIsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
