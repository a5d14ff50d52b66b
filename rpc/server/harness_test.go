package server

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/proto"

	"github.com/opencluster/opencluster/kv"
	"github.com/opencluster/opencluster/rpc/ocpb"
)

// testCode is a well-formed lock code; tests assert it never reaches a log.
const testCode = "0123456789abcdef0123456789abcdef"

// fakeBackend is the Backend twin for tests. Each method records a clone of
// its request and then calls hook (if set); a nil response from hook with a
// nil error is replaced by an empty response of the right type.
type fakeBackend struct {
	// hook decides the answer; method is the Backend method name ("Get").
	// Set it before the server starts; it may be called concurrently.
	hook func(ctx context.Context, method string, req proto.Message) (proto.Message, error)

	mu struct {
		sync.Mutex
		calls []fakeCall // guarded by mu
	}
}

type fakeCall struct {
	method string
	req    proto.Message
}

var (
	_ Backend = (*fakeBackend)(nil)
	_ Backend = (*kv.Node)(nil) // the production backend
)

// calls returns the requests the backend has seen, in order.
func (f *fakeBackend) calls() []fakeCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fakeCall(nil), f.mu.calls...)
}

// lastReq returns the last request seen by method, or nil.
func (f *fakeBackend) lastReq(method string) proto.Message {
	cs := f.calls()
	for i := len(cs) - 1; i >= 0; i-- {
		if cs[i].method == method {
			return cs[i].req
		}
	}
	return nil
}

func fakeDo[Resp proto.Message](f *fakeBackend, ctx context.Context, method string, req proto.Message) (Resp, error) {
	f.mu.Lock()
	f.mu.calls = append(f.mu.calls, fakeCall{method, proto.Clone(req)})
	f.mu.Unlock()
	var zero Resp
	if f.hook != nil {
		r, err := f.hook(ctx, method, req)
		if err != nil {
			return zero, err
		}
		if r != nil {
			return r.(Resp), nil
		}
	}
	return zero.ProtoReflect().Type().New().Interface().(Resp), nil
}

func (f *fakeBackend) Get(ctx context.Context, r *ocpb.GetRequest) (*ocpb.GetResponse, error) {
	return fakeDo[*ocpb.GetResponse](f, ctx, "Get", r)
}
func (f *fakeBackend) Put(ctx context.Context, r *ocpb.PutRequest) (*ocpb.PutResponse, error) {
	return fakeDo[*ocpb.PutResponse](f, ctx, "Put", r)
}
func (f *fakeBackend) Delete(ctx context.Context, r *ocpb.DeleteRequest) (*ocpb.DeleteResponse, error) {
	return fakeDo[*ocpb.DeleteResponse](f, ctx, "Delete", r)
}
func (f *fakeBackend) CompareAndSwap(ctx context.Context, r *ocpb.CompareAndSwapRequest) (*ocpb.CompareAndSwapResponse, error) {
	return fakeDo[*ocpb.CompareAndSwapResponse](f, ctx, "CompareAndSwap", r)
}
func (f *fakeBackend) BatchGet(ctx context.Context, r *ocpb.BatchGetRequest) (*ocpb.BatchGetResponse, error) {
	return fakeDo[*ocpb.BatchGetResponse](f, ctx, "BatchGet", r)
}
func (f *fakeBackend) Scan(ctx context.Context, r *ocpb.ScanRequest) (*ocpb.ScanResponse, error) {
	return fakeDo[*ocpb.ScanResponse](f, ctx, "Scan", r)
}
func (f *fakeBackend) Acquire(ctx context.Context, r *ocpb.AcquireRequest) (*ocpb.AcquireResponse, error) {
	return fakeDo[*ocpb.AcquireResponse](f, ctx, "Acquire", r)
}
func (f *fakeBackend) Release(ctx context.Context, r *ocpb.ReleaseRequest) (*ocpb.ReleaseResponse, error) {
	return fakeDo[*ocpb.ReleaseResponse](f, ctx, "Release", r)
}
func (f *fakeBackend) KeepAlive(ctx context.Context, r *ocpb.KeepAliveRequest) (*ocpb.KeepAliveResponse, error) {
	return fakeDo[*ocpb.KeepAliveResponse](f, ctx, "KeepAlive", r)
}
func (f *fakeBackend) Restrict(ctx context.Context, r *ocpb.RestrictRequest) (*ocpb.RestrictResponse, error) {
	return fakeDo[*ocpb.RestrictResponse](f, ctx, "Restrict", r)
}
func (f *fakeBackend) Commit(ctx context.Context, r *ocpb.CommitRequest) (*ocpb.CommitResponse, error) {
	return fakeDo[*ocpb.CommitResponse](f, ctx, "Commit", r)
}
func (f *fakeBackend) Abort(ctx context.Context, r *ocpb.AbortRequest) (*ocpb.AbortResponse, error) {
	return fakeDo[*ocpb.AbortResponse](f, ctx, "Abort", r)
}
func (f *fakeBackend) Describe(ctx context.Context, r *ocpb.DescribeRequest) (*ocpb.DescribeResponse, error) {
	return fakeDo[*ocpb.DescribeResponse](f, ctx, "Describe", r)
}
func (f *fakeBackend) List(ctx context.Context, r *ocpb.ListRequest) (*ocpb.ListResponse, error) {
	return fakeDo[*ocpb.ListResponse](f, ctx, "List", r)
}
func (f *fakeBackend) Status(ctx context.Context, r *ocpb.StatusRequest) (*ocpb.StatusResponse, error) {
	return fakeDo[*ocpb.StatusResponse](f, ctx, "Status", r)
}

func (f *fakeBackend) MoveReplica(ctx context.Context, r *ocpb.MoveReplicaRequest) (*ocpb.MoveReplicaResponse, error) {
	return fakeDo[*ocpb.MoveReplicaResponse](f, ctx, "MoveReplica", r)
}

func (f *fakeBackend) TransferLeader(ctx context.Context, r *ocpb.TransferLeaderRequest) (*ocpb.TransferLeaderResponse, error) {
	return fakeDo[*ocpb.TransferLeaderResponse](f, ctx, "TransferLeader", r)
}

func (f *fakeBackend) DrainNode(ctx context.Context, r *ocpb.DrainNodeRequest) (*ocpb.DrainNodeResponse, error) {
	return fakeDo[*ocpb.DrainNodeResponse](f, ctx, "DrainNode", r)
}

func (f *fakeBackend) RemoveNode(ctx context.Context, r *ocpb.RemoveNodeRequest) (*ocpb.RemoveNodeResponse, error) {
	return fakeDo[*ocpb.RemoveNodeResponse](f, ctx, "RemoveNode", r)
}

// syncBuffer is a bytes.Buffer safe for the concurrent writes of a logger.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// testEnv is a Server over a fakeBackend on a real grpc.Server, reached
// through an in-memory bufconn listener.
type testEnv struct {
	srv     *Server
	fake    *fakeBackend
	reg     *prometheus.Registry
	logs    *syncBuffer
	conn    *grpc.ClientConn
	kv      ocpb.KVClient
	locks   ocpb.LocksClient
	cluster ocpb.ClusterClient
}

type envOption func(*envOptions)

type envOptions struct {
	noInterceptors bool
	backend        Backend
}

// withBackend serves b instead of the fake (which then sees no calls).
func withBackend(b Backend) envOption { return func(o *envOptions) { o.backend = b } }

// withoutServerOptions builds the grpc.Server without GRPCServerOptions.
func withoutServerOptions() envOption { return func(o *envOptions) { o.noInterceptors = true } }

// newEnv starts a server over fake (nil: a fake that answers every call
// with an empty response) with debug logging into env.logs and metrics in
// env.reg. Everything is stopped when the test ends.
func newEnv(t *testing.T, fake *fakeBackend, opts ...envOption) *testEnv {
	t.Helper()
	var o envOptions
	for _, opt := range opts {
		opt(&o)
	}
	if fake == nil {
		fake = &fakeBackend{}
	}
	e := &testEnv{fake: fake, reg: prometheus.NewRegistry(), logs: &syncBuffer{}}
	cfg := TestConfig()
	cfg.Logger = slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg.Registerer = e.reg
	var b Backend = fake
	if o.backend != nil {
		b = o.backend
	}
	srv, err := New(cfg, b)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	e.srv = srv
	var gopts []grpc.ServerOption
	if !o.noInterceptors {
		gopts = srv.GRPCServerOptions()
	}
	g := grpc.NewServer(gopts...)
	srv.Register(g)
	lis := bufconn.Listen(1 << 20)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = g.Serve(lis)
	}()
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("grpc.NewClient: %v", err)
	}
	t.Cleanup(func() {
		_ = conn.Close()
		g.Stop()
		wg.Wait()
	})
	e.conn = conn
	e.kv = ocpb.NewKVClient(conn)
	e.locks = ocpb.NewLocksClient(conn)
	e.cluster = ocpb.NewClusterClient(conn)
	return e
}

// ctx returns a context for one test call.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// counter returns the value of the counter (or histogram sample count) name
// with the given labels, 0 if absent.
func (e *testEnv) counter(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if !labelsMatch(m, labels) {
				continue
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			if m.GetHistogram() != nil {
				return float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return 0
}

func labelsMatch(m *dto.Metric, want map[string]string) bool {
	got := map[string]string{}
	for _, lp := range m.GetLabel() {
		got[lp.GetName()] = lp.GetValue()
	}
	for k, v := range want {
		if got[k] != v {
			return false
		}
	}
	return true
}

// eventually polls cond until it holds or 5s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func reqCount(method, code string) map[string]string {
	return map[string]string{"method": method, "code": code}
}

func mustNotContain(t *testing.T, haystack, needle, what string) {
	t.Helper()
	if strings.Contains(haystack, needle) {
		t.Fatalf("%s contains %q:\n%s", what, needle, haystack)
	}
}
