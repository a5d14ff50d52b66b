package jepsen

import (
	"image/png"
	"os"
	"path/filepath"
	"slices"
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

// WritePlots writes both PNGs at the documented size, for a history with
// faults and for an empty one (no operations to plot is not an error).
func TestWritePlots(t *testing.T) {
	for name, ops := range map[string][]Op{"faults": plotHistory(), "empty": nil} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			files, err := WritePlots(dir, ops)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(files, []string{LatencyPlot, ThroughputPlot}) {
				t.Fatalf("files %v", files)
			}
			for _, f := range files {
				r, err := os.Open(filepath.Join(dir, f))
				if err != nil {
					t.Fatal(err)
				}
				img, err := png.Decode(r)
				_ = r.Close()
				if err != nil {
					t.Fatalf("%s: %v", f, err)
				}
				if b := img.Bounds(); b.Dx() != 960 || b.Dy() != 432 {
					t.Errorf("%s is %dx%d, want 960x432", f, b.Dx(), b.Dy())
				}
			}
		})
	}
}

// A malformed history (a completion of nothing) is an error, not a plot.
func TestWritePlotsBadHistory(t *testing.T) {
	ops := []Op{{Index: 0, Process: 1, Type: OK, F: fWrite}}
	if _, err := WritePlots(t.TempDir(), ops); err == nil {
		t.Fatal("no error for a malformed history")
	}
}
