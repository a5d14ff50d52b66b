package locks

import (
	"bytes"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/opencluster/opencluster/mvcc"
	"github.com/opencluster/opencluster/mvcc/ts"
	"github.com/opencluster/opencluster/rpc/cmdpb"
)

// Effects are what an applied command changed that waiters care about. The
// leader wakes the matching wait queues; followers ignore them.
type Effects struct {
	// ReleasedNames: named locks released (or expired).
	ReleasedNames []string
	// FreedTxns: restrictive-lock names that may be taken again.
	FreedTxns []string
	// ReleasedKeys: user keys whose key locks changed (released or resolved).
	ReleasedKeys [][]byte
}

// Apply applies one bucket command to rw, which must be an indexed batch
// (later commands of the same batch read earlier ones' writes). The error
// is non-nil only for storage failures and corrupt state; refusals are
// results with an ErrorCode.
func Apply(rw mvcc.ReadWriter, b mvcc.Bucket, cmd *cmdpb.Command) (*cmdpb.Result, Effects, error) {
	return ApplyCached(rw, b, cmd, nil)
}

// ApplyCached is Apply keeping c, the bucket's cache, in step (nil: no
// cache; every plain write looks for a key lock and reads its key's newest
// version, and every lock command reads its record from the engine).
func ApplyCached(rw mvcc.ReadWriter, b mvcc.Bucket, cmd *cmdpb.Command, c *Cache) (*cmdpb.Result, Effects, error) {
	a := applier{rw: rw, b: b}
	if c != nil {
		a.kls, a.versions, a.records, a.keyRecords = &c.KeyLocks, &c.Versions, &c.Records, &c.KeyLockRecords
	}
	var res *cmdpb.Result
	var err error
	switch c := cmd.Body.(type) {
	case *cmdpb.Command_Put:
		res, err = a.dedupedWrite(c.Put.Key, c.Put.RequestId, c.Put.CheckApplied, c.Put.Ts, func() (*cmdpb.Result, error) { return a.put(c.Put) })
	case *cmdpb.Command_Cas:
		res, err = a.dedupedWrite(c.Cas.Key, c.Cas.RequestId, c.Cas.CheckApplied, c.Cas.Ts, func() (*cmdpb.Result, error) { return a.cas(c.Cas) })
	case *cmdpb.Command_NamedAcquire:
		res, err = a.namedAcquire(c.NamedAcquire)
	case *cmdpb.Command_NamedRelease:
		res, err = a.deduped(c.NamedRelease.RequestId, c.NamedRelease.CheckApplied, c.NamedRelease.Ts, func() (*cmdpb.Result, error) { return a.namedRelease(c.NamedRelease) })
	case *cmdpb.Command_TxnBegin:
		res, err = a.txnBegin(c.TxnBegin)
	case *cmdpb.Command_LockKeys:
		res, err = a.lockKeys(c.LockKeys)
	case *cmdpb.Command_TxnWrite:
		res, err = a.txnWrite(c.TxnWrite)
	case *cmdpb.Command_TxnPrepare:
		res, err = a.txnPrepare(c.TxnPrepare)
	case *cmdpb.Command_TxnFinish:
		res, err = a.txnFinish(c.TxnFinish)
	case *cmdpb.Command_ResolveKeys:
		res, err = a.resolveKeys(c.ResolveKeys)
	case *cmdpb.Command_TxnResolved:
		res, err = a.txnResolved(c.TxnResolved)
	case *cmdpb.Command_Gc:
		var n int
		n, err = mvcc.GC(rw, b, ts.Timestamp(c.Gc.Ts))
		if err == nil {
			err = a.forgetRequests(ts.Timestamp(c.Gc.Ts))
		}
		if err == nil {
			_, err = mvcc.PurgeCleared(rw, b, mvcc.KindKeyLock)
		}
		res = &cmdpb.Result{Count: int32(n)}
	case *cmdpb.Command_Noop:
		res = &cmdpb.Result{}
	default:
		return nil, Effects{}, fmt.Errorf("%w: %T", ErrUnknownCommand, cmd.Body)
	}
	return res, a.effects, err
}

type applier struct {
	rw  mvcc.ReadWriter
	b   mvcc.Bucket
	kls *KeyLocks // nil: not counted
	// versions bounds the bucket's versions (nil: no bound).
	versions *VersionBound
	// records caches the bucket's lock records, and keyRecords its key
	// locks, apart so that many keys do not push out the hot names (nil:
	// none).
	records, keyRecords *Records
	effects             Effects
}

// deduped applies a write at most once per request id: a retry of a
// write that applied (same request id, as the client reuses it on
// Unavailable) gets the first result back and writes nothing. Only
// successful writes are remembered; a refusal changed nothing, so a retry
// is simply judged again. Only a retry (check set) looks for the record:
// a first attempt cannot have one, and the lookup, a miss in every level
// of the engine, was a fifth of a node's CPU under a write load.
func (a *applier) deduped(requestID string, check bool, t uint64, apply func() (*cmdpb.Result, error)) (*cmdpb.Result, error) {
	if requestID == "" {
		return apply()
	}
	if check {
		if res, found, err := a.recordedResult(requestID); err != nil || found {
			return res, err
		}
	}
	res, err := apply()
	if err != nil || res.Error != cmdpb.ErrorCode_OK {
		return res, err
	}
	return res, mvcc.PutRecord(a.rw, a.b, mvcc.KindRequest, []byte(requestID), &cmdpb.AppliedRequest{Result: res, Ts: t})
}

// recordedResult returns the result the dedup record of requestID holds,
// if there is one.
func (a *applier) recordedResult(requestID string) (*cmdpb.Result, bool, error) {
	rec := &cmdpb.AppliedRequest{}
	found, err := mvcc.GetRecord(a.rw, a.b, mvcc.KindRequest, []byte(requestID), rec)
	if err != nil || !found {
		return nil, false, err
	}
	return rec.Result, true, nil
}

// dedupedWrite is deduped for a write whose success is a version of key
// and whose result is that version's timestamp (Put, CompareAndSwap): the
// version itself keeps the request id (mvcc.PutWrite), so a retry finds it
// there and the write needs no dedup record. A record per write was about
// a tenth of the servers' CPU under puts. A dedup record is still looked
// for, as writes applied by earlier builds have one. retryTS is the
// retry's timestamp; the oracle stamped the first attempt before it, so
// the retry reads the versions of key from retryTS down (mvcc.WrittenBy):
// on a key written very often that is the cost of recognising it.
func (a *applier) dedupedWrite(key []byte, requestID string, check bool, retryTS uint64, apply func() (*cmdpb.Result, error)) (*cmdpb.Result, error) {
	if requestID != "" && check {
		t, found, err := mvcc.WrittenBy(a.rw, a.b, key, requestID, ts.Timestamp(retryTS))
		if err != nil {
			return nil, err
		}
		if found {
			return &cmdpb.Result{Ts: uint64(t)}, nil
		}
		if res, found, err := a.recordedResult(requestID); err != nil || found {
			return res, err
		}
	}
	return apply()
}

// forgetRequests deletes the dedup records of writes older than before
// (the GC window bounds how long a retry is recognised).
func (a *applier) forgetRequests(before ts.Timestamp) error {
	var old [][]byte
	err := mvcc.ScanRecords(a.rw, a.b, mvcc.KindRequest, nil, func(name, raw []byte) error {
		rec := &cmdpb.AppliedRequest{}
		if err := proto.Unmarshal(raw, rec); err != nil {
			return err
		}
		if ts.Timestamp(rec.Ts) < before {
			old = append(old, append([]byte(nil), name...))
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, name := range old {
		if err := mvcc.DeleteRecord(a.rw, a.b, mvcc.KindRequest, name); err != nil {
			return err
		}
	}
	return nil
}

func refuse(code cmdpb.ErrorCode, format string, args ...any) *cmdpb.Result {
	return &cmdpb.Result{Error: code, Detail: fmt.Sprintf(format, args...)}
}

// keyLock returns key's lock (an empty one if none), from the bucket's
// Records when they know it.
func (a *applier) keyLock(key []byte) (*cmdpb.KeyLock, bool, error) {
	return a.lookUpKeyLock(key, true)
}

// lookUpKeyLock is keyLock; unless fill is set, a lock read from the
// engine is not remembered: a plain write looks for its key's lock, and
// writes of many keys in a bucket that holds a few key locks would fill
// the cache with "none" and push out the locks that are held.
func (a *applier) lookUpKeyLock(key []byte, fill bool) (*cmdpb.KeyLock, bool, error) {
	kl := &cmdpb.KeyLock{}
	found, err := a.lookUpRecord(mvcc.KindKeyLock, string(key), kl, fill)
	return kl, keyLockHeld(kl, found), err
}

// putKeyLock writes key's lock and remembers it.
func (a *applier) putKeyLock(key []byte, kl *cmdpb.KeyLock) error {
	return a.putRecord(mvcc.KindKeyLock, string(key), kl)
}

// clearKeyLock clears key's lock (it reads as none from then on) and
// remembers that there is none.
func (a *applier) clearKeyLock(key []byte) error {
	if err := mvcc.ClearRecord(a.rw, a.b, mvcc.KindKeyLock, key); err != nil {
		return err
	}
	if a.keyRecords != nil {
		a.keyRecords.set(mvcc.KindKeyLock, string(key), nil, false)
	}
	return nil
}

// keyLockIfAny is lookUpKeyLock, except in a bucket counted to hold no key
// lock (KeyLocks): it then skips the lookup, which misses through every
// memtable and level, and returns a nil lock, not found.
func (a *applier) keyLockIfAny(key []byte, fill bool) (*cmdpb.KeyLock, bool, error) {
	if a.kls != nil {
		if none, err := a.kls.None(a.rw, a.b); err != nil || none {
			return nil, false, err
		}
	}
	return a.lookUpKeyLock(key, fill)
}

// checkWritable enforces invariant 3 for a plain write at t, and returns
// the key's newest version if current is set (else it may skip reading
// it, when t is above the bucket's version bound).
func (a *applier) checkWritable(key []byte, t ts.Timestamp, current bool) (*cmdpb.Result, mvcc.Value, error) {
	kl, locked, err := a.keyLockIfAny(key, false)
	if err != nil || locked {
		if locked {
			res := refuse(cmdpb.ErrorCode_KEY_LOCKED, "key is locked by %q", kl.Holders[0].Name)
			res.HeldBy = kl.Holders[0].Name
			return res, mvcc.Value{}, err
		}
		return nil, mvcc.Value{}, err
	}
	if !current && a.versions.Above(t) {
		return nil, mvcc.Value{}, nil
	}
	cur, err := mvcc.Get(a.rw, a.b, key, mvcc.Latest)
	if err != nil {
		return nil, cur, err
	}
	if cur.Version >= t {
		return refuse(cmdpb.ErrorCode_STALE_TS, "timestamp %d not above newest version %d", t, cur.Version), cur, nil
	}
	return nil, cur, nil
}

func (a *applier) writeVersion(key, value []byte, tombstone bool, t ts.Timestamp, requestID string) error {
	a.versions.wrote(t)
	return mvcc.PutWrite(a.rw, a.b, key, t, value, tombstone, requestID)
}

func (a *applier) put(c *cmdpb.Put) (*cmdpb.Result, error) {
	t := ts.Timestamp(c.Ts)
	if res, _, err := a.checkWritable(c.Key, t, false); res != nil || err != nil {
		return res, err
	}
	if c.FenceName != "" {
		if res, err := a.checkFence(c.Key, c.FenceName, c.FenceToken); res != nil || err != nil {
			return res, err
		}
	}
	if err := a.writeVersion(c.Key, c.Value, c.Tombstone, t, c.RequestId); err != nil {
		return nil, err
	}
	return &cmdpb.Result{Ts: c.Ts}, nil
}

// checkFence enforces invariant 6 and records the token.
func (a *applier) checkFence(key []byte, name string, token uint64) (*cmdpb.Result, error) {
	f := &cmdpb.KeyFences{}
	if _, err := mvcc.GetRecord(a.rw, a.b, mvcc.KindFence, key, f); err != nil {
		return nil, err
	}
	for _, e := range f.Fences {
		if e.Name != name {
			continue
		}
		if token < e.Token {
			return refuse(cmdpb.ErrorCode_FENCE_TOO_LOW, "fence %d of lock %q is below %d, already accepted", token, name, e.Token), nil
		}
		e.Token = token
		return nil, mvcc.PutRecord(a.rw, a.b, mvcc.KindFence, key, f)
	}
	f.Fences = append(f.Fences, &cmdpb.FenceEntry{Name: name, Token: token})
	return nil, mvcc.PutRecord(a.rw, a.b, mvcc.KindFence, key, f)
}

func (a *applier) cas(c *cmdpb.CompareAndSwap) (*cmdpb.Result, error) {
	t := ts.Timestamp(c.Ts)
	res, cur, err := a.checkWritable(c.Key, t, true)
	if res != nil || err != nil {
		return res, err
	}
	curVersion := uint64(0)
	if cur.Found {
		curVersion = uint64(cur.Version)
	}
	if curVersion != c.ExpectedVersion {
		return &cmdpb.Result{
			Error:          cmdpb.ErrorCode_CAS_MISMATCH,
			Detail:         fmt.Sprintf("version mismatch (current %d)", curVersion),
			CurrentVersion: curVersion, CurrentValue: cur.Bytes, CurrentFound: cur.Found,
		}, nil
	}
	if err := a.writeVersion(c.Key, c.Value, c.Tombstone, t, c.RequestId); err != nil {
		return nil, err
	}
	return &cmdpb.Result{Ts: c.Ts}, nil
}

func (a *applier) namedAcquire(c *cmdpb.NamedAcquire) (*cmdpb.Result, error) {
	rec := &cmdpb.NamedLockRecord{}
	if _, err := a.getRecord(mvcc.KindNamedLock, c.Name, rec); err != nil {
		return nil, err
	}
	if rec.Held {
		if (c.RequestId != "" && rec.RequestId == c.RequestId) || bytes.Equal(rec.Code, c.Code) {
			// A retried Acquire (or a waiter that retries after a hand-off
			// whose outcome it did not learn) gets the grant it already has.
			return &cmdpb.Result{Code: rec.Code, Fence: rec.Fence, Ts: rec.AcquiredTs}, nil
		}
		return refuse(cmdpb.ErrorCode_LOCK_HELD, "lock %q is held", c.Name), nil
	}
	rec.Held = true
	rec.Code = c.Code
	rec.Fence++
	rec.Owner = c.Owner
	rec.TtlMs = c.TtlMs
	rec.AcquiredTs = c.Ts
	rec.RequestId = c.RequestId
	if err := a.putRecord(mvcc.KindNamedLock, c.Name, rec); err != nil {
		return nil, err
	}
	return &cmdpb.Result{Code: rec.Code, Fence: rec.Fence, Ts: c.Ts}, nil
}

func (a *applier) namedRelease(c *cmdpb.NamedRelease) (*cmdpb.Result, error) {
	rec := &cmdpb.NamedLockRecord{}
	found, err := a.getRecord(mvcc.KindNamedLock, c.Name, rec)
	if err != nil {
		return nil, err
	}
	switch {
	case found && rec.Held && bytes.Equal(rec.Code, c.Code):
		rec.Held = false
		rec.LastCode, rec.LastExpired = rec.Code, c.Expired
		rec.Code, rec.RequestId, rec.Owner = nil, "", ""
		if err := a.putRecord(mvcc.KindNamedLock, c.Name, rec); err != nil {
			return nil, err
		}
		a.effects.ReleasedNames = append(a.effects.ReleasedNames, c.Name)
		res := &cmdpb.Result{Fence: rec.Fence}
		if c.Handoff != nil && c.Handoff.Name == c.Name && !c.Expired {
			// The next waiter's acquire, in the same command.
			h, err := a.namedAcquire(c.Handoff)
			if err != nil {
				return nil, err
			}
			res.Handoff = h
		}
		return res, nil
	case found && !c.Expired && bytes.Equal(rec.LastCode, c.Code) && !rec.LastExpired:
		// A retried Release of a grant that was released: success again.
		return &cmdpb.Result{Fence: rec.Fence}, nil
	case found && bytes.Equal(rec.LastCode, c.Code) && rec.LastExpired:
		return refuse(cmdpb.ErrorCode_NOT_HOLDER, "lock %q expired before it was released", c.Name), nil
	default:
		return refuse(cmdpb.ErrorCode_NOT_HOLDER, "lock %q is not held with this code", c.Name), nil
	}
}
