package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"text/tabwriter"
	"time"
)

// Result is the outcome of one run. It crosses the peer protocol as JSON
// with all its fields; WriteJSON prints the public subset.
type Result struct {
	Target      string `json:"target"`
	Workload    string `json:"workload"`
	Concurrency int    `json:"concurrency"`
	Nodes       int    `json:"nodes"`
	// Round is the suite's round the run belongs to (Config.Rounds).
	Round int `json:"round"`
	// Ops counts the operations that completed without error inside the
	// measured window.
	Ops       uint64  `json:"ops"`
	OpsPerSec float64 `json:"ops_per_sec"`
	// P50, P99 and Max are latencies of the counted operations.
	P50 time.Duration `json:"p50_ns"`
	P99 time.Duration `json:"p99_ns"`
	Max time.Duration `json:"max_ns"`
	// Errors counts the operations that failed inside the window.
	Errors int64 `json:"errors"`
	// ErrorSample is the first error seen, for the report.
	ErrorSample string `json:"error_sample,omitempty"`
	// RSSMB is the peak resident set (VmHWM) of the largest server process
	// during the run, in MiB; 0 when unknown (--endpoints).
	RSSMB float64 `json:"rss_mb"`
	// CPUPerOp is the CPU time all the server processes used per operation
	// inside the measured window; 0 when unknown (--endpoints).
	CPUPerOp time.Duration `json:"cpu_per_op_ns"`
	// Violations counts failed safety checks (mutual exclusion, fences,
	// account totals); Notes describe the first few.
	Violations int      `json:"violations"`
	Notes      []string `json:"notes,omitempty"`
}

// summarize fills the rates and latencies of r from a merged histogram
// over a window.
func (r *Result) summarize(h *Histogram, window time.Duration) {
	r.Ops = h.Count()
	r.OpsPerSec = float64(h.Count()) / window.Seconds()
	r.P50 = h.Quantile(0.50)
	r.P99 = h.Quantile(0.99)
	r.Max = h.Max()
}

// publicResult is one entry of -o json: exactly these fields.
type publicResult struct {
	Target      string  `json:"target"`
	Workload    string  `json:"workload"`
	Concurrency int     `json:"concurrency"`
	Nodes       int     `json:"nodes"`
	Round       int     `json:"round"`
	OpsPerSec   float64 `json:"ops_per_sec"`
	P50Ms       float64 `json:"p50_ms"`
	P99Ms       float64 `json:"p99_ms"`
	MaxMs       float64 `json:"max_ms"`
	Errors      int64   `json:"errors"`
	RSSMB       float64 `json:"rss_mb"`
}

func round(x float64, digits int) float64 {
	p := math.Pow10(digits)
	return math.Round(x*p) / p
}

// ms converts to milliseconds rounded to the µs (for JSON); msf does
// not round (for tables, which round when they format).
func ms(d time.Duration) float64 { return round(msf(d), 3) }

func msf(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// WriteJSON writes {"results":[...]} with one object per result.
func WriteJSON(w io.Writer, results []Result) error {
	out := struct {
		Results []publicResult `json:"results"`
	}{Results: make([]publicResult, 0, len(results))}
	for _, r := range results {
		out.Results = append(out.Results, publicResult{
			Target:      r.Target,
			Workload:    r.Workload,
			Concurrency: r.Concurrency,
			Nodes:       r.Nodes,
			Round:       max(r.Round, 1),
			OpsPerSec:   round(r.OpsPerSec, 1),
			P50Ms:       ms(r.P50),
			P99Ms:       ms(r.P99),
			MaxMs:       ms(r.Max),
			Errors:      r.Errors,
			RSSMB:       round(r.RSSMB, 1),
		})
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

// Ratio compares ours with a peer on one workload and concurrency, in
// one round.
type Ratio struct {
	Workload    string
	Concurrency int
	Peer        string
	Round       int
	// Throughput is ours ops/s divided by the peer's (>1: we are faster).
	Throughput float64
	// P99 is the peer's p99 divided by ours (>1: our tail is shorter).
	P99 float64
	// CPU is the peer's server CPU per operation divided by ours (>1: we
	// use less); 0 when either is unknown.
	CPU float64
}

// Ratios pairs every result of another target with ours (the result of
// target ours for the same workload, concurrency and round). Pairs where
// either side did no operation are left out.
func Ratios(results []Result, ours string) []Ratio {
	type key struct {
		w        string
		c, round int
	}
	mine := map[key]Result{}
	for _, r := range results {
		if r.Target == ours {
			mine[key{r.Workload, r.Concurrency, r.Round}] = r
		}
	}
	var out []Ratio
	for _, r := range results {
		m, ok := mine[key{r.Workload, r.Concurrency, r.Round}]
		if r.Target == ours || !ok || r.OpsPerSec == 0 || m.OpsPerSec == 0 {
			continue
		}
		rt := Ratio{Workload: r.Workload, Concurrency: r.Concurrency, Peer: r.Target, Round: r.Round, Throughput: m.OpsPerSec / r.OpsPerSec}
		if m.P99 > 0 {
			rt.P99 = float64(r.P99) / float64(m.P99)
		}
		if m.CPUPerOp > 0 && r.CPUPerOp > 0 {
			rt.CPU = float64(r.CPUPerOp) / float64(m.CPUPerOp)
		}
		out = append(out, rt)
	}
	return out
}

// spreadOf returns the spread of xs, leaving out zeros (unknown; none
// left: the zero Spread). The median of an even count is the mean of the
// middle two.
func spreadOf(xs []float64) Spread {
	var known []float64
	for _, x := range xs {
		if x > 0 {
			known = append(known, x)
		}
	}
	n := len(known)
	if n == 0 {
		return Spread{}
	}
	slices.Sort(known)
	s := Spread{Min: known[0], Max: known[n-1], Median: known[n/2], N: n}
	if n%2 == 0 {
		s.Median = (known[n/2-1] + known[n/2]) / 2
	}
	return s
}

// RatioSummary is the spread over rounds of the ratios of one workload,
// concurrency and peer.
type RatioSummary struct {
	Workload    string
	Concurrency int
	Peer        string
	// Rounds counts the rounds that gave a ratio.
	Rounds int
	// Throughput, P99 and CPU summarize Ratio's fields; a zero Spread
	// means no round knew the ratio.
	Throughput, P99, CPU Spread
}

// Spread is the median, least and greatest of some ratios, and how many
// there were.
type Spread struct {
	Median, Min, Max float64
	N                int
}

// Summaries gives, for every workload, concurrency and peer of ratios
// (in their first order), the spread of its ratios over the rounds.
func Summaries(ratios []Ratio) []RatioSummary {
	type key struct {
		w    string
		c    int
		peer string
	}
	var order []key
	groups := map[key][]Ratio{}
	for _, rt := range ratios {
		k := key{rt.Workload, rt.Concurrency, rt.Peer}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], rt)
	}
	out := make([]RatioSummary, 0, len(order))
	for _, k := range order {
		g := groups[k]
		s := RatioSummary{Workload: k.w, Concurrency: k.c, Peer: k.peer, Rounds: len(g)}
		var tput, tail, cpu []float64
		for _, rt := range g {
			tput, tail, cpu = append(tput, rt.Throughput), append(tail, rt.P99), append(cpu, rt.CPU)
		}
		s.Throughput, s.P99, s.CPU = spreadOf(tput), spreadOf(tail), spreadOf(cpu)
		out = append(out, s)
	}
	return out
}

// rounds returns the number of distinct rounds among results.
func rounds(results []Result) int {
	seen := map[int]bool{}
	for _, r := range results {
		seen[r.Round] = true
	}
	return len(seen)
}

// WriteTable writes the results as a table. When results of several
// targets are present, every row of another target than ours shows
// ours/peer throughput and peer/ours p99 ("x" columns, >1 is better for
// ours). When they come from several rounds, a round column leads, and a
// second table gives each ratio's median and range over the rounds.
func WriteTable(w io.Writer, results []Result, ours string) error {
	type key struct {
		peer, w  string
		c, round int
	}
	rs := Ratios(results, ours)
	ratio := map[key]Ratio{}
	for _, rt := range rs {
		ratio[key{rt.Peer, rt.Workload, rt.Concurrency, rt.Round}] = rt
	}
	multi := rounds(results) > 1
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	if multi {
		fmt.Fprintf(tw, "round\t")
	}
	fmt.Fprintf(tw, "target\tworkload\tclients\tnodes\tops/s\tp50 ms\tp99 ms\tmax ms\terrors\trss MB\tcpu ms/op\tx ops/s\tx p99\tx cpu\t\n")
	for i := range results {
		r := &results[i]
		tput, tail, cpu := "", "", ""
		if rt, ok := ratio[key{r.Target, r.Workload, r.Concurrency, r.Round}]; ok {
			tput = fmt.Sprintf("%.2fx", rt.Throughput)
			if rt.P99 > 0 {
				tail = fmt.Sprintf("%.2fx", rt.P99)
			}
			if rt.CPU > 0 {
				cpu = fmt.Sprintf("%.2fx", rt.CPU)
			}
		}
		rss, cpuPerOp := "-", "-"
		if r.RSSMB > 0 {
			rss = fmt.Sprintf("%.0f", r.RSSMB)
		}
		if r.CPUPerOp > 0 {
			cpuPerOp = fmt.Sprintf("%.3f", msf(r.CPUPerOp))
		}
		if multi {
			fmt.Fprintf(tw, "%d\t", r.Round)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%.0f\t%.2f\t%.2f\t%.1f\t%d\t%s\t%s\t%s\t%s\t%s\t\n",
			r.Target, r.Workload, r.Concurrency, r.Nodes, r.OpsPerSec,
			msf(r.P50), msf(r.P99), msf(r.Max), r.Errors, rss, cpuPerOp, tput, tail, cpu)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(rs) > 0 {
		fmt.Fprintf(w, "x ops/s: %s's ops/s ÷ the row's; x p99 and x cpu: the row's p99 and server CPU per operation ÷ %s's (above 1: %s is better)\n", ours, ours, ours)
	}
	if multi && len(rs) > 0 {
		if err := writeSummaries(w, Summaries(rs), ours); err != nil {
			return err
		}
	}
	for _, r := range results {
		label := runLabel(r.Target, r.Workload, r.Concurrency, r.Round, multi)
		if r.ErrorSample != "" {
			fmt.Fprintf(w, "%s: first error: %s\n", label, r.ErrorSample)
		}
		for _, n := range r.Notes {
			fmt.Fprintf(w, "%s: %s\n", label, n)
		}
	}
	return nil
}

// writeSummaries writes the ratios' medians over the rounds, each with
// its range (and how many rounds knew it, when fewer than the row's).
func writeSummaries(w io.Writer, sums []RatioSummary, ours string) error {
	fmt.Fprintf(w, "\nmedian over the rounds (least-greatest), %s vs each peer:\n", ours)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "peer\tworkload\tclients\trounds\tx ops/s\tx p99\tx cpu\t\n")
	for _, s := range sums {
		cell := func(sp Spread) string {
			switch {
			case sp.N == 0:
				return "-"
			case sp.N < s.Rounds:
				return fmt.Sprintf("%.2fx (%.2f-%.2f, %d rounds)", sp.Median, sp.Min, sp.Max, sp.N)
			}
			return fmt.Sprintf("%.2fx (%.2f-%.2f)", sp.Median, sp.Min, sp.Max)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\t%s\t\n", s.Peer, s.Workload, s.Concurrency, s.Rounds,
			cell(s.Throughput), cell(s.P99), cell(s.CPU))
	}
	return tw.Flush()
}
