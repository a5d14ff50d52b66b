package jepsen

import (
	"encoding/xml"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// plotHistory is a synthetic run of 11s: 50 processes with latencies
// from 0.5ms to 800ms, some failed and some unknown, under a kill, a
// partition, a node crash (a fault to the end) and a pause the history
// ends in.
func plotHistory() []Op {
	h := &history{}
	ms := int64(time.Millisecond)
	for i := range 300 {
		t0 := int64(i) * 33 * ms
		lat := []int64{ms / 2, 2 * ms, 5 * ms, 40 * ms, 800 * ms}[i%5]
		typ := OK
		switch {
		case i%17 == 0:
			typ = Fail
		case i%23 == 0:
			typ = Info
		}
		h.add(i%50, fWrite, "k", registerArgs{Value: "v"}, t0, t0+lat, typ, registerResult{Version: uint64(i + 1)})
	}
	nemesis := func(at time.Duration, f string, v any) {
		h.ops = append(h.ops, Op{Process: NemesisProcess, Type: Info, F: f, Value: mustJSON(v), Time: int64(at)})
	}
	kill := Fault{Nemesis: "kill", Nodes: []int{2}}
	part := Fault{Nemesis: "partition", Nodes: []int{1}, Shape: "one", Detail: "n1 | n2,n3"}
	nemesis(2*time.Second, "kill", nemesisEvent{Phase: "start", Fault: kill})
	nemesis(3500*time.Millisecond, "kill", nemesisEvent{Phase: "stop", Fault: kill})
	nemesis(5*time.Second, "partition", nemesisEvent{Phase: "start", Fault: part})
	nemesis(6*time.Second, "partition", nemesisEvent{Phase: "stop", Fault: part, Note: "dropped 12 packets"})
	nemesis(8*time.Second, "crash", crashEvent{Node: 3, State: "exit status 2"})
	nemesis(9*time.Second, "pause", nemesisEvent{Phase: "start", Fault: Fault{Nemesis: "pause", Nodes: []int{1}}})
	nemesis(11*time.Second, "none", map[string]string{"phase": "not a fault"})
	return h.build()
}

func TestPlotFaultSpans(t *testing.T) {
	ops := plotHistory()
	end := historyEnd(ops)
	if end != 11 {
		t.Fatalf("history ends at %gs, want 11s", end)
	}
	got := plotFaultSpans(ops, end)
	want := []faultSpan{
		{From: 2, To: 3.5, Kind: "kill"},
		{From: 5, To: 6, Kind: "partition"},
		{From: 8, To: 11, Kind: "crash"}, // a crash lasts to the end
		{From: 9, To: 11, Kind: "pause"}, // never healed: to the end
	}
	if !slices.Equal(got, want) {
		t.Errorf("fault spans\n got %+v\nwant %+v", got, want)
	}
}

func TestThroughputBin(t *testing.T) {
	for _, c := range []struct {
		end  float64
		want time.Duration
	}{
		{0, 100 * time.Millisecond},
		{5, 100 * time.Millisecond},
		{20, 500 * time.Millisecond},
		{60, time.Second},
		{600, 10 * time.Second},
		{1e7, 10 * time.Minute},
	} {
		if got := throughputBin(c.end); got != c.want {
			t.Errorf("throughputBin(%g) = %s, want %s", c.end, got, c.want)
		}
	}
}

// svgCounts parses an SVG file and counts its elements by name, and
// collects its text and its root's width and height.
type svgCounts struct {
	width, height string
	elems         map[string]int
	texts         []string
}

func readSVG(t *testing.T, path string) svgCounts {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c := svgCounts{elems: map[string]int{}}
	d := xml.NewDecoder(f)
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("%s is not well-formed XML: %v", path, err)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			// encoding/xml accepts a repeated attribute; SVG viewers do not.
			var names []string
			for _, a := range tok.Attr {
				if slices.Contains(names, a.Name.Local) {
					t.Fatalf("%s: <%s> repeats attribute %s", path, tok.Name.Local, a.Name.Local)
				}
				names = append(names, a.Name.Local)
			}
			if tok.Name.Local == "svg" {
				for _, a := range tok.Attr {
					switch a.Name.Local {
					case "width":
						c.width = a.Value
					case "height":
						c.height = a.Value
					}
				}
			}
			c.elems[tok.Name.Local]++
		case xml.CharData:
			if s := strings.TrimSpace(string(tok)); s != "" {
				c.texts = append(c.texts, s)
			}
		}
	}
	return c
}

// WritePlots writes both SVGs at the documented size, with one dot per
// completed operation, one line per outcome, one band per fault window
// and a legend entry per outcome and per nemesis; an empty history (no
// operations to plot) is not an error.
func TestWritePlots(t *testing.T) {
	ops := plotHistory()
	completed := 0
	pairs, err := Pairs(ops)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pairs {
		if p.Complete.Type != "" {
			completed++
		}
	}
	for name, ops := range map[string][]Op{"faults": ops, "empty": nil} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			files, err := WritePlots(dir, ops)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(files, []string{LatencyPlot, ThroughputPlot}) {
				t.Fatalf("files %v", files)
			}
			lat, thr := readSVG(t, filepath.Join(dir, LatencyPlot)), readSVG(t, filepath.Join(dir, ThroughputPlot))
			for f, c := range map[string]svgCounts{LatencyPlot: lat, ThroughputPlot: thr} {
				if c.width != "960" || c.height != "432" {
					t.Errorf("%s is %sx%s, want 960x432", f, c.width, c.height)
				}
			}
			if name == "empty" {
				if lat.elems["circle"] != 0 || thr.elems["polyline"] != 3 {
					t.Errorf("empty history: %d dots, %d lines", lat.elems["circle"], thr.elems["polyline"])
				}
				return
			}
			if got := lat.elems["circle"]; got != completed {
				t.Errorf("latency plot has %d dots, want one per completed operation (%d)", got, completed)
			}
			if got := thr.elems["polyline"]; got != 3 {
				t.Errorf("throughput plot has %d lines, want one per outcome", got)
			}
			text := strings.Join(lat.texts, "|")
			for _, want := range []string{"ok (", "fail (", "info (", "kill", "partition", "crash", "pause", "latency (ms)"} {
				if !strings.Contains(text, want) {
					t.Errorf("latency plot has no %q in its text %q", want, text)
				}
			}
		})
	}
}

func TestNiceTicks(t *testing.T) {
	for _, c := range []struct {
		lo, hi float64
		want   []float64
	}{
		{0, 10, []float64{0, 2, 4, 6, 8, 10}},
		{0.3, 11, []float64{2, 4, 6, 8, 10}},
		{0, 1.4, []float64{0, 0.2, 0.4, 0.6, 0.8, 1, 1.2, 1.4}},
		{5, 5, []float64{5}},
	} {
		if got := niceTicks(c.lo, c.hi); !slices.Equal(got, c.want) {
			t.Errorf("niceTicks(%g, %g) = %v, want %v", c.lo, c.hi, got, c.want)
		}
	}
}

// A malformed history (a completion of nothing) is an error, not a plot.
func TestWritePlotsBadHistory(t *testing.T) {
	ops := []Op{{Index: 0, Process: 1, Type: OK, F: fWrite}}
	if _, err := WritePlots(t.TempDir(), ops); err == nil {
		t.Fatal("no error for a malformed history")
	}
}
