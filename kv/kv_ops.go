package kv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"
	"sync/atomic"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/opencluster/opencluster/locks"
	"github.com/opencluster/opencluster/mvcc"
	"github.com/opencluster/opencluster/mvcc/ts"
	"github.com/opencluster/opencluster/rpc/cmdpb"
	"github.com/opencluster/opencluster/rpc/ocpb"
)

// Put implements rpc/server.Backend.
func (n *Node) Put(ctx context.Context, req *ocpb.PutRequest) (*ocpb.PutResponse, error) {
	if resp, done, err := routed[*ocpb.PutResponse](ctx, n, req.Key, "Put", req); done {
		return resp, err
	}
	v, err := n.writeKey(ctx, req.Key, req.Value, false, req.Code, req.Fence, req.Wait, req.RequestId, req.Retry)
	if err != nil {
		return nil, err
	}
	return &ocpb.PutResponse{Version: v}, nil
}

// Delete implements rpc/server.Backend.
func (n *Node) Delete(ctx context.Context, req *ocpb.DeleteRequest) (*ocpb.DeleteResponse, error) {
	if resp, done, err := routed[*ocpb.DeleteResponse](ctx, n, req.Key, "Delete", req); done {
		return resp, err
	}
	v, err := n.writeKey(ctx, req.Key, nil, true, req.Code, req.Fence, req.Wait, req.RequestId, req.Retry)
	if err != nil {
		return nil, err
	}
	return &ocpb.DeleteResponse{Version: v}, nil
}

func (n *Node) writeKey(ctx context.Context, key, value []byte, tombstone bool, codeHex string, fence *ocpb.Fence, wait *durationpb.Duration, requestID string, retry bool) (uint64, error) {
	code, err := decodeCode(codeHex)
	if err != nil {
		return 0, err
	}
	r := n.replicaOf(key)
	if code != nil {
		// A provisional write under a restrictive lock: no version yet.
		res, err := r.propose(ctx, &cmdpb.Command{Body: &cmdpb.Command_TxnWrite{TxnWrite: &cmdpb.TxnWrite{
			Code: code, Key: key, Value: value, Tombstone: tombstone,
		}}})
		if err != nil {
			return 0, err
		}
		return 0, resultErr(res)
	}
	if n.fault(func(f *Faults) *atomic.Bool { return &f.NoFenceCheck }) {
		fence = nil
	}
	if fence != nil {
		if err := n.checkFenceGranted(ctx, fence); err != nil {
			return 0, err
		}
	}
	res, err := n.stampedWrite(ctx, r, key, wait, func(t ts.Timestamp) *cmdpb.Command {
		p := &cmdpb.Put{Key: key, Value: value, Tombstone: tombstone, Ts: uint64(t), RequestId: requestID, CheckApplied: retry}
		if fence != nil {
			p.FenceName, p.FenceToken = fence.Name, fence.Token
		}
		return &cmdpb.Command{Body: &cmdpb.Command_Put{Put: p}}
	})
	if err != nil {
		return 0, err
	}
	return res.Ts, resultErr(res)
}

// checkFenceGranted refuses a fence whose token its lock never granted
// (no such lock, or a token above its newest grant's). The key would take
// it, keep it as its highest (invariant 6) and refuse every real holder's
// lower token from then on: a made-up or corrupted token would lock the
// key's fenced writers out for good. The lock's record is read
// linearizably on its bucket's leader (Describe), so a token granted
// before the write began is always found; fences only grow, so the answer
// cannot go stale in the other direction.
func (n *Node) checkFenceGranted(ctx context.Context, fence *ocpb.Fence) error {
	resp, err := n.Describe(ctx, &ocpb.DescribeRequest{Name: fence.Name})
	if errors.Is(err, ErrNotFound) {
		return fmt.Errorf("%w: fence %q token %d: no lock of that name was ever granted", ErrFenceUnknown, fence.Name, fence.Token)
	}
	if err != nil {
		return err
	}
	var newest uint64
	for _, l := range resp.Locks {
		newest = max(newest, l.Fence)
	}
	if fence.Token > newest {
		return fmt.Errorf("%w: fence %q token %d is above the lock's newest grant's (%d)", ErrFenceUnknown, fence.Name, fence.Token, newest)
	}
	return nil
}

// stampedWrite proposes a timestamped write of key, re-stamping it if a
// newer version applied first (invariant 3) and waiting in the key's queue
// while a restrictive lock holds the key.
func (n *Node) stampedWrite(ctx context.Context, r *replica, key []byte, wait *durationpb.Duration, mk func(ts.Timestamp) *cmdpb.Command) (*cmdpb.Result, error) {
	if err := r.waitReady(ctx); err != nil {
		return nil, err
	}
	wctx, cancel := waitContext(ctx, wait)
	defer cancel()
	var w *locks.Waiter
	defer func() {
		if w != nil {
			w.Leave()
		}
	}()
	for {
		// The term is taken before the timestamp and the proposal is bound
		// to it: a write stamped under one leadership that reached Raft
		// under another (forwarded after this node lost the group, or
		// proposed after it won it back) could apply below a snapshot read
		// that the other leader had served meanwhile (invariant 4).
		r.gate.RLock()
		term, err := r.leaderTerm()
		if err != nil {
			r.gate.RUnlock()
			return nil, err
		}
		t, err := n.tso.now(ctx)
		if err != nil {
			r.gate.RUnlock()
			return nil, err
		}
		if k := n.cfg.Knobs; k != nil && k.AfterWriteStamped != nil {
			k.AfterWriteStamped(n.id, key, t)
		}
		p := r.enqueue(mk(t), term)
		r.gate.RUnlock()
		res, err := r.await(ctx, p)
		if err != nil {
			return nil, err
		}
		switch res.Error {
		case cmdpb.ErrorCode_STALE_TS:
			n.metrics.staleRetry.Inc()
			continue
		case cmdpb.ErrorCode_KEY_LOCKED:
			if w == nil {
				// Join, then try again: a release between the refusal and
				// the join would otherwise be missed.
				w = n.waits.Join(keyResource(key))
				continue
			}
			if err := n.waitFor(wctx, w, "key is locked by restrictive lock "+res.HeldBy); err != nil {
				return nil, err
			}
		default:
			return res, nil
		}
	}
}

// CompareAndSwap implements rpc/server.Backend.
func (n *Node) CompareAndSwap(ctx context.Context, req *ocpb.CompareAndSwapRequest) (*ocpb.CompareAndSwapResponse, error) {
	if resp, done, err := routed[*ocpb.CompareAndSwapResponse](ctx, n, req.Key, "CompareAndSwap", req); done {
		return resp, err
	}
	r := n.replicaOf(req.Key)
	res, err := n.stampedWrite(ctx, r, req.Key, req.Wait, func(t ts.Timestamp) *cmdpb.Command {
		return &cmdpb.Command{Body: &cmdpb.Command_Cas{Cas: &cmdpb.CompareAndSwap{
			Key: req.Key, Value: req.Value, Tombstone: req.Delete, Ts: uint64(t), ExpectedVersion: req.ExpectedVersion,
			RequestId: req.RequestId, CheckApplied: req.Retry,
		}}}
	})
	if err != nil {
		return nil, err
	}
	if res.Error == cmdpb.ErrorCode_CAS_MISMATCH {
		out := &ocpb.CompareAndSwapResponse{}
		if res.CurrentFound {
			out.Current = &ocpb.KeyValue{Key: req.Key, Value: res.CurrentValue, Version: res.CurrentVersion}
		}
		return out, nil
	}
	if err := resultErr(res); err != nil {
		return nil, err
	}
	return &ocpb.CompareAndSwapResponse{Succeeded: true, Version: res.Ts}, nil
}

// Get implements rpc/server.Backend.
func (n *Node) Get(ctx context.Context, req *ocpb.GetRequest) (*ocpb.GetResponse, error) {
	if resp, done, err := routed[*ocpb.GetResponse](ctx, n, req.Key, "Get", req); done {
		return resp, err
	}
	code, err := decodeCode(req.Code)
	if err != nil {
		return nil, err
	}
	r := n.replicaOf(req.Key)
	if req.Version == 0 && code == nil && n.fault(func(f *Faults) *atomic.Bool { return &f.StaleReads }) {
		v, err := n.staleRead(ctx, r, req.Key)
		if err != nil {
			return nil, err
		}
		if !v.Found {
			return nil, fmt.Errorf("%w: key %q", ErrNotFound, req.Key)
		}
		return &ocpb.GetResponse{Kv: &ocpb.KeyValue{Key: req.Key, Value: v.Bytes, Version: uint64(v.Version)}}, nil
	}
	wctx, cancel := waitContext(ctx, req.Wait)
	defer cancel()
	var v mvcc.Value
	if req.Version != 0 {
		at, err := n.snapshotTS(ctx, req.Version)
		if err != nil {
			return nil, err
		}
		if err := barrier(ctx, []*replica{r}, true); err != nil {
			return nil, err
		}
		v, err = n.readKey(wctx, r, req.Key, at, code)
	} else {
		err = r.readLinearizable(ctx, func() (err error) {
			v, err = n.readKey(wctx, r, req.Key, mvcc.Latest, code)
			return err
		})
	}
	if err != nil {
		return nil, err
	}
	if !v.Found {
		return nil, fmt.Errorf("%w: key %q", ErrNotFound, req.Key)
	}
	return &ocpb.GetResponse{Kv: &ocpb.KeyValue{Key: req.Key, Value: v.Bytes, Version: uint64(v.Version)}}, nil
}

// readKey reads a key on its leader, waiting while a lock blocks the read.
func (n *Node) readKey(ctx context.Context, r *replica, key []byte, at ts.Timestamp, code []byte) (mvcc.Value, error) {
	var w *locks.Waiter
	defer func() {
		if w != nil {
			w.Leave()
		}
	}()
	for {
		var res locks.ReadResult
		var err error
		if r.noKeyLocks.Load() {
			res, err = locks.ReadUnlocked(n.eng.DB(), r.bucket, key, at)
		} else {
			res, err = locks.Read(n.eng.DB(), r.bucket, key, at, code)
		}
		if err != nil {
			return mvcc.Value{}, err
		}
		if !res.Blocked {
			return res.Value, nil
		}
		if w == nil {
			w = n.waits.Watch(keyResource(key))
			continue // re-check after registering
		}
		if err := n.waitFor(ctx, w, "key is write-locked by "+res.BlockedBy); err != nil {
			return mvcc.Value{}, err
		}
	}
}

// snapshotTS checks a client-chosen snapshot version: not in the future
// (T4 could not hold) and not below the GC horizon of now. Every GC
// collects below the horizon of an earlier oracle timestamp, never above
// this one, so the check holds whichever node collected and whether or
// not this one has run its GC loop since it started.
func (n *Node) snapshotTS(ctx context.Context, version uint64) (ts.Timestamp, error) {
	now, err := n.tso.now(ctx)
	if err != nil {
		return 0, err
	}
	if ts.Timestamp(version) > now {
		return 0, fmt.Errorf("%w: version %d is in the future (now %d)", ErrInvalid, version, now)
	}
	if floor := n.gcHorizon(now); ts.Timestamp(version) < floor {
		return 0, fmt.Errorf("%w: version %d is older than the GC window (%v) allows: the oldest readable is %d", ErrInvalid, version, n.cfg.GCWindow, floor)
	}
	return ts.Timestamp(version), nil
}

// snapshot picks the read timestamp of a multi-key read.
func (n *Node) snapshot(ctx context.Context, version uint64) (ts.Timestamp, error) {
	if version != 0 {
		return n.snapshotTS(ctx, version)
	}
	return n.tso.now(ctx)
}

// BatchGet implements rpc/server.Backend: every bucket reads its keys at
// one snapshot on its leader.
func (n *Node) BatchGet(ctx context.Context, req *ocpb.BatchGetRequest) (*ocpb.BatchGetResponse, error) {
	at, err := n.snapshot(ctx, req.Version)
	if err != nil {
		return nil, err
	}
	order, groups := n.byBucket(req.Keys)
	here, err := n.localSnapshotBarrier(ctx, order)
	if err != nil {
		return nil, err
	}
	wctx, cancel := waitContext(ctx, req.Wait)
	defer cancel()
	values := make(map[string]mvcc.Value, len(req.Keys))
	for _, b := range order {
		var vs []mvcc.Value
		if here[b] {
			for _, k := range groups[b] {
				v, err := n.readKey(wctx, n.replicas[b], k, at, nil)
				if err != nil {
					return nil, err
				}
				vs = append(vs, v)
			}
		} else if vs, err = n.bucketRead(ctx, wctx, b, groups[b], at, nil); err != nil {
			return nil, err
		}
		for i, k := range groups[b] {
			values[string(k)] = vs[i]
		}
	}
	out := &ocpb.BatchGetResponse{Version: uint64(at)}
	size := 0
	for _, k := range req.Keys {
		v := values[string(k)]
		if size += len(k) + len(v.Bytes); size > MaxResponseBytes {
			return nil, fmt.Errorf("%w: the values of these %d keys exceed %d bytes; ask for fewer", ErrTooLarge, len(req.Keys), MaxResponseBytes)
		}
		res := &ocpb.BatchGetResult{Key: k, Found: v.Found}
		if v.Found {
			res.Value, res.Version = v.Bytes, uint64(v.Version)
		}
		out.Results = append(out.Results, res)
	}
	return out, nil
}

// localSnapshotBarrier runs the snapshot barrier (invariant 4) once for all
// the buckets among bs that this node leads, in one ReadIndex round, and
// returns them: their snapshot reads can then read the local engine.
func (n *Node) localSnapshotBarrier(ctx context.Context, bs []mvcc.Bucket) (map[mvcc.Bucket]bool, error) {
	here := make(map[mvcc.Bucket]bool)
	var rs []*replica
	for _, b := range bs {
		if r := n.replicas[b]; r.isReadyLeader() {
			here[b] = true
			rs = append(rs, r)
		}
	}
	if len(rs) == 0 {
		return here, nil
	}
	return here, barrier(ctx, rs, true)
}

// Scan implements rpc/server.Backend: every bucket is read at one snapshot
// on its leader and the results are merged in key order.
func (n *Node) Scan(ctx context.Context, req *ocpb.ScanRequest) (*ocpb.ScanResponse, error) {
	at, err := n.snapshot(ctx, req.Version)
	if err != nil {
		return nil, err
	}
	limit := int(req.Limit)
	if limit <= 0 {
		limit = 1000
	}
	wctx, cancel := waitContext(ctx, req.Wait)
	defer cancel()
	all := make([]mvcc.Bucket, n.buckets)
	for b := range all {
		all[b] = mvcc.Bucket(b)
	}
	here, err := n.localSnapshotBarrier(ctx, all)
	if err != nil {
		return nil, err
	}
	var (
		kvs []mvcc.KV
		// frontier is the smallest last key of a bucket that was cut short:
		// keys past it may be missing from other buckets' pages, so the
		// merged page must end there for a resumed scan to miss nothing.
		frontier []byte
		more     bool
	)
	for _, b := range all {
		breq := &cmdpb.BucketScanRequest{
			Prefix: req.Prefix, StartAfter: req.StartAfter, At: uint64(at), Limit: int32(limit), MaxBytes: MaxResponseBytes,
		}
		var page []mvcc.KV
		var m bool
		if here[b] {
			r := n.replicas[b]
			if err = n.waitScanLocks(wctx, r, req.Prefix, req.StartAfter, at); err == nil {
				page, m, err = mvcc.Scan(n.eng.DB(), r.bucket, req.Prefix, req.StartAfter, at, limit, MaxResponseBytes)
			}
		} else {
			page, m, err = n.bucketScan(ctx, wctx, b, breq)
		}
		if err != nil {
			return nil, err
		}
		kvs = append(kvs, page...)
		if m {
			more = true
			if last := page[len(page)-1].Key; frontier == nil || bytes.Compare(last, frontier) < 0 {
				frontier = last
			}
		}
	}
	sort.Slice(kvs, func(i, j int) bool { return bytes.Compare(kvs[i].Key, kvs[j].Key) < 0 })
	if frontier != nil {
		end := sort.Search(len(kvs), func(i int) bool { return bytes.Compare(kvs[i].Key, frontier) > 0 })
		kvs = kvs[:end]
	}
	if len(kvs) > limit {
		kvs, more = kvs[:limit], true
	}
	out := &ocpb.ScanResponse{Version: uint64(at), More: more}
	size := 0
	for i, kv := range kvs {
		if size += len(kv.Key) + len(kv.Value); size > MaxResponseBytes && i > 0 {
			out.More = true
			break
		}
		out.Kvs = append(out.Kvs, &ocpb.KeyValue{Key: kv.Key, Value: kv.Value, Version: uint64(kv.Version)})
	}
	return out, nil
}

// waitScanLocks waits while a key lock in the scanned range blocks reads at
// at (the same rule as locks.Read).
func (n *Node) waitScanLocks(ctx context.Context, r *replica, prefix, startAfter []byte, at ts.Timestamp) error {
	for {
		if r.noKeyLocks.Load() {
			return nil
		}
		var blocked []byte
		err := mvcc.ScanRecords(n.eng.DB(), r.bucket, mvcc.KindKeyLock, prefix, func(key, raw []byte) error {
			if blocked != nil || startAfter != nil && bytes.Compare(key, startAfter) <= 0 {
				return nil
			}
			kl := &cmdpb.KeyLock{}
			if err := unmarshalRecord(raw, kl); err != nil {
				return err
			}
			if _, ok := locks.BlocksReader(kl, at); ok {
				blocked = append([]byte(nil), key...)
			}
			return nil
		})
		if err != nil || blocked == nil {
			return err
		}
		if _, err := n.readKey(ctx, r, blocked, at, nil); err != nil {
			return err
		}
	}
}
