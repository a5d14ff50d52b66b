//go:build !linux

package jepsen

import "syscall"

// childProcAttr puts a node in its own process group, so a Ctrl-C meant
// for the harness reaches only the harness. Without Linux's Pdeathsig a
// node can outlive a harness that crashes.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
