package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Proc is a child process the bench started (a server). Its log goes to a
// file. The goroutine that reaps it is started by StartProc and ends when
// the process exits; Stop makes it exit and waits for it, so every Proc
// is reaped.
type Proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	// done is closed once the process has exited and been reaped; waitErr
	// is set before.
	done    chan struct{}
	waitErr error
}

// StartProc starts argv[0] with argv[1:], its stdout and stderr appended
// to logPath.
func StartProc(name string, argv []string, logPath string) (*Proc, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("bench: %s log: %w", name, err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("bench: start %s: %w", name, err)
	}
	p := &Proc{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	return p, nil
}

// Name returns the process's label.
func (p *Proc) Name() string { return p.name }

// PID returns the process id.
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited and been reaped.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Stop sends SIGTERM and waits for the process to exit; when ctx ends
// first it sends SIGKILL and waits for that. It returns an error only if
// the process had already died by itself.
func (p *Proc) Stop(ctx context.Context) error {
	select {
	case <-p.done:
		return fmt.Errorf("%w: %s had exited (%s)\n%s", ErrProcess, p.name, p.exitStatus(), p.LogTail())
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-ctx.Done():
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done // SIGKILL cannot be caught: the reaper returns promptly
	}
	return nil
}

// exitStatus describes how the process ended; call it after done.
func (p *Proc) exitStatus() string {
	if p.waitErr == nil {
		return "exit status 0"
	}
	return p.waitErr.Error()
}

// LogTail returns the last lines of the process's log.
func (p *Proc) LogTail() string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-15):], "\n")
}

// ResetPeakRSS resets the process's peak resident set (VmHWM) to its
// current one, so that the next PeakRSSMB covers one run.
func (p *Proc) ResetPeakRSS() error {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", p.PID()), []byte("5"), 0)
}

// PeakRSSMB returns the process's peak resident set (VmHWM) in MiB.
func (p *Proc) PeakRSSMB() (float64, error) {
	return peakRSSMB(fmt.Sprintf("/proc/%d/status", p.PID()))
}

// peakRSSMB reads the VmHWM line of a /proc/PID/status file.
func peakRSSMB(path string) (float64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 3 && f[0] == "VmHWM:" && f[2] == "kB" {
			kb, err := strconv.ParseUint(f[1], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("bench: %s: %w", path, err)
			}
			return float64(kb) / 1024, nil
		}
	}
	return 0, fmt.Errorf("%w: VmHWM in %s", ErrMissing, path)
}

// CPUTime returns the CPU time (user and system) the process has used.
func (p *Proc) CPUTime() (time.Duration, error) {
	return cpuTime(fmt.Sprintf("/proc/%d/stat", p.PID()))
}

// clockTicksPerSecond is Linux's USER_HZ, the unit of /proc/PID/stat's
// times; it is 100 on every architecture Go supports.
const clockTicksPerSecond = 100

// cpuTime reads utime and stime from a /proc/PID/stat file.
func cpuTime(path string) (time.Duration, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	// The command name, field 2, is in parentheses and may hold spaces;
	// utime and stime are fields 14 and 15, the 12th and 13th after it.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("%w: command name in %s", ErrMissing, path)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("%w: utime and stime in %s", ErrMissing, path)
	}
	var ticks uint64
	for _, s := range f[11:13] {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("bench: %s: %w", path, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clockTicksPerSecond, nil
}

// WaitReady calls probe every 50ms until it succeeds. It fails when the
// process exits first (with the log's tail) or ctx ends.
func (p *Proc) WaitReady(ctx context.Context, probe func(ctx context.Context) error) error {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		last = probe(pctx)
		cancel()
		if last == nil {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("%w: %s exited before serving (%s)\n%s", ErrProcess, p.name, p.exitStatus(), p.LogTail())
		case <-ctx.Done():
			return fmt.Errorf("bench: %s not serving: %w (last probe: %w)\n%s", p.name, ctx.Err(), last, p.LogTail())
		case <-tick.C:
		}
	}
}

// Cluster is the server processes of one system.
type Cluster struct {
	Procs []*Proc
}

// ResetPeakRSS resets the peak of every process (errors are ignored: a
// kernel without clear_refs leaves the peak since start).
func (c *Cluster) ResetPeakRSS() {
	for _, p := range c.Procs {
		_ = p.ResetPeakRSS()
	}
}

// PeakRSSMB returns the largest peak resident set of the processes, in
// MiB (0 without processes).
func (c *Cluster) PeakRSSMB() float64 {
	var peak float64
	for _, p := range c.Procs {
		if mb, err := p.PeakRSSMB(); err == nil {
			peak = max(peak, mb)
		}
	}
	return peak
}

// CPUTime returns the CPU time the processes have used between them; ok is
// false without processes or if one could not be read.
func (c *Cluster) CPUTime() (total time.Duration, ok bool) {
	for _, p := range c.Procs {
		t, err := p.CPUTime()
		if err != nil {
			return 0, false
		}
		total += t
	}
	return total, len(c.Procs) > 0
}

// cpuMeter measures the servers' CPU time per operation over a run's
// measured window, from the progress reports: the CPU the servers used
// between the first report inside the window and the last, divided by the
// operations counted in between. Server CPU per operation is steadier than
// throughput on a shared machine, where other load takes cores from both
// systems alike.
type cpuMeter struct {
	servers *Cluster
	warmup  time.Duration
	first   *cpuSample
	last    *cpuSample
}

type cpuSample struct {
	cpu time.Duration
	ops int64
}

// wrap returns a progress function that samples the servers and then calls
// progress (if not nil).
func (m *cpuMeter) wrap(progress func(Progress)) func(Progress) {
	return func(p Progress) {
		if p.Elapsed >= m.warmup {
			if cpu, ok := m.servers.CPUTime(); ok {
				s := &cpuSample{cpu: cpu, ops: p.Ops}
				if m.first == nil {
					m.first = s
				}
				m.last = s
			}
		}
		if progress != nil {
			progress(p)
		}
	}
}

// perOp returns the servers' CPU time per operation, 0 if unknown.
func (m *cpuMeter) perOp() time.Duration {
	if m.first == nil || m.last.ops <= m.first.ops {
		return 0
	}
	return (m.last.cpu - m.first.cpu) / time.Duration(m.last.ops-m.first.ops)
}

// Alive returns an error naming the first process that has exited.
func (c *Cluster) Alive() error {
	for _, p := range c.Procs {
		select {
		case <-p.done:
			return fmt.Errorf("%w: %s exited (%s)\n%s", ErrProcess, p.name, p.exitStatus(), p.LogTail())
		default:
		}
	}
	return nil
}

// Stop stops every process (see Proc.Stop) and waits for all of them.
func (c *Cluster) Stop(ctx context.Context) error {
	var errs []error
	for _, p := range c.Procs {
		errs = append(errs, p.Stop(ctx))
	}
	return errors.Join(errs...)
}
