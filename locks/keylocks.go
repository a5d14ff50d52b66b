package locks

import "github.com/opencluster/opencluster/mvcc"

// KeyLocks counts a bucket's key-lock records, so that a plain write or a
// LockKeys can skip looking for one when the bucket holds none (most
// buckets, most of the time): that point read was the most expensive part
// of applying a Put. The count is the apply path's own: ApplyCached keeps it in step
// with the records it writes, and only code running where commands apply
// (the scheduler goroutine) may touch it. Anything else that rewrites a
// bucket's records (a snapshot, a wipe) calls Invalidate, and the next
// apply recounts.
type KeyLocks struct {
	// n is the count; below zero it is unknown.
	n int
}

// Invalidate marks the count unknown.
func (k *KeyLocks) Invalidate() { k.n = -1 }

// KnownNone reports whether the count is known to be zero, without
// reading anything.
func (k *KeyLocks) KnownNone() bool { return k.n == 0 }

// None reports whether bucket b of r holds no key-lock record, recounting
// first if the count is unknown.
func (k *KeyLocks) None(r mvcc.Reader, b mvcc.Bucket) (bool, error) {
	if k.n < 0 {
		n := 0
		if err := mvcc.ScanRecords(r, b, mvcc.KindKeyLock, nil, func(_, _ []byte) error { n++; return nil }); err != nil {
			return false, err
		}
		k.n = n
	}
	return k.n == 0, nil
}

// added and removed follow the creation and deletion of a record. A count
// that would go negative is a bug in the bookkeeping: it becomes unknown,
// and the next use recounts.
func (k *KeyLocks) added() {
	if k.n >= 0 {
		k.n++
	}
}

func (k *KeyLocks) removed() {
	if k.n > 0 {
		k.n--
	} else {
		k.n = -1
	}
}
