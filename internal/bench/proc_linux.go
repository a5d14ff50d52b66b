package bench

import "syscall"

// childAttr puts a child in its own process group (a Ctrl-C at the
// terminal reaches only the bench, which then stops its children in
// order) and has the kernel kill it if the bench dies first.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
