package locks

import (
	"bytes"
	"slices"

	"github.com/opencluster/opencluster/mvcc"
	"github.com/opencluster/opencluster/mvcc/ts"
	"github.com/opencluster/opencluster/rpc/cmdpb"
)

func (a *applier) txnRecord(name string) (*cmdpb.TxnRecord, bool, error) {
	rec := &cmdpb.TxnRecord{}
	ok, err := a.getRecord(mvcc.KindTxn, name, rec)
	return rec, ok, err
}

func (a *applier) putTxnRecord(name string, rec *cmdpb.TxnRecord) error {
	return a.putRecord(mvcc.KindTxn, name, rec)
}

func (a *applier) txnBegin(c *cmdpb.TxnBegin) (*cmdpb.Result, error) {
	rec, found, err := a.txnRecord(c.Name)
	if err != nil {
		return nil, err
	}
	marked := found && markResolved(rec, c.Resolved)
	if found && rec.Status == cmdpb.TxnStatus_PENDING {
		if marked {
			if err := a.putTxnRecord(c.Name, rec); err != nil {
				return nil, err
			}
		}
		if c.RequestId != "" && rec.RequestId == c.RequestId {
			// A retry gets its first grant back, if it asks for the same
			// lock: other keys taken under the first code would be keys
			// the record does not list, whose writes no commit publishes.
			if rec.Isolation != c.Isolation || !slices.EqualFunc(rec.Keys, c.Keys, sameKeySpec) {
				return refuse(cmdpb.ErrorCode_REQUEST_REUSED, "request id %q already took restrictive lock %q over other keys or with another isolation; a retry must repeat its request", c.RequestId, c.Name), nil
			}
			return &cmdpb.Result{Code: rec.Code, Fence: rec.Fence, Ts: rec.StartTs}, nil
		}
		return refuse(cmdpb.ErrorCode_LOCK_HELD, "restrictive lock %q is held", c.Name), nil
	}
	next := &cmdpb.TxnRecord{
		Status:    cmdpb.TxnStatus_PENDING,
		Code:      c.Code,
		Fence:     rec.Fence + 1,
		Owner:     c.Owner,
		TtlMs:     c.TtlMs,
		StartTs:   c.StartTs,
		Isolation: c.Isolation,
		Keys:      c.Keys,
		RequestId: c.RequestId,
	}
	if found {
		// A finished record frees its name at once; its key locks, if not
		// all released yet, are tracked here until TxnResolved.
		next.Unresolved = rec.Unresolved
		if !rec.Resolved {
			rec.Unresolved = nil
			next.Unresolved = append(next.Unresolved, rec)
		}
	}
	if err := a.putTxnRecord(c.Name, next); err != nil {
		return nil, err
	}
	return &cmdpb.Result{Code: next.Code, Fence: next.Fence, Ts: next.StartTs}, nil
}

func sameKeySpec(a, b *cmdpb.KeySpec) bool {
	return a.Mode == b.Mode && bytes.Equal(a.Key, b.Key)
}

// FinishedTxn returns the finished record of name held with code: the
// record itself, or one of the earlier holders it tracks as unresolved.
func FinishedTxn(rec *cmdpb.TxnRecord, code []byte) (*cmdpb.TxnRecord, bool) {
	if bytes.Equal(rec.Code, code) {
		return rec, rec.Status != cmdpb.TxnStatus_PENDING
	}
	for _, u := range rec.Unresolved {
		if bytes.Equal(u.Code, code) {
			return u, true
		}
	}
	return nil, false
}

func holderIndex(kl *cmdpb.KeyLock, code []byte) int {
	for i, h := range kl.Holders {
		if bytes.Equal(h.Code, code) {
			return i
		}
	}
	return -1
}

func (a *applier) lockKeys(c *cmdpb.LockKeys) (*cmdpb.Result, error) {
	res := &cmdpb.Result{Count: int32(len(c.Keys))}
	for i, k := range c.Keys {
		kl, _, err := a.keyLockIfAny(k.Key, true)
		if err != nil {
			return nil, err
		}
		if kl == nil {
			kl = &cmdpb.KeyLock{} // the bucket holds none
		}
		if holderIndex(kl, c.Code) < 0 { // else a retry: already ours
			if !compatible(kl, k.Mode) {
				res.Error, res.Detail, res.Count, res.HeldBy = cmdpb.ErrorCode_KEY_LOCKED, "key is locked by "+kl.Holders[0].Name, int32(i), kl.Holders[0].Name
				return res, nil
			}
			if len(kl.Holders) == 0 && a.kls != nil {
				a.kls.added() // a new record
			}
			kl.Holders = append(kl.Holders, &cmdpb.KeyLockHolder{
				Name: c.Name, Code: c.Code, Mode: k.Mode, Isolation: c.Isolation,
			})
			if err := a.putKeyLock(k.Key, kl); err != nil {
				return nil, err
			}
		}
	}
	return res, nil
}

// compatible reports whether a key lock can take a new holder in mode
// (invariant 2: READ shares with READ; WRITE is exclusive).
func compatible(kl *cmdpb.KeyLock, mode cmdpb.KeyMode) bool {
	if len(kl.Holders) == 0 {
		return true
	}
	if mode != cmdpb.KeyMode_READ {
		return false
	}
	for _, h := range kl.Holders {
		if h.Mode != cmdpb.KeyMode_READ {
			return false
		}
	}
	return true
}

func (a *applier) txnWrite(c *cmdpb.TxnWrite) (*cmdpb.Result, error) {
	kl, _, err := a.keyLock(c.Key)
	if err != nil {
		return nil, err
	}
	if res := writable(kl, c.Code); res != nil {
		return res, nil
	}
	if kl.MinCommitTs != 0 {
		return refuse(cmdpb.ErrorCode_NOT_WRITE_LOCKED, "the lock is committing; no more writes"), nil
	}
	setProvisional(kl, c.Value, c.Tombstone)
	if err := a.putKeyLock(c.Key, kl); err != nil {
		return nil, err
	}
	return &cmdpb.Result{}, nil
}

// writable returns nil if code holds kl WRITE, else the refusal.
func writable(kl *cmdpb.KeyLock, code []byte) *cmdpb.Result {
	i := holderIndex(kl, code)
	switch {
	case i < 0:
		return refuse(cmdpb.ErrorCode_NOT_HOLDER, "key is not locked with this code (lock lost, or key not in the lock)")
	case kl.Holders[i].Mode != cmdpb.KeyMode_WRITE:
		return refuse(cmdpb.ErrorCode_NOT_WRITE_LOCKED, "key is locked READ by this code; only WRITE keys can be written")
	}
	return nil
}

// setProvisional sets the key lock's provisional value.
func setProvisional(kl *cmdpb.KeyLock, value []byte, tombstone bool) {
	kl.HasValue, kl.Value, kl.Tombstone = true, value, tombstone
	if tombstone {
		kl.Value = nil
	}
}

func (a *applier) txnPrepare(c *cmdpb.TxnPrepare) (*cmdpb.Result, error) {
	// The writes the client buffered until Commit. A retried Commit
	// repeats them, so a key already stamped by this code's first prepare
	// takes its (same) value again: the record is still PENDING, so no
	// one has seen it.
	for _, w := range c.Writes {
		kl, _, err := a.keyLock(w.Key)
		if err != nil {
			return nil, err
		}
		if res := writable(kl, c.Code); res != nil {
			return res, nil
		}
		setProvisional(kl, w.Value, w.Tombstone)
		if err := a.putKeyLock(w.Key, kl); err != nil {
			return nil, err
		}
	}
	for _, key := range c.Keys {
		kl, _, err := a.keyLock(key)
		if err != nil {
			return nil, err
		}
		if holderIndex(kl, c.Code) < 0 {
			return refuse(cmdpb.ErrorCode_NOT_HOLDER, "key lock lost before commit"), nil
		}
		// Every WRITE key is stamped, written or not: the stamp is also
		// what refuses a provisional write from now on (txnWrite). One
		// that arrived late (a client's Put whose answer was lost, or
		// that Raft carried across a leadership change) would otherwise
		// be published at the commit timestamp, after the commit was
		// answered and after readers above that timestamp found the key
		// unlocked (BlocksReader skips a stamped key with no value).
		if kl.MinCommitTs >= c.MinCommitTs {
			continue
		}
		kl.MinCommitTs = c.MinCommitTs
		if err := a.putKeyLock(key, kl); err != nil {
			return nil, err
		}
	}
	return &cmdpb.Result{Count: int32(len(c.Keys))}, nil
}

func (a *applier) txnFinish(c *cmdpb.TxnFinish) (*cmdpb.Result, error) {
	rec, found, err := a.txnRecord(c.Name)
	if err != nil {
		return nil, err
	}
	if !found {
		// Invariant 5: never create a missing record.
		return refuse(cmdpb.ErrorCode_NOT_HOLDER, "restrictive lock %q is not held with this code", c.Name), nil
	}
	if markResolved(rec, c.Resolved) && (rec.Status != cmdpb.TxnStatus_PENDING || !bytes.Equal(rec.Code, c.Code)) {
		// Kept even though this command changes nothing else.
		if err := a.putTxnRecord(c.Name, rec); err != nil {
			return nil, err
		}
	}
	if !bytes.Equal(rec.Code, c.Code) {
		return refuse(cmdpb.ErrorCode_NOT_HOLDER, "restrictive lock %q is not held with this code", c.Name), nil
	}
	switch rec.Status {
	case cmdpb.TxnStatus_PENDING:
		rec.Status = c.Status
		rec.Expired = c.Expired
		if c.Status == cmdpb.TxnStatus_COMMITTED {
			rec.CommitTs = c.CommitTs
			rec.Writes = c.Writes
		}
		if err := a.putTxnRecord(c.Name, rec); err != nil {
			return nil, err
		}
		// The outcome is decided: the name is free (TxnBegin keeps the
		// record until its keys are resolved).
		a.effects.FreedTxns = append(a.effects.FreedTxns, c.Name)
		return &cmdpb.Result{Ts: rec.CommitTs}, nil
	case cmdpb.TxnStatus_COMMITTED:
		if c.Status == cmdpb.TxnStatus_COMMITTED {
			return &cmdpb.Result{Ts: rec.CommitTs}, nil // a retried commit
		}
		return refuse(cmdpb.ErrorCode_NOT_HOLDER, "restrictive lock %q already committed", c.Name), nil
	default: // ABORTED
		if c.Status == cmdpb.TxnStatus_ABORTED {
			return &cmdpb.Result{}, nil
		}
		detail := "aborted"
		if rec.Expired {
			detail = "expired"
		}
		return refuse(cmdpb.ErrorCode_TXN_ABORTED, "restrictive lock %q %s: writes discarded", c.Name, detail), nil
	}
}

func (a *applier) resolveKeys(c *cmdpb.ResolveKeys) (*cmdpb.Result, error) {
	var writes map[string]*cmdpb.TxnWrite
	if c.Commit && len(c.Writes) > 0 {
		writes = make(map[string]*cmdpb.TxnWrite, len(c.Writes))
		for _, w := range c.Writes {
			writes[string(w.Key)] = w
		}
	}
	n := 0
	for _, key := range c.Keys {
		kl, _, err := a.keyLock(key)
		if err != nil {
			return nil, err
		}
		i := holderIndex(kl, c.Code)
		if i < 0 {
			continue // resolved already
		}
		if c.Commit && kl.Holders[i].Mode == cmdpb.KeyMode_WRITE {
			// Invariant 4: only a committed record's values become versions.
			// The record's own writes take the place of provisional ones.
			value, tombstone, has := kl.Value, kl.Tombstone, kl.HasValue
			if w, ok := writes[string(key)]; ok {
				value, tombstone, has = w.Value, w.Tombstone, true
			}
			if has {
				if err := a.writeVersion(key, value, tombstone, ts.Timestamp(c.CommitTs), ""); err != nil {
					return nil, err
				}
			}
		}
		kl.Holders = append(kl.Holders[:i], kl.Holders[i+1:]...)
		if len(kl.Holders) == 0 {
			err = a.clearKeyLock(key)
			if a.kls != nil {
				a.kls.removed()
			}
		} else {
			kl.HasValue, kl.Value, kl.Tombstone, kl.MinCommitTs = false, nil, false, 0
			err = a.putKeyLock(key, kl)
		}
		if err != nil {
			return nil, err
		}
		a.effects.ReleasedKeys = append(a.effects.ReleasedKeys, key)
		n++
	}
	res := &cmdpb.Result{Count: int32(n)}
	// The head waiters' LockKeys, offered on the leader, apply after the
	// release, as their own commands would in the next round. Each is
	// judged on the state as it finds it: one whose key another handoff
	// took first, or that was not released (a repeated resolution), is
	// refused or takes a prefix, exactly as LockKeys would.
	for _, h := range c.Handoffs {
		hres, err := a.lockKeys(h)
		if err != nil {
			return nil, err
		}
		res.KeyHandoffs = append(res.KeyHandoffs, hres)
	}
	return res, nil
}

// markResolved applies the codes of a command's resolved list to rec, the
// name's record, as TxnResolved would apply each: an earlier holder
// leaves Unresolved; the record itself, if finished, becomes resolved and
// drops its writes (applied by then). It reports whether rec changed.
func markResolved(rec *cmdpb.TxnRecord, codes [][]byte) bool {
	changed := false
	for _, code := range codes {
		if i := slices.IndexFunc(rec.Unresolved, func(u *cmdpb.TxnRecord) bool { return bytes.Equal(u.Code, code) }); i >= 0 {
			rec.Unresolved = slices.Delete(rec.Unresolved, i, i+1)
			changed = true
		} else if bytes.Equal(rec.Code, code) && rec.Status != cmdpb.TxnStatus_PENDING && !rec.Resolved {
			rec.Resolved, rec.Writes = true, nil
			changed = true
		}
	}
	return changed
}

func (a *applier) txnResolved(c *cmdpb.TxnResolved) (*cmdpb.Result, error) {
	rec, found, err := a.txnRecord(c.Name)
	if err != nil {
		return nil, err
	}
	var done *cmdpb.TxnRecord
	if found {
		done, found = FinishedTxn(rec, c.Code)
	}
	if !found {
		return refuse(cmdpb.ErrorCode_NOT_HOLDER, "restrictive lock %q is not finished with this code", c.Name), nil
	}
	if markResolved(rec, [][]byte{c.Code}) {
		if err := a.putTxnRecord(c.Name, rec); err != nil {
			return nil, err
		}
	}
	return &cmdpb.Result{Ts: done.CommitTs}, nil
}
