package jepsen

import "syscall"

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
