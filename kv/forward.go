package kv

import (
	"context"
	"fmt"

	"google.golang.org/protobuf/proto"
)

// Request routing. A request about one key or one lock name runs on the
// leader of that bucket: a node that does not lead it forwards the request
// there once (Remote.Call); the leader runs it as if a client had sent it.
// A forwarded request that finds leadership moved again fails with
// ErrUnavailable, and the client retries.

// forwardedKey marks a context whose request arrived through Call.
type forwardedKey struct{}

// routeFor returns the node a request about key must run on: 0 for this
// node (it leads the bucket, or the request was forwarded here already).
func (n *Node) routeFor(ctx context.Context, key []byte) (uint64, error) {
	if ctx.Value(forwardedKey{}) != nil {
		return 0, nil // run here; the replica refuses if it does not lead
	}
	return n.leaderOf(ctx, n.replicaOf(key))
}

// forward runs a public method on another node (see Call).
func forward[Resp proto.Message](ctx context.Context, n *Node, node uint64, method string, req proto.Message) (Resp, error) {
	var resp Resp
	resp = resp.ProtoReflect().Type().New().Interface().(Resp)
	if err := n.cfg.Remote.Call(ctx, node, method, req, resp); err != nil {
		var zero Resp
		return zero, err
	}
	return resp, nil
}

// calls are the public methods a node runs for another (by name).
var calls = map[string]func(n *Node, ctx context.Context, raw []byte) (proto.Message, error){
	"Get":            callOf((*Node).Get),
	"Put":            callOf((*Node).Put),
	"Delete":         callOf((*Node).Delete),
	"CompareAndSwap": callOf((*Node).CompareAndSwap),
	"Acquire":        callOf((*Node).Acquire),
	"Release":        callOf((*Node).Release),
	"KeepAlive":      callOf((*Node).KeepAlive),
	"Restrict":       callOf((*Node).Restrict),
	"Commit":         callOf((*Node).Commit),
	"Abort":          callOf((*Node).Abort),
	"Describe":       callOf((*Node).Describe),
	"DrainNode":      callOf((*Node).DrainNode),
	"RemoveNode":     callOf((*Node).RemoveNode),
}

// onPrimary forwards an operator command to the meta group's leader, whose
// registry and placement table are the newest (a node whose meta replica
// was moved away reads stale ones): done reports that it was forwarded
// (or failed to find the leader), with its answer.
func onPrimary[Resp proto.Message](ctx context.Context, n *Node, method string, req proto.Message) (resp Resp, done bool, err error) {
	if ctx.Value(forwardedKey{}) != nil {
		return resp, false, nil
	}
	leader, err := n.leaderOf(ctx, n.meta)
	if err != nil {
		return resp, true, err
	}
	if leader == 0 {
		return resp, false, nil
	}
	resp, err = forward[Resp](ctx, n, leader, method, req)
	return resp, true, err
}

func callOf[Req any, PReq interface {
	*Req
	proto.Message
}, Resp proto.Message](method func(*Node, context.Context, PReq) (Resp, error)) func(*Node, context.Context, []byte) (proto.Message, error) {
	return func(n *Node, ctx context.Context, raw []byte) (proto.Message, error) {
		req := PReq(new(Req))
		if err := proto.Unmarshal(raw, req); err != nil {
			return nil, fmt.Errorf("%w: corrupt forwarded request: %v", ErrInvalid, err)
		}
		return method(n, ctx, req)
	}
}

// ServeCall runs a request forwarded by another node: method is a public
// method's name, raw its marshaled request. It is never forwarded again.
func (n *Node) ServeCall(ctx context.Context, method string, raw []byte) (proto.Message, error) {
	call, ok := calls[method]
	if !ok {
		return nil, fmt.Errorf("%w: no method %q to forward", ErrInvalid, method)
	}
	return call(n, context.WithValue(ctx, forwardedKey{}, true), raw)
}

// routed forwards a request about key to its bucket's leader when that is
// another node: done reports that the request was handled (forwarded, or
// failed to find a leader), with its answer.
func routed[Resp proto.Message](ctx context.Context, n *Node, key []byte, method string, req proto.Message) (resp Resp, done bool, err error) {
	node, err := n.routeFor(ctx, key)
	if err != nil {
		return resp, true, err
	}
	if node == 0 {
		return resp, false, nil
	}
	resp, err = forward[Resp](ctx, n, node, method, req)
	return resp, true, err
}
