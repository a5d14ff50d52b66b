package jepsen

import (
	"bufio"
	"fmt"
	"html"
	"image/color"
	"io"
	"math"
	"slices"
	"strconv"
)

// chart is one plot of a run: points or lines over a time axis, with
// translucent bands behind them, drawn as a fixed-size SVG image.
type chart struct {
	title, xLabel, yLabel string
	xMin, xMax            float64
	yMin, yMax            float64
	// logY draws the y axis in decades (yMin must then be > 0).
	logY   bool
	bands  []band
	series []series
}

type point struct{ X, Y float64 }

// series is one legend entry's data: dots, or a line through the points.
type series struct {
	label  string
	color  color.Color
	points []point
	line   bool
}

// band shades the x range [from, to] over the whole y axis; bands with
// the same label share one legend entry.
type band struct {
	from, to float64
	label    string
	color    color.Color
}

// The image's size in pixels and the plotting area's margins.
const (
	chartWidth, chartHeight = 960, 432
	marginLeft, marginRight = 72, 16
	marginTop, marginBottom = 36, 44
	chartFont               = `font-family="sans-serif" font-size="12"`
)

// writeSVG renders c. Coordinates are rounded to a tenth of a pixel,
// which keeps a plot of many thousand operations small.
func (c *chart) writeSVG(w io.Writer) error {
	bw := bufio.NewWriter(w)
	p := func(format string, args ...any) { fmt.Fprintf(bw, format, args...) }
	x0, x1 := float64(marginLeft), float64(chartWidth-marginRight)
	y0, y1 := float64(chartHeight-marginBottom), float64(marginTop)
	fx := func(x float64) float64 { return x0 + (x-c.xMin)/(c.xMax-c.xMin)*(x1-x0) }
	px := func(x float64) string { return coord(fx(x)) }
	ty := c.yTransform()
	lo, hi := ty(c.yMin), ty(c.yMax)
	py := func(y float64) string { return coord(y0 + (ty(y)-lo)/(hi-lo)*(y1-y0)) }

	p(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d">`+"\n",
		chartWidth, chartHeight, chartWidth, chartHeight)
	p(`<rect width="100%%" height="100%%" fill="white"/>` + "\n")
	p(`<text x="%d" y="22" text-anchor="middle" font-family="sans-serif" font-size="14">%s</text>`+"\n",
		chartWidth/2, html.EscapeString(c.title))
	p(`<clipPath id="area"><rect x="%s" y="%s" width="%s" height="%s"/></clipPath>`+"\n",
		coord(x0), coord(y1), coord(x1-x0), coord(y0-y1))

	// Grid and ticks.
	for _, t := range niceTicks(c.xMin, c.xMax) {
		p(`<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="#e4e4e4"/>`+"\n", px(t), coord(y0), px(t), coord(y1))
		p(`<text x="%s" y="%s" text-anchor="middle" %s>%s</text>`+"\n", px(t), coord(y0+16), chartFont, tickLabel(t))
	}
	for _, t := range c.yTicks() {
		p(`<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="#e4e4e4"/>`+"\n", coord(x0), py(t), coord(x1), py(t))
		p(`<text x="%s" y="%s" text-anchor="end" dominant-baseline="middle" %s>%s</text>`+"\n", coord(x0-6), py(t), chartFont, tickLabel(t))
	}
	p(`<text x="%s" y="%d" text-anchor="middle" %s>%s</text>`+"\n", coord((x0+x1)/2), chartHeight-8, chartFont, html.EscapeString(c.xLabel))
	p(`<text transform="translate(16 %s) rotate(-90)" text-anchor="middle" %s>%s</text>`+"\n", coord((y0+y1)/2), chartFont, html.EscapeString(c.yLabel))

	// Data, clipped to the plotting area: bands behind, then series.
	p(`<g clip-path="url(#area)">` + "\n")
	for _, b := range c.bands {
		fill, opacity := svgColor(b.color)
		p(`<rect x="%s" y="%s" width="%s" height="%s" fill="%s" fill-opacity="%s"/>`+"\n",
			px(b.from), coord(y1), coord(max(fx(b.to)-fx(b.from), 0.5)), coord(y0-y1), fill, opacity)
	}
	for _, s := range c.series {
		stroke, _ := svgColor(s.color)
		if s.line {
			p(`<polyline fill="none" stroke="%s" stroke-width="1.6" points="`, stroke)
			for i, pt := range s.points {
				if i > 0 {
					p(" ")
				}
				p("%s,%s", px(pt.X), py(pt.Y))
			}
			p(`"/>` + "\n")
			continue
		}
		p(`<g fill="%s">`+"\n", stroke)
		for _, pt := range s.points {
			p(`<circle cx="%s" cy="%s" r="1.7"/>`+"\n", px(pt.X), py(pt.Y))
		}
		p("</g>\n")
	}
	p("</g>\n")
	p(`<rect x="%s" y="%s" width="%s" height="%s" fill="none" stroke="#444"/>`+"\n", coord(x0), coord(y1), coord(x1-x0), coord(y0-y1))

	// Legend: series, then one entry per band label, top right.
	type entry struct {
		label string
		color color.Color
		band  bool
	}
	var entries []entry
	for _, s := range c.series {
		entries = append(entries, entry{s.label, s.color, false})
	}
	var seen []string
	for _, b := range c.bands {
		if !slices.Contains(seen, b.label) {
			seen = append(seen, b.label)
			entries = append(entries, entry{b.label, b.color, true})
		}
	}
	for i, e := range entries {
		y := y1 + 14 + float64(i)*16
		lx := x1 - 150
		fill, opacity := svgColor(e.color)
		if e.band {
			p(`<rect x="%s" y="%s" width="14" height="10" fill="%s" fill-opacity="%s"/>`+"\n", coord(lx), coord(y-5), fill, opacity)
		} else {
			p(`<rect x="%s" y="%s" width="14" height="4" fill="%s"/>`+"\n", coord(lx), coord(y-2), fill)
		}
		p(`<text x="%s" y="%s" dominant-baseline="middle" %s>%s</text>`+"\n", coord(lx+20), coord(y), chartFont, html.EscapeString(e.label))
	}
	p("</svg>\n")
	return bw.Flush()
}

// yTransform maps a y value to the axis' linear space.
func (c *chart) yTransform() func(float64) float64 {
	if c.logY {
		return math.Log10
	}
	return func(y float64) float64 { return y }
}

// yTicks returns the y axis' ticks: every power of ten on a log axis,
// round numbers on a linear one.
func (c *chart) yTicks() []float64 {
	if !c.logY {
		return niceTicks(c.yMin, c.yMax)
	}
	var ts []float64
	for e := math.Ceil(math.Log10(c.yMin)); e <= math.Log10(c.yMax); e++ {
		ts = append(ts, math.Pow(10, e))
	}
	return ts
}

// niceTicks returns four to eight ticks in [lo, hi] at a step of 1, 2 or 5
// times a power of ten.
func niceTicks(lo, hi float64) []float64 {
	if !(hi > lo) {
		return []float64{lo}
	}
	raw := (hi - lo) / 8
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag * 10
	for _, m := range []float64{1, 2, 5} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	// Round to the step's decimals: 3 x 0.2 is 0.6000000000000001.
	scale := math.Pow(10, max(0, -math.Floor(math.Log10(step))))
	var ts []float64
	for i := math.Ceil(lo / step); i*step <= hi+step*1e-9; i++ {
		ts = append(ts, math.Round(i*step*scale)/scale)
	}
	return ts
}

// tickLabel prints a tick value without trailing zeros.
func tickLabel(v float64) string { return strconv.FormatFloat(v, 'g', 6, 64) }

// coord prints a pixel coordinate to a tenth.
func coord(v float64) string { return strconv.FormatFloat(math.Round(v*10)/10, 'f', -1, 64) }

// svgColor returns c as an SVG colour and its opacity.
func svgColor(c color.Color) (string, string) {
	n := color.NRGBAModel.Convert(c).(color.NRGBA)
	return fmt.Sprintf("#%02x%02x%02x", n.R, n.G, n.B), strconv.FormatFloat(float64(n.A)/255, 'f', 3, 64)
}
