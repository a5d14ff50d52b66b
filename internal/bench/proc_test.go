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
