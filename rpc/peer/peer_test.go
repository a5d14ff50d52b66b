package peer

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"

	"github.com/opencluster/opencluster/rpc/cmdpb"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeLocal records delivered batches.
type fakeLocal struct {
	mu  sync.Mutex
	got []*cmdpb.GroupMessage
}

func (f *fakeLocal) Deliver(from, to uint64, msgs []*cmdpb.GroupMessage) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if to == 2 {
		f.got = append(f.got, msgs...)
	}
}

func (f *fakeLocal) Join(ctx context.Context, req *cmdpb.JoinRequest) (*cmdpb.JoinResponse, error) {
	return &cmdpb.JoinResponse{ClusterId: "c", Buckets: 4}, nil
}

func (f *fakeLocal) ClusterID() string { return "c" }

func (f *fakeLocal) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.got)
}

func freePort(t *testing.T, host string) string {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestGossipAndTransport starts two gossiping nodes on their own loopback
// addresses: each learns the other's gRPC address from gossip, and Raft
// batches sent by one reach the other's Internal service in order; a
// batch for a cluster with another id is refused.
func TestGossipAndTransport(t *testing.T) {
	local := &fakeLocal{}
	grpcAddr := freePort(t, "127.0.0.42")
	lis, err := net.Listen("tcp", grpcAddr)
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	NewService(local, nil).Register(g)
	go func() { _ = g.Serve(lis) }()
	defer g.Stop()

	g1, err := StartGossip(GossipConfig{NodeID: 1, BindAddr: freePort(t, "127.0.0.41"), GRPCAddr: "127.0.0.41:1", Fast: true})
	if err != nil {
		t.Fatal(err)
	}
	defer g1.Close()
	g2, err := StartGossip(GossipConfig{NodeID: 2, BindAddr: freePort(t, "127.0.0.42"), GRPCAddr: grpcAddr, Fast: true})
	if err != nil {
		t.Fatal(err)
	}
	defer g2.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := g2.Join(ctx, []string{g1.ml.LocalNode().Address()}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "node 1 to learn node 2's gRPC address", func() bool { return g1.Addr(2) == grpcAddr && g1.Alive(2) })

	tr := NewTransport(TransportConfig{LocalHost: "127.0.0.41", ClusterID: func() string { return "c" }, LocalID: func() uint64 { return 1 }, Resolve: g1.Addr})
	defer tr.Close()
	for i := range 10 {
		tr.Send(2, []*cmdpb.GroupMessage{{Group: uint32(i), Message: []byte{byte(i)}}})
	}
	waitFor(t, "ten messages delivered", func() bool { return local.count() == 10 })
	local.mu.Lock()
	for i, m := range local.got {
		if m.GetGroup() != uint32(i) {
			t.Errorf("message %d is for group %d: out of order", i, m.GetGroup())
		}
	}
	local.mu.Unlock()

	conn, err := grpc.NewClient(grpcAddr, Dialer("127.0.0.41")...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	stream, err := cmdpb.NewInternalClient(conn).Raft(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_ = stream.Send(&cmdpb.RaftBatch{From: 9, To: 2, ClusterId: "other", Messages: []*cmdpb.GroupMessage{{Group: 99}}})
	if _, err := stream.CloseAndRecv(); err == nil {
		t.Fatal("a batch for another cluster was accepted")
	}
	if local.count() != 10 {
		t.Fatalf("the other cluster's batch was delivered")
	}
}
