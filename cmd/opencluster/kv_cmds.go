package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/opencluster/opencluster/rpc/client"
	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
)

// writeFlags are the flags of put and del.
type writeFlags struct {
	code  string
	fence string
	wait  time.Duration
}

func (f *writeFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.code, "code", "", "write provisionally under the restrictive lock with this code")
	fl.StringVar(&f.fence, "fence", "", "guard the write with a named lock's fencing token, as NAME:TOKEN")
	fl.DurationVar(&f.wait, "wait", 0, "how long to wait for a locked key (default: until --timeout; 0s does not wait)")
}

func (f *writeFlags) options(cmd *cobra.Command) ([]client.WriteOption, error) {
	var opts []client.WriteOption
	if f.code != "" {
		opts = append(opts, client.WithCode(f.code))
	}
	if f.fence != "" {
		if f.code != "" {
			return nil, usagef("--fence and --code do not go together: a write under a restrictive lock is ordered by the lock")
		}
		name, token, err := parseFence(f.fence)
		if err != nil {
			return nil, err
		}
		opts = append(opts, client.WithFence(name, token))
	}
	if cmd.Flags().Changed("wait") {
		opts = append(opts, client.WithWait(f.wait))
	}
	return opts, nil
}

// parseFence parses NAME:TOKEN (the name may itself contain colons).
func parseFence(s string) (string, uint64, error) {
	i := strings.LastIndexByte(s, ':')
	if i <= 0 {
		return "", 0, usagef("--fence must be NAME:TOKEN, not %q", s)
	}
	token, err := strconv.ParseUint(s[i+1:], 10, 64)
	if err != nil {
		return "", 0, usagef("--fence token %q is not a number", s[i+1:])
	}
	return s[:i], token, nil
}

func newPutCmd(a *app) *cobra.Command {
	var wf writeFlags
	cmd := &cobra.Command{
		Use:   "put KEY VALUE",
		Short: "Write a value",
		Long: `Write VALUE under KEY and print the write's version.
JSON: {"key","version"} (version 0 for a provisional write with --code).`,
		Args: exactArgs(2, "KEY VALUE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts, err := wf.options(cmd)
			if err != nil {
				return err
			}
			key := []byte(args[0])
			return a.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				v, err := c.Put(ctx, key, []byte(args[1]), opts...)
				if err != nil {
					return err
				}
				return a.emit(object{bytesField("key", key), {"version", v}}, func(w io.Writer) {
					fmt.Fprintf(w, "OK version %d\n", v)
				})
			})
		},
	}
	wf.register(cmd)
	return cmd
}

func newGetCmd(a *app) *cobra.Command {
	var (
		code    string
		version uint64
		wait    time.Duration
	)
	cmd := &cobra.Command{
		Use:   "get KEY",
		Short: "Read a value",
		Long: `Read KEY: the newest committed value, the value at --version, or with --code
the restrictive lock's own provisional value. Text output is the value alone.
JSON: {"key","value","version"}. A missing key fails with NotFound.`,
		Args: exactArgs(1, "KEY"),
		RunE: func(cmd *cobra.Command, args []string) error {
			var opts []client.ReadOption
			if code != "" {
				opts = append(opts, client.WithReadCode(code))
			}
			if version != 0 {
				opts = append(opts, client.AtVersion(version))
			}
			if cmd.Flags().Changed("wait") {
				opts = append(opts, client.WithReadWait(wait))
			}
			return a.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				kv, err := c.Get(ctx, []byte(args[0]), opts...)
				if err != nil {
					return err
				}
				return a.emit(object{bytesField("key", []byte(args[0])), bytesField("value", kv.Value), {"version", kv.Version}}, func(w io.Writer) {
					_, _ = w.Write(kv.Value)
					_, _ = io.WriteString(w, "\n")
				})
			})
		},
	}
	cmd.Flags().StringVar(&code, "code", "", "read under the restrictive lock with this code")
	cmd.Flags().Uint64Var(&version, "version", 0, "read at this snapshot version (0: newest)")
	cmd.Flags().DurationVar(&wait, "wait", 0, "how long to wait for a WRITE-locked key (default: until --timeout)")
	return cmd
}

func newDelCmd(a *app) *cobra.Command {
	var wf writeFlags
	cmd := &cobra.Command{
		Use:     "del KEY",
		Aliases: []string{"delete"},
		Short:   "Delete a key",
		Long: `Delete KEY and print the deletion's version.
JSON: {"key","version"}.`,
		Args: exactArgs(1, "KEY"),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts, err := wf.options(cmd)
			if err != nil {
				return err
			}
			key := []byte(args[0])
			return a.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				v, err := c.Delete(ctx, key, opts...)
				if err != nil {
					return err
				}
				return a.emit(object{bytesField("key", key), {"version", v}}, func(w io.Writer) {
					fmt.Fprintf(w, "OK version %d\n", v)
				})
			})
		},
	}
	wf.register(cmd)
	return cmd
}

func newCASCmd(a *app) *cobra.Command {
	var (
		version uint64
		wait    time.Duration
	)
	cmd := &cobra.Command{
		Use:   "cas KEY VALUE --version N",
		Short: "Compare and swap",
		Long: `Write VALUE under KEY only if the key's current version is N (0: the key must
not exist). JSON: {"key","succeeded","version"}: the new version, or the
current one (0: absent) when the swap failed. A failed swap prints the object,
then exits 1 with "FailedPrecondition: version mismatch (current N)".`,
		Args: exactArgs(2, "KEY VALUE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			var opts []client.WriteOption
			if cmd.Flags().Changed("wait") {
				opts = append(opts, client.WithWait(wait))
			}
			key := []byte(args[0])
			return a.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				ok, cur, err := c.CAS(ctx, key, []byte(args[1]), version, opts...)
				if err != nil {
					return err
				}
				if err := a.emit(object{bytesField("key", key), {"succeeded", ok}, {"version", cur.Version}}, func(w io.Writer) {
					if ok {
						fmt.Fprintf(w, "OK version %d\n", cur.Version)
					}
				}); err != nil {
					return err
				}
				if !ok {
					return failf(codes.FailedPrecondition, "version mismatch (current %d)", cur.Version)
				}
				return nil
			})
		},
	}
	cmd.Flags().Uint64Var(&version, "version", 0, "the version KEY must have (0: KEY must not exist)")
	cmd.Flags().DurationVar(&wait, "wait", 0, "how long to wait for a locked key (default: until --timeout)")
	_ = cmd.MarkFlagRequired("version")
	return cmd
}

func newScanCmd(a *app) *cobra.Command {
	var (
		limit   int
		version uint64
	)
	cmd := &cobra.Command{
		Use:   "scan [PREFIX]",
		Short: "List keys with a prefix",
		Long: `List the keys starting with PREFIX (all keys without it), in key order, at one
snapshot version. JSON: {"kvs":[{"key","value","version"}],"more"}; more is
true when --limit cut the list.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 {
				return usagef("%s takes at most one PREFIX, got %d arguments", cmd.CommandPath(), len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			var prefix []byte
			if len(args) == 1 {
				prefix = []byte(args[0])
			}
			if limit < 0 {
				return usagef("--limit must not be negative")
			}
			var opts []client.ReadOption
			if version != 0 {
				opts = append(opts, client.AtVersion(version))
			}
			return a.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				kvs, more, err := c.Scan(ctx, prefix, limit, opts...)
				if err != nil {
					return err
				}
				items := make([]object, 0, len(kvs))
				rows := [][]string{{"KEY", "VALUE", "VERSION"}}
				for _, kv := range kvs {
					items = append(items, object{bytesField("key", kv.Key), bytesField("value", kv.Value), {"version", kv.Version}})
					rows = append(rows, []string{textBytes(kv.Key), textBytes(kv.Value), strconv.FormatUint(kv.Version, 10)})
				}
				return a.emit(object{{"kvs", items}, {"more", more}}, func(w io.Writer) {
					table(w, rows)
					if more {
						fmt.Fprintln(w, "(more: raise --limit)")
					}
				})
			})
		},
	}
	cmd.Flags().IntVar(&limit, "limit", 0, "at most this many keys (0: the server's default, 1000)")
	cmd.Flags().Uint64Var(&version, "version", 0, "read at this snapshot version (0: newest)")
	return cmd
}
