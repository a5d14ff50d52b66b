//go:build !linux

package jepsen

import (
	"context"
	"syscall"
)

// childProcAttr puts a node in its own process group, so a Ctrl-C meant
// for the harness reaches only the harness. Without Linux's Pdeathsig a
// node can outlive a harness that crashes.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

// waitStopped trusts SIGSTOP to take effect: without /proc there is
// nothing to watch.
func waitStopped(ctx context.Context, pid int) error { return nil }
