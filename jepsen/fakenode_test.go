package jepsen

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/grpc"

	"github.com/opencluster/opencluster/rpc/ocpb"
)

// fakeNodeEnv makes the test binary run fakeNodeMain instead of the
// tests: "1" serves, "exit" fails at once (a node that cannot start).
const fakeNodeEnv = "JEPSEN_TEST_FAKE_NODE"

// fakeNodeMain is a stand-in for `opencluster start`: it takes the same
// flags, appends a line to <data-dir>/starts, and serves Cluster.Status
// (one bucket, led by itself) until killed. It lets the process-control
// tests run real child processes without the server's packages.
func fakeNodeMain(args []string) {
	if os.Getenv(fakeNodeEnv) == "exit" {
		fmt.Fprintln(os.Stderr, "fake node: refusing to start")
		os.Exit(1)
	}
	if len(args) == 0 || args[0] != "start" {
		fmt.Fprintf(os.Stderr, "fake node: want start, got %q\n", args)
		os.Exit(2)
	}
	fs := flag.NewFlagSet("start", flag.ExitOnError)
	dataDir := fs.String("data-dir", "", "")
	addr := fs.String("addr", "", "")
	fs.String("http-addr", "", "")
	fs.Int("buckets", 0, "")
	fs.String("log-level", "", "")
	fs.String("gossip-addr", "", "")
	fs.String("join", "", "")
	fs.Bool("fast-failure-detection", false, "")
	_ = fs.Parse(args[1:])

	f, err := os.OpenFile(filepath.Join(*dataDir, "starts"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Fprintln(f, os.Getpid())
	_ = f.Close()

	lis, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	srv := grpc.NewServer()
	ocpb.RegisterClusterServer(srv, fakeStatus{addr: *addr})
	_ = srv.Serve(lis)
	os.Exit(1)
}

type fakeStatus struct {
	ocpb.UnimplementedClusterServer
	addr string
}

func (s fakeStatus) Status(context.Context, *ocpb.StatusRequest) (*ocpb.StatusResponse, error) {
	return &ocpb.StatusResponse{
		NodeId: s.addr, BucketCount: 1, Now: uint64(time.Now().UnixNano()),
		Buckets: []*ocpb.BucketStatus{{Bucket: 0, Replicas: []string{s.addr}, Leader: s.addr}},
	}, nil
}
