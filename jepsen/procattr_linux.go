package jepsen

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// childProcAttr puts a node in its own process group, so a Ctrl-C meant
// for the harness reaches only the harness (which then kills and reaps
// the nodes itself), and has the kernel SIGKILL it if the harness dies
// first, so no server outlives a crashed run.
//
// Pdeathsig fires when the thread that started the child exits; the Go
// runtime does not retire threads of goroutines that are not locked to
// them, so in practice it fires when the harness process dies.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// waitStopped returns once every thread of pid is stopped, so that a
// pause is in force when Pause returns: kill(2) only queues SIGSTOP, and a
// thread running on another CPU may answer a request or two before it
// stops. It gives up when ctx ends or the process is gone.
func waitStopped(ctx context.Context, pid int) error {
	tasks := fmt.Sprintf("/proc/%d/task", pid)
	for {
		ents, err := os.ReadDir(tasks)
		if err != nil {
			return nil // gone: nothing left to stop
		}
		running := false
		for _, e := range ents {
			stat, err := os.ReadFile(filepath.Join(tasks, e.Name(), "stat"))
			if err != nil {
				continue // the thread exited
			}
			// The state follows the parenthesised command name, which
			// may itself hold spaces or parentheses; a thread that exited (Z, X)
			// runs no more.
			i := bytes.LastIndexByte(stat, ')')
			if i < 0 || i+2 >= len(stat) {
				continue
			}
			if s := stat[i+2]; s != 'T' && s != 't' && s != 'Z' && s != 'X' {
				running = true
				break
			}
		}
		if !running {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("jepsen: pid %d not stopped: %w", pid, context.Cause(ctx))
		case <-time.After(time.Millisecond):
		}
	}
}
