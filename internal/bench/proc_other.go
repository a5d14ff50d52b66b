//go:build !linux

package bench

import "syscall"

// childAttr puts a child in its own process group (see proc_linux.go; only
// Linux can also tie the child's life to the bench's).
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
