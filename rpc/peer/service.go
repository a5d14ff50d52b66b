package peer

import (
	"context"
	"errors"
	"io"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/opencluster/opencluster/kv"
	"github.com/opencluster/opencluster/mvcc"
	"github.com/opencluster/opencluster/mvcc/ts"
	"github.com/opencluster/opencluster/rpc/cmdpb"
	"github.com/opencluster/opencluster/rpc/ocpb"
)

// Local is what the Internal service needs of the node (kv.Node).
type Local interface {
	Deliver(from, to uint64, msgs []*cmdpb.GroupMessage)
	Join(ctx context.Context, req *cmdpb.JoinRequest) (*cmdpb.JoinResponse, error)
	ClusterID() string
	ServeTimestamp(ctx context.Context, count int) (ts.Timestamp, error)
	ServePropose(ctx context.Context, req *cmdpb.BucketProposeRequest) (*cmdpb.Result, error)
	ServeLockKeys(ctx context.Context, req *cmdpb.BucketLockKeysRequest) (*cmdpb.BucketLockKeysResponse, error)
	ServeTxnLive(ctx context.Context, req *cmdpb.BucketTxnLiveRequest) (bool, error)
	ServeRead(ctx context.Context, req *cmdpb.BucketReadRequest) ([]mvcc.Value, error)
	ServeScan(ctx context.Context, req *cmdpb.BucketScanRequest) ([]mvcc.KV, bool, error)
	ServeList(ctx context.Context, req *cmdpb.BucketListRequest) ([]*ocpb.LockInfo, error)
	ServeCall(ctx context.Context, method string, raw []byte) (proto.Message, error)
	ServeBucketChange(ctx context.Context, req *cmdpb.BucketChangeRequest) (*cmdpb.BucketChangeResponse, error)
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

// Timestamp serves the oracle to other nodes (meta leader only).
func (s *Service) Timestamp(ctx context.Context, req *cmdpb.TimestampRequest) (*cmdpb.TimestampResponse, error) {
	if req.GetCount() > 1<<16 {
		return nil, status.Errorf(codes.InvalidArgument, "count %d, want at most %d", req.GetCount(), 1<<16)
	}
	t, err := s.node.ServeTimestamp(ctx, int(req.GetCount()))
	if err != nil {
		return nil, toStatus(err)
	}
	return &cmdpb.TimestampResponse{Ts: uint64(t)}, nil
}

// BucketPropose replicates a command in a group this node leads.
func (s *Service) BucketPropose(ctx context.Context, req *cmdpb.BucketProposeRequest) (*cmdpb.Result, error) {
	res, err := s.node.ServePropose(ctx, req)
	return res, toStatus(err)
}

// BucketLockKeys takes key locks in a group this node leads.
func (s *Service) BucketLockKeys(ctx context.Context, req *cmdpb.BucketLockKeysRequest) (*cmdpb.BucketLockKeysResponse, error) {
	resp, err := s.node.ServeLockKeys(ctx, req)
	if err != nil {
		return nil, toStatus(err)
	}
	return resp, nil
}

// BucketTxnLive reports whether a restrictive lock's record, in a group
// this node leads, still accounts for the key locks of a code.
func (s *Service) BucketTxnLive(ctx context.Context, req *cmdpb.BucketTxnLiveRequest) (*cmdpb.BucketTxnLiveResponse, error) {
	live, err := s.node.ServeTxnLive(ctx, req)
	if err != nil {
		return nil, toStatus(err)
	}
	return &cmdpb.BucketTxnLiveResponse{Live: live}, nil
}

// BucketRead reads keys of a group this node leads.
func (s *Service) BucketRead(ctx context.Context, req *cmdpb.BucketReadRequest) (*cmdpb.BucketReadResponse, error) {
	vs, err := s.node.ServeRead(ctx, req)
	if err != nil {
		return nil, toStatus(err)
	}
	out := &cmdpb.BucketReadResponse{Values: make([]*cmdpb.ReadValue, 0, len(vs))}
	for _, v := range vs {
		out.Values = append(out.Values, &cmdpb.ReadValue{Found: v.Found, Value: v.Bytes, Version: uint64(v.Version)})
	}
	return out, nil
}

// BucketScan scans a group this node leads.
func (s *Service) BucketScan(ctx context.Context, req *cmdpb.BucketScanRequest) (*cmdpb.BucketScanResponse, error) {
	kvs, more, err := s.node.ServeScan(ctx, req)
	if err != nil {
		return nil, toStatus(err)
	}
	out := &cmdpb.BucketScanResponse{More: more, Kvs: make([]*ocpb.KeyValue, 0, len(kvs))}
	for _, kv := range kvs {
		out.Kvs = append(out.Kvs, &ocpb.KeyValue{Key: kv.Key, Value: kv.Value, Version: uint64(kv.Version)})
	}
	return out, nil
}

// BucketList lists the locks of a group this node leads.
func (s *Service) BucketList(ctx context.Context, req *cmdpb.BucketListRequest) (*ocpb.ListResponse, error) {
	infos, err := s.node.ServeList(ctx, req)
	if err != nil {
		return nil, toStatus(err)
	}
	return &ocpb.ListResponse{Locks: infos}, nil
}

// Call runs a client request forwarded by another node.
func (s *Service) Call(ctx context.Context, req *cmdpb.CallRequest) (*cmdpb.CallResponse, error) {
	resp, err := s.node.ServeCall(ctx, req.GetMethod(), req.GetRequest())
	if err != nil {
		return nil, toStatus(err)
	}
	raw, err := proto.Marshal(resp)
	if err != nil {
		return nil, toStatus(err)
	}
	return &cmdpb.CallResponse{Response: raw}, nil
}

// BucketChange changes a group this node leads.
func (s *Service) BucketChange(ctx context.Context, req *cmdpb.BucketChangeRequest) (*cmdpb.BucketChangeResponse, error) {
	resp, err := s.node.ServeBucketChange(ctx, req)
	return resp, toStatus(err)
}
