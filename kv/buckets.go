package kv

import (
	"context"
	"fmt"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/opencluster/opencluster/locks"
	"github.com/opencluster/opencluster/mvcc"
	"github.com/opencluster/opencluster/mvcc/ts"
	"github.com/opencluster/opencluster/rpc/cmdpb"
	"github.com/opencluster/opencluster/rpc/ocpb"
)

// Bucket operations. A request is coordinated by the node that receives it
// (rpc/server forwards single-key requests to their bucket's leader first);
// every step that touches a bucket runs on that bucket's leader, here when
// this node leads it, otherwise through Remote on the leader's node. The
// leader-side halves are the Serve* methods, which rpc/peer exposes over
// gRPC and which refuse (ErrUnavailable) unless this node leads the group.

// Remote runs bucket operations on the node that leads a group. Errors
// come back as this package's errors (ErrNotHolder, ErrWaitTimeout, ...).
type Remote interface {
	// Timestamp returns the first of count consecutive fresh timestamps
	// from the meta leader's oracle.
	Timestamp(ctx context.Context, node uint64, count int) (ts.Timestamp, error)
	Propose(ctx context.Context, node uint64, req *cmdpb.BucketProposeRequest) (*cmdpb.Result, error)
	LockKeys(ctx context.Context, node uint64, req *cmdpb.BucketLockKeysRequest) (*cmdpb.BucketLockKeysResponse, error)
	// TxnLive runs ServeTxnLive on node.
	TxnLive(ctx context.Context, node uint64, req *cmdpb.BucketTxnLiveRequest) (bool, error)
	Read(ctx context.Context, node uint64, req *cmdpb.BucketReadRequest) ([]mvcc.Value, error)
	Scan(ctx context.Context, node uint64, req *cmdpb.BucketScanRequest) ([]mvcc.KV, bool, error)
	List(ctx context.Context, node uint64, req *cmdpb.BucketListRequest) ([]*ocpb.LockInfo, error)
	// Change runs a BucketChange on node (see Node.ServeBucketChange).
	Change(ctx context.Context, node uint64, req *cmdpb.BucketChangeRequest) (*cmdpb.BucketChangeResponse, error)
	// Call runs a public method on node (see Node.ServeCall), filling resp.
	Call(ctx context.Context, node uint64, method string, req, resp proto.Message) error
}

// leaderOf returns where r's operations run: 0 when this node is its ready
// leader, else the leader's node id. It waits a few election timeouts while
// no leader is known, or while this node is a leader not yet ready.
func (n *Node) leaderOf(ctx context.Context, r *replica) (uint64, error) {
	deadline := time.Now().Add(n.leaderWait())
	for {
		r.mu.Lock()
		ready, leader := r.mu.ready, r.mu.leaderID
		r.mu.Unlock()
		if !ready && !r.isMeta() {
			// A node that holds no replica of the group (never had one, or
			// its replica was moved away and still names the leader of
			// then) asks the placement table who leads it.
			if p := n.placementTable()[r.group]; p != nil && (leader == 0 || !isMember(p, n.id)) {
				leader = p.GetLeader()
			}
		}
		switch {
		case ready:
			return 0, nil
		case leader != 0 && leader != n.id && n.cfg.Remote != nil:
			return leader, nil
		case time.Now().After(deadline):
			return 0, fmt.Errorf("%w: %w: group %d has no ready leader (last seen: node %d)", ErrUnavailable, ErrNotApplied, r.group, leader)
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("%w: group %d has no ready leader: %w", ErrUnavailable, r.group, ctx.Err())
		case <-n.stopper:
			return 0, fmt.Errorf("%w: node stopping", ErrUnavailable)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// waitMillis encodes a wait bound for the wire: -1 is "until the deadline".
func waitMillis(wctx context.Context) int64 {
	if wctx.Err() != nil {
		return 0 // over already, or no wait at all (lockKeys' first pass)
	}
	if d, ok := wctx.Deadline(); ok {
		return max(time.Until(d).Milliseconds(), 0)
	}
	return -1
}

func waitFromMillis(ctx context.Context, ms int64) (context.Context, context.CancelFunc) {
	if ms < 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, time.Duration(ms)*time.Millisecond)
}

// bucketPropose replicates cmd in bucket b's group on its leader.
func (n *Node) bucketPropose(ctx context.Context, b mvcc.Bucket, cmd *cmdpb.Command) (*cmdpb.Result, error) {
	r := n.replicas[b]
	leader, err := n.leaderOf(ctx, r)
	if err != nil {
		return nil, err
	}
	if leader == 0 {
		return n.proposeLed(ctx, r, cmd)
	}
	return n.cfg.Remote.Propose(ctx, leader, &cmdpb.BucketProposeRequest{Group: r.group, Command: cmd})
}

// ServePropose is the leader's half of bucketPropose.
func (n *Node) ServePropose(ctx context.Context, req *cmdpb.BucketProposeRequest) (*cmdpb.Result, error) {
	r, err := n.servedReplica(ctx, req.GetGroup())
	if err != nil {
		return nil, err
	}
	return n.proposeLed(ctx, r, req.GetCommand())
}

// servedReplica returns the replica of a group this node leads (a bucket,
// or the meta group for proposals).
func (n *Node) servedReplica(ctx context.Context, group uint32) (*replica, error) {
	if group == metaGroup {
		if err := n.meta.waitReady(ctx); err != nil {
			return nil, err
		}
		return n.meta, nil
	}
	if int(group) >= n.buckets {
		return nil, fmt.Errorf("%w: no bucket %d", ErrInvalid, group)
	}
	r := n.replicas[group]
	if err := r.waitReady(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

// servedBucket is servedReplica for requests that read a bucket's data:
// the meta group holds no bucket's data (its replica's bucket field is
// meaningless), so it is refused rather than read as bucket 0.
func (n *Node) servedBucket(ctx context.Context, group uint32) (*replica, error) {
	if group == metaGroup {
		return nil, fmt.Errorf("%w: group %d is the meta group, not a bucket", ErrInvalid, group)
	}
	return n.servedReplica(ctx, group)
}

// bucketLockKeys takes the key locks of one bucket (keys in key order) on
// its leader, waiting in each key's queue up to wctx's deadline (not at
// all if it has passed). With read it returns the keys' committed values.
func (n *Node) bucketLockKeys(ctx, wctx context.Context, b mvcc.Bucket, name string, code []byte, iso cmdpb.Isolation, specs []*cmdpb.KeySpec, read bool) ([]*ocpb.KeyValue, error) {
	r := n.replicas[b]
	leader, err := n.leaderOf(ctx, r)
	if err != nil {
		return nil, err
	}
	if leader == 0 {
		return n.lockKeysHere(ctx, wctx, r, name, code, iso, specs, read)
	}
	resp, err := n.cfg.Remote.LockKeys(ctx, leader, &cmdpb.BucketLockKeysRequest{
		Group: r.group, Name: name, Code: code, Isolation: iso, Keys: specs, WaitMs: waitMillis(wctx), ReadValues: read,
	})
	return resp.GetValues(), err
}

// ServeLockKeys is the leader's half of bucketLockKeys.
func (n *Node) ServeLockKeys(ctx context.Context, req *cmdpb.BucketLockKeysRequest) (*cmdpb.BucketLockKeysResponse, error) {
	r, err := n.servedReplica(ctx, req.GetGroup())
	if err != nil {
		return nil, err
	}
	wctx, cancel := waitFromMillis(ctx, req.GetWaitMs())
	defer cancel()
	values, err := n.lockKeysHere(ctx, wctx, r, req.GetName(), req.GetCode(), req.GetIsolation(), req.GetKeys(), req.GetReadValues())
	if err != nil {
		return nil, err
	}
	return &cmdpb.BucketLockKeysResponse{Values: values}, nil
}

// holdsKey reports whether code holds key's lock in r's applied state. A
// Restrict retried with its request id reuses its code, and its LockKeys
// must not queue behind the waiters that wait for the keys it holds
// already: they would wait for each other until both timed out (found by
// TestTransfersAcrossLeaders with request ids).
func (n *Node) holdsKey(r *replica, key, code []byte) bool {
	held, err := locks.KeyHeldBy(n.eng.DB(), r.bucket, key, code)
	return err == nil && held
}

// keyRefuses reports whether r, the ready leader of its group, shows
// spec's key locked against code in its applied state, and by whom. A
// waiter only waits on the answer, but without a wait (noWait) the answer
// is the refusal the client gets, so it must be linearizable: it is then
// read under r's read lease, else not given (the caller proposes).
func (n *Node) keyRefuses(r *replica, spec *cmdpb.KeySpec, code []byte, noWait bool) (string, bool) {
	if r.noKeyLocks.Load() || !r.isReadyLeader() {
		return "", false // nothing to refuse with, or nothing known
	}
	var epoch uint64
	if noWait {
		var ok bool
		if epoch, ok = r.leasedApplied(); !ok {
			return "", false
		}
	}
	by, refused, err := locks.KeyRefuses(n.eng.DB(), r.bucket, spec.Key, code, spec.Mode)
	if err != nil || !refused || (noWait && !r.leaseHeld(epoch)) {
		return "", false
	}
	return by, true
}

// lockKeysHere takes key locks in one bucket this node leads, queueing
// FIFO per key while another lock holds it, and returns the keys'
// committed values if read is set. At the head of a key's queue it offers
// its LockKeys to the key's release (key_handoff.go).
func (n *Node) lockKeysHere(ctx, wctx context.Context, r *replica, name string, code []byte, iso cmdpb.Isolation, specs []*cmdpb.KeySpec, read bool) ([]*ocpb.KeyValue, error) {
	var w *locks.Waiter
	defer func() {
		if w != nil {
			w.Leave()
		}
	}()
	// waitAtHead waits for specs[i]'s release as the head of its queue,
	// offering the LockKeys of specs[i:], and returns what a release
	// carrying the offer granted, if one did: a grant of every key counts
	// even if the wait ended meanwhile.
	waitAtHead := func(i int, what string) (*cmdpb.Result, error) {
		offer := n.keyHandoffs.offer(string(specs[i].Key), &cmdpb.LockKeys{Name: name, Code: code, Isolation: iso, Keys: specs[i:]}, w)
		err := n.waitFor(wctx, w, what)
		grant := reclaim(n, &n.keyHandoffs, &offer)
		if grant != nil && grant.Error == cmdpb.ErrorCode_OK && int(grant.Count) == len(specs)-i {
			err = nil
		}
		return grant, err
	}
	var values []*ocpb.KeyValue
	var handed *cmdpb.Result // a grant a release carried
	for i := 0; i < len(specs); {
		res, wasHanded := handed, handed != nil
		handed = nil
		if !wasHanded {
			if w == nil && n.waits.Len(keyResource(specs[i].Key)) > 0 && !n.holdsKey(r, specs[i].Key, code) {
				// Others queue for the key: take a place behind them (FIFO),
				// or give up at once if no wait is asked.
				what := fmt.Sprintf("key %q has waiters", specs[i].Key)
				if wctx.Err() != nil {
					return nil, fmt.Errorf("%w: %s", ErrWaitTimeout, what)
				}
				w = n.waits.Join(keyResource(specs[i].Key))
			}
			if w != nil && !w.IsHead() {
				if err := n.waitFor(wctx, w, fmt.Sprintf("key %q is locked", specs[i].Key)); err != nil {
					return nil, err
				}
				continue
			}
			// A key the applied state shows locked against us would only be
			// refused: wait for its release without a Raft round (stale looks
			// are harmless, as in takeInTurn: the waiter joins, then looks).
			noWait := wctx.Err() != nil
			if by, refused := n.keyRefuses(r, specs[i], code, noWait); refused {
				what := fmt.Sprintf("key %q is locked by %q", specs[i].Key, by)
				if noWait {
					return nil, fmt.Errorf("%w: %s", ErrWaitTimeout, what) // no wait asked
				}
				if w == nil {
					w = n.waits.Join(keyResource(specs[i].Key))
					continue // look again once queued, so no release is missed
				}
				n.metrics.triesSkipped.Inc()
				var err error
				if handed, err = waitAtHead(i, what); err != nil {
					return nil, err
				}
				continue
			}
			var err error
			res, err = r.propose(ctx, &cmdpb.Command{Body: &cmdpb.Command_LockKeys{LockKeys: &cmdpb.LockKeys{
				Name: name, Code: code, Isolation: iso, Keys: specs[i:],
			}}})
			if err != nil {
				return nil, err
			}
		}
		if res.Count > 0 && w != nil {
			w.Leave() // got the key we queued for
			w = nil
		}
		if read && res.Count > 0 {
			v, err := n.lockedValues(r, code, specs[i:i+int(res.Count)])
			if err != nil {
				return nil, err
			}
			values = append(values, v...)
		}
		i += int(res.Count)
		switch res.Error {
		case cmdpb.ErrorCode_OK:
		case cmdpb.ErrorCode_KEY_LOCKED:
			what := fmt.Sprintf("key %q is locked by %q", specs[i].Key, res.HeldBy)
			if wctx.Err() != nil {
				return nil, fmt.Errorf("%w: %s", ErrWaitTimeout, what) // no wait asked
			}
			if w == nil {
				w = n.waits.Join(keyResource(specs[i].Key))
				continue // retry once queued, so no release is missed
			}
			if wasHanded && res.Count == 0 {
				// Refused by a command that claimed the offer but released
				// nothing (a stale refusal): look again rather than wait
				// for a release that may have woken this waiter already.
				continue
			}
			var err error
			if handed, err = waitAtHead(i, what); err != nil {
				return nil, err
			}
		default:
			return nil, resultErr(res)
		}
	}
	return values, nil
}

// lockedValues reads the committed values of specs' keys, which code has
// just locked in r's bucket, from this node's state (locks.LockedValues).
// A view that no longer shows them held means the lock was lost (or this
// replica's state replaced): the keys' values are then no longer the
// holder's to read, and the lock is reported lost.
func (n *Node) lockedValues(r *replica, code []byte, specs []*cmdpb.KeySpec) ([]*ocpb.KeyValue, error) {
	snap := n.eng.DB().NewSnapshot()
	defer snap.Close()
	values, held, err := locks.LockedValues(snap, r.bucket, code, specs)
	if err != nil {
		return nil, err
	}
	if !held {
		return nil, fmt.Errorf("%w: key locks released before their values were read", ErrAborted)
	}
	// Bounded here too: a bucket led by another node answers through a
	// peer connection, whose message limit would fail a larger answer as
	// a transport error (Unavailable, which clients retry).
	if err := checkPrefetchSize(values); err != nil {
		return nil, err
	}
	return values, nil
}

// bucketRead reads keys of bucket b on its leader: at 0 is the newest
// committed value (linearizable), otherwise the snapshot at (after the
// barrier of invariant 4). Reads wait while a lock blocks them, up to
// wctx's deadline.
func (n *Node) bucketRead(ctx, wctx context.Context, b mvcc.Bucket, keys [][]byte, at ts.Timestamp, code []byte) ([]mvcc.Value, error) {
	r := n.replicas[b]
	leader, err := n.leaderOf(ctx, r)
	if err != nil {
		return nil, err
	}
	if leader == 0 {
		return n.readHere(ctx, wctx, r, keys, at, code)
	}
	return n.cfg.Remote.Read(ctx, leader, &cmdpb.BucketReadRequest{
		Group: r.group, Keys: keys, At: uint64(at), Code: code, WaitMs: waitMillis(wctx),
	})
}

// ServeRead is the leader's half of bucketRead.
func (n *Node) ServeRead(ctx context.Context, req *cmdpb.BucketReadRequest) ([]mvcc.Value, error) {
	r, err := n.servedBucket(ctx, req.GetGroup())
	if err != nil {
		return nil, err
	}
	wctx, cancel := waitFromMillis(ctx, req.GetWaitMs())
	defer cancel()
	return n.readHere(ctx, wctx, r, req.GetKeys(), ts.Timestamp(req.GetAt()), req.GetCode())
}

func (n *Node) readHere(ctx, wctx context.Context, r *replica, keys [][]byte, at ts.Timestamp, code []byte) ([]mvcc.Value, error) {
	var out []mvcc.Value
	read := func() error {
		out = make([]mvcc.Value, 0, len(keys))
		for _, k := range keys {
			v, err := n.readKey(wctx, r, k, at, code)
			if err != nil {
				return err
			}
			out = append(out, v)
		}
		return nil
	}
	if at == 0 {
		at = mvcc.Latest
		err := r.readLinearizable(ctx, read)
		return out, err
	}
	if err := barrier(ctx, []*replica{r}, true); err != nil {
		return nil, err
	}
	return out, read()
}

// bucketScan scans bucket b at the snapshot at on its leader.
func (n *Node) bucketScan(ctx, wctx context.Context, b mvcc.Bucket, req *cmdpb.BucketScanRequest) ([]mvcc.KV, bool, error) {
	r := n.replicas[b]
	leader, err := n.leaderOf(ctx, r)
	if err != nil {
		return nil, false, err
	}
	req.Group = r.group
	if leader == 0 {
		return n.scanHere(ctx, wctx, r, req)
	}
	req.WaitMs = waitMillis(wctx)
	return n.cfg.Remote.Scan(ctx, leader, req)
}

// ServeScan is the leader's half of bucketScan.
func (n *Node) ServeScan(ctx context.Context, req *cmdpb.BucketScanRequest) ([]mvcc.KV, bool, error) {
	r, err := n.servedBucket(ctx, req.GetGroup())
	if err != nil {
		return nil, false, err
	}
	wctx, cancel := waitFromMillis(ctx, req.GetWaitMs())
	defer cancel()
	return n.scanHere(ctx, wctx, r, req)
}

func (n *Node) scanHere(ctx, wctx context.Context, r *replica, req *cmdpb.BucketScanRequest) ([]mvcc.KV, bool, error) {
	at := ts.Timestamp(req.GetAt())
	if err := barrier(ctx, []*replica{r}, true); err != nil {
		return nil, false, err
	}
	if err := n.waitScanLocks(wctx, r, req.GetPrefix(), req.GetStartAfter(), at); err != nil {
		return nil, false, err
	}
	return mvcc.Scan(n.eng.DB(), r.bucket, req.GetPrefix(), req.GetStartAfter(), at, int(req.GetLimit()), int(req.GetMaxBytes()))
}

// bucketList lists the locks of bucket b on its leader (which knows their
// deadlines and waiters).
func (n *Node) bucketList(ctx context.Context, b mvcc.Bucket, req *ocpb.ListRequest) ([]*ocpb.LockInfo, error) {
	r := n.replicas[b]
	leader, err := n.leaderOf(ctx, r)
	if err != nil {
		return nil, err
	}
	if leader == 0 {
		return n.listHere(ctx, r, req)
	}
	return n.cfg.Remote.List(ctx, leader, &cmdpb.BucketListRequest{Group: r.group, Request: req})
}

// ServeList is the leader's half of bucketList.
func (n *Node) ServeList(ctx context.Context, req *cmdpb.BucketListRequest) ([]*ocpb.LockInfo, error) {
	r, err := n.servedReplica(ctx, req.GetGroup())
	if err != nil {
		return nil, err
	}
	return n.listHere(ctx, r, req.GetRequest())
}

// ServeTimestamp is the meta leader's half of a remote oracle call: the
// first of count consecutive fresh timestamps.
func (n *Node) ServeTimestamp(ctx context.Context, count int) (ts.Timestamp, error) {
	if !n.tso.isReady() {
		return 0, fmt.Errorf("%w: %w: this node does not serve the timestamp oracle", ErrUnavailable, ErrNotApplied)
	}
	return n.tso.nowN(ctx, max(count, 1), false)
}

// isMember reports whether node holds a voter or learner in p.
func isMember(p *cmdpb.BucketPlacement, node uint64) bool {
	return slices.Contains(p.GetVoters(), node) || slices.Contains(p.GetLearners(), node)
}
