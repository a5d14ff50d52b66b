package jepsen

import (
	"errors"
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// The plots a run directory gets (WritePlots).
const (
	// LatencyPlot shows each completed client operation's latency
	// against its invoke time, coloured by outcome.
	LatencyPlot = "latency.png"
	// ThroughputPlot shows completions per second by outcome.
	ThroughputPlot = "throughput.png"
)

// Size of the plots: plotWidth x plotHeight at plotDPI dots per inch,
// that is 960x432 pixels.
const (
	plotWidth  = 10 * vg.Inch
	plotHeight = 4.5 * vg.Inch
	plotDPI    = 96
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

// newPlot returns a plot with a title and the frame's time axis.
func newPlot(title string, fr plotFrame) *plot.Plot {
	pl := plot.New()
	pl.Title.Text = title
	pl.Title.Padding = vg.Points(8)
	pl.X.Label.Text = "time since start (s)"
	pl.X.Min, pl.X.Max = fr.start, max(fr.end, fr.start+1e-9)
	pl.Legend.Top = true
	return pl
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
		make func([]Pair, []faultSpan, plotFrame) (*plot.Plot, error)
	}{
		{LatencyPlot, latencyPlot},
		{ThroughputPlot, throughputPlot},
	} {
		pl, err := p.make(pairs, spans, fr)
		if err == nil {
			err = savePNG(pl, filepath.Join(dir, p.name))
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("jepsen: plot %s: %w", p.name, err))
			continue
		}
		names = append(names, p.name)
	}
	return names, errors.Join(errs...)
}

// savePNG renders pl at the plots' size into path.
func savePNG(pl *plot.Plot, path string) (err error) {
	c := vgimg.NewWith(vgimg.UseWH(plotWidth, plotHeight), vgimg.UseDPI(plotDPI))
	pl.Draw(draw.New(c))
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	_, err = vgimg.PngCanvas{Canvas: c}.WriteTo(f)
	return err
}

// minLatencyMs is the least latency plotted (a log axis cannot show 0).
const minLatencyMs = 1e-3

// latencyPlot plots each completed operation's latency (ms) against its
// invoke time (s), one colour per outcome, on a log axis when latencies
// span more than a decade, with the fault windows shaded behind.
func latencyPlot(pairs []Pair, spans []faultSpan, fr plotFrame) (*plot.Plot, error) {
	pl := newPlot("Latency of client operations by invoke time (shaded: faults)", fr)
	pl.Y.Label.Text = "latency (ms)"
	pts := map[OpType]plotter.XYs{}
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, p := range pairs {
		if p.Complete.Type == "" {
			continue // still open when the history ended
		}
		ms := max(float64(p.Complete.Time-p.Invoke.Time)/float64(time.Millisecond), minLatencyMs)
		pts[p.Complete.Type] = append(pts[p.Complete.Type], plotter.XY{X: seconds(p.Invoke.Time), Y: ms})
		lo, hi = min(lo, ms), max(hi, ms)
	}
	if math.IsInf(lo, 1) {
		lo, hi = minLatencyMs, 1
	}
	// Headroom above the data keeps the legend off the points.
	if hi/lo > 10 {
		pl.Y.Scale = plot.LogScale{}
		pl.Y.Tick.Marker = plot.LogTicks{Prec: -1}
		lo, hi = lo/1.5, hi*20
	} else {
		lo, hi = 0, hi*1.5
	}
	pl.Y.Min, pl.Y.Max = lo, hi
	if err := shadeFaults(pl, spans, lo, hi); err != nil {
		return nil, err
	}
	for _, t := range outcomes {
		if len(pts[t]) == 0 {
			continue
		}
		s, err := plotter.NewScatter(pts[t])
		if err != nil {
			return nil, err
		}
		s.GlyphStyle = draw.GlyphStyle{Color: outcomeColors[t], Radius: vg.Points(1.3), Shape: draw.CircleGlyph{}}
		pl.Add(s)
		pl.Legend.Add(fmt.Sprintf("%s (%d)", t, len(pts[t])), s)
	}
	return pl, nil
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
func throughputPlot(pairs []Pair, spans []faultSpan, fr plotFrame) (*plot.Plot, error) {
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
	pl := newPlot(fmt.Sprintf("Completions per second by outcome (%s bins; shaded: faults)", bin), fr)
	pl.Y.Label.Text = "operations/s"
	hi := 1.0
	for _, t := range outcomes {
		for _, c := range counts[t] {
			hi = max(hi, c/width)
		}
	}
	hi *= 1.4 // headroom for the legend
	pl.Y.Min, pl.Y.Max = 0, hi
	if err := shadeFaults(pl, spans, 0, hi); err != nil {
		return nil, err
	}
	for _, t := range outcomes {
		xys := make(plotter.XYs, n)
		total := 0.0
		for i, c := range counts[t] {
			xys[i] = plotter.XY{X: min(fr.start+(float64(i)+0.5)*width, fr.end), Y: c / width}
			total += c
		}
		l, err := plotter.NewLine(xys)
		if err != nil {
			return nil, err
		}
		l.LineStyle = draw.LineStyle{Color: outcomeColors[t], Width: vg.Points(1.2)}
		pl.Add(l)
		pl.Legend.Add(fmt.Sprintf("%s (%d)", t, int(total)), l)
	}
	return pl, nil
}

// shadeFaults adds a translucent band from lo to hi over every fault
// window (cut to the time axis), and one legend entry per nemesis shown.
func shadeFaults(pl *plot.Plot, spans []faultSpan, lo, hi float64) error {
	var kinds []string
	for _, s := range spans {
		from, to := max(s.From, pl.X.Min), min(s.To, pl.X.Max)
		if to < from {
			continue
		}
		poly, err := plotter.NewPolygon(plotter.XYs{{X: from, Y: lo}, {X: to, Y: lo}, {X: to, Y: hi}, {X: from, Y: hi}})
		if err != nil {
			return err
		}
		poly.Color = faultColor(s.Kind)
		poly.LineStyle = draw.LineStyle{Color: poly.Color, Width: vg.Points(0.5)}
		pl.Add(poly)
		if !slices.Contains(kinds, s.Kind) {
			kinds = append(kinds, s.Kind)
			pl.Legend.Add(s.Kind, swatch{poly.Color})
		}
	}
	return nil
}

// swatch is a fault's legend entry: a box of its colour, inset so that
// the translucent boxes of adjacent entries do not overlap.
type swatch struct{ color.Color }

// Thumbnail implements plot.Thumbnailer.
func (s swatch) Thumbnail(c *draw.Canvas) {
	inset := (c.Max.Y - c.Min.Y) / 6
	lo, hi := c.Min.Y+inset, c.Max.Y-inset
	c.FillPolygon(s.Color, []vg.Point{{X: c.Min.X, Y: lo}, {X: c.Max.X, Y: lo}, {X: c.Max.X, Y: hi}, {X: c.Min.X, Y: hi}})
}

func faultColor(kind string) color.Color {
	if c, ok := faultColors[kind]; ok {
		return c
	}
	return faultColorOther
}
