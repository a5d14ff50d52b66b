package main

import (
	"context"
	"io"
	"strings"
	"time"

	"github.com/opencluster/opencluster/rpc/client"
	"github.com/spf13/cobra"
	"google.golang.org/grpc"
)

const (
	envEndpoints     = "OPENCLUSTER_ENDPOINTS"
	defaultEndpoints = "127.0.0.1:7400"
	defaultTimeout   = 10 * time.Second
)

// app is one run of the program: its standard streams, environment and
// global flags.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
	// dialOpts are extra gRPC dial options for every client (tests pass an
	// in-memory dialer).
	dialOpts []grpc.DialOption

	flags struct {
		endpoints string
		output    string
		timeout   time.Duration
	}
}

// newRootCmd builds the command tree.
func newRootCmd(a *app) *cobra.Command {
	root := &cobra.Command{
		Use:   "opencluster",
		Short: "A replicated key-value store with named and restrictive locks",
		Long: `opencluster talks to an OpenCluster cluster: versioned keys (put, get, del,
cas, scan) and locks (lock ...).

On failure a command exits 1 and prints "Error: <gRPC code>: <message>" on
stderr. With -o json it prints exactly one JSON object on stdout; keys and
values that are not valid UTF-8 appear base64-encoded under "<field>_b64".`,
		SilenceErrors: true,
		SilenceUsage:  true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			return a.validateFlags()
		},
	}
	endpoints := defaultEndpoints
	if env := a.getenv(envEndpoints); env != "" {
		endpoints = env
	}
	pf := root.PersistentFlags()
	pf.StringVar(&a.flags.endpoints, "endpoints", endpoints, "comma-separated server addresses (env "+envEndpoints+")")
	pf.StringVarP(&a.flags.output, "output", "o", outputText, "output format: text or json")
	pf.DurationVar(&a.flags.timeout, "timeout", defaultTimeout, "deadline of each request (a --wait is added to it)")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return usagef("%s", err.Error())
	})

	root.AddCommand(
		newPutCmd(a),
		newGetCmd(a),
		newDelCmd(a),
		newCASCmd(a),
		newScanCmd(a),
		newLockCmd(a),
		newStatusCmd(a),
		newBucketCmd(a),
		newNodeCmd(a),
		newStartCmd(),
		newDemoCmd(),
		newJepsenCmd(a),
		newBenchCmd(a),
	)

	return root
}

// validateFlags checks the global flags.
func (a *app) validateFlags() error {
	switch a.flags.output {
	case outputText, outputJSON:
	default:
		return usagef("-o must be text or json, not %q", a.flags.output)
	}
	if a.flags.timeout <= 0 {
		return usagef("--timeout must be positive, not %s", a.flags.timeout)
	}
	if len(a.endpointList()) == 0 {
		return usagef("--endpoints is empty")
	}
	return nil
}

func (a *app) endpointList() []string {
	var out []string
	for _, e := range strings.Split(a.flags.endpoints, ",") {
		if e = strings.TrimSpace(e); e != "" {
			out = append(out, e)
		}
	}
	return out
}

// client connects to the cluster. The caller closes it.
func (a *app) client(ctx context.Context) (*client.Client, error) {
	return client.New(ctx, a.endpointList(),
		client.WithTimeout(a.flags.timeout),
		client.WithDialOptions(a.dialOpts...),
	)
}

// withClient runs fn with a connected client and closes it.
func (a *app) withClient(cmd *cobra.Command, fn func(ctx context.Context, c *client.Client) error) error {
	ctx := cmd.Context()
	c, err := a.client(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	return fn(ctx, c)
}

// exactArgs is cobra.ExactArgs with an InvalidArgument error.
func exactArgs(n int, names string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usagef("%s takes %s, got %d arguments", cmd.CommandPath(), names, len(args))
		}
		return nil
	}
}
