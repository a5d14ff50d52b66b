// Command opencluster is the OpenCluster binary: key-value and lock
// commands against a running cluster (and, from other files, start, demo
// and status).
//
// Conventions of every client command:
//
//   - --endpoints (env OPENCLUSTER_ENDPOINTS, default 127.0.0.1:7400) lists
//     servers, comma-separated; any one can serve any request.
//   - -o text (default) prints for people; -o json prints exactly one JSON
//     object on stdout (lock run prints nothing of its own; lock keepalive
//     prints its object when it ends). Keys and values are strings in
//     JSON; one that is not valid UTF-8 is printed base64-encoded (standard
//     alphabet) under the field name with a "_b64" suffix ("value_b64").
//   - --timeout (default 10s) bounds each request; a command that waits
//     (--wait) gets its wait on top.
//   - Exit status 0 on success; 1 on failure, with
//     "Error: <gRPC code name>: <message>" on stderr (NotFound,
//     FailedPrecondition, InvalidArgument, DeadlineExceeded, Aborted,
//     Unavailable, …). Bad command-line input is InvalidArgument. lock run
//     exits with its command's status.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// version is the binary's version, published in gossip metadata.
const version = "0.1.0-dev"

// Exit statuses.
const (
	exitOK      = 0
	exitFailure = 1
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}

// run executes the command line args and returns the exit status.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr, getenv: getenv}
	return a.execute(ctx, args)
}

// execute runs args through the command tree and turns the result into an
// exit status, printing the error line on failure.
func (a *app) execute(ctx context.Context, args []string) int {
	root := newRootCmd(a)
	root.SetArgs(args)
	root.SetIn(a.stdin)
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	code, msg := describeError(err)
	fmt.Fprintf(a.stderr, "Error: %s: %s\n", code, msg)
	return exitFailure
}
