package jepsen

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Report is the outcome of a run; results.json holds it.
type Report struct {
	Workload    string   `json:"workload"`
	Nemeses     []string `json:"nemeses"`
	Targets     Targets  `json:"targets"`
	Nodes       int      `json:"nodes"`
	Endpoints   []string `json:"endpoints,omitempty"`
	Seed        uint64   `json:"seed"`
	TimeLimit   string   `json:"time_limit"`
	Rate        float64  `json:"rate"`
	Concurrency int      `json:"concurrency"`
	// MinOK and ClockDrift are the checkers' options (CheckOptions), so a
	// re-check judges by the same bar.
	MinOK      int     `json:"min_ok"`
	ClockDrift float64 `json:"clock_drift"`
	// ElectionTimeout is the lease checker's allowance (CheckOptions).
	ElectionTimeout time.Duration `json:"election_timeout_ns,omitempty"`
	GoVersion       string        `json:"go_version"`
	Started         string        `json:"started"`
	// Dir is the run directory.
	Dir     string        `json:"dir"`
	Elapsed time.Duration `json:"elapsed_ns"`

	// OK, Fail and Info count client completions.
	OK   int `json:"ok"`
	Fail int `json:"fail"`
	Info int `json:"info"`
	// Faults counts injected faults by nemesis.
	Faults map[string]int `json:"faults"`
	// Net says how partitions were made ("" without them), and
	// DroppedPackets how many packets they dropped in all: a partition
	// that dropped nothing did not partition anything.
	Net            string `json:"net,omitempty"`
	DroppedPackets uint64 `json:"dropped_packets,omitempty"`
	// Warnings are the run's caveats (a nemesis left out, and why).
	Warnings []string `json:"warnings,omitempty"`
	// Plots are the run directory's plots (WritePlots), relative to Dir.
	Plots []string `json:"plots,omitempty"`
	// PlantedBugs are the server bugs the run switched on (a negative
	// control, expected INVALID).
	PlantedBugs *PlantedBugs `json:"planted_bugs,omitempty"`

	Results []Result `json:"results"`
	Verdict Verdict  `json:"verdict"`
	// Error is the harness error that cut the run short, if any; the
	// verdict of such a run is Inconclusive.
	Error string `json:"error,omitempty"`
}

func (r *runner) newReport() *Report {
	warnings := r.cfg.Warnings
	var bugs *PlantedBugs
	if r.cfg.PlantedBugs.Any() {
		bugs = &r.cfg.PlantedBugs
		warnings = append(slices.Clone(warnings), "PLANTED BUGS ON: "+bugs.String()+" (negative control: INVALID expected)")
	}
	return &Report{
		PlantedBugs:     bugs,
		Workload:        r.cfg.Workload,
		Nemeses:         nonEmpty(r.cfg.Nemeses),
		Targets:         r.cfg.NemesisTargets,
		Nodes:           r.cfg.Nodes,
		Endpoints:       r.cfg.Endpoints,
		Seed:            r.cfg.Seed,
		TimeLimit:       r.cfg.TimeLimit.String(),
		Rate:            r.cfg.Rate,
		Concurrency:     r.cfg.Concurrency,
		MinOK:           r.cfg.MinOK,
		ClockDrift:      r.cfg.ClockDrift,
		ElectionTimeout: r.cfg.ElectionTimeout,
		GoVersion:       runtime.Version(),
		Started:         time.Now().UTC().Format(time.RFC3339),
		Dir:             r.dir,
		Warnings:        warnings,
		Verdict:         Inconclusive,
	}
}

// writeArtefacts fills in the counts and writes history.jsonl, the plots,
// results.json and summary.txt; a VALID run's data directories go unless
// KeepData. Plots that cannot be drawn are a warning, not an error.
func (r *runner) writeArtefacts(rep *Report) error {
	ops := r.rec.Ops()
	rep.OK, rep.Fail, rep.Info = r.rec.Counts()
	if s := r.sched.Load(); s != nil {
		rep.Faults = s.Counts()
	}
	for _, n := range r.nemeses {
		if p, ok := n.(*partitionNemesis); ok {
			rep.DroppedPackets = p.Dropped()
		}
	}
	if rep.Error != "" {
		rep.Verdict = Inconclusive
	}
	var errs []error
	write := func(name string, fill func(f *os.File) error) {
		f, err := os.Create(filepath.Join(r.dir, name))
		if err != nil {
			errs = append(errs, err)
			return
		}
		errs = append(errs, fill(f), f.Close())
	}
	write("history.jsonl", func(f *os.File) error { return WriteHistory(f, ops) })
	var err error
	if rep.Plots, err = WritePlots(r.dir, ops); err != nil {
		r.cfg.Logger.Warn("jepsen: plots", "err", err)
		rep.Warnings = append(slices.Clone(rep.Warnings), err.Error())
	}
	write("results.json", func(f *os.File) error {
		enc := json.NewEncoder(f)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	})
	write("summary.txt", func(f *os.File) error {
		_, err := fmt.Fprintf(f, "%s%s\n", rep.Summary(), Tally([]*Report{rep}))
		return err
	})
	if rep.Verdict == Valid && !r.cfg.KeepData {
		errs = append(errs, os.RemoveAll(filepath.Join(r.dir, "data")))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("jepsen: write run directory: %w", err)
	}
	return nil
}

// maxFilesShown bounds the files of one checker a summary lists.
const maxFilesShown = 5

// Summary renders the report for people: the test, the counts, one line
// per checker with its anomalies, and the verdict.
func (rep *Report) Summary() string {
	var b strings.Builder
	nemesis := nemesisLabel(rep.Nemeses)
	if slices.Contains(rep.Nemeses, "kill") || slices.Contains(rep.Nemeses, "pause") {
		nemesis = strings.Join(rep.Nemeses, ",") + "[" + string(rep.Targets) + "]"
	} else if nemesis != "none" {
		nemesis = strings.Join(rep.Nemeses, ",")
	}
	for _, w := range rep.Warnings {
		fmt.Fprintf(&b, "WARNING: %s\n", w)
	}
	fmt.Fprintf(&b, "jepsen %s  nemesis=%s  nodes=%d  seed=%d  time-limit=%s  rate=%g  concurrency=%d\n",
		rep.Workload, nemesis, rep.Nodes, rep.Seed, rep.TimeLimit, rep.Rate, rep.Concurrency)
	total := 0
	var faults []string
	for _, k := range slices.Sorted(maps.Keys(rep.Faults)) {
		total += rep.Faults[k]
		faults = append(faults, fmt.Sprintf("%s %d", k, rep.Faults[k]))
	}
	fmt.Fprintf(&b, "ops %d: ok %d  fail %d  info %d   faults %d", rep.OK+rep.Fail+rep.Info, rep.OK, rep.Fail, rep.Info, total)
	if len(faults) > 0 {
		fmt.Fprintf(&b, " (%s)", strings.Join(faults, ", "))
	}
	if rep.Net != "" {
		fmt.Fprintf(&b, "   partitions by %s dropped %d packets", rep.Net, rep.DroppedPackets)
	}
	b.WriteString("\n")
	for _, res := range rep.Results {
		fmt.Fprintf(&b, "%-40s %-12s %6.2fs  %s\n", res.Checker, res.Verdict, res.Elapsed.Seconds(), res.statsLine())
		if res.Reason != "" {
			fmt.Fprintf(&b, "    %s\n", res.Reason)
		}
		for _, n := range res.Notes {
			fmt.Fprintf(&b, "    %s\n", n)
		}
		for _, a := range res.Anomalies {
			fmt.Fprintf(&b, "    ! %s\n", a)
		}
		if res.MoreAnomalies > 0 {
			fmt.Fprintf(&b, "    ! … and %d more (results.json lists the first %d)\n", res.MoreAnomalies, maxAnomalies)
		}
		for i, f := range res.Files {
			if i == maxFilesShown {
				fmt.Fprintf(&b, "    … and %d more files (results.json lists them)\n", len(res.Files)-i)
				break
			}
			fmt.Fprintf(&b, "    see %s\n", filepath.Join(rep.Dir, f))
		}
	}
	if len(rep.Plots) > 0 {
		paths := make([]string, len(rep.Plots))
		for i, f := range rep.Plots {
			paths[i] = filepath.Join(rep.Dir, f)
		}
		fmt.Fprintf(&b, "plots %s\n", strings.Join(paths, "  "))
	}
	if rep.Error != "" {
		fmt.Fprintf(&b, "harness error: %s\n", rep.Error)
	}
	fmt.Fprintf(&b, "RESULT %s  elapsed %s  artefacts %s\n", rep.Verdict, rep.Elapsed.Round(time.Second/10), rep.Dir)
	return b.String()
}

// Tally is the last line of a summary: runs that passed and runs that did
// not (INVALID, INCONCLUSIVE or cut short).
func Tally(reports []*Report) string {
	passed := 0
	for _, rep := range reports {
		if rep != nil && rep.Verdict == Valid && rep.Error == "" {
			passed++
		}
	}
	return fmt.Sprintf("%d passed, %d failed", passed, len(reports)-passed)
}
