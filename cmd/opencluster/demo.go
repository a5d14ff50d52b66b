package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/status"

	"github.com/opencluster/opencluster/rpc/client"
)

// newDemoCmd returns `opencluster demo`: a throw-away local cluster with a
// guided tour of every feature.
func newDemoCmd() *cobra.Command {
	var (
		addr, httpAddr string
		tour, exit     bool
		nodes          int
	)
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Start a throw-away local cluster and tour its features",
		Long: `Start a local OpenCluster in a temporary directory, print its endpoint, run a
short guided tour (keys and versions, a named lock with its fence, the
seed's UpdateBalance:4587 restrictive lock with invisible writes and an
atomic commit, expiry, and with several nodes a node stopped while a lock is
held), then keep serving until Ctrl-C. The data is deleted on exit.

With --nodes N > 1 the nodes listen on consecutive ports from --addr's (gRPC
on P, P+10, …; gossip on P+2, P+12, …) and form one cluster.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			if nodes < 1 || nodes > 7 {
				return usagef("--nodes %d, want 1..7", nodes)
			}
			dir, err := os.MkdirTemp("", "opencluster-demo-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(dir)
			cl, err := startDemoCluster(dir, addr, httpAddr, nodes)
			defer cl.stop()
			if err != nil {
				return err
			}
			endpoints := cl.endpoints()
			fmt.Fprintf(out, "OpenCluster demo: %d node(s), 64 buckets, data in %s\n", nodes, dir)
			fmt.Fprintf(out, "  endpoints: %s   (export OPENCLUSTER_ENDPOINTS=%s)\n", strings.Join(endpoints, ","), strings.Join(endpoints, ","))
			if rs := cl.servers[0]; rs.httpAddr != "" {
				fmt.Fprintf(out, "  status:    http://%s/status\n", rs.httpAddr)
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if tour {
				if err := runTour(ctx, out, endpoints); err != nil {
					return fmt.Errorf("tour: %w", err)
				}
				if nodes > 1 {
					if err := runFailoverTour(ctx, out, cl); err != nil {
						return fmt.Errorf("tour: %w", err)
					}
				}
				fmt.Fprintln(out, "\nTour done.")
			}
			if exit {
				return nil
			}
			fmt.Fprintln(out, "\nServing until Ctrl-C. Try: go run ./cmd/opencluster get Balance:4587")
			select {
			case <-ctx.Done():
			case err := <-cl.done():
				return err
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&addr, "addr", "127.0.0.1:7400", "gRPC listen address (use :0 for any free port)")
	f.StringVar(&httpAddr, "http-addr", "127.0.0.1:7401", "HTTP address for /status and /metrics (empty: none)")
	f.BoolVar(&tour, "tour", true, "run the guided tour")
	f.BoolVar(&exit, "exit-after-tour", false, "stop after the tour instead of serving")
	f.IntVar(&nodes, "nodes", 3, "nodes in the demo cluster (1..7)")
	return cmd
}

// runTour walks through every feature against the demo node.
func runTour(ctx context.Context, out io.Writer, endpoints []string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	c, err := client.New(ctx, endpoints, client.WithOwner("demo-tour"))
	if err != nil {
		return err
	}
	defer c.Close()
	other, err := client.New(ctx, endpoints, client.WithOwner("demo-other-client"))
	if err != nil {
		return err
	}
	defer other.Close()
	step := func(format string, args ...any) { fmt.Fprintf(out, "\n== "+format+"\n", args...) }
	say := func(format string, args ...any) { fmt.Fprintf(out, "   "+format+"\n", args...) }

	step("1. Keys are versioned by cluster timestamps")
	for _, kv := range [][2]string{{"UserDetails:4587", "Ada Lovelace"}, {"Balance:4587", "100"}, {"ParsedOutput:4587", "none"}} {
		v, err := c.Put(ctx, []byte(kv[0]), []byte(kv[1]))
		if err != nil {
			return err
		}
		say("put %-18s = %-13q version %d", kv[0], kv[1], v)
	}
	got, err := c.Get(ctx, []byte("Balance:4587"))
	if err != nil {
		return err
	}
	say("get Balance:4587 -> %q at version %d", got.Value, got.Version)

	step("2. A named lock: one holder, a secret code, a fence that only grows")
	l, err := c.Lock(ctx, "report-job", 15*time.Second)
	if err != nil {
		return err
	}
	say("acquired %q: code %s… fence %d (kept alive in the background)", l.Name(), l.Code()[:8], l.Fence())
	_, err = other.Lock(ctx, "report-job", 15*time.Second, client.WithLockWait(300*time.Millisecond))
	say("another client tries for 300ms: %v", errText(err))
	if err := l.Unlock(ctx); err != nil {
		return err
	}
	l2, err := other.Lock(ctx, "report-job", 15*time.Second)
	if err != nil {
		return err
	}
	say("after release the other client gets it with fence %d", l2.Fence())
	if err := l2.Unlock(ctx); err != nil {
		return err
	}

	step("3. The restrictive lock UpdateBalance:4587 (snapshot mode)")
	tx, err := c.Restrict(ctx, "UpdateBalance:4587",
		client.Read([]byte("UserDetails:4587")), client.Write([]byte("Balance:4587")), client.Write([]byte("ParsedOutput:4587")),
		client.Snapshot())
	if err != nil {
		return err
	}
	say("locked UserDetails READ, Balance WRITE, ParsedOutput WRITE: code %s… fence %d", tx.Code()[:8], tx.Fence())
	if err := tx.Put(ctx, []byte("Balance:4587"), []byte("75")); err != nil {
		return err
	}
	if err := tx.Put(ctx, []byte("ParsedOutput:4587"), []byte("paid 25")); err != nil {
		return err
	}
	mine, err := tx.Get(ctx, []byte("Balance:4587"))
	if err != nil {
		return err
	}
	say("inside the lock Balance:4587 reads %q (provisional)", mine.Value)
	theirs, err := other.Get(ctx, []byte("Balance:4587"))
	if err != nil {
		return err
	}
	say("another client still reads %q at version %d: the writes are invisible", theirs.Value, theirs.Version)
	_, err = other.Put(ctx, []byte("UserDetails:4587"), []byte("someone else"), client.WithWait(300*time.Millisecond))
	say("another client's write to the READ key waits, then: %v", errText(err))
	_, err = other.Put(ctx, []byte("Balance:4587"), []byte("1000000"), client.WithCode("00000000000000000000000000000000"))
	say("a write with a wrong code: %v", errText(err))
	cv, err := tx.Commit(ctx)
	if err != nil {
		return err
	}
	say("unlock = commit at version %d", cv)
	res, err := other.BatchGet(ctx, [][]byte{[]byte("Balance:4587"), []byte("ParsedOutput:4587")})
	if err != nil {
		return err
	}
	for _, r := range res.Items {
		say("now everyone reads %-18s = %-10q version %d", r.Key, r.Value, r.Version)
	}

	step("4. Timeouts abort")
	doomed, err := client.New(ctx, endpoints, client.WithOwner("demo-doomed-client"))
	if err != nil {
		return err
	}
	tx2, err := doomed.Restrict(ctx, "short-lived", client.Write([]byte("Balance:4587")), client.TTL(time.Second))
	if err != nil {
		doomed.Close()
		return err
	}
	// Flush: the provisional write goes to the server now rather than with
	// the commit that will never come.
	if err := tx2.Put(ctx, []byte("Balance:4587"), []byte("0")); err != nil {
		doomed.Close()
		return err
	}
	if err := tx2.Flush(ctx); err != nil {
		doomed.Close()
		return err
	}
	say("a lock with ttl 1s wrote Balance:4587=0 (provisionally, on the server); then its client disappears…")
	doomed.Close()
	// About a ttl after its last keep-alive; a leadership change on the way
	// restarts the clock (never early), so wait for it rather than sleep.
	gone := time.Now()
	for time.Since(gone) < 30*time.Second {
		infos, err := c.Describe(ctx, "short-lived", client.OfKind(client.KindRestrictive))
		if err == nil && len(infos) == 1 && !infos[0].Held {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	say("its lock expired %s after the client went", time.Since(gone).Round(100*time.Millisecond))
	_, err = c.Commit(ctx, "short-lived", tx2.Code())
	say("commit after expiry: %v", errText(err))
	final, err := other.Get(ctx, []byte("Balance:4587"))
	if err != nil {
		return err
	}
	say("Balance:4587 is still %q", final.Value)
	return nil
}

// errText shows an expected error with its gRPC code, as a user sees it.
func errText(err error) string {
	if err == nil {
		return "ok"
	}
	return status.Code(err).String() + ": " + err.Error()
}
