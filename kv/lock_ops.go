package kv

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/opencluster/opencluster/locks"
	"github.com/opencluster/opencluster/mvcc"
	"github.com/opencluster/opencluster/rpc/cmdpb"
	"github.com/opencluster/opencluster/rpc/ocpb"
)

// Acquire implements rpc/server.Backend: it queues FIFO for the name on its
// bucket's leader and grants the lock with a fresh code.
func (n *Node) Acquire(ctx context.Context, req *ocpb.AcquireRequest) (*ocpb.AcquireResponse, error) {
	if resp, done, err := routed[*ocpb.AcquireResponse](ctx, n, []byte(req.Name), "Acquire", req); done {
		return resp, err
	}
	r := n.replicaOfName(req.Name)
	if err := r.waitReady(ctx); err != nil {
		return nil, err
	}
	code, err := n.newCode()
	if err != nil {
		return nil, err
	}
	ttl := req.Ttl.AsDuration()
	wctx, cancel := waitContext(ctx, req.Wait)
	defer cancel()
	noWait := req.Wait != nil && req.Wait.AsDuration() == 0
	acquire := &cmdpb.NamedAcquire{Name: req.Name, Code: code, Owner: req.Owner, TtlMs: ttl.Milliseconds(), RequestId: req.RequestId}
	res, err := n.takeInTurn(wctx, namedResource(req.Name), fmt.Sprintf("lock %q is held", req.Name), noWait, acquire, func() lockHolder {
		return r.namedHolder(req.Name, req.RequestId, code)
	}, func() (*cmdpb.Result, error) {
		t, err := n.tso.dating(ctx)
		if err != nil {
			return nil, err
		}
		a := proto.Clone(acquire).(*cmdpb.NamedAcquire)
		a.Ts = uint64(t)
		return r.propose(ctx, &cmdpb.Command{Body: &cmdpb.Command_NamedAcquire{NamedAcquire: a}})
	})
	if err != nil {
		return nil, err
	}
	n.deadlines.Set(locks.LeaseID{Kind: locks.Named, Name: req.Name, Code: string(res.Code)}, n.leaseTTL(ttl), n.cfg.Clock.Now())
	return &ocpb.AcquireResponse{Name: req.Name, Code: encodeCode(res.Code), Fence: res.Fence, Ttl: durationpb.New(ttl)}, nil
}

// Release implements rpc/server.Backend.
func (n *Node) Release(ctx context.Context, req *ocpb.ReleaseRequest) (*ocpb.ReleaseResponse, error) {
	if resp, done, err := routed[*ocpb.ReleaseResponse](ctx, n, []byte(req.Name), "Release", req); done {
		return resp, err
	}
	code, err := decodeCode(req.Code)
	if err != nil {
		return nil, err
	}
	release := &cmdpb.NamedRelease{Name: req.Name, Code: code, RequestId: req.RequestId, CheckApplied: req.Retry}
	// The head waiter's acquire rides along, if one is offered.
	offer := n.handoffs.claim(req.Name)
	var handoffID locks.LeaseID
	if offer != nil {
		a := proto.Clone(offer.request).(*cmdpb.NamedAcquire)
		release.Handoff = a
		handoffID = locks.LeaseID{Kind: locks.Named, Name: req.Name, Code: string(a.Code)}
		// Set before proposing: if the grant applies and nobody learns of
		// it (an error below, the waiter gone), it still expires.
		n.deadlines.Set(handoffID, n.leaseTTL(millis(a.TtlMs)), n.cfg.Clock.Now())
	}
	res, err := n.releaseNamed(ctx, release)
	if offer != nil {
		if err == nil && (res.Handoff == nil || res.Handoff.Error != cmdpb.ErrorCode_OK) {
			n.deadlines.Remove(handoffID) // certainly not granted
		} else if err == nil {
			n.metrics.handoffs.Inc()
		}
		offer.settle(namedGrant(res, offer.request.Code))
	}
	if err != nil {
		return nil, err
	}
	if err := resultErr(res); err != nil {
		return nil, err
	}
	n.deadlines.Remove(locks.LeaseID{Kind: locks.Named, Name: req.Name, Code: string(code)})
	return &ocpb.ReleaseResponse{}, nil
}

// releaseNamed stamps and proposes a release (and its hand-off's acquire).
func (n *Node) releaseNamed(ctx context.Context, release *cmdpb.NamedRelease) (*cmdpb.Result, error) {
	if release.RequestId != "" || release.Handoff != nil {
		t, err := n.tso.dating(ctx)
		if err != nil {
			return nil, err
		}
		release.Ts = uint64(t)
		if release.Handoff != nil {
			release.Handoff.Ts = uint64(t)
		}
	}
	return n.replicaOfName(release.Name).propose(ctx, &cmdpb.Command{Body: &cmdpb.Command_NamedRelease{NamedRelease: release}})
}

// KeepAlive implements rpc/server.Backend: it renews the leader's deadline
// of a lock still held with the code. It writes nothing to Raft.
func (n *Node) KeepAlive(ctx context.Context, req *ocpb.KeepAliveRequest) (*ocpb.KeepAliveResponse, error) {
	if resp, done, err := routed[*ocpb.KeepAliveResponse](ctx, n, []byte(req.Name), "KeepAlive", req); done {
		return resp, err
	}
	code, err := decodeCode(req.Code)
	if err != nil {
		return nil, err
	}
	r := n.replicaOfName(req.Name)
	if err := r.waitReady(ctx); err != nil {
		return nil, err
	}
	id := locks.LeaseID{Name: req.Name, Code: string(code)}
	switch req.Kind {
	case ocpb.LockKind_NAMED:
		id.Kind = locks.Named
		rec, _, err := locks.NamedRecord(n.eng.DB(), r.bucket, req.Name)
		if err != nil {
			return nil, err
		}
		if !rec.Held || !bytes.Equal(rec.Code, code) {
			if bytes.Equal(rec.LastCode, code) && rec.LastExpired {
				return nil, fmt.Errorf("%w: lock %q expired", ErrNotHolder, req.Name)
			}
			return nil, fmt.Errorf("%w: lock %q", ErrNotHolder, req.Name)
		}
	case ocpb.LockKind_RESTRICTIVE:
		id.Kind = locks.Restrictive
		rec, _, err := locks.TxnRecord(n.eng.DB(), r.bucket, req.Name)
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(rec.Code, code) {
			return nil, fmt.Errorf("%w: restrictive lock %q", ErrNotHolder, req.Name)
		}
		switch rec.Status {
		case cmdpb.TxnStatus_ABORTED:
			return nil, fmt.Errorf("%w: restrictive lock %q expired or was aborted", ErrAborted, req.Name)
		case cmdpb.TxnStatus_COMMITTED:
			return nil, fmt.Errorf("%w: restrictive lock %q is committed", ErrNotHolder, req.Name)
		}
	default:
		return nil, fmt.Errorf("%w: kind %s", ErrInvalid, req.Kind)
	}
	ttl, ok := n.deadlines.Extend(id, n.cfg.Clock.Now())
	if !ok {
		return nil, fmt.Errorf("%w: lock %q is being released", ErrNotHolder, req.Name)
	}
	return &ocpb.KeepAliveResponse{Name: req.Name, Code: req.Code, Ttl: durationpb.New(ttl)}, nil
}

// expire releases a lock whose deadline passed.
func (n *Node) expire(ctx context.Context, id locks.LeaseID) error {
	if id.Kind == locks.Restrictive {
		return n.abortTxn(ctx, id.Name, []byte(id.Code), true)
	}
	return n.expireOrRelease(ctx, id.Name, []byte(id.Code), true)
}

// expireOrRelease releases the named lock held with code on the server's
// own initiative: expired (its deadline passed) or not (handed to a waiter
// that had left).
func (n *Node) expireOrRelease(ctx context.Context, name string, code []byte, expired bool) error {
	id := locks.LeaseID{Kind: locks.Named, Name: name, Code: string(code)}
	res, err := n.replicaOfName(name).propose(ctx, &cmdpb.Command{Body: &cmdpb.Command_NamedRelease{NamedRelease: &cmdpb.NamedRelease{
		Name: name, Code: code, Expired: expired,
	}}})
	if err != nil {
		return err
	}
	n.deadlines.Remove(id)
	if res.Error == cmdpb.ErrorCode_OK && expired {
		n.metrics.lockExpired.Inc()
		n.log.Info("lock expired", "lock", name, "fence", res.Fence)
	}
	return nil
}

// Describe implements rpc/server.Backend.
func (n *Node) Describe(ctx context.Context, req *ocpb.DescribeRequest) (*ocpb.DescribeResponse, error) {
	if resp, done, err := routed[*ocpb.DescribeResponse](ctx, n, []byte(req.Name), "Describe", req); done {
		return resp, err
	}
	r := n.replicaOfName(req.Name)
	if err := r.linearizable(ctx); err != nil {
		return nil, err
	}
	out := &ocpb.DescribeResponse{}
	if req.Kind != ocpb.LockKind_RESTRICTIVE {
		rec, found, err := locks.NamedRecord(n.eng.DB(), r.bucket, req.Name)
		if err != nil {
			return nil, err
		}
		if found {
			out.Locks = append(out.Locks, n.namedInfo(req.Name, rec))
		}
	}
	if req.Kind != ocpb.LockKind_NAMED {
		rec, found, err := locks.TxnRecord(n.eng.DB(), r.bucket, req.Name)
		if err != nil {
			return nil, err
		}
		if found {
			out.Locks = append(out.Locks, n.txnInfo(req.Name, rec))
		}
	}
	if len(out.Locks) == 0 {
		return nil, fmt.Errorf("%w: no lock named %q", ErrNotFound, req.Name)
	}
	return out, nil
}

// List implements rpc/server.Backend: every bucket lists its locks on its
// leader.
func (n *Node) List(ctx context.Context, req *ocpb.ListRequest) (*ocpb.ListResponse, error) {
	out := &ocpb.ListResponse{}
	for b := range n.buckets {
		infos, err := n.bucketList(ctx, mvcc.Bucket(b), req)
		if err != nil {
			return nil, err
		}
		out.Locks = append(out.Locks, infos...)
	}
	if err := checkListSize(out.Locks); err != nil {
		return nil, err
	}
	sortLockInfos(out.Locks)
	return out, nil
}

// listHere lists the locks of a bucket this node leads.
func (n *Node) listHere(ctx context.Context, r *replica, req *ocpb.ListRequest) ([]*ocpb.LockInfo, error) {
	if err := r.linearizable(ctx); err != nil {
		return nil, err
	}
	var out []*ocpb.LockInfo
	{
		if req.Kind != ocpb.LockKind_RESTRICTIVE {
			err := mvcc.ScanRecords(n.eng.DB(), r.bucket, mvcc.KindNamedLock, []byte(req.Prefix), func(name, raw []byte) error {
				rec := &cmdpb.NamedLockRecord{}
				if err := unmarshalRecord(raw, rec); err != nil {
					return err
				}
				if rec.Held || !req.HeldOnly {
					out = append(out, n.namedInfo(string(name), rec))
				}
				return nil
			})
			if err != nil {
				return nil, err
			}
		}
		if req.Kind != ocpb.LockKind_NAMED {
			err := mvcc.ScanRecords(n.eng.DB(), r.bucket, mvcc.KindTxn, []byte(req.Prefix), func(name, raw []byte) error {
				rec := &cmdpb.TxnRecord{}
				if err := unmarshalRecord(raw, rec); err != nil {
					return err
				}
				if rec.Status == cmdpb.TxnStatus_PENDING || !req.HeldOnly {
					out = append(out, n.txnInfo(string(name), rec))
				}
				return nil
			})
			if err != nil {
				return nil, err
			}
		}
	}
	// Bounded here too: another node's List receives this over a peer
	// connection, whose message limit would fail a larger answer as a
	// transport error.
	if err := checkListSize(out); err != nil {
		return nil, err
	}
	return out, nil
}

// checkListSize fails a List answer over MaxResponseBytes: a restrictive
// lock's info lists its keys, so a few locks over many keys can outgrow a
// message the client accepts (its transport would fail with no reason).
func checkListSize(infos []*ocpb.LockInfo) error {
	if size := proto.Size(&ocpb.ListResponse{Locks: infos}); size > MaxResponseBytes {
		return fmt.Errorf("%w: the %d locks listed take %d bytes, over %d; narrow the prefix or the kind", ErrTooLarge, len(infos), size, MaxResponseBytes)
	}
	return nil
}

func sortLockInfos(infos []*ocpb.LockInfo) {
	slices.SortStableFunc(infos, func(a, b *ocpb.LockInfo) int { return strings.Compare(a.Name, b.Name) })
}

func (n *Node) namedInfo(name string, rec *cmdpb.NamedLockRecord) *ocpb.LockInfo {
	info := &ocpb.LockInfo{
		Name: name, Kind: ocpb.LockKind_NAMED, Held: rec.Held, Fence: rec.Fence,
		Waiters: int32(n.waits.Len(namedResource(name))),
	}
	if rec.Held {
		info.Owner, info.AcquiredVersion, info.Ttl = rec.Owner, rec.AcquiredTs, durationpb.New(millis(rec.TtlMs))
		if left, ok := n.deadlines.Remaining(locks.LeaseID{Kind: locks.Named, Name: name, Code: string(rec.Code)}, n.cfg.Clock.Now()); ok {
			info.ExpiresIn = durationpb.New(left)
		}
	}
	return info
}

func (n *Node) txnInfo(name string, rec *cmdpb.TxnRecord) *ocpb.LockInfo {
	info := &ocpb.LockInfo{
		Name: name, Kind: ocpb.LockKind_RESTRICTIVE, Held: rec.Status == cmdpb.TxnStatus_PENDING,
		Fence: rec.Fence, Owner: rec.Owner, AcquiredVersion: rec.StartTs, Ttl: durationpb.New(millis(rec.TtlMs)),
		Status: rec.Status.String(), Isolation: ocpb.Isolation(rec.Isolation), CommitVersion: rec.CommitTs,
		Waiters: int32(n.waits.Len(txnResource(name))),
	}
	for _, k := range rec.Keys {
		info.Keys = append(info.Keys, &ocpb.KeyLockInfo{Key: k.Key, Mode: ocpb.KeyMode(k.Mode)})
	}
	if info.Held {
		if left, ok := n.deadlines.Remaining(locks.LeaseID{Kind: locks.Restrictive, Name: name, Code: string(rec.Code)}, n.cfg.Clock.Now()); ok {
			info.ExpiresIn = durationpb.New(left)
		}
	}
	return info
}

// namedHolder tells, from this replica's applied state, who holds the
// named lock name, for an acquire with request id requestID and code:
// holderUnknown unless this replica is its group's ready leader. A grant
// being given back (giveBack) is another's: a retry must not take it back
// as it is released.
func (r *replica) namedHolder(name, requestID string, code []byte) lockHolder {
	if !r.isReadyLeader() {
		return holderUnknown
	}
	rec, found, err := locks.NamedRecord(r.node.eng.DB(), r.bucket, name)
	h := holderFrom(err, found && rec.Held, rec.GetRequestId(), rec.GetCode(), requestID, code)
	if h == holderRequest && r.node.givingBack.has(rec.GetCode()) {
		return holderOther
	}
	return h
}

// txnHolder is namedHolder for the restrictive lock name: a PENDING
// record holds it (TxnBegin refuses others until it finishes).
func (r *replica) txnHolder(name, requestID string, code []byte) lockHolder {
	if !r.isReadyLeader() {
		return holderUnknown
	}
	rec, found, err := locks.TxnRecord(r.node.eng.DB(), r.bucket, name)
	return holderFrom(err, found && rec.Status == cmdpb.TxnStatus_PENDING, rec.GetRequestId(), rec.GetCode(), requestID, code)
}

// holderFrom classifies a record's holder for a request with requestID
// and code: the request holds it if either matches (the apply path
// accepts either as a retry).
func holderFrom(err error, held bool, holderRequestID string, holderCode []byte, requestID string, code []byte) lockHolder {
	switch {
	case err != nil:
		return holderUnknown
	case !held:
		return holderNone
	case (requestID != "" && holderRequestID == requestID) || (len(code) > 0 && bytes.Equal(holderCode, code)):
		return holderRequest
	default:
		return holderOther
	}
}
