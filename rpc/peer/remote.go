package peer

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/opencluster/opencluster/kv"
	"github.com/opencluster/opencluster/mvcc"
	"github.com/opencluster/opencluster/mvcc/ts"
	"github.com/opencluster/opencluster/rpc/cmdpb"
	"github.com/opencluster/opencluster/rpc/ocpb"
)

// errorDomain marks the ErrorInfo detail that carries a kv error's kind.
const errorDomain = "opencluster.kv"

// Remote implements kv.Remote over the Internal service.
type Remote struct {
	resolve  func(id uint64) string
	dialOpts []grpc.DialOption
	mu       sync.Mutex
	conns    map[string]*grpc.ClientConn // by address
}

// NewRemote returns a Remote that finds nodes with resolve and dials from
// localHost. Close closes its connections.
func NewRemote(localHost string, resolve func(id uint64) string) *Remote {
	return &Remote{resolve: resolve, dialOpts: Dialer(localHost), conns: make(map[string]*grpc.ClientConn)}
}

// Close closes every connection.
func (r *Remote) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for addr, c := range r.conns {
		_ = c.Close()
		delete(r.conns, addr)
	}
}

func (r *Remote) client(node uint64) (cmdpb.InternalClient, error) {
	addr := r.resolve(node)
	if addr == "" {
		return nil, fmt.Errorf("%w: no address for node %d", kv.ErrUnavailable, node)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.conns[addr]
	if !ok {
		var err error
		if c, err = grpc.NewClient(addr, r.dialOpts...); err != nil {
			return nil, fmt.Errorf("%w: dial node %d at %s: %v", kv.ErrUnavailable, node, addr, err)
		}
		r.conns[addr] = c
	}
	return cmdpb.NewInternalClient(c), nil
}

// Timestamp implements kv.Remote.
func (r *Remote) Timestamp(ctx context.Context, node uint64, count int) (ts.Timestamp, error) {
	c, err := r.client(node)
	if err != nil {
		return 0, err
	}
	resp, err := c.Timestamp(ctx, &cmdpb.TimestampRequest{Count: uint32(count)})
	if err != nil {
		return 0, fromStatus(err)
	}
	return ts.Timestamp(resp.GetTs()), nil
}

// Propose implements kv.Remote.
func (r *Remote) Propose(ctx context.Context, node uint64, req *cmdpb.BucketProposeRequest) (*cmdpb.Result, error) {
	c, err := r.client(node)
	if err != nil {
		return nil, err
	}
	res, err := c.BucketPropose(ctx, req)
	return res, fromStatus(err)
}

// LockKeys implements kv.Remote.
func (r *Remote) LockKeys(ctx context.Context, node uint64, req *cmdpb.BucketLockKeysRequest) (*cmdpb.BucketLockKeysResponse, error) {
	c, err := r.client(node)
	if err != nil {
		return nil, err
	}
	resp, err := c.BucketLockKeys(ctx, req)
	return resp, fromStatus(err)
}

// TxnLive implements kv.Remote.
func (r *Remote) TxnLive(ctx context.Context, node uint64, req *cmdpb.BucketTxnLiveRequest) (bool, error) {
	c, err := r.client(node)
	if err != nil {
		return false, err
	}
	resp, err := c.BucketTxnLive(ctx, req)
	return resp.GetLive(), fromStatus(err)
}

// Read implements kv.Remote.
func (r *Remote) Read(ctx context.Context, node uint64, req *cmdpb.BucketReadRequest) ([]mvcc.Value, error) {
	c, err := r.client(node)
	if err != nil {
		return nil, err
	}
	resp, err := c.BucketRead(ctx, req)
	if err != nil {
		return nil, fromStatus(err)
	}
	out := make([]mvcc.Value, 0, len(resp.GetValues()))
	for _, v := range resp.GetValues() {
		out = append(out, mvcc.Value{Found: v.GetFound(), Bytes: v.GetValue(), Version: ts.Timestamp(v.GetVersion())})
	}
	if len(out) != len(req.GetKeys()) {
		return nil, fmt.Errorf("%w: node %d answered %d values for %d keys", kv.ErrUnavailable, node, len(out), len(req.GetKeys()))
	}
	return out, nil
}

// Scan implements kv.Remote.
func (r *Remote) Scan(ctx context.Context, node uint64, req *cmdpb.BucketScanRequest) ([]mvcc.KV, bool, error) {
	c, err := r.client(node)
	if err != nil {
		return nil, false, err
	}
	resp, err := c.BucketScan(ctx, req)
	if err != nil {
		return nil, false, fromStatus(err)
	}
	out := make([]mvcc.KV, 0, len(resp.GetKvs()))
	for _, kv := range resp.GetKvs() {
		out = append(out, mvcc.KV{Key: kv.GetKey(), Value: kv.GetValue(), Version: ts.Timestamp(kv.GetVersion())})
	}
	return out, resp.GetMore(), nil
}

// List implements kv.Remote.
func (r *Remote) List(ctx context.Context, node uint64, req *cmdpb.BucketListRequest) ([]*ocpb.LockInfo, error) {
	c, err := r.client(node)
	if err != nil {
		return nil, err
	}
	resp, err := c.BucketList(ctx, req)
	if err != nil {
		return nil, fromStatus(err)
	}
	return resp.GetLocks(), nil
}

// Change implements kv.Remote.
func (r *Remote) Change(ctx context.Context, node uint64, req *cmdpb.BucketChangeRequest) (*cmdpb.BucketChangeResponse, error) {
	c, err := r.client(node)
	if err != nil {
		return nil, err
	}
	resp, err := c.BucketChange(ctx, req)
	return resp, fromStatus(err)
}

// Call implements kv.Remote.
func (r *Remote) Call(ctx context.Context, node uint64, method string, req, resp proto.Message) error {
	c, err := r.client(node)
	if err != nil {
		return err
	}
	raw, err := proto.Marshal(req)
	if err != nil {
		return err
	}
	out, err := c.Call(ctx, &cmdpb.CallRequest{Method: method, Request: raw})
	if err != nil {
		return fromStatus(err)
	}
	if err := proto.Unmarshal(out.GetResponse(), resp); err != nil {
		return fmt.Errorf("%w: corrupt answer from node %d: %v", kv.ErrUnavailable, node, err)
	}
	return nil
}

// toStatus carries a kv error to another node: its kind travels in an
// ErrorInfo detail, its text as the message.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	code := codes.Unknown
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	case errors.Is(err, kv.ErrUnavailable):
		code = codes.Unavailable
	}
	st := status.New(code, err.Error())
	if kind := kv.ErrorKind(err); kind != "" {
		if withKind, derr := st.WithDetails(&errdetails.ErrorInfo{Reason: kind, Domain: errorDomain}); derr == nil {
			st = withKind
		}
	}
	return st.Err()
}

// fromStatus rebuilds the kv error another node sent. A transport failure
// (no kind) is ErrUnavailable: the operation may be retried elsewhere.
func fromStatus(err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return fmt.Errorf("%w: %v", kv.ErrUnavailable, err)
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == errorDomain {
			return kv.ErrorOfKind(info.GetReason(), st.Message())
		}
	}
	switch st.Code() {
	case codes.DeadlineExceeded:
		return fmt.Errorf("%w: %s", context.DeadlineExceeded, st.Message())
	case codes.Canceled:
		return fmt.Errorf("%w: %s", context.Canceled, st.Message())
	}
	return fmt.Errorf("%w: %s", kv.ErrUnavailable, st.Message())
}
