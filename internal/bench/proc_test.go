package bench

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestPeakRSS(t *testing.T) {
	path := filepath.Join(t.TempDir(), "status")
	status := "Name:\tx\nVmPeak:\t  999999 kB\nVmHWM:\t   51200 kB\nVmRSS:\t   40000 kB\n"
	if err := os.WriteFile(path, []byte(status), 0o644); err != nil {
		t.Fatal(err)
	}
	if mb, err := peakRSSMB(path); err != nil || mb != 50 {
		t.Fatalf("got %v MB, %v; want 50", mb, err)
	}
	if err := os.WriteFile(path, []byte("Name:\tx\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := peakRSSMB(path); err == nil {
		t.Fatal("no VmHWM: no error")
	}
}

// TestCPUTime reads utime and stime from a stat file whose command name
// holds spaces and a parenthesis, and refuses a truncated one.
func TestCPUTime(t *testing.T) {
	path := filepath.Join(t.TempDir(), "stat")
	stat := "4242 (a b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 9 0 123 456 789\n"
	if err := os.WriteFile(path, []byte(stat), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := cpuTime(path); err != nil || got != 3250*time.Millisecond {
		t.Fatalf("got %v, %v; want 3.25s", got, err)
	}
	if err := os.WriteFile(path, []byte("4242 (x) S 1 2 3"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := cpuTime(path); err == nil {
		t.Fatal("truncated stat: no error")
	}
}

// TestCPUMeter: the CPU per operation counts only reports inside the
// measured window, and is unknown without two of them.
func TestCPUMeter(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	p, err := StartProc("spinner", []string{"sh", "-c", "while :; do :; done"}, filepath.Join(t.TempDir(), "spin.log"))
	if err != nil {
		t.Fatal(err)
	}
	c := &Cluster{Procs: []*Proc{p}}
	t.Cleanup(func() { _ = c.Stop(context.Background()) })
	m := &cpuMeter{servers: c, warmup: time.Second}
	var seen int
	progress := m.wrap(func(Progress) { seen++ })
	progress(Progress{Elapsed: 500 * time.Millisecond, Ops: 0})
	progress(Progress{Elapsed: time.Second, Ops: 0})
	if m.perOp() != 0 {
		t.Fatalf("one report in the window: %v per op, want unknown", m.perOp())
	}
	// Let the spinner use some CPU (the machine may be busy).
	start := time.Now()
	for {
		cpu, ok := c.CPUTime()
		if !ok {
			t.Fatal("cannot read the spinner's CPU time")
		}
		if cpu-m.first.cpu >= 50*time.Millisecond {
			break
		}
		if time.Since(start) > 20*time.Second {
			t.Fatal("the spinner used no CPU in 20s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	wall := time.Since(start)
	progress(Progress{Elapsed: 2 * time.Second, Ops: 100})
	if seen != 3 {
		t.Fatalf("the wrapped progress ran %d times, want 3", seen)
	}
	// The spinner used at least 50ms and at most the wall time of CPU
	// (one thread) over 100 operations; ticks are 10ms.
	if got := m.perOp(); got < 500*time.Microsecond || got > (wall+20*time.Millisecond)/100 {
		t.Fatalf("%v per op after %v, want within [0.5ms, %v]", got, wall, (wall+20*time.Millisecond)/100)
	}
}

// TestProc starts real processes: Stop reaps them (after SIGTERM, or
// SIGKILL when SIGTERM is ignored), the peak RSS is read, and WaitReady
// reports a process that died.
func TestProc(t *testing.T) {
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skip("no /proc")
	}
	dir := t.TempDir()
	p, err := StartProc("sleeper", []string{"sleep", "60"}, filepath.Join(dir, "sleep.log"))
	if err != nil {
		t.Fatal(err)
	}
	c := &Cluster{Procs: []*Proc{p}}
	c.ResetPeakRSS()
	if mb := c.PeakRSSMB(); mb <= 0 {
		t.Fatalf("peak RSS %v", mb)
	}
	if err := c.Alive(); err != nil {
		t.Fatal(err)
	}
	if err := c.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := c.Alive(); err == nil {
		t.Fatal("stopped process is alive")
	}

	// A process that ignores SIGTERM is killed when ctx ends.
	p, err = StartProc("stubborn", []string{"sh", "-c", "trap '' TERM; echo started; sleep 60 & wait"}, filepath.Join(dir, "stubborn.log"))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.WaitReady(context.Background(), func(context.Context) error {
		if !strings.Contains(p.LogTail(), "started") {
			return errors.New("not yet")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := p.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Done():
	default:
		t.Fatal("Stop returned before the process was reaped")
	}

	p, err = StartProc("quitter", []string{"sh", "-c", "echo bye; exit 2"}, filepath.Join(dir, "quit.log"))
	if err != nil {
		t.Fatal(err)
	}
	err = p.WaitReady(context.Background(), func(context.Context) error { return errors.New("never") })
	if err == nil || !strings.Contains(err.Error(), "exit status 2") || !strings.Contains(err.Error(), "bye") {
		t.Fatalf("WaitReady on a dead process: %v", err)
	}
}
