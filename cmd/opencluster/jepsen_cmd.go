package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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

func newJepsenRunCmd(a *app) *cobra.Command {
	cfg := jepsen.DefaultConfig()
	var workloads, nemeses, targets, shapes string
	var minOK int
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run workloads against fresh local servers under faults",
		Long: `Run each workload (comma-separated) against a fresh cluster of --nodes servers
on 127.0.0.11, .12, …, started by re-executing this binary, for --time-limit
while the nemeses inject faults. Each run writes a directory under --out with
history.jsonl, results.json, summary.txt and the servers' logs.

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
(MoveReplica); it needs --nodes 4 or more.

Exit status: 0 every run VALID, 1 an anomaly (INVALID), 2 a run INCONCLUSIVE
(too few successful operations, or the checker ran out of time), 3 a harness
error. The summary's last line is "N passed, N failed".`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			bin, err := os.Executable()
			if err != nil {
				return fmt.Errorf("find own binary: %w", err)
			}
			cfg.Binary = bin
			cfg.Nemeses = jepsenList(nemeses)
			cfg.NemesisTargets = jepsen.Targets(targets)
			cfg.PartitionShapes = jepsenList(shapes)
			cfg.MinOK = minOK
			if slices.Contains(cfg.Nemeses, "partition") {
				if jepsen.InPrivateNetNS() {
					a.checkPartitions(&cfg)
				} else {
					code, err := jepsen.RunInPrivateNetNS(cmd.Context(), bin, jepsenRerunArgs(cmd), a.stdin, a.stdout, a.stderr)
					switch {
					case err == nil:
						return &exitError{code: code}
					case errors.Is(err, jepsen.ErrNoNetNS):
						a.dropPartitions(&cfg, err)
					default:
						fmt.Fprintf(a.stderr, "jepsen: %s\n", err.Error())
						return &exitError{code: exitJepsenHarnessError}
					}
				}
			}
			var reports []*jepsen.Report
			var harnessErr bool
			for _, w := range jepsenList(workloads) {
				cfg.Workload = w
				rep, err := a.runJepsen(cmd.Context(), cfg)
				if rep == nil {
					// Nothing ran: a configuration the harness refuses.
					fmt.Fprintf(a.stderr, "Error: InvalidArgument: %s\n", err.Error())
					return &exitError{code: exitJepsenHarnessError}
				}
				reports = append(reports, rep)
				harnessErr = harnessErr || err != nil
				if cmd.Context().Err() != nil {
					break
				}
			}
			if err := a.emitJepsen(reports); err != nil {
				return err
			}
			return &exitError{code: jepsenExitCode(reports, harnessErr)}
		},
	}
	f := cmd.Flags()
	f.StringVar(&workloads, "workload", cfg.Workload, "workloads to run, comma-separated: "+strings.Join(jepsen.WorkloadNames(), ", "))
	f.StringVar(&nemeses, "nemesis", "none", "faults to inject, comma-separated: "+strings.Join(jepsen.NemesisNames(), ", ")+", or none")
	f.StringVar(&targets, "nemesis-targets", string(cfg.NemesisTargets), "nodes kill and pause hit: one, minority, majority or all")
	f.StringVar(&shapes, "partition-shapes", strings.Join(jepsen.PartitionShapes(), ","), "partition shapes to pick from, comma-separated")
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
	f.IntVar(&minOK, "min-ok", cfg.MinOK, "fewest successful operations of each kind for a pass (fewer: INCONCLUSIVE)")
	f.IntVar(&cfg.LockNames, "lock-names", cfg.LockNames, "named locks the lock, lease and fenced workloads contend on")
	f.DurationVar(&cfg.LeaseTTL, "lease-ttl", cfg.LeaseTTL, "ttl of the lease workload's locks (at least 1s)")
	f.DurationVar(&cfg.ElectionTimeout, "election-timeout", cfg.ElectionTimeout, "time a dead holder's lock may take beyond its ttl to be taken over (lease)")
	return cmd
}

// newJepsenSelftestCmd returns `jepsen selftest`: the negative controls.
func newJepsenSelftestCmd(a *app) *cobra.Command {
	cfg := jepsen.DefaultConfig()
	cfg.TimeLimit = 8 * time.Second
	cfg.MinOK = 5
	cfg.OutDir = "jepsen-selftest"
	var bugs string
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
			cfg.Binary = bin
			var cases []jepsen.SelftestCase
			for _, c := range jepsen.SelftestCases() {
				if bugs == "" || slices.Contains(jepsenList(bugs), c.Bug) {
					cases = append(cases, c)
				}
			}
			for _, b := range jepsenList(bugs) {
				if _, err := jepsen.ParsePlantedBug(b); err != nil {
					fmt.Fprintf(a.stderr, "Error: InvalidArgument: %s\n", err.Error())
					return &exitError{code: exitJepsenHarnessError}
				}
			}
			type row struct{ bug, workload, got, dir string }
			var rows []row
			caught := true
			for _, c := range cases {
				rc := cfg
				rc.Workload = c.Workload
				rc.PlantedBugs, _ = jepsen.ParsePlantedBug(c.Bug)
				rep, err := a.runJepsen(cmd.Context(), rc)
				got := "ERROR"
				r := row{bug: c.Bug, workload: c.Workload}
				switch {
				case rep == nil:
					fmt.Fprintf(a.stderr, "Error: InvalidArgument: %s\n", err.Error())
					return &exitError{code: exitJepsenHarnessError}
				case rep.Error == "" && err == nil:
					got = rep.Verdict.String()
				}
				r.got, r.dir = got, rep.Dir
				caught = caught && got == jepsen.Invalid.String()
				rows = append(rows, r)
				if cmd.Context().Err() != nil {
					break
				}
			}
			var b strings.Builder
			fmt.Fprintf(&b, "%-16s %-10s %-10s %-14s %s\n", "BUG", "WORKLOAD", "EXPECTED", "GOT", "RUN")
			for _, r := range rows {
				mark := ""
				if r.got != jepsen.Invalid.String() {
					mark = "  <- NOT CAUGHT"
				}
				fmt.Fprintf(&b, "%-16s %-10s %-10s %-14s %s%s\n", r.bug, r.workload, jepsen.Invalid, r.got, r.dir, mark)
			}
			if caught && len(rows) == len(cases) {
				fmt.Fprintf(&b, "selftest: all %d planted bugs caught\n", len(rows))
			} else {
				fmt.Fprintf(&b, "selftest: FAILED: a planted bug was not caught\n")
				caught = false
			}
			if _, err := io.WriteString(a.stdout, b.String()); err != nil {
				return ioError(err)
			}
			if !caught {
				return &exitError{code: exitJepsenInvalid}
			}
			return &exitError{code: exitJepsenValid}
		},
	}
	f := cmd.Flags()
	f.StringVar(&bugs, "bugs", "", "planted bugs to test, comma-separated (default: all): "+jepsen.BugStaleReads+", "+jepsen.BugNoFenceCheck+", "+jepsen.BugEarlyExpiry)
	f.IntVar(&cfg.Nodes, "nodes", cfg.Nodes, "server count")
	f.DurationVar(&cfg.TimeLimit, "time-limit", cfg.TimeLimit, "how long clients issue operations, per bug")
	f.Float64Var(&cfg.Rate, "rate", cfg.Rate, "target operations per second over all clients")
	f.IntVar(&cfg.Concurrency, "concurrency", cfg.Concurrency, "client processes")
	f.Uint64Var(&cfg.Seed, "seed", 0, "seed of every random choice (0: from the clock; printed either way)")
	f.StringVar(&cfg.OutDir, "out", cfg.OutDir, "directory that receives one run directory per run")
	f.IntVar(&cfg.MinOK, "min-ok", cfg.MinOK, "fewest successful operations of each kind for a pass")
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
// can be programmed there; if not, partitions are left out, loudly.
func (a *app) checkPartitions(cfg *jepsen.Config) {
	err := jepsen.PreparePrivateNetNS()
	if err == nil {
		var n jepsen.Net
		if n, err = jepsen.NewNFTNet(); err == nil {
			err = n.Close()
		}
	}
	if err != nil {
		a.dropPartitions(cfg, err)
	}
}

// dropPartitions removes the partition nemesis from cfg, says why on
// stderr in a way nobody can miss, and records it in the report.
func (a *app) dropPartitions(cfg *jepsen.Config, why error) {
	cfg.Nemeses = slices.DeleteFunc(cfg.Nemeses, func(n string) bool { return n == "partition" })
	rest := strings.Join(cfg.Nemeses, ",")
	if rest == "" {
		rest = "none"
	}
	msg := fmt.Sprintf("NO PARTITIONS: %s. Partitions need root (CAP_SYS_ADMIN for a private network namespace, CAP_NET_ADMIN for nftables); running with nemesis %s only.", why.Error(), rest)
	cfg.Warnings = append(cfg.Warnings, msg)
	bar := strings.Repeat("!", 78)
	fmt.Fprintf(a.stderr, "%s\n!! %s\n%s\n", bar, msg, bar)
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
unless given the --min-ok and --clock-drift, come from its results.json) and
print the summary. Exit status as for run.`,
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
