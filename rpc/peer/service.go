package peer

import (
	"context"
	"errors"
	"io"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/opencluster/opencluster/kv"
	"github.com/opencluster/opencluster/rpc/cmdpb"
)

// Local is what the Internal service needs of the node (kv.Node).
type Local interface {
	Deliver(from, to uint64, msgs []*cmdpb.GroupMessage)
	Join(ctx context.Context, req *cmdpb.JoinRequest) (*cmdpb.JoinResponse, error)
	ClusterID() string
}

// Service implements the Internal gRPC service over a node.
type Service struct {
	cmdpb.UnimplementedInternalServer
	node Local
	// dial opens a connection to forward a Join to the primary.
	dial func(addr string) (*grpc.ClientConn, error)
}

// NewService returns the Internal service; dial forwards joins.
func NewService(node Local, dial func(addr string) (*grpc.ClientConn, error)) *Service {
	return &Service{node: node, dial: dial}
}

// Register registers the service on g.
func (s *Service) Register(g *grpc.Server) { cmdpb.RegisterInternalServer(g, s) }

// Raft receives one peer's stream of batches.
func (s *Service) Raft(stream cmdpb.Internal_RaftServer) error {
	for {
		b, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return stream.SendAndClose(&cmdpb.RaftAck{})
		}
		if err != nil {
			return err
		}
		if id := s.node.ClusterID(); b.GetClusterId() != "" && id != "" && b.GetClusterId() != id {
			return status.Errorf(codes.FailedPrecondition, "raft batch for cluster %s reached cluster %s", b.GetClusterId(), id)
		}
		s.node.Deliver(b.GetFrom(), b.GetTo(), b.GetMessages())
	}
}

// Snapshot receives one streamed snapshot and delivers it whole.
func (s *Service) Snapshot(stream cmdpb.Internal_SnapshotServer) error {
	var (
		header *cmdpb.RaftBatch
		kvs    []*cmdpb.SnapshotKV
	)
	for {
		chunk, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		if header == nil {
			header = chunk.GetHeader()
			if header == nil || len(header.GetMessages()) != 1 {
				return status.Error(codes.InvalidArgument, "a snapshot stream starts with a header of one message")
			}
			if id := s.node.ClusterID(); header.GetClusterId() != id {
				return status.Errorf(codes.FailedPrecondition, "snapshot for cluster %s reached cluster %s", header.GetClusterId(), id)
			}
		}
		kvs = append(kvs, chunk.GetKvs()...)
	}
	if header == nil {
		return status.Error(codes.InvalidArgument, "empty snapshot stream")
	}
	m, err := kv.AssembleSnapshot(header.GetMessages()[0], kvs)
	if err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	s.node.Deliver(header.GetFrom(), header.GetTo(), []*cmdpb.GroupMessage{m})
	return stream.SendAndClose(&cmdpb.RaftAck{})
}

// Join admits a node, forwarding to the primary once if this node is not.
func (s *Service) Join(ctx context.Context, req *cmdpb.JoinRequest) (*cmdpb.JoinResponse, error) {
	resp, err := s.node.Join(ctx, req)
	var nl *kv.NotLeaderError
	if !errors.As(err, &nl) {
		return resp, toStatus(err)
	}
	if md, ok := metadata.FromIncomingContext(ctx); nl.Addr == "" || ok && len(md.Get("oc-forwarded")) > 0 {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	conn, err := s.dial(nl.Addr)
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	defer conn.Close()
	out := metadata.AppendToOutgoingContext(ctx, "oc-forwarded", "1")
	return cmdpb.NewInternalClient(conn).Join(out, req)
}

func toStatus(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, kv.ErrInvalid):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, kv.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.Unavailable, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}
