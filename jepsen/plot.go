package jepsen

import (
	"errors"
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// The plots a run directory gets (WritePlots), as SVG: they open in any
// browser, beside porcupine's HTML. They are drawn by plotsvg.go rather
// than a plotting library because every process of the single
// opencluster binary would carry that library: gonum/plot parses its
// twelve fonts when the binary starts, which cost each server about 6 MB
// of resident memory and the binary 8 MB (docs/performance.md).
const (
	// LatencyPlot shows each completed client operation's latency
	// against its invoke time, coloured by outcome.
	LatencyPlot = "latency.svg"
	// ThroughputPlot shows completions per second by outcome.
	ThroughputPlot = "throughput.svg"
)

// outcomeColors colour client outcomes in both plots.
var outcomeColors = map[OpType]color.Color{
	OK:   color.NRGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff},
	Fail: color.NRGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff},
	Info: color.NRGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff},
}

// outcomes is the order outcomes are drawn and listed in.
var outcomes = []OpType{OK, Fail, Info}

// faultColors shade fault windows by nemesis (translucent, so points
// show through); a nemesis not listed gets faultColorOther.
var (
	faultColors = map[string]color.Color{
		"kill":      color.NRGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0x30},
		"pause":     color.NRGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0x30},
		"partition": color.NRGBA{R: 0x94, G: 0x67, B: 0xbd, A: 0x30},
		"clock":     color.NRGBA{R: 0xbc, G: 0xbd, B: 0x22, A: 0x38},
		"move":      color.NRGBA{R: 0x17, G: 0xbe, B: 0xcf, A: 0x30},
		"transfer":  color.NRGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0x30},
		"crash":     color.NRGBA{R: 0x40, G: 0x40, B: 0x40, A: 0x40},
	}
	faultColorOther = color.NRGBA{R: 0x7f, G: 0x7f, B: 0x7f, A: 0x30}
)

// faultSpan is a fault window on a plot's time axis.
type faultSpan struct {
	// From and To are seconds since the run began; a fault never healed
	// ends with the history.
	From, To float64
	// Kind is the nemesis (kill, pause, partition…, or crash).
	Kind string
}

// plotFaultSpans returns the fault windows of a history's nemesis entries
// (faultWindows), in seconds, cut off at end (seconds).
func plotFaultSpans(ops []Op, end float64) []faultSpan {
	var out []faultSpan
	for _, w := range faultWindows(ops) {
		s := faultSpan{From: seconds(w.from), To: end, Kind: w.what}
		if w.to != Never {
			s.To = seconds(w.to)
		}
		if k, _, ok := strings.Cut(w.what, " "); ok {
			s.Kind = k
		}
		out = append(out, s)
	}
	return out
}

// seconds converts a history time (ns) to seconds.
func seconds(t int64) float64 { return float64(t) / float64(time.Second) }

// plotFrame is the time axis of the plots, in seconds since the run
// began: from the first client operation (cluster start-up is left out)
// to the history's end.
type plotFrame struct{ start, end float64 }

// firstClientTime returns the first client invoke's time in seconds,
// rounded down to a tenth (0 without operations).
func firstClientTime(pairs []Pair) float64 {
	if len(pairs) == 0 {
		return 0
	}
	return math.Floor(seconds(pairs[0].Invoke.Time)*10) / 10
}

// newChart returns a chart with a title and the frame's time axis.
func newChart(title string, fr plotFrame) *chart {
	return &chart{title: title, xLabel: "time since start (s)", xMin: fr.start, xMax: max(fr.end, fr.start+1e-9)}
}

// historyEnd returns the time of a history's last entry, in seconds.
func historyEnd(ops []Op) float64 {
	var end int64
	for _, op := range ops {
		end = max(end, op.Time)
	}
	return seconds(end)
}

// WritePlots writes LatencyPlot and ThroughputPlot of the history ops into
// dir, with the fault windows shaded, and returns the files' names
// (relative to dir).
func WritePlots(dir string, ops []Op) ([]string, error) {
	pairs, err := Pairs(ops)
	if err != nil {
		return nil, err
	}
	fr := plotFrame{start: firstClientTime(pairs), end: historyEnd(ops)}
	spans := plotFaultSpans(ops, fr.end)
	var names []string
	var errs []error
	for _, p := range []struct {
		name string
		make func([]Pair, []faultSpan, plotFrame) *chart
	}{
		{LatencyPlot, latencyPlot},
		{ThroughputPlot, throughputPlot},
	} {
		if err := writeChart(p.make(pairs, spans, fr), filepath.Join(dir, p.name)); err != nil {
			errs = append(errs, fmt.Errorf("jepsen: plot %s: %w", p.name, err))
			continue
		}
		names = append(names, p.name)
	}
	return names, errors.Join(errs...)
}

// writeChart renders c as SVG into path.
func writeChart(c *chart, path string) (err error) {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	return c.writeSVG(f)
}

// minLatencyMs is the least latency plotted (a log axis cannot show 0).
const minLatencyMs = 1e-3

// latencyPlot plots each completed operation's latency (ms) against its
// invoke time (s), one colour per outcome, on a log axis when latencies
// span more than a decade, with the fault windows shaded behind.
func latencyPlot(pairs []Pair, spans []faultSpan, fr plotFrame) *chart {
	c := newChart("Latency of client operations by invoke time (shaded: faults)", fr)
	c.yLabel = "latency (ms)"
	pts := map[OpType][]point{}
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, p := range pairs {
		if p.Complete.Type == "" {
			continue // still open when the history ended
		}
		ms := max(float64(p.Complete.Time-p.Invoke.Time)/float64(time.Millisecond), minLatencyMs)
		pts[p.Complete.Type] = append(pts[p.Complete.Type], point{X: seconds(p.Invoke.Time), Y: ms})
		lo, hi = min(lo, ms), max(hi, ms)
	}
	if math.IsInf(lo, 1) {
		lo, hi = minLatencyMs, 1
	}
	// Headroom above the data keeps the legend off the points.
	if hi/lo > 10 {
		c.logY = true
		lo, hi = lo/1.5, hi*20
	} else {
		lo, hi = 0, hi*1.5
	}
	c.yMin, c.yMax = lo, hi
	shadeFaults(c, spans)
	for _, t := range outcomes {
		if len(pts[t]) == 0 {
			continue
		}
		c.series = append(c.series, series{
			label: fmt.Sprintf("%s (%d)", t, len(pts[t])), color: outcomeColors[t], points: pts[t],
		})
	}
	return c
}

// throughputBins are the widths throughputPlot picks from.
var throughputBins = []time.Duration{
	100 * time.Millisecond, 200 * time.Millisecond, 500 * time.Millisecond,
	time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second,
	30 * time.Second, time.Minute, 5 * time.Minute, 10 * time.Minute,
}

// throughputBin returns the bin width for a history of span seconds: the
// least of throughputBins that makes at most 60 bins.
func throughputBin(span float64) time.Duration {
	for _, b := range throughputBins {
		if span/b.Seconds() <= 60 {
			return b
		}
	}
	return throughputBins[len(throughputBins)-1]
}

// throughputPlot plots completions per second by outcome, counted in
// bins by completion time (the last bin may be cut short by the end of
// the history, and then reads low), with the fault windows shaded
// behind.
func throughputPlot(pairs []Pair, spans []faultSpan, fr plotFrame) *chart {
	bin := throughputBin(fr.end - fr.start)
	width := bin.Seconds()
	n := max(1, int(math.Ceil((fr.end-fr.start)/width)))
	counts := map[OpType][]float64{}
	for _, t := range outcomes {
		counts[t] = make([]float64, n)
	}
	for _, p := range pairs {
		if p.Complete.Type == "" {
			continue
		}
		i := min(max(int((seconds(p.Complete.Time)-fr.start)/width), 0), n-1)
		counts[p.Complete.Type][i]++
	}
	c := newChart(fmt.Sprintf("Completions per second by outcome (%s bins; shaded: faults)", bin), fr)
	c.yLabel = "operations/s"
	hi := 1.0
	for _, t := range outcomes {
		for _, n := range counts[t] {
			hi = max(hi, n/width)
		}
	}
	c.yMin, c.yMax = 0, hi*1.4 // headroom for the legend
	shadeFaults(c, spans)
	for _, t := range outcomes {
		pts := make([]point, n)
		total := 0.0
		for i, k := range counts[t] {
			pts[i] = point{X: min(fr.start+(float64(i)+0.5)*width, fr.end), Y: k / width}
			total += k
		}
		c.series = append(c.series, series{
			label: fmt.Sprintf("%s (%d)", t, int(total)), color: outcomeColors[t], points: pts, line: true,
		})
	}
	return c
}

// shadeFaults adds a translucent band over every fault window (cut to
// the time axis), and one legend entry per nemesis shown.
func shadeFaults(c *chart, spans []faultSpan) {
	for _, s := range spans {
		from, to := max(s.From, c.xMin), min(s.To, c.xMax)
		if to < from {
			continue
		}
		c.bands = append(c.bands, band{from: from, to: to, label: s.Kind, color: faultColor(s.Kind)})
	}
}

func faultColor(kind string) color.Color {
	if c, ok := faultColors[kind]; ok {
		return c
	}
	return faultColorOther
}
