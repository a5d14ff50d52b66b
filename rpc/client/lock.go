package client

import (
	"context"
	"sync"
	"time"

	"github.com/opencluster/opencluster/rpc/ocpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Lock is a held named lock, kept alive in the background until Unlock (or
// Close). It is safe for concurrent use.
type Lock struct {
	c     *Client
	kind  LockKind
	name  string
	code  string
	fence uint64
	lease *lease
	// releaseID is the request id of every Release (or Abort) this handle
	// sends, so a repeated Unlock is a no-op on the server.
	releaseID string

	mu struct {
		sync.Mutex
		// released is set once the server acknowledged the release.
		released bool
	}
}

// Lock acquires the named lock name with the given ttl (0: the server's
// default, 15s) and keeps it alive until Unlock. It queues while another
// holder has the lock: until WithLockWait's bound (then ErrWaitTimeout), or
// until ctx ends. A retry of the call after Unavailable reuses its request
// id, so it gets the same grant.
func (c *Client) Lock(ctx context.Context, name string, ttl time.Duration, opts ...LockOption) (*Lock, error) {
	var o lockOptions
	for _, opt := range opts {
		opt.applyLock(&o)
	}
	if o.requestID == "" {
		o.requestID = newRequestID()
	}
	if ttl < 0 {
		return nil, invalidf("negative ttl %s", ttl)
	}
	req := &ocpb.AcquireRequest{Name: name, Wait: durationOf(o.wait), Owner: c.opts.owner, RequestId: o.requestID}
	if ttl > 0 {
		req.Ttl = durationpb.New(ttl)
	}
	var resp *ocpb.AcquireResponse
	err := c.doKey(ctx, "Acquire", []byte(name), waitOf(o.wait), func(ctx context.Context, e *endpoint) (err error) {
		resp, err = e.locks.Acquire(ctx, req)
		return err
	})
	if err != nil {
		return nil, err
	}
	grantTTL := resp.Ttl.AsDuration()
	if grantTTL <= 0 {
		grantTTL = ttl
	}
	if grantTTL <= 0 {
		return nil, newError(codes.Internal, nil, "server granted lock %q without a ttl", name)
	}
	l := &Lock{
		c:         c,
		kind:      KindNamed,
		name:      name,
		code:      resp.Code,
		fence:     resp.Fence,
		lease:     newLease(KindNamed, name, resp.Code, grantTTL, o.onRenew),
		releaseID: newRequestID(),
	}
	c.keeper.add(l.lease)
	return l, nil
}

// Attach keeps alive a lock acquired elsewhere (by another process, or a
// previous run), given its name, code and kind (KindNamed or
// KindRestrictive). It renews the lock at once and returns when the server
// confirms it: an error matching ErrLost if the code does not hold it.
// The handle's Fence is 0. Its Unlock releases a named lock and aborts a
// restrictive one.
func (c *Client) Attach(ctx context.Context, name, code string, kind LockKind, opts ...LockOption) (*Lock, error) {
	if kind != KindNamed && kind != KindRestrictive {
		return nil, invalidf("attach: kind must be named or restrictive, not %s", kind)
	}
	if name == "" || code == "" {
		return nil, invalidf("attach: name and code are required")
	}
	if c.closed() {
		return nil, errClosed()
	}
	var o lockOptions
	for _, opt := range opts {
		opt.applyLock(&o)
	}
	l := &Lock{
		c:         c,
		kind:      kind,
		name:      name,
		code:      code,
		lease:     newLease(kind, name, code, 0, o.onRenew),
		releaseID: newRequestID(),
	}
	c.keeper.add(l.lease)
	select {
	case <-l.lease.acked:
	case <-ctx.Done():
		c.keeper.remove(context.WithoutCancel(ctx), l.lease)
		return nil, wrapError(ctx, ctx.Err())
	}
	if err := l.Err(); err != nil {
		return nil, err
	}
	return l, nil
}

// Name returns the lock's name.
func (l *Lock) Name() string { return l.name }

// Code returns the lock's code: the secret that proves holding it.
func (l *Lock) Code() string { return l.code }

// Fence returns the lock's fencing token (0 for an attached lock).
func (l *Lock) Fence() uint64 { return l.fence }

// Kind returns KindNamed, or the kind given to Attach.
func (l *Lock) Kind() LockKind { return l.kind }

// TTL returns the lock's ttl as last confirmed by the server.
func (l *Lock) TTL() time.Duration { return l.c.keeper.leaseTTL(l.lease) }

// Lost returns a channel closed when the lock is lost: the server said so,
// or keep-alives have not succeeded for a full ttl, or the client was
// closed. Unlock does not close it.
func (l *Lock) Lost() <-chan struct{} { return l.lease.lost }

// Err returns nil while the lock is not known lost, and then why: an error
// matching ErrLost and ErrNotHolder (named), ErrAborted (restrictive), or
// ErrClosed.
func (l *Lock) Err() error { return l.c.keeper.leaseErr(l.lease) }

// Unlock stops keeping the lock alive (before it returns, even on error)
// and releases it. It is idempotent: once a release succeeded, later calls
// return nil; after a failure a later call retries with the same request
// id.
func (l *Lock) Unlock(ctx context.Context) error {
	l.c.keeper.remove(ctx, l.lease)
	l.mu.Lock()
	released := l.mu.released
	l.mu.Unlock()
	if released {
		return nil
	}
	var err error
	if l.kind == KindRestrictive {
		err = l.c.abort(ctx, l.name, l.code, l.releaseID)
	} else {
		err = l.c.release(ctx, l.name, l.code, l.releaseID)
	}
	if err != nil {
		return err
	}
	l.mu.Lock()
	l.mu.released = true
	l.mu.Unlock()
	return nil
}

// Release releases the named lock name held with code, without a handle
// (for example one taken by another process). Prefer Lock.Unlock.
func (c *Client) Release(ctx context.Context, name, code string) error {
	return c.release(ctx, name, code, newRequestID())
}

func (c *Client) release(ctx context.Context, name, code, requestID string) error {
	req := &ocpb.ReleaseRequest{Name: name, Code: code, RequestId: requestID}
	return c.doKey(ctx, "Release", []byte(name), 0, func(ctx context.Context, e *endpoint) error {
		_, err := e.locks.Release(ctx, req)
		req.Retry = true // a resend may find this attempt applied
		return err
	})
}

// LockInfo describes a lock, as Describe and List report it. Codes are
// never reported.
type LockInfo struct {
	Name string
	Kind LockKind
	Held bool
	// Fence is the token of the current (or last) grant.
	Fence           uint64
	Owner           string
	AcquiredVersion uint64
	TTL             time.Duration
	// ExpiresIn is the time left before the lock expires without a
	// keep-alive, as seen by the leader tracking it.
	ExpiresIn time.Duration
	Waiters   int
	// Status of a restrictive lock: PENDING, COMMITTED or ABORTED.
	Status string
	// Snapshot reports snapshot isolation (restrictive locks).
	Snapshot bool
	// Keys are a restrictive lock's keys and modes.
	Keys          []KeySpec
	CommitVersion uint64
}

func lockInfoOf(p *ocpb.LockInfo) LockInfo {
	info := LockInfo{
		Name:            p.Name,
		Kind:            LockKind(p.Kind),
		Held:            p.Held,
		Fence:           p.Fence,
		Owner:           p.Owner,
		AcquiredVersion: p.AcquiredVersion,
		TTL:             p.Ttl.AsDuration(),
		ExpiresIn:       p.ExpiresIn.AsDuration(),
		Waiters:         int(p.Waiters),
		Status:          p.Status,
		Snapshot:        p.Isolation == ocpb.Isolation_SNAPSHOT,
		CommitVersion:   p.CommitVersion,
	}
	for _, k := range p.Keys {
		info.Keys = append(info.Keys, KeySpec{Key: k.Key, Mode: KeyMode(k.Mode)})
	}
	return info
}

func collectList(opts []ListOption) listOptions {
	var o listOptions
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// Describe reports the locks called name (a named and a restrictive lock
// may share a name; OfKind picks one).
func (c *Client) Describe(ctx context.Context, name string, opts ...ListOption) ([]LockInfo, error) {
	o := collectList(opts)
	req := &ocpb.DescribeRequest{Name: name, Kind: ocpb.LockKind(o.kind)}
	var resp *ocpb.DescribeResponse
	err := c.doKey(ctx, "Describe", []byte(name), 0, func(ctx context.Context, e *endpoint) (err error) {
		resp, err = e.locks.Describe(ctx, req)
		return err
	})
	if err != nil {
		return nil, err
	}
	out := make([]LockInfo, 0, len(resp.Locks))
	for _, p := range resp.Locks {
		out = append(out, lockInfoOf(p))
	}
	return out, nil
}

// List reports the locks whose names start with prefix (OfKind, HeldOnly
// narrow it).
func (c *Client) List(ctx context.Context, prefix string, opts ...ListOption) ([]LockInfo, error) {
	o := collectList(opts)
	req := &ocpb.ListRequest{Prefix: prefix, Kind: ocpb.LockKind(o.kind), HeldOnly: o.heldOnly}
	var resp *ocpb.ListResponse
	err := c.do(ctx, "List", 0, func(ctx context.Context, e *endpoint) (err error) {
		resp, err = e.locks.List(ctx, req)
		return err
	})
	if err != nil {
		return nil, err
	}
	out := make([]LockInfo, 0, len(resp.Locks))
	for _, p := range resp.Locks {
		out = append(out, lockInfoOf(p))
	}
	return out, nil
}
