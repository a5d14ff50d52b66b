package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"time"

	"github.com/opencluster/opencluster/rpc/client"
)

// demoCluster is the demo's nodes, all in this process.
type demoCluster struct {
	servers []*runningServer // nil once stopped
	merged  chan error
}

// startDemoCluster starts n nodes in dir: the first bootstraps, the others
// join it. It returns once every bucket has its replicas. The caller
// stops the cluster even on error.
func startDemoCluster(dir, addr, httpAddr string, n int) (*demoCluster, error) {
	cl := &demoCluster{merged: make(chan error, 2*n)}
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return cl, usagef("--addr %q: %v", addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return cl, usagef("--addr %q: bad port", addr)
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	var seed string
	for i := range n {
		cfg := serverConfig{
			DataDir: filepath.Join(dir, fmt.Sprint("node", i+1)), Buckets: 64, Logger: logger, Rebalance: true,
			Addr: net.JoinHostPort(host, strconv.Itoa(port+10*i)),
		}
		if i == 0 {
			cfg.HTTPAddr = httpAddr
		}
		if n > 1 {
			cfg.FastGossip = true
			cfg.GossipAddr = net.JoinHostPort(host, strconv.Itoa(port+10*i+2))
			if port == 0 {
				cfg.Addr = net.JoinHostPort(host, "0")
				if cfg.GossipAddr, err = freeTCPAddr(host); err != nil {
					return cl, err
				}
			}
			if i > 0 {
				cfg.Join = []string{seed}
			} else {
				seed = cfg.GossipAddr
			}
		}
		rs, err := startServer(cfg)
		if err != nil {
			return cl, fmt.Errorf("node %d: %w", i+1, err)
		}
		cl.servers = append(cl.servers, rs)
		go func() { cl.merged <- <-rs.done }()
	}
	if n == 1 {
		return cl, nil
	}
	return cl, cl.waitReplicated(min(n, 3))
}

// waitReplicated waits until every bucket has want voters.
func (cl *demoCluster) waitReplicated(want int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := client.New(ctx, cl.endpoints())
	if err != nil {
		return err
	}
	defer c.Close()
	for {
		st, err := c.Status(ctx)
		if err == nil {
			done := true
			for _, b := range st.Buckets {
				done = done && len(b.Replicas) >= want
			}
			if done {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("buckets not replicated within 30s: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func freeTCPAddr(host string) (string, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// endpoints returns the running nodes' gRPC addresses.
func (cl *demoCluster) endpoints() []string {
	var out []string
	for _, rs := range cl.servers {
		if rs != nil {
			out = append(out, rs.addr)
		}
	}
	return out
}

// done receives the first error of any node's serving loop.
func (cl *demoCluster) done() <-chan error { return cl.merged }

// haltNode stops the node whose id is id abruptly and reports whether it
// found it.
func (cl *demoCluster) haltNode(id string) bool {
	for i, rs := range cl.servers {
		if rs != nil && strconv.FormatUint(rs.node.ID(), 10) == id {
			rs.Halt()
			cl.servers[i] = nil
			return true
		}
	}
	return false
}

func (cl *demoCluster) stop() {
	for i, rs := range cl.servers {
		if rs != nil {
			rs.Stop()
			cl.servers[i] = nil
		}
	}
}

// runFailoverTour stops the node that serves while a lock is held and
// shows the lock, and the data, still there.
func runFailoverTour(ctx context.Context, out io.Writer, cl *demoCluster) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	step := func(format string, args ...any) { fmt.Fprintf(out, "\n== "+format+"\n", args...) }
	say := func(format string, args ...any) { fmt.Fprintf(out, "   "+format+"\n", args...) }
	c, err := client.New(ctx, cl.endpoints(), client.WithOwner("demo-tour"))
	if err != nil {
		return err
	}
	defer c.Close()

	step("5. A server goes away; its locks stay in the cluster")
	l, err := c.Lock(ctx, "nightly-batch", 15*time.Second)
	if err != nil {
		return err
	}
	say("acquired %q with fence %d", l.Name(), l.Fence())
	st, err := c.Status(ctx)
	if err != nil {
		return err
	}
	say("node %s leads every bucket now; halting it abruptly…", st.NodeId)
	stopped := time.Now()
	if !cl.haltNode(st.NodeId) {
		return fmt.Errorf("no demo node has id %s", st.NodeId)
	}
	for {
		short, cancelShort := context.WithTimeout(ctx, time.Second)
		_, err := c.Put(short, []byte("Balance:4587"), []byte("75"))
		cancelShort()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return fmt.Errorf("no write after stopping node %s: %w", st.NodeId, err)
		}
	}
	say("the other nodes elected new leaders: writes work again after %s", time.Since(stopped).Round(10*time.Millisecond))
	infos, err := c.Describe(ctx, "nightly-batch")
	if err != nil {
		return err
	}
	if len(infos) == 1 {
		say("%q is still held: fence %d, expires in %s (its deadline restarted, never early)",
			infos[0].Name, infos[0].Fence, infos[0].ExpiresIn.Round(time.Second))
	}
	if err := l.Unlock(ctx); err != nil {
		return err
	}
	say("released with its code on the new leader")
	return nil
}
