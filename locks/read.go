package locks

import (
	"bytes"

	"github.com/opencluster/opencluster/mvcc"
	"github.com/opencluster/opencluster/mvcc/ts"
	"github.com/opencluster/opencluster/rpc/cmdpb"
	"github.com/opencluster/opencluster/rpc/ocpb"
)

// ReadResult is the outcome of reading a key while respecting key locks.
type ReadResult struct {
	Value mvcc.Value
	// Blocked is set when the reader must wait for the key lock to change
	// (and then read again): a strict WRITE lock held by someone else, or a
	// snapshot WRITE lock being committed at or below the read timestamp.
	Blocked bool
	// BlockedBy names the restrictive lock the reader waits for.
	BlockedBy string
}

// Read reads key of bucket b at timestamp at (mvcc.Latest for the newest
// value) on behalf of a reader holding code (nil for none):
//
//   - the WRITE holder reads its own provisional value, if it wrote one;
//   - others are blocked by a strict WRITE lock;
//   - others read the last committed value under a snapshot WRITE lock,
//     unless the lock is prepared with min_commit_ts <= at: then the commit
//     may land at or below at, so the reader waits for it (T4);
//   - READ locks never block readers.
func Read(r mvcc.Reader, b mvcc.Bucket, key []byte, at ts.Timestamp, code []byte) (ReadResult, error) {
	kl := &cmdpb.KeyLock{}
	found, err := mvcc.GetRecord(r, b, mvcc.KindKeyLock, key, kl)
	if err != nil {
		return ReadResult{}, err
	}
	if found {
		if i := holderIndex(kl, code); i >= 0 && code != nil {
			if kl.Holders[i].Mode == cmdpb.KeyMode_WRITE && kl.HasValue {
				if kl.Tombstone {
					return ReadResult{}, nil
				}
				return ReadResult{Value: mvcc.Value{Bytes: kl.Value, Found: true}}, nil
			}
		} else if by, blocked := BlocksReader(kl, at); blocked {
			return ReadResult{Blocked: true, BlockedBy: by}, nil
		}
	}
	v, err := mvcc.Get(r, b, key, at)
	return ReadResult{Value: v}, err
}

// ReadUnlocked is Read of a bucket that holds no key lock: it skips the
// look for one, which costs as much as the read itself (a point lookup
// that misses goes through every level's filter).
func ReadUnlocked(r mvcc.Reader, b mvcc.Bucket, key []byte, at ts.Timestamp) (ReadResult, error) {
	v, err := mvcc.Get(r, b, key, at)
	return ReadResult{Value: v}, err
}

// BlocksReader reports whether key lock kl makes a reader that does not
// hold it wait before reading at at, and which lock it waits for: a strict
// WRITE lock always does; a snapshot WRITE lock does once it is prepared at
// or below at with a value to publish (a key prepared without one only
// refuses further writes: its resolution publishes nothing); READ locks
// never do.
func BlocksReader(kl *cmdpb.KeyLock, at ts.Timestamp) (string, bool) {
	if len(kl.Holders) == 0 || kl.Holders[0].Mode != cmdpb.KeyMode_WRITE {
		return "", false
	}
	w := kl.Holders[0]
	if w.Isolation == cmdpb.Isolation_STRICT || (kl.MinCommitTs != 0 && kl.HasValue && ts.Timestamp(kl.MinCommitTs) <= at) {
		return w.Name, true
	}
	return "", false
}

// KeyLockOf returns the key lock of key, if any.
func KeyLockOf(r mvcc.Reader, b mvcc.Bucket, key []byte) (*cmdpb.KeyLock, bool, error) {
	kl := &cmdpb.KeyLock{}
	found, err := mvcc.GetRecord(r, b, mvcc.KindKeyLock, key, kl)
	return kl, keyLockHeld(kl, found), err
}

// keyLockHeld reports whether a key lock read as kl (found or not) has a holder.
func keyLockHeld(kl *cmdpb.KeyLock, found bool) bool { return found && len(kl.Holders) > 0 }

// LockedValues returns the newest committed value of each of keys that
// exists, in order, once code has locked them in bucket b. A key held
// cannot change until it is released (a writer that held it resolved
// before leaving), so the leader reads them once, after the LockKeys
// applied, rather than every replica as it applies. held is false (and
// values nil) if r does not show every key held by code: the lock was
// lost, or r is no longer the state it was taken in. r must be one
// consistent view (a snapshot), so that the values go with the locks it
// shows.
func LockedValues(r mvcc.Reader, b mvcc.Bucket, code []byte, keys []*cmdpb.KeySpec) (values []*ocpb.KeyValue, held bool, err error) {
	for _, k := range keys {
		held, err := KeyHeldBy(r, b, k.Key, code)
		if err != nil || !held {
			return nil, false, err
		}
		v, err := mvcc.Get(r, b, k.Key, mvcc.Latest)
		if err != nil {
			return nil, false, err
		}
		if v.Found {
			values = append(values, &ocpb.KeyValue{Key: k.Key, Value: v.Bytes, Version: uint64(v.Version)})
		}
	}
	return values, true, nil
}

// KeyHeldBy reports whether code holds key's lock.
func KeyHeldBy(r mvcc.Reader, b mvcc.Bucket, key, code []byte) (bool, error) {
	kl, found, err := KeyLockOf(r, b, key)
	return found && holderIndex(kl, code) >= 0, err
}

// KeyRefuses reports whether a LockKeys by code of key in mode would be
// refused now (another holds it in a conflicting mode), and by whom.
func KeyRefuses(r mvcc.Reader, b mvcc.Bucket, key, code []byte, mode cmdpb.KeyMode) (string, bool, error) {
	kl, found, err := KeyLockOf(r, b, key)
	if err != nil || !found || holderIndex(kl, code) >= 0 || compatible(kl, mode) {
		return "", false, err
	}
	return kl.Holders[0].Name, true, nil
}

// NamedRecord returns the named-lock record of name.
func NamedRecord(r mvcc.Reader, b mvcc.Bucket, name string) (*cmdpb.NamedLockRecord, bool, error) {
	rec := &cmdpb.NamedLockRecord{}
	found, err := mvcc.GetRecord(r, b, mvcc.KindNamedLock, []byte(name), rec)
	return rec, found, err
}

// TxnRecord returns the restrictive-lock record of name.
func TxnRecord(r mvcc.Reader, b mvcc.Bucket, name string) (*cmdpb.TxnRecord, bool, error) {
	rec := &cmdpb.TxnRecord{}
	found, err := mvcc.GetRecord(r, b, mvcc.KindTxn, []byte(name), rec)
	return rec, found, err
}

// TracksKeyLocks reports whether rec, the record of a restrictive lock's
// name, still accounts for key locks held with code: it is PENDING with
// code, or it finished with code (itself, or an earlier holder in its
// unresolved list) and is not yet known resolved. A key lock whose holder
// it does not track can only be an orphan: a LockKeys that applied after
// the holder's keys were resolved (its coordinator had given up on it).
// Nothing else will release such a lock, and no command can make the
// record track it again, because codes are never reused.
func TracksKeyLocks(rec *cmdpb.TxnRecord, code []byte) bool {
	done, finished := FinishedTxn(rec, code)
	if bytes.Equal(rec.Code, code) {
		return !finished || !done.Resolved
	}
	return finished // an earlier holder still in Unresolved
}
