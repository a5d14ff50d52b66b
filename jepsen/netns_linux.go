package jepsen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// netnsEnv is set in the environment of a process re-executed in a
// private network namespace; its value is the parent's namespace
// (readlink /proc/self/ns/net), so the child can check that it left it.
const netnsEnv = "OPENCLUSTER_JEPSEN_NETNS"

// netnsID names this process's network namespace ("net:[4026531840]").
func netnsID() (string, error) { return os.Readlink("/proc/self/ns/net") }

// InPrivateNetNS reports whether this process runs in a private network
// namespace made by RunInPrivateNetNS (or is a descendant of one).
func InPrivateNetNS() bool {
	parent := os.Getenv(netnsEnv)
	self, err := netnsID()
	return parent != "" && err == nil && self != parent
}

// RunInPrivateNetNS runs `name args…` as a child in a new network
// namespace that holds only a loopback interface (down until the child
// calls PreparePrivateNetNS), and returns its exit status. The child and
// all its descendants (server nodes, lease holders) share the namespace,
// and the namespace with every packet filter rule in it vanishes when the
// last of them exits, even if the harness crashes.
//
// The child gets SIGKILL if this process dies (Pdeathsig), SIGTERM when
// ctx ends, and SIGKILL if it has not exited 30s later. The error wraps
// ErrNoNetNS when the kernel refuses the namespace (no CAP_SYS_ADMIN);
// a child killed by a signal is an error too.
func RunInPrivateNetNS(ctx context.Context, name string, args []string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	host, err := netnsID()
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrNoNetNS, err)
	}
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(withoutEnv(os.Environ(), netnsEnv), netnsEnv+"="+host)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 30 * time.Second
	if err := cmd.Start(); err != nil {
		if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOSYS) {
			return 0, fmt.Errorf("%w: clone(CLONE_NEWNET): %w (needs CAP_SYS_ADMIN)", ErrNoNetNS, err)
		}
		return 0, fmt.Errorf("jepsen: start %s in a private network namespace: %w", name, err)
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, nil
	case errors.As(err, &ee) && ee.ExitCode() >= 0:
		return ee.ExitCode(), nil
	default:
		return 0, fmt.Errorf("jepsen: %s in the private network namespace: %w", name, err)
	}
}

// withoutEnv drops key from env.
func withoutEnv(env []string, key string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, key+"=") {
			out = append(out, kv)
		}
	}
	return out
}

// PreparePrivateNetNS is what the child of RunInPrivateNetNS does first:
// it checks that it runs in a namespace of its own and brings the
// loopback interface up (the kernel then gives it 127.0.0.0/8, so nodes
// can listen on 127.0.0.11, .12, …). It is idempotent.
func PreparePrivateNetNS() error {
	if !InPrivateNetNS() {
		return fmt.Errorf("%w: this process was not started by RunInPrivateNetNS", ErrNoNetNS)
	}
	if err := linkUp("lo"); err != nil {
		return fmt.Errorf("%w: bring lo up: %w", ErrNoNetNS, err)
	}
	return nil
}

// linkUp sets IFF_UP on interface name (the SIOCSIFFLAGS ioctl).
func linkUp(name string) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	if ifr.Uint16()&unix.IFF_UP != 0 {
		return nil
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}
