package server

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/opencluster/opencluster/rpc/ocpb"
)

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name      string
		cfg       Config
		wantField string // "" = valid
	}{
		{"zero", Config{}, ""},
		{"default", DefaultConfig(), ""},
		{"test", TestConfig(), ""},
		{"recv-2MiB", Config{MaxRecvMsgBytes: 2 << 20}, ""},
		{"recv-2MiB-1", Config{MaxRecvMsgBytes: 2<<20 - 1}, "MaxRecvMsgBytes"},
		{"recv-negative", Config{MaxRecvMsgBytes: -1}, "MaxRecvMsgBytes"},
		{"ttl-1s", Config{DefaultTTL: time.Second}, ""},
		{"ttl-1h", Config{DefaultTTL: time.Hour}, ""},
		{"ttl-below", Config{DefaultTTL: time.Second - 1}, "DefaultTTL"},
		{"ttl-above", Config{DefaultTTL: time.Hour + 1}, "DefaultTTL"},
		{"ttl-negative", Config{DefaultTTL: -time.Second}, "DefaultTTL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.wantField == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				if _, err := New(tc.cfg, &fakeBackend{}); err != nil {
					t.Fatalf("New: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tc.wantField) {
				t.Fatalf("Validate = %v, want ErrInvalidConfig naming %s", err, tc.wantField)
			}
			if _, err := New(tc.cfg, &fakeBackend{}); !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("New = %v, want ErrInvalidConfig", err)
			}
		})
	}
	if _, err := New(Config{}, nil); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("New(nil backend) = %v, want ErrInvalidConfig", err)
	}
	// Defaults are applied: a zero Config gets the 15s ttl.
	s, err := New(Config{}, &fakeBackend{})
	if err != nil {
		t.Fatal(err)
	}
	if s.cfg.DefaultTTL != 15*time.Second || s.cfg.MaxRecvMsgBytes != 4<<20 || s.log == nil {
		t.Fatalf("defaults not applied: %+v", s.cfg)
	}
}

func TestMetricsRegistration(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := New(Config{Registerer: reg}, &fakeBackend{}); err != nil {
		t.Fatal(err)
	}
	var are prometheus.AlreadyRegisteredError
	if _, err := New(Config{Registerer: reg}, &fakeBackend{}); !errors.As(err, &are) {
		t.Fatalf("second New on one registry = %v, want AlreadyRegisteredError", err)
	}
}

// TestPanicRecovered: a panicking backend is answered with Internal and a
// log line, the server keeps serving, and the panic is counted; with and
// without the interceptors.
func TestPanicRecovered(t *testing.T) {
	hook := func(_ context.Context, method string, _ proto.Message) (proto.Message, error) {
		if method == "Put" {
			panic("backend bug: value " + testCode)
		}
		return nil, nil
	}
	for _, tc := range []struct {
		name string
		opts []envOption
	}{
		{"interceptors", nil},
		{"bare", []envOption{withoutServerOptions()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, &fakeBackend{hook: hook}, tc.opts...)
			ctx := testCtx(t)
			_, err := e.kv.Put(ctx, &ocpb.PutRequest{Key: []byte("k")})
			if status.Code(err) != codes.Internal {
				t.Fatalf("Put = %v, want Internal", err)
			}
			if _, err := e.kv.Get(ctx, &ocpb.GetRequest{Key: []byte("k")}); err != nil {
				t.Fatalf("Get after a panic: %v", err)
			}
			logs := e.logs.String()
			if !strings.Contains(logs, "rpc: recovered panic") || !strings.Contains(logs, "backend bug") {
				t.Fatalf("panic not logged:\n%s", logs)
			}
			mustNotContain(t, logs, testCode, "log")
			if got := e.counter(t, "opencluster_rpc_panics_total", map[string]string{"method": ocpb.KV_Put_FullMethodName}); got != 1 {
				t.Fatalf("panics_total = %v, want 1", got)
			}
		})
	}
}

// TestNilResponse: a backend bug (nil, nil) is Internal, not a crash.
func TestNilResponse(t *testing.T) {
	e := newEnv(t, &fakeBackend{hook: func(context.Context, string, proto.Message) (proto.Message, error) {
		return (*ocpb.GetResponse)(nil), nil
	}})
	_, err := e.kv.Get(testCtx(t), &ocpb.GetRequest{Key: []byte("k")})
	if status.Code(err) != codes.Internal {
		t.Fatalf("Get = %v, want Internal", err)
	}
}

// TestServices calls every unary method once and checks that the backend
// answer comes back and the request reached the backend.
func TestServices(t *testing.T) {
	e := newEnv(t, &fakeBackend{hook: func(_ context.Context, method string, _ proto.Message) (proto.Message, error) {
		if method == "Put" {
			return &ocpb.PutResponse{Version: 42}, nil
		}
		return nil, nil
	}})
	ctx := testCtx(t)
	k := []byte("k")
	resp, err := e.kv.Put(ctx, &ocpb.PutRequest{Key: k, Value: []byte("v")})
	if err != nil || resp.GetVersion() != 42 {
		t.Fatalf("Put = %v, %v", resp, err)
	}
	for _, call := range []func() error{
		func() error { _, err := e.kv.Get(ctx, &ocpb.GetRequest{Key: k}); return err },
		func() error { _, err := e.kv.Delete(ctx, &ocpb.DeleteRequest{Key: k}); return err },
		func() error {
			_, err := e.kv.CompareAndSwap(ctx, &ocpb.CompareAndSwapRequest{Key: k})
			return err
		},
		func() error { _, err := e.kv.BatchGet(ctx, &ocpb.BatchGetRequest{Keys: [][]byte{k}}); return err },
		func() error { _, err := e.kv.Scan(ctx, &ocpb.ScanRequest{}); return err },
		func() error { _, err := e.locks.Acquire(ctx, &ocpb.AcquireRequest{Name: "n"}); return err },
		func() error {
			_, err := e.locks.Release(ctx, &ocpb.ReleaseRequest{Name: "n", Code: testCode})
			return err
		},
		func() error {
			_, err := e.locks.Restrict(ctx, &ocpb.RestrictRequest{Name: "n", Keys: keyLocks(2)})
			return err
		},
		func() error {
			_, err := e.locks.Commit(ctx, &ocpb.CommitRequest{Name: "n", Code: testCode})
			return err
		},
		func() error { _, err := e.locks.Abort(ctx, &ocpb.AbortRequest{Name: "n", Code: testCode}); return err },
		func() error { _, err := e.locks.Describe(ctx, &ocpb.DescribeRequest{Name: "n"}); return err },
		func() error { _, err := e.locks.List(ctx, &ocpb.ListRequest{}); return err },
		func() error { _, err := e.cluster.Status(ctx, &ocpb.StatusRequest{}); return err },
	} {
		if err := call(); err != nil {
			t.Fatal(err)
		}
	}
	var methods []string
	for _, c := range e.fake.calls() {
		methods = append(methods, c.method)
	}
	want := []string{"Put", "Get", "Delete", "CompareAndSwap", "BatchGet", "Scan", "Acquire", "Release",
		"Restrict", "Commit", "Abort", "Describe", "List", "Status"}
	if !slices.Equal(methods, want) {
		t.Fatalf("backend calls = %v, want %v", methods, want)
	}
}

func TestHealth(t *testing.T) {
	e := newEnv(t, nil)
	ctx := testCtx(t)
	hc := healthpb.NewHealthClient(e.conn)
	check := func(service string, want healthpb.HealthCheckResponse_ServingStatus) {
		t.Helper()
		resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: service})
		if err != nil || resp.GetStatus() != want {
			t.Fatalf("Check(%q) = %v, %v; want %v", service, resp, err, want)
		}
	}
	for _, svc := range []string{"", "opencluster.v1.KV", "opencluster.v1.Locks", "opencluster.v1.Cluster"} {
		check(svc, healthpb.HealthCheckResponse_SERVING)
	}
	e.srv.SetServing(false)
	check("", healthpb.HealthCheckResponse_NOT_SERVING)
	check("opencluster.v1.KV", healthpb.HealthCheckResponse_NOT_SERVING)
	e.srv.SetServing(true)
	check("", healthpb.HealthCheckResponse_SERVING)
}

// TestReflection lists the services as grpcurl does, and resolves a
// service's file descriptor (what `grpcurl describe` needs).
func TestReflection(t *testing.T) {
	e := newEnv(t, nil)
	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	stream, err := reflectionpb.NewServerReflectionClient(e.conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{
		MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{},
	}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	for _, want := range []string{"opencluster.v1.KV", "opencluster.v1.Locks", "opencluster.v1.Cluster",
		"grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"} {
		if !slices.Contains(names, want) {
			t.Errorf("reflection lists %v, missing %s", names, want)
		}
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{
		MessageRequest: &reflectionpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: "opencluster.v1.Locks"},
	}); err != nil {
		t.Fatal(err)
	}
	resp, err = stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetFileDescriptorResponse().GetFileDescriptorProto()) == 0 {
		t.Fatalf("no file descriptor for opencluster.v1.Locks: %v", resp)
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
}

// TestMetricsAndLogs: requests are counted by method and code and timed,
// and each gets one debug line that carries neither codes nor values.
func TestMetricsAndLogs(t *testing.T) {
	const secretValue = "SECRET-VALUE-bytes"
	e := newEnv(t, &fakeBackend{hook: func(_ context.Context, method string, _ proto.Message) (proto.Message, error) {
		if method == "Get" {
			return &ocpb.GetResponse{Kv: &ocpb.KeyValue{Key: []byte("k"), Value: []byte(secretValue)}}, nil
		}
		return nil, nil
	}})
	ctx := testCtx(t)
	if _, err := e.kv.Put(ctx, &ocpb.PutRequest{Key: []byte("k"), Value: []byte(secretValue), Code: testCode}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.kv.Get(ctx, &ocpb.GetRequest{Key: []byte("k"), Code: testCode}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.kv.Get(ctx, &ocpb.GetRequest{Key: []byte("k"), Code: testCode + "f"}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("bad code: %v", err)
	}
	if _, err := e.locks.Commit(ctx, &ocpb.CommitRequest{Name: "n", Code: testCode}); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		method, code string
		want         float64
	}{
		{ocpb.KV_Put_FullMethodName, "OK", 1},
		{ocpb.KV_Get_FullMethodName, "OK", 1},
		{ocpb.KV_Get_FullMethodName, "InvalidArgument", 1},
		{ocpb.Locks_Commit_FullMethodName, "OK", 1},
	} {
		if got := e.counter(t, "opencluster_rpc_requests_total", reqCount(tc.method, tc.code)); got != tc.want {
			t.Errorf("requests_total{%s,%s} = %v, want %v", tc.method, tc.code, got, tc.want)
		}
	}
	if got := e.counter(t, "opencluster_rpc_request_duration_seconds", map[string]string{"method": ocpb.KV_Get_FullMethodName}); got != 2 {
		t.Errorf("request_duration_seconds{Get} count = %v, want 2", got)
	}

	logs := e.logs.String()
	if n := strings.Count(logs, "msg=rpc "); n != 4 {
		t.Errorf("want 4 request lines, got %d:\n%s", n, logs)
	}
	if !strings.Contains(logs, "method="+ocpb.KV_Get_FullMethodName) || !strings.Contains(logs, "code=InvalidArgument") {
		t.Errorf("request lines lack method or code:\n%s", logs)
	}
	mustNotContain(t, logs, testCode, "log")
	mustNotContain(t, logs, secretValue, "log")
}
