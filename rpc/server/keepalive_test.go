package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/opencluster/opencluster/kv"
	"github.com/opencluster/opencluster/rpc/ocpb"
)

// keepAliveBackend answers KeepAlive per lock name: "lost-*" names with the
// error in lost, "fail" with fail, a panic for "panic", else a renewal with
// a 5s ttl.
func keepAliveBackend(lost map[string]error, fail error) *fakeBackend {
	return &fakeBackend{hook: func(_ context.Context, method string, req proto.Message) (proto.Message, error) {
		if method != "KeepAlive" {
			return nil, nil
		}
		name := req.(*ocpb.KeepAliveRequest).GetName()
		if err, ok := lost[name]; ok {
			return nil, err
		}
		switch name {
		case "fail":
			return nil, fail
		case "panic":
			panic("keepalive bug")
		}
		return &ocpb.KeepAliveResponse{Ttl: durationpb.New(5 * time.Second)}, nil
	}}
}

func kaReq(name string) *ocpb.KeepAliveRequest {
	return &ocpb.KeepAliveRequest{Name: name, Code: testCode, Kind: ocpb.LockKind_NAMED}
}

// TestKeepAlive: each request is answered with its name and code; a lost
// lock is answered lost=true with the reason and the stream goes on; the
// client closing its side ends the stream with OK.
func TestKeepAlive(t *testing.T) {
	lost := map[string]error{
		"lost-holder":   fmt.Errorf("%w: expired 3s ago", kv.ErrNotHolder),
		"lost-aborted":  fmt.Errorf("%w: aborted by expiry", kv.ErrAborted),
		"lost-notfound": fmt.Errorf("%w: no lock lost-notfound", kv.ErrNotFound),
		"lost-forward":  status.Error(codes.FailedPrecondition, "n2: lock not held with this code"),
	}
	e := newEnv(t, keepAliveBackend(lost, nil))
	stream, err := e.locks.KeepAlive(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"a", "lost-holder", "b", "lost-aborted", "lost-notfound", "lost-forward", "a"} {
		if err := stream.Send(kaReq(name)); err != nil {
			t.Fatal(err)
		}
		resp, err := stream.Recv()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if resp.GetName() != name || resp.GetCode() != testCode {
			t.Fatalf("%s: response for %q/%q", name, resp.GetName(), resp.GetCode())
		}
		if lostErr, isLost := lost[name]; isLost {
			if !resp.GetLost() || resp.GetReason() != status.Convert(lostErr).Message() && resp.GetReason() != lostErr.Error() {
				t.Fatalf("%s: got lost=%v reason=%q, want lost with %q", name, resp.GetLost(), resp.GetReason(), lostErr)
			}
			continue
		}
		if resp.GetLost() || resp.GetTtl().AsDuration() != 5*time.Second {
			t.Fatalf("%s: got %v, want renewed with ttl 5s", name, resp)
		}
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("after CloseSend: Recv = %v, want io.EOF", err)
	}
	if got := e.counter(t, "opencluster_rpc_requests_total", reqCount(ocpb.Locks_KeepAlive_FullMethodName, "OK")); got != 1 {
		t.Fatalf("KeepAlive streams ended OK = %v, want 1", got)
	}
	mustNotContain(t, e.logs.String(), testCode, "log")
}

// TestKeepAliveEnds: errors other than a lost lock end the stream with the
// mapped status.
func TestKeepAliveEnds(t *testing.T) {
	for _, tc := range []struct {
		name string
		fail error
		req  *ocpb.KeepAliveRequest
		code codes.Code
	}{
		{"unavailable", fmt.Errorf("%w: bucket 3 has no leader", kv.ErrUnavailable), kaReq("fail"), codes.Unavailable},
		{"internal", errors.New("disk on fire"), kaReq("fail"), codes.Internal},
		{"invalid-kind", nil, &ocpb.KeepAliveRequest{Name: "a", Code: testCode}, codes.InvalidArgument},
		{"invalid-code", nil, &ocpb.KeepAliveRequest{Name: "a", Code: "abc", Kind: ocpb.LockKind_RESTRICTIVE}, codes.InvalidArgument},
		{"panic", nil, kaReq("panic"), codes.Internal},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, keepAliveBackend(nil, tc.fail))
			stream, err := e.locks.KeepAlive(testCtx(t))
			if err != nil {
				t.Fatal(err)
			}
			if err := stream.Send(kaReq("a")); err != nil {
				t.Fatal(err)
			}
			if _, err := stream.Recv(); err != nil {
				t.Fatal(err)
			}
			if err := stream.Send(tc.req); err != nil {
				t.Fatal(err)
			}
			_, err = stream.Recv()
			if status.Code(err) != tc.code {
				t.Fatalf("Recv = %v, want %v", err, tc.code)
			}
			if tc.code == codes.InvalidArgument && !strings.Contains(status.Convert(err).Message(), "kind") &&
				!strings.Contains(status.Convert(err).Message(), "code") {
				t.Fatalf("message %q does not name the field", status.Convert(err).Message())
			}
		})
	}
}

// TestKeepAliveClientGone: the handler returns when the client cancels or
// its deadline passes, also while the backend is blocked; goleak (TestMain)
// checks that nothing is left behind.
func TestKeepAliveClientGone(t *testing.T) {
	blocked := make(chan struct{}, 1)
	fake := &fakeBackend{hook: func(ctx context.Context, method string, req proto.Message) (proto.Message, error) {
		if req.(*ocpb.KeepAliveRequest).GetName() == "block" {
			blocked <- struct{}{}
			<-ctx.Done()
			return nil, ctx.Err()
		}
		return nil, nil
	}}
	e := newEnv(t, fake)
	method := ocpb.Locks_KeepAlive_FullMethodName

	t.Run("cancel-idle", func(t *testing.T) {
		ctx, cancel := context.WithCancel(testCtx(t))
		stream, err := e.locks.KeepAlive(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.Send(kaReq("a")); err != nil {
			t.Fatal(err)
		}
		if _, err := stream.Recv(); err != nil {
			t.Fatal(err)
		}
		cancel()
		eventually(t, "the server to end the cancelled stream", func() bool {
			return e.counter(t, "opencluster_rpc_requests_total", reqCount(method, "Canceled")) == 1
		})
	})
	t.Run("cancel-in-backend", func(t *testing.T) {
		ctx, cancel := context.WithCancel(testCtx(t))
		stream, err := e.locks.KeepAlive(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.Send(kaReq("block")); err != nil {
			t.Fatal(err)
		}
		<-blocked
		cancel()
		eventually(t, "the server to end the stream blocked in the backend", func() bool {
			return e.counter(t, "opencluster_rpc_requests_total", reqCount(method, "Canceled")) == 2
		})
	})
	t.Run("deadline", func(t *testing.T) {
		// The server ends the stream on its own deadline (from the
		// grpc-timeout header) or on the client's reset, whichever comes
		// first: DeadlineExceeded or Canceled.
		ended := func() float64 {
			return e.counter(t, "opencluster_rpc_requests_total", reqCount(method, "DeadlineExceeded")) +
				e.counter(t, "opencluster_rpc_requests_total", reqCount(method, "Canceled"))
		}
		before := ended()
		ctx, cancel := context.WithTimeout(testCtx(t), 50*time.Millisecond)
		defer cancel()
		stream, err := e.locks.KeepAlive(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := stream.Recv(); status.Code(err) != codes.DeadlineExceeded {
			t.Fatalf("Recv = %v, want DeadlineExceeded", err)
		}
		eventually(t, "the server to end the expired stream", func() bool {
			return ended() == before+1
		})
	})
}
