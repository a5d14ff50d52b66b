package server

import (
	"context"
	"fmt"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Router is implemented by a backend that serves requests on one node of a
// cluster at a time (the primary). A request on another node is forwarded
// to the primary's address, once: a forwarded request that meets a node
// that cannot serve it fails with Unavailable, and the client retries.
type Router interface {
	// AwaitRoute reports whether this node serves requests now and, if
	// not, the address of the node that does ("" if none is known after a
	// short wait for an election).
	AwaitRoute(ctx context.Context) (local bool, leader uint64, addr string)
}

// forwardedKey marks a request forwarded by another node.
const forwardedKey = "oc-forwarded"

// LeaderHeader is the response header naming the address of the node that
// serves, sent with every forwarded answer so that a client can go there
// directly next time.
const LeaderHeader = "oc-leader"

// forwarder holds one client connection per primary address.
type forwarder struct {
	dial func(addr string) (*grpc.ClientConn, error)
	mu   sync.Mutex
	// conns is keyed by address.
	conns map[string]*grpc.ClientConn
}

// notServingHere answers a stream that only the serving node can carry
// (KeepAlive) on another node: Unavailable, naming the leader in the
// header. It reports false when this node serves.
func notServingHere(stream grpc.ServerStream, s *Server) (bool, error) {
	r, isRouter := s.backend.(Router)
	if !isRouter {
		return false, nil
	}
	local, leader, addr := r.AwaitRoute(stream.Context())
	if local {
		return false, nil
	}
	if addr != "" {
		_ = stream.SetHeader(metadata.Pairs(LeaderHeader, addr))
	}
	return true, status.Errorf(codes.Unavailable, "not the leader (node %d at %q is); reconnect there", leader, addr)
}

func newForwarder(dial func(addr string) (*grpc.ClientConn, error)) *forwarder {
	if dial == nil {
		dial = func(addr string) (*grpc.ClientConn, error) {
			return grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		}
	}
	return &forwarder{dial: dial, conns: make(map[string]*grpc.ClientConn)}
}

func (f *forwarder) conn(addr string) (*grpc.ClientConn, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c, ok := f.conns[addr]; ok {
		return c, nil
	}
	c, err := f.dial(addr)
	if err != nil {
		return nil, err
	}
	f.conns[addr] = c
	return c, nil
}

func (f *forwarder) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for addr, c := range f.conns {
		_ = c.Close()
		delete(f.conns, addr)
	}
}

// route decides where a request runs: here (ok=false, err=nil), forwarded
// (ok=true with the primary's answer in resp), or nowhere (err).
func route[Resp proto.Message](ctx context.Context, s *Server, method string, req proto.Message) (resp Resp, forwarded bool, err error) {
	r, isRouter := s.backend.(Router)
	if !isRouter {
		return resp, false, nil
	}
	local, leader, addr := r.AwaitRoute(ctx)
	if local {
		return resp, false, nil
	}
	if addr == "" {
		return resp, true, status.Error(codes.Unavailable, "no leader is known yet; retry")
	}
	if md, ok := metadata.FromIncomingContext(ctx); ok && len(md.Get(forwardedKey)) > 0 {
		return resp, true, status.Errorf(codes.Unavailable, "not the leader (node %d at %s is); retry there", leader, addr)
	}
	_ = grpc.SetHeader(ctx, metadata.Pairs(LeaderHeader, addr))
	conn, err := s.fwd.conn(addr)
	if err != nil {
		return resp, true, status.Errorf(codes.Unavailable, "forward to the leader at %s: %v", addr, err)
	}
	var zero Resp
	resp = zero.ProtoReflect().Type().New().Interface().(Resp)
	// Pass the caller's deadline on, and nothing else of its metadata.
	out := metadata.AppendToOutgoingContext(metadata.NewOutgoingContext(ctx, nil), forwardedKey, "1")
	if err := conn.Invoke(out, method, req, resp); err != nil {
		if _, ok := status.FromError(err); !ok {
			err = status.Error(codes.Unavailable, fmt.Sprintf("forward to the leader at %s: %v", addr, err))
		}
		return zero, true, err
	}
	return resp, true, nil
}
