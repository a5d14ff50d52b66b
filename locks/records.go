package locks

import (
	"google.golang.org/protobuf/proto"

	"github.com/opencluster/opencluster/mvcc"
)

// Records remembers a bucket's lock records, named (n/) and restrictive
// (t/), or its key locks (k/), as the apply path last read or wrote them,
// so that applying a lock command does not read its record from the
// engine: that point read, a seek through every memtable, was a tenth of
// the servers' CPU under uncontended locks, and a transfer's LockKeys and
// ResolveKeys each read their keys' locks on every replica. It keeps each
// record's encoding (nil: known to have none) and decodes it on every
// use, so that a caller may change what it gets.
//
// Like KeyLocks it is the apply path's own, and only the scheduler
// goroutine touches it. Every write of these records goes through it
// (applier.getRecord, applier.putRecord, applier.clearKeyLock; lock
// records are never deleted, and a cleared key lock reads as none until
// a GC purges it, which changes no read), and anything else that rewrites
// a bucket's records (a snapshot, a wipe) calls Invalidate. It never
// changes a result: a record it holds is the one the engine would return.
// It holds at most recordsBudget bytes and forgets everything when full,
// as a busy bucket's hot names and keys come back at once.
type Records struct {
	m     map[recordKey][]byte
	bytes int
}

type recordKey struct {
	kind mvcc.Kind
	name string
}

// recordsBudget bounds one of a bucket's two Records (names and
// encodings): a few thousand locks' records or key locks, and 8 MiB for
// both of a node's 64 buckets.
const recordsBudget = 64 << 10

// recordMaxBytes is the largest encoding kept: a restrictive lock's record
// carries its writes until they are resolved, and a few large ones must
// not push out every other record.
const recordMaxBytes = recordsBudget / 16

// recordOverhead is what an entry costs beyond its name and encoding.
const recordOverhead = 64

// Invalidate forgets every record.
func (c *Records) Invalidate() { c.m, c.bytes = nil, 0 }

func (c *Records) get(kind mvcc.Kind, name string) (raw []byte, known bool) {
	raw, known = c.m[recordKey{kind, name}]
	return raw, known
}

// set remembers the record (kind, name): its encoding raw if found, else
// that there is none. A record larger than recordMaxBytes is forgotten
// instead, and past the budget the cache starts over.
func (c *Records) set(kind mvcc.Kind, name string, raw []byte, found bool) {
	k := recordKey{kind, name}
	if old, ok := c.m[k]; ok {
		c.bytes -= len(name) + len(old) + recordOverhead
		delete(c.m, k)
	}
	if len(raw) > recordMaxBytes {
		return
	}
	if found && raw == nil {
		raw = []byte{} // a record of default fields; nil means none
	}
	size := len(name) + len(raw) + recordOverhead
	if c.bytes+size > recordsBudget {
		c.Invalidate()
	}
	if c.m == nil {
		c.m = make(map[recordKey][]byte)
	}
	c.m[k] = raw
	c.bytes += size
}

// getRecord reads the record (kind, name) into m, from the cache when it
// knows it.
func (a *applier) getRecord(kind mvcc.Kind, name string, m proto.Message) (bool, error) {
	return a.lookUpRecord(kind, name, m, true)
}

// lookUpRecord is getRecord; unless fill is set, what it reads from the
// engine is not remembered.
func (a *applier) lookUpRecord(kind mvcc.Kind, name string, m proto.Message, fill bool) (bool, error) {
	c := a.recordsOf(kind)
	if c != nil {
		if raw, known := c.get(kind, name); known {
			return decodeRecord(a.b, kind, name, raw, raw != nil, m)
		}
	}
	raw, found, err := mvcc.GetRecordRaw(a.rw, a.b, kind, []byte(name))
	if err != nil {
		return false, err
	}
	if c != nil && fill {
		c.set(kind, name, raw, found)
	}
	return decodeRecord(a.b, kind, name, raw, found, m)
}

// decodeRecord decodes raw into m if found.
func decodeRecord(b mvcc.Bucket, kind mvcc.Kind, name string, raw []byte, found bool, m proto.Message) (bool, error) {
	if !found {
		return false, nil
	}
	if err := mvcc.UnmarshalRecord(b, kind, []byte(name), raw, m); err != nil {
		return false, err
	}
	return true, nil
}

// putRecord writes the record (kind, name) and remembers it.
func (a *applier) putRecord(kind mvcc.Kind, name string, m proto.Message) error {
	raw, err := mvcc.Marshal(m)
	if err != nil {
		return err
	}
	if err := mvcc.PutRecordRaw(a.rw, a.b, kind, []byte(name), raw); err != nil {
		return err
	}
	if c := a.recordsOf(kind); c != nil {
		c.set(kind, name, raw, true)
	}
	return nil
}

// recordsOf returns the cache of records of kind (nil: none).
func (a *applier) recordsOf(kind mvcc.Kind) *Records {
	if kind == mvcc.KindKeyLock {
		return a.keyRecords
	}
	return a.records
}
