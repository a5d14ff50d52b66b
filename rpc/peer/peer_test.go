package peer

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/opencluster/opencluster/kv"
	"github.com/opencluster/opencluster/rpc/cmdpb"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeLocal records delivered batches. The bucket operations it does not
// serve come from the nil embedded Local (calling one panics).
type fakeLocal struct {
	Local
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

// TestErrorsCrossNodes checks that a kv error sent by one node matches the
// same sentinel on the other, with its text, and that a transport failure
// becomes ErrUnavailable (safe to retry elsewhere).
func TestErrorsCrossNodes(t *testing.T) {
	for _, sent := range []error{kv.ErrNotHolder, kv.ErrFenceTooLow, kv.ErrAborted, kv.ErrWaitTimeout, kv.ErrNotFound, kv.ErrUnavailable, kv.ErrInvalid} {
		wrapped := fmt.Errorf("%w: lock %q", sent, "m")
		got := fromStatus(toStatus(wrapped))
		if !errors.Is(got, sent) || got.Error() != wrapped.Error() {
			t.Errorf("%v came back as %v", wrapped, got)
		}
		for _, other := range []error{kv.ErrNotHolder, kv.ErrAborted, kv.ErrNotFound} {
			if other != sent && errors.Is(got, other) {
				t.Errorf("%v came back matching %v too", wrapped, other)
			}
		}
	}
	if got := fromStatus(status.Error(codes.Unavailable, "connection refused")); !errors.Is(got, kv.ErrUnavailable) {
		t.Errorf("a transport failure came back as %v, want ErrUnavailable", got)
	}
	if got := fromStatus(toStatus(context.DeadlineExceeded)); !errors.Is(got, context.DeadlineExceeded) {
		t.Errorf("a deadline came back as %v", got)
	}
}
