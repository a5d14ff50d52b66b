package server

import (
	"context"

	"github.com/opencluster/opencluster/rpc/ocpb"
)

// Backend is what the services need from a node. kv.Node satisfies it. Requests reach it validated and normalised (see validate.go).
//
// Contract for implementations:
//   - Every method may be called concurrently, and blocks at most until ctx
//     is done.
//   - Errors are kv sentinels (wrapped with %w and a reason is fine), context
//     errors, or gRPC statuses (for instance a status forwarded from the
//     bucket leader); errors.go maps them to codes. The error text becomes the
//     status message the client sees, so it must never contain a lock code
//     or a value.
//   - A nil error comes with a non-nil response; the server answers a nil
//     response with codes.Internal.
//   - The server does not retain or modify requests after the call returns,
//     and does not modify responses.
type Backend interface {
	Get(ctx context.Context, req *ocpb.GetRequest) (*ocpb.GetResponse, error)
	Put(ctx context.Context, req *ocpb.PutRequest) (*ocpb.PutResponse, error)
	Delete(ctx context.Context, req *ocpb.DeleteRequest) (*ocpb.DeleteResponse, error)
	CompareAndSwap(ctx context.Context, req *ocpb.CompareAndSwapRequest) (*ocpb.CompareAndSwapResponse, error)
	BatchGet(ctx context.Context, req *ocpb.BatchGetRequest) (*ocpb.BatchGetResponse, error)
	Scan(ctx context.Context, req *ocpb.ScanRequest) (*ocpb.ScanResponse, error)
	Acquire(ctx context.Context, req *ocpb.AcquireRequest) (*ocpb.AcquireResponse, error)
	Release(ctx context.Context, req *ocpb.ReleaseRequest) (*ocpb.ReleaseResponse, error)
	// KeepAlive renews one lock; ErrNotHolder (or ErrAborted) means the lock is lost.
	KeepAlive(ctx context.Context, req *ocpb.KeepAliveRequest) (*ocpb.KeepAliveResponse, error)
	Restrict(ctx context.Context, req *ocpb.RestrictRequest) (*ocpb.RestrictResponse, error)
	Commit(ctx context.Context, req *ocpb.CommitRequest) (*ocpb.CommitResponse, error)
	Abort(ctx context.Context, req *ocpb.AbortRequest) (*ocpb.AbortResponse, error)
	Describe(ctx context.Context, req *ocpb.DescribeRequest) (*ocpb.DescribeResponse, error)
	List(ctx context.Context, req *ocpb.ListRequest) (*ocpb.ListResponse, error)
	Status(ctx context.Context, req *ocpb.StatusRequest) (*ocpb.StatusResponse, error)
	MoveReplica(ctx context.Context, req *ocpb.MoveReplicaRequest) (*ocpb.MoveReplicaResponse, error)
	TransferLeader(ctx context.Context, req *ocpb.TransferLeaderRequest) (*ocpb.TransferLeaderResponse, error)
	DrainNode(ctx context.Context, req *ocpb.DrainNodeRequest) (*ocpb.DrainNodeResponse, error)
	RemoveNode(ctx context.Context, req *ocpb.RemoveNodeRequest) (*ocpb.RemoveNodeResponse, error)
}
