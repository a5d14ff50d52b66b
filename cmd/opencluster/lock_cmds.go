package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/opencluster/opencluster/rpc/client"
	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
)

const (
	defaultLockTTL  = 15 * time.Second
	defaultLockWait = 10 * time.Second
	// forever stands for "no deadline" where the client would otherwise
	// apply --timeout (lock run without --wait queues until Ctrl-C).
	forever = 10 * 365 * 24 * time.Hour
	// interruptGrace is how long lock run lets its command exit after
	// forwarding an interrupt, before killing it.
	interruptGrace = 10 * time.Second
)

// Environment variables lock run passes to its command.
const (
	envLockName  = "OPENCLUSTER_LOCK_NAME"
	envLockCode  = "OPENCLUSTER_LOCK_CODE"
	envLockFence = "OPENCLUSTER_LOCK_FENCE"
)

func newLockCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "lock",
		Short: "Named and restrictive locks",
		Long: `Named locks are mutexes with a code (the secret that proves holding them)
and a fence (a token that grows with every grant). Restrictive locks lock keys
for reading or writing; writes under them (put/del --code) become visible
together at commit.

A lock expires ttl after its last keep-alive. acquire and restrict print the
code and exit: nothing keeps the lock alive afterwards unless "lock keepalive"
runs. "lock run" holds a lock for the lifetime of a command.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unknown command %q for %q", args[0], cmd.CommandPath())
			}
			return cmd.Help()
		},
	}
	cmd.AddCommand(
		newLockAcquireCmd(a),
		newLockReleaseCmd(a),
		newLockKeepAliveCmd(a),
		newLockRunCmd(a),
		newLockRestrictCmd(a),
		newLockCommitCmd(a),
		newLockAbortCmd(a),
		newLockShowCmd(a),
		newLockListCmd(a),
	)
	return cmd
}

// parseKind parses --kind; any is allowed only where anyOK.
func parseKind(s string, anyOK bool) (client.LockKind, error) {
	switch s {
	case "named":
		return client.KindNamed, nil
	case "restrictive":
		return client.KindRestrictive, nil
	case "any", "":
		if anyOK {
			return client.KindAny, nil
		}
	}
	if anyOK {
		return 0, usagef("--kind must be any, named or restrictive, not %q", s)
	}
	return 0, usagef("--kind must be named or restrictive, not %q", s)
}

// notKeptAlive tells the user that nothing renews the lock just taken.
func notKeptAlive(w io.Writer, what string, ttl time.Duration, keepalive string) {
	fmt.Fprintf(w, "note: the %s is not kept alive after this command; it expires in %s unless `%s` runs\n", what, ttl, keepalive)
}

func newLockAcquireCmd(a *app) *cobra.Command {
	var ttl, wait time.Duration
	cmd := &cobra.Command{
		Use:   "acquire NAME",
		Short: "Acquire a named lock and print its code and fence",
		Long: `Acquire the named lock NAME, queueing up to --wait while someone holds it
(DeadlineExceeded after that). JSON: {"name","code","fence"}.

The lock is NOT kept alive after the command exits: it expires after --ttl
unless "opencluster lock keepalive NAME CODE" runs. Release it with
"opencluster lock release NAME CODE". To hold a lock while a command runs,
use "opencluster lock run".`,
		Args: exactArgs(1, "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			return a.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				l, err := c.Lock(ctx, name, ttl, client.WithLockWait(wait))
				if err != nil {
					return err
				}
				return a.emit(object{{"name", l.Name()}, {"code", l.Code()}, {"fence", l.Fence()}}, func(w io.Writer) {
					table(w, [][]string{{"name", l.Name()}, {"code", l.Code()}, {"fence", strconv.FormatUint(l.Fence(), 10)}, {"ttl", l.TTL().String()}})
					notKeptAlive(a.stderr, "lock", l.TTL(), "opencluster lock keepalive "+name+" <code>")
				})
			})
		},
	}
	cmd.Flags().DurationVar(&ttl, "ttl", defaultLockTTL, "how long the lock outlives its last keep-alive")
	cmd.Flags().DurationVar(&wait, "wait", defaultLockWait, "how long to queue for the lock (0s: try once)")
	return cmd
}

func newLockReleaseCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "release NAME CODE",
		Short: "Release a named lock",
		Long: `Release the named lock NAME held with CODE. A wrong or stale code fails with
FailedPrecondition. JSON: {"name","released"}.`,
		Args: exactArgs(2, "NAME CODE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				if err := c.Release(ctx, args[0], args[1]); err != nil {
					return err
				}
				return a.emit(object{{"name", args[0]}, {"released", true}}, func(w io.Writer) {
					fmt.Fprintf(w, "released %s\n", args[0])
				})
			})
		},
	}
}

func newLockKeepAliveCmd(a *app) *cobra.Command {
	var kindFlag string
	cmd := &cobra.Command{
		Use:   "keepalive NAME CODE",
		Short: "Keep a lock alive until interrupted",
		Long: `Renew the lock NAME held with CODE every ttl/3 until Ctrl-C (then exit 0,
leaving the lock to expire after its ttl). Text mode prints a line per
renewal. If the lock is lost (or the code does not hold it) the command
exits 1 with FailedPrecondition (named) or Aborted (restrictive).
JSON, when it ends: {"name","renewals","lost"[,"reason"]}.`,
		Args: exactArgs(2, "NAME CODE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			kind, err := parseKind(kindFlag, false)
			if err != nil {
				return err
			}
			name, code := args[0], args[1]
			ctx := cmd.Context()
			c, err := a.client(ctx)
			if err != nil {
				return err
			}
			defer c.Close()
			out := &syncWriter{w: a.stdout}
			var renewals atomic.Int64
			onRenew := func(ttl time.Duration) {
				n := renewals.Add(1)
				if !a.jsonOutput() {
					fmt.Fprintf(out, "renewed %s (%d, ttl %s)\n", name, n, ttl)
				}
			}
			actx, cancel := context.WithTimeout(ctx, a.flags.timeout)
			l, err := c.Attach(actx, name, code, kind, client.OnRenew(onRenew))
			cancel()
			var lost error
			switch {
			case errors.Is(err, client.ErrNotHolder), errors.Is(err, client.ErrLost), errors.Is(err, client.ErrAborted):
				// Lost, or never held, before Attach returned (it can be
				// lost right after its first renewal): the same report.
				lost = err
			case err != nil:
				return err
			default:
				select {
				case <-ctx.Done():
				case <-l.Lost():
					lost = l.Err()
				}
			}
			// Close stops the renewals (and their output) before the result.
			_ = c.Close()
			obj := object{{"name", name}, {"renewals", renewals.Load()}, {"lost", lost != nil}}
			if lost != nil {
				_, msg := describeError(lost)
				obj = append(obj, field{"reason", msg})
			}
			if err := a.emit(obj, func(io.Writer) {}); err != nil {
				return err
			}
			return lost
		},
	}
	cmd.Flags().StringVar(&kindFlag, "kind", "named", "kind of lock: named or restrictive")
	return cmd
}

func newLockRunCmd(a *app) *cobra.Command {
	var ttl, wait time.Duration
	cmd := &cobra.Command{
		Use:   "run NAME [flags] -- CMD [ARG...]",
		Short: "Run a command while holding a named lock",
		Long: `Acquire the named lock NAME (queueing until it is free, or up to --wait), keep
it alive, and run CMD with OPENCLUSTER_LOCK_NAME, OPENCLUSTER_LOCK_CODE and
OPENCLUSTER_LOCK_FENCE in its environment. Put "--" before CMD so that its
flags are not taken for ours.

If the lock is lost CMD is killed and the command exits 1 with the loss
(FailedPrecondition). On Ctrl-C CMD gets an interrupt (and is killed if it
has not exited 10s later). When CMD exits the lock is released and the
command exits with CMD's status. Nothing is printed of its own, in either
output format.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 2 {
				return usagef("%s takes NAME and a command to run", cmd.CommandPath())
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			name, argv := args[0], args[1:]
			var opts []client.LockOption
			lockCtx, cancel := context.WithTimeout(cmd.Context(), forever)
			defer cancel()
			if cmd.Flags().Changed("wait") {
				opts = append(opts, client.WithLockWait(wait))
				lockCtx = cmd.Context()
			}
			return a.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				l, err := c.Lock(lockCtx, name, ttl, opts...)
				if err != nil {
					return err
				}
				return a.runLocked(ctx, l, argv)
			})
		},
	}
	cmd.Flags().DurationVar(&ttl, "ttl", defaultLockTTL, "how long the lock outlives its last keep-alive")
	cmd.Flags().DurationVar(&wait, "wait", 0, "how long to queue for the lock (default: until acquired or Ctrl-C; 0s: try once)")
	return cmd
}

// runLocked runs argv while l is held, then releases l.
func (a *app) runLocked(ctx context.Context, l *client.Lock, argv []string) error {
	child := exec.Command(argv[0], argv[1:]...)
	child.Env = append(os.Environ(),
		envLockName+"="+l.Name(),
		envLockCode+"="+l.Code(),
		envLockFence+"="+strconv.FormatUint(l.Fence(), 10))
	child.Stdin, child.Stdout, child.Stderr = a.stdin, a.stdout, a.stderr

	uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.flags.timeout)
	defer cancel()
	if err := child.Start(); err != nil {
		_ = l.Unlock(uctx)
		return failf(codes.InvalidArgument, "cannot run %s: %s", argv[0], err.Error())
	}
	waitc := make(chan error, 1)
	go func() { waitc <- child.Wait() }()

	var lost error
	select {
	case <-waitc:
	case <-l.Lost():
		lost = l.Err()
		_ = child.Process.Kill()
		<-waitc
	case <-ctx.Done():
		_ = child.Process.Signal(os.Interrupt)
		select {
		case <-waitc:
		case <-time.After(interruptGrace):
			_ = child.Process.Kill()
			<-waitc
		}
	}
	uerr := l.Unlock(uctx)
	if lost != nil {
		return lost
	}
	status := exitStatus(child.ProcessState)
	if uerr != nil {
		if status == 0 {
			return uerr
		}
		code, msg := describeError(uerr)
		fmt.Fprintf(a.stderr, "warning: release %s: %s: %s\n", l.Name(), code, msg)
	}
	if status != 0 {
		return &exitError{code: status}
	}
	return nil
}

// exitStatus is a finished process's exit status, 128+N if signal N
// killed it (as shells report it).
func exitStatus(ps *os.ProcessState) int {
	if code := ps.ExitCode(); code >= 0 {
		return code
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return exitFailure
}

func newLockRestrictCmd(a *app) *cobra.Command {
	var (
		reads, writes []string
		snapshot      bool
		ttl, wait     time.Duration
	)
	cmd := &cobra.Command{
		Use:   "restrict NAME --read KEY... --write KEY...",
		Short: "Take a restrictive lock over keys",
		Long: `Take the restrictive lock NAME over the --read and --write keys (each flag may
repeat), queueing up to --wait. Then write with "put/del --code CODE", read
your writes with "get --code CODE", and finish with "lock commit NAME CODE"
(all writes visible at one version) or "lock abort NAME CODE".
JSON: {"name","code","fence","start_version"}.

The lock is NOT kept alive after the command exits: it expires (and its
writes are discarded) after --ttl unless
"opencluster lock keepalive NAME CODE --kind restrictive" runs.`,
		Args: exactArgs(1, "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(reads)+len(writes) == 0 {
				return usagef("lock restrict needs at least one --read or --write key")
			}
			opts := []client.RestrictOption{client.TTL(ttl), client.Wait(wait)}
			for _, k := range reads {
				opts = append(opts, client.Read([]byte(k)))
			}
			for _, k := range writes {
				opts = append(opts, client.Write([]byte(k)))
			}
			if snapshot {
				opts = append(opts, client.Snapshot())
			}
			name := args[0]
			return a.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				tx, err := c.Restrict(ctx, name, opts...)
				if err != nil {
					return err
				}
				obj := object{{"name", tx.Name()}, {"code", tx.Code()}, {"fence", tx.Fence()}, {"start_version", tx.StartVersion()}}
				return a.emit(obj, func(w io.Writer) {
					table(w, [][]string{
						{"name", tx.Name()},
						{"code", tx.Code()},
						{"fence", strconv.FormatUint(tx.Fence(), 10)},
						{"start version", strconv.FormatUint(tx.StartVersion(), 10)},
						{"ttl", tx.TTL().String()},
					})
					notKeptAlive(a.stderr, "restrictive lock", tx.TTL(), "opencluster lock keepalive "+name+" <code> --kind restrictive")
				})
			})
		},
	}
	fl := cmd.Flags()
	fl.StringArrayVar(&reads, "read", nil, "a key to lock for reading (repeatable)")
	fl.StringArrayVar(&writes, "write", nil, "a key to lock for writing (repeatable)")
	fl.BoolVar(&snapshot, "snapshot", false, "snapshot isolation: others read the last committed values without waiting")
	fl.DurationVar(&ttl, "ttl", defaultLockTTL, "how long the lock outlives its last keep-alive")
	fl.DurationVar(&wait, "wait", defaultLockWait, "how long to queue for the name and the keys (0s: try once)")
	return cmd
}

func newLockCommitCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "commit NAME CODE",
		Short: "Commit a restrictive lock's writes and unlock it",
		Long: `Unlock the restrictive lock NAME held with CODE, making all its writes visible
at one version. A lost lock fails with Aborted (writes discarded); a wrong
code with FailedPrecondition. JSON: {"commit_version"}.`,
		Args: exactArgs(2, "NAME CODE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				v, err := c.Commit(ctx, args[0], args[1])
				if err != nil {
					return err
				}
				return a.emit(object{{"commit_version", v}}, func(w io.Writer) {
					fmt.Fprintf(w, "committed %s at version %d\n", args[0], v)
				})
			})
		},
	}
}

func newLockAbortCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "abort NAME CODE",
		Short: "Discard a restrictive lock's writes and unlock it",
		Long:  `Unlock the restrictive lock NAME held with CODE, discarding its writes. JSON: {"name","aborted"}.`,
		Args:  exactArgs(2, "NAME CODE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				if err := c.Abort(ctx, args[0], args[1]); err != nil {
					return err
				}
				return a.emit(object{{"name", args[0]}, {"aborted", true}}, func(w io.Writer) {
					fmt.Fprintf(w, "aborted %s\n", args[0])
				})
			})
		},
	}
}

func newLockShowCmd(a *app) *cobra.Command {
	var kindFlag string
	cmd := &cobra.Command{
		Use:   "show NAME",
		Short: "Describe a lock",
		Long: `Describe the lock(s) called NAME (a named and a restrictive lock may share a
name; --kind picks one). Codes are never shown. An unknown name fails with
NotFound. JSON: {"locks":[{"name","kind","held","fence","owner",
"acquired_version","ttl","expires_in","waiters"[,"status","isolation","keys",
"commit_version"]}]}.`,
		Args: exactArgs(1, "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			kind, err := parseKind(kindFlag, true)
			if err != nil {
				return err
			}
			return a.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				infos, err := c.Describe(ctx, args[0], client.OfKind(kind))
				if err != nil {
					return err
				}
				if len(infos) == 0 {
					return failf(codes.NotFound, "no lock named %q", args[0])
				}
				return a.emitLocks(infos, func(w io.Writer) {
					for i, info := range infos {
						if i > 0 {
							fmt.Fprintln(w)
						}
						writeLockInfo(w, info)
					}
				})
			})
		},
	}
	cmd.Flags().StringVar(&kindFlag, "kind", "any", "kind of lock: any, named or restrictive")
	return cmd
}

func newLockListCmd(a *app) *cobra.Command {
	var (
		prefix   string
		held     bool
		kindFlag string
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List locks",
		Long: `List the locks whose names start with --prefix, as a table.
JSON: {"locks":[...]} with the objects of "lock show".`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			kind, err := parseKind(kindFlag, true)
			if err != nil {
				return err
			}
			opts := []client.ListOption{client.OfKind(kind)}
			if held {
				opts = append(opts, client.HeldOnly())
			}
			return a.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				infos, err := c.List(ctx, prefix, opts...)
				if err != nil {
					return err
				}
				return a.emitLocks(infos, func(w io.Writer) {
					if len(infos) == 0 {
						fmt.Fprintln(w, "no locks")
						return
					}
					rows := [][]string{{"NAME", "KIND", "HELD", "FENCE", "OWNER", "TTL", "EXPIRES IN", "WAITERS", "STATUS"}}
					for _, info := range infos {
						st := info.Status
						if st == "" {
							st = "-"
						}
						rows = append(rows, []string{
							info.Name, info.Kind.String(), strconv.FormatBool(info.Held),
							strconv.FormatUint(info.Fence, 10), info.Owner, info.TTL.String(),
							info.ExpiresIn.Round(time.Millisecond).String(), strconv.Itoa(info.Waiters), st,
						})
					}
					table(w, rows)
				})
			})
		},
	}
	cmd.Flags().StringVar(&prefix, "prefix", "", "only locks whose names start with this")
	cmd.Flags().BoolVar(&held, "held", false, "only locks held now")
	cmd.Flags().StringVar(&kindFlag, "kind", "any", "kind of lock: any, named or restrictive")
	return cmd
}

// emitLocks prints {"locks":[...]} or the text.
func (a *app) emitLocks(infos []client.LockInfo, text func(w io.Writer)) error {
	items := make([]object, 0, len(infos))
	for _, info := range infos {
		items = append(items, lockInfoObject(info))
	}
	return a.emit(object{{"locks", items}}, text)
}
