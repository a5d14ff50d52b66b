package client

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencluster/opencluster/rpc/flowcontrol"
	"github.com/opencluster/opencluster/rpc/ocpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// Client talks to an OpenCluster cluster. It is safe for concurrent use.
// Close it to stop its keep-alive goroutine and drop its connections.
type Client struct {
	opts      options
	endpoints []*endpoint
	// cur is the index of the endpoint calls go to; a call that gets
	// Unavailable moves it to the next one.
	// Invariant: 0 <= cur < len(endpoints).
	cur atomic.Int64

	keeper *keeper
	route  router
	// txs are this client's open Tx handles, so that Commit and Abort by
	// name and code go through the handle and its buffered writes.
	txs struct {
		sync.Mutex
		m map[leaseKey]*Tx
	}
	// dialOpts are the options every connection is made with.
	dialOpts []grpc.DialOption
	// bgCtx ends at Close; bg counts the background goroutines
	// (placement refreshes) Close waits for.
	bgCtx    context.Context
	bgCancel context.CancelFunc
	bg       sync.WaitGroup

	// closing is closed by Close; backoff pauses select on it.
	closing   chan struct{}
	closeOnce sync.Once
}

// endpoint is one server address and its stubs.
type endpoint struct {
	addr    string
	conn    *grpc.ClientConn
	kv      ocpb.KVClient
	locks   ocpb.LocksClient
	cluster ocpb.ClusterClient
}

func newEndpoint(addr string, conn *grpc.ClientConn) *endpoint {
	return &endpoint{
		addr:    addr,
		conn:    conn,
		kv:      ocpb.NewKVClient(conn),
		locks:   ocpb.NewLocksClient(conn),
		cluster: ocpb.NewClusterClient(conn),
	}
}

// New returns a client for the cluster reachable at endpoints (host:port or
// any gRPC target). Any node serves any request, so one endpoint is enough;
// more let calls fail over. New does not contact the servers: connections
// are made on first use, and ctx is only checked.
func New(ctx context.Context, endpoints []string, opts ...Option) (*Client, error) {
	if err := ctx.Err(); err != nil {
		return nil, wrapError(ctx, err)
	}
	o := options{maxAttempts: defaultMaxAttempts, backoff: defaultBackoff}
	for _, opt := range opts {
		opt(&o)
	}
	if o.maxAttempts < 1 {
		o.maxAttempts = 1
	}
	if o.backoff <= 0 {
		o.backoff = defaultBackoff
	}
	if o.logger == nil {
		o.logger = slog.New(slog.DiscardHandler)
	}
	if o.owner == "" {
		host, _ := os.Hostname()
		o.owner = fmt.Sprintf("%s:%d", host, os.Getpid())
	}
	if len(endpoints) == 0 {
		return nil, invalidf("no endpoints")
	}
	dialOpts := append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, flowcontrol.DialOptions()...)
	dialOpts = append(dialOpts, o.dialOpts...)
	c := &Client{opts: o, closing: make(chan struct{}), dialOpts: dialOpts}
	c.bgCtx, c.bgCancel = context.WithCancel(context.Background())
	for _, addr := range endpoints {
		if addr == "" {
			c.closeConns()
			return nil, invalidf("empty endpoint")
		}
		conn, err := grpc.NewClient(addr, dialOpts...)
		if err != nil {
			c.closeConns()
			return nil, invalidf("endpoint %q: %s", addr, err.Error())
		}
		c.endpoints = append(c.endpoints, newEndpoint(addr, conn))
	}
	c.keeper = newKeeper(c)
	return c, nil
}

// Close stops the keep-alive goroutine, waits for it, and closes the
// connections. Locks still held are not released: they expire after their
// ttl, and their Lost channels close (with ErrClosed). Calls after Close
// fail with ErrClosed. Close is idempotent.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		close(c.closing)
		c.bgCancel()
		c.keeper.close()
		c.bg.Wait()
		c.closeRoutes()
		c.closeConns()
	})
	return nil
}

func (c *Client) closeConns() {
	for _, e := range c.endpoints {
		_ = e.conn.Close()
	}
}

func (c *Client) closed() bool {
	select {
	case <-c.closing:
		return true
	default:
		return false
	}
}

// current returns the endpoint calls go to now, and its index.
func (c *Client) current() (int64, *endpoint) {
	i := c.cur.Load()
	return i, c.endpoints[i]
}

// rotate moves calls off endpoint i (unless another caller already did).
func (c *Client) rotate(i int64) {
	c.cur.CompareAndSwap(i, (i+1)%int64(len(c.endpoints)))
}

// do runs one logical operation: it calls op on the current endpoint and,
// while op fails with Unavailable, pauses and tries the next endpoint, up
// to maxAttempts. op must send the same request (same request id) every
// time. wait is the server-side wait the request asks for; it extends the
// default deadline.
func (c *Client) do(ctx context.Context, method string, wait time.Duration, op func(ctx context.Context, e *endpoint) error) error {
	return c.doKey(ctx, method, nil, wait, op)
}

// doKey is do for a request about key (a key or a lock name): its first
// attempt goes to the key's bucket leader when the placement names it.
func (c *Client) doKey(ctx context.Context, method string, key []byte, wait time.Duration, op func(ctx context.Context, e *endpoint) error) error {
	if c.closed() {
		return errClosed()
	}
	callCtx := ctx
	if _, ok := ctx.Deadline(); !ok && c.opts.timeout > 0 {
		var cancel context.CancelFunc
		callCtx, cancel = context.WithTimeout(ctx, c.opts.timeout+wait)
		defer cancel()
	}
	var err error
	for attempt := 1; ; attempt++ {
		i, e := c.current()
		routed := false
		if key != nil && attempt == 1 {
			if le := c.leaderEndpoint(key); le != nil {
				e, routed = le, true
			}
		}
		err = op(callCtx, e)
		if err == nil {
			return nil
		}
		if status.Code(err) != codes.Unavailable || attempt >= c.opts.maxAttempts || callCtx.Err() != nil {
			break
		}
		if key != nil {
			c.markStale()
		}
		if !routed {
			c.rotate(i)
		}
		pause := c.opts.backoffFor(attempt)
		c.opts.logger.Debug("client: retrying", "method", method, "endpoint", e.addr, "attempt", attempt, "pause", pause, "err", err)
		if !c.sleep(callCtx, pause) {
			if c.closed() {
				return errClosed()
			}
			break
		}
	}
	return wrapError(callCtx, err)
}

// sleep pauses for d; it returns false if ctx ended or the client closed
// first.
func (c *Client) sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-c.closing:
		return false
	}
}

// newRequestID returns 128 random bits in hex.
func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return hex.EncodeToString(b[:])
}

// Status reports the state of the cluster as seen by the node that answers.
func (c *Client) Status(ctx context.Context) (*ocpb.StatusResponse, error) {
	var resp *ocpb.StatusResponse
	err := c.do(ctx, "Status", 0, func(ctx context.Context, e *endpoint) (err error) {
		resp, err = e.cluster.Status(ctx, &ocpb.StatusRequest{})
		return err
	})
	return resp, err
}

// Holdings counts, in a Status, each node's bucket replicas and the
// buckets it leads, by node id.
func Holdings(st *ocpb.StatusResponse) (replicas, leaders map[string]int) {
	replicas, leaders = map[string]int{}, map[string]int{}
	for _, b := range st.GetBuckets() {
		for _, r := range b.GetReplicas() {
			replicas[r]++
		}
		leaders[b.GetLeader()]++
	}
	return replicas, leaders
}

// detached returns a context for cleanup after ctx may have ended (aborting
// a transaction whose function failed): ctx's values, not its cancellation,
// bounded by the client's timeout or 5s.
func (c *Client) detached(ctx context.Context) (context.Context, context.CancelFunc) {
	d := c.opts.timeout
	if d <= 0 {
		d = 5 * time.Second
	}
	return context.WithTimeout(context.WithoutCancel(ctx), d)
}

// isCode reports whether err carries gRPC code code.
func isCode(err error, code codes.Code) bool {
	var e *Error
	return errors.As(err, &e) && e.Code() == code
}

// MoveReplica moves bucket's replica from node from to node to (ids as
// Status prints them) and returns the bucket's configuration epoch after
// the move. It returns when the move is done.
func (c *Client) MoveReplica(ctx context.Context, bucket uint32, from, to string) (uint64, error) {
	var resp *ocpb.MoveReplicaResponse
	req := &ocpb.MoveReplicaRequest{Bucket: bucket, From: from, To: to}
	err := c.do(ctx, "MoveReplica", 0, func(ctx context.Context, e *endpoint) (err error) {
		resp, err = e.cluster.MoveReplica(ctx, req)
		return err
	})
	if err != nil {
		return 0, err
	}
	return resp.Epoch, nil
}

// TransferLeader hands bucket's leadership to node to (an id as Status
// prints it) and returns the node that leads it then.
func (c *Client) TransferLeader(ctx context.Context, bucket uint32, to string) (string, error) {
	var resp *ocpb.TransferLeaderResponse
	req := &ocpb.TransferLeaderRequest{Bucket: bucket, To: to}
	err := c.do(ctx, "TransferLeader", 0, func(ctx context.Context, e *endpoint) (err error) {
		resp, err = e.cluster.TransferLeader(ctx, req)
		return err
	})
	if err != nil {
		return "", err
	}
	return resp.Leader, nil
}

// DrainNode marks node id draining (undo: active again). It returns at
// once; Status shows the node emptying.
func (c *Client) DrainNode(ctx context.Context, id string, undo bool) error {
	req := &ocpb.DrainNodeRequest{NodeId: id, Undo: undo}
	return c.do(ctx, "DrainNode", 0, func(ctx context.Context, e *endpoint) error {
		_, err := e.cluster.DrainNode(ctx, req)
		return err
	})
}

// RemoveNode takes node id out of the cluster for good. A live node must
// be drained and empty first.
func (c *Client) RemoveNode(ctx context.Context, id string) error {
	req := &ocpb.RemoveNodeRequest{NodeId: id}
	return c.do(ctx, "RemoveNode", 0, func(ctx context.Context, e *endpoint) error {
		_, err := e.cluster.RemoveNode(ctx, req)
		return err
	})
}
