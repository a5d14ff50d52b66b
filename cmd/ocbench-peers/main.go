package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/opencluster/opencluster/internal/bench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := bench.ServePeer(ctx, os.Stdin, os.Stdout, open)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "ocbench-peers:", err)
		os.Exit(1)
	}
}

// open returns the Target of a peer system.
func open(ctx context.Context, target string, endpoints []string) (bench.Target, error) {
	switch target {
	case bench.Etcd:
		return newEtcdTarget(ctx, endpoints)
	}
	return nil, fmt.Errorf("%w: ocbench-peers drives etcd, not %q", bench.ErrInvalid, target)
}
