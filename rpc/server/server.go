package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/opencluster/opencluster/kv"
	"github.com/opencluster/opencluster/rpc/flowcontrol"
	"github.com/opencluster/opencluster/rpc/ocpb"
)

// Server holds the gRPC services KV, Locks and Cluster over a Backend, plus
// the standard health service. It starts no goroutines and holds no
// resources, so it needs no Close; its lifetime is the grpc.Server's. (The
// backend routes each request to its bucket's leader itself.)
type Server struct {
	cfg     Config // Invariant: defaults applied and validated.
	backend Backend
	log     *slog.Logger // cfg.Logger, never nil
	v       validator
	health  *health.Server
	metrics *metrics // nil when cfg.Registerer is nil
}

// New returns a Server over b. It validates cfg (see Config.Validate),
// applies its defaults and registers the metrics with cfg.Registerer.
func New(cfg Config, b Backend) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if b == nil {
		return nil, fmt.Errorf("%w: nil Backend", ErrInvalidConfig)
	}
	cfg = cfg.withDefaults()
	s := &Server{
		cfg:     cfg,
		backend: b,
		log:     cfg.Logger,
		v:       validator{defaultTTL: cfg.DefaultTTL},
		health:  health.NewServer(),
	}
	if cfg.Registerer != nil {
		m, err := newMetrics(cfg.Registerer)
		if err != nil {
			return nil, err
		}
		s.metrics = m
	}
	return s, nil
}

// serviceNames are the services whose health Register reports.
var serviceNames = []string{
	ocpb.KV_ServiceDesc.ServiceName,
	ocpb.Locks_ServiceDesc.ServiceName,
	ocpb.Cluster_ServiceDesc.ServiceName,
}

// Register registers on g the services KV, Locks and Cluster, the standard
// health service (reporting SERVING for "" and for each of the three) and
// reflection (so that grpcurl works without proto files). Call it once per
// grpc.Server, before g.Serve. g should be built with GRPCServerOptions.
func (s *Server) Register(g *grpc.Server) {
	ocpb.RegisterKVServer(g, kvService{s: s})
	ocpb.RegisterLocksServer(g, locksService{s: s})
	ocpb.RegisterClusterServer(g, clusterService{s: s})
	healthpb.RegisterHealthServer(g, s.health)
	reflection.Register(g)
	s.SetServing(true)
}

// SetServing sets the health status of "" and of the three services to
// SERVING or NOT_SERVING; a node calls SetServing(false) before a graceful
// stop so that load balancers drain it. Requests are served either way.
func (s *Server) SetServing(serving bool) {
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if serving {
		st = healthpb.HealthCheckResponse_SERVING
	}
	s.health.SetServingStatus("", st)
	for _, name := range serviceNames {
		s.health.SetServingStatus(name, st)
	}
}

// streamWorkers is how many goroutines the grpc.Server keeps to run
// requests in. A request on a fresh goroutine grows its stack (Pebble's
// read path is deep), and under linearizable gets at 64 clients that
// growth was 15% of a server's CPU; a worker keeps its grown stack for the
// next request. Requests that find every worker busy (most of them wait on
// Raft) still get a goroutine of their own.
const streamWorkers = 32

// GRPCServerOptions returns the options the grpc.Server must be built with:
// the request size limit (Config.MaxRecvMsgBytes), fixed flow-control
// windows (package flowcontrol) and the unary and stream
// interceptors that recover panics into codes.Internal, count requests and
// time them, and log one debug line per request.
func (s *Server) GRPCServerOptions() []grpc.ServerOption {
	return append([]grpc.ServerOption{
		grpc.MaxRecvMsgSize(s.cfg.MaxRecvMsgBytes),
		grpc.NumStreamWorkers(streamWorkers),
		grpc.ChainUnaryInterceptor(s.unaryInterceptor),
		grpc.ChainStreamInterceptor(s.streamInterceptor),
	}, flowcontrol.ServerOptions()...)
}

// handle runs one unary RPC: validate (and normalise) req, call the backend,
// map its error. A panic in the backend is recovered here too, so that the
// services never crash the process even without the interceptors.
func handle[Req any, Resp proto.Message](ctx context.Context, s *Server, method string, req Req,
	check func(Req) error, call func(context.Context, Req) (Resp, error)) (resp Resp, err error) {
	var zero Resp
	defer func() {
		if r := recover(); r != nil {
			resp, err = zero, s.recovered(method, r)
		}
	}()
	if err := check(req); err != nil {
		return zero, s.toStatus(method, err)
	}
	resp, err = callRetryingNotApplied(ctx, req, call)
	if err != nil {
		return zero, s.toStatus(method, err)
	}
	if !resp.ProtoReflect().IsValid() {
		return zero, s.toStatus(method, errNilResponse)
	}
	return resp, nil
}

// notAppliedRetries bounds the server's own retries of a request that
// failed without taking effect (kv.ErrNotApplied: a leadership moving, an
// election), with pauses growing from 10 ms to 200 ms: a few seconds in
// all, about two election timeouts.
const notAppliedRetries = 16

// callRetryingNotApplied calls the backend, and calls it again while it
// fails with kv.ErrNotApplied and ctx lasts, so that a leadership change
// costs the client a pause instead of an error.
func callRetryingNotApplied[Req any, Resp any](ctx context.Context, req Req, call func(context.Context, Req) (Resp, error)) (Resp, error) {
	pause := 10 * time.Millisecond
	for attempt := 0; ; attempt++ {
		resp, err := call(ctx, req)
		if err == nil || !errors.Is(err, kv.ErrNotApplied) || attempt == notAppliedRetries {
			return resp, err
		}
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return resp, err
		case <-t.C:
		}
		pause = min(2*pause, 200*time.Millisecond)
	}
}

// recovered logs a recovered panic and returns the status the client sees.
func (s *Server) recovered(method string, r any) error {
	s.log.Error("rpc: recovered panic", slog.String("method", method),
		slog.String("panic", panicText(r)), slog.String("stack", stack()))
	if s.metrics != nil {
		s.metrics.panics.WithLabelValues(method).Inc()
	}
	return status.Error(codes.Internal, "internal error: the server recovered from a panic while serving this request")
}

type kvService struct {
	ocpb.UnimplementedKVServer
	s *Server
}

func (k kvService) Get(ctx context.Context, req *ocpb.GetRequest) (*ocpb.GetResponse, error) {
	return handle(ctx, k.s, ocpb.KV_Get_FullMethodName, req, k.s.v.get, k.s.backend.Get)
}

func (k kvService) Put(ctx context.Context, req *ocpb.PutRequest) (*ocpb.PutResponse, error) {
	return handle(ctx, k.s, ocpb.KV_Put_FullMethodName, req, k.s.v.put, k.s.backend.Put)
}

func (k kvService) Delete(ctx context.Context, req *ocpb.DeleteRequest) (*ocpb.DeleteResponse, error) {
	return handle(ctx, k.s, ocpb.KV_Delete_FullMethodName, req, k.s.v.delete, k.s.backend.Delete)
}

func (k kvService) CompareAndSwap(ctx context.Context, req *ocpb.CompareAndSwapRequest) (*ocpb.CompareAndSwapResponse, error) {
	return handle(ctx, k.s, ocpb.KV_CompareAndSwap_FullMethodName, req, k.s.v.compareAndSwap, k.s.backend.CompareAndSwap)
}

func (k kvService) BatchGet(ctx context.Context, req *ocpb.BatchGetRequest) (*ocpb.BatchGetResponse, error) {
	return handle(ctx, k.s, ocpb.KV_BatchGet_FullMethodName, req, k.s.v.batchGet, k.s.backend.BatchGet)
}

func (k kvService) Scan(ctx context.Context, req *ocpb.ScanRequest) (*ocpb.ScanResponse, error) {
	return handle(ctx, k.s, ocpb.KV_Scan_FullMethodName, req, k.s.v.scan, k.s.backend.Scan)
}

type locksService struct {
	ocpb.UnimplementedLocksServer
	s *Server
}

func (l locksService) Acquire(ctx context.Context, req *ocpb.AcquireRequest) (*ocpb.AcquireResponse, error) {
	return handle(ctx, l.s, ocpb.Locks_Acquire_FullMethodName, req, l.s.v.acquire, l.s.backend.Acquire)
}

func (l locksService) Release(ctx context.Context, req *ocpb.ReleaseRequest) (*ocpb.ReleaseResponse, error) {
	return handle(ctx, l.s, ocpb.Locks_Release_FullMethodName, req, l.s.v.release, l.s.backend.Release)
}

func (l locksService) Restrict(ctx context.Context, req *ocpb.RestrictRequest) (*ocpb.RestrictResponse, error) {
	return handle(ctx, l.s, ocpb.Locks_Restrict_FullMethodName, req, l.s.v.restrict, l.s.backend.Restrict)
}

func (l locksService) Commit(ctx context.Context, req *ocpb.CommitRequest) (*ocpb.CommitResponse, error) {
	return handle(ctx, l.s, ocpb.Locks_Commit_FullMethodName, req, l.s.v.commit, l.s.backend.Commit)
}

func (l locksService) Abort(ctx context.Context, req *ocpb.AbortRequest) (*ocpb.AbortResponse, error) {
	return handle(ctx, l.s, ocpb.Locks_Abort_FullMethodName, req, l.s.v.abort, l.s.backend.Abort)
}

func (l locksService) Describe(ctx context.Context, req *ocpb.DescribeRequest) (*ocpb.DescribeResponse, error) {
	return handle(ctx, l.s, ocpb.Locks_Describe_FullMethodName, req, l.s.v.describe, l.s.backend.Describe)
}

func (l locksService) List(ctx context.Context, req *ocpb.ListRequest) (*ocpb.ListResponse, error) {
	return handle(ctx, l.s, ocpb.Locks_List_FullMethodName, req, l.s.v.list, l.s.backend.List)
}

type clusterService struct {
	ocpb.UnimplementedClusterServer
	s *Server
}

func (c clusterService) Status(ctx context.Context, req *ocpb.StatusRequest) (*ocpb.StatusResponse, error) {
	return handle(ctx, c.s, ocpb.Cluster_Status_FullMethodName, req, c.s.v.status, c.s.backend.Status)
}

func (c clusterService) MoveReplica(ctx context.Context, req *ocpb.MoveReplicaRequest) (*ocpb.MoveReplicaResponse, error) {
	return handle(ctx, c.s, ocpb.Cluster_MoveReplica_FullMethodName, req, c.s.v.moveReplica, c.s.backend.MoveReplica)
}

func (c clusterService) TransferLeader(ctx context.Context, req *ocpb.TransferLeaderRequest) (*ocpb.TransferLeaderResponse, error) {
	return handle(ctx, c.s, ocpb.Cluster_TransferLeader_FullMethodName, req, c.s.v.transferLeader, c.s.backend.TransferLeader)
}

func (c clusterService) DrainNode(ctx context.Context, req *ocpb.DrainNodeRequest) (*ocpb.DrainNodeResponse, error) {
	return handle(ctx, c.s, ocpb.Cluster_DrainNode_FullMethodName, req, c.s.v.drainNode, c.s.backend.DrainNode)
}

func (c clusterService) RemoveNode(ctx context.Context, req *ocpb.RemoveNodeRequest) (*ocpb.RemoveNodeResponse, error) {
	return handle(ctx, c.s, ocpb.Cluster_RemoveNode_FullMethodName, req, c.s.v.removeNode, c.s.backend.RemoveNode)
}
