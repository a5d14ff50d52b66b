package mvcc

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/protobuf/proto"

	"github.com/opencluster/opencluster/mvcc/ts"
)

// Stored version values start with a tag byte, so an empty value and a
// tombstone differ. A version written by a request with an id carries the
// id after its tag (uvarint length, then the id), so that a retry of the
// request finds the version (WrittenBy) and the write needs no record of
// its own.
const (
	tagValue              = 'v' // 'v' value
	tagTombstone          = 'x' // 'x'
	tagValueOfRequest     = 'w' // 'w' len(id) id value
	tagTombstoneOfRequest = 'y' // 'y' len(id) id
)

// Value is the result of reading a key at a timestamp.
type Value struct {
	// Bytes is the value; nil when !Found.
	Bytes []byte
	// Version is the timestamp of the version read: of the value, or of the
	// tombstone that deleted the key (0 when the key never existed).
	Version ts.Timestamp
	// Found is false for a missing or deleted key.
	Found bool
}

// KV is a key and its value as read by Scan.
type KV struct {
	Key     []byte
	Value   []byte
	Version ts.Timestamp
}

// Latest reads at every timestamp: Get(r, b, k, Latest).
const Latest = ts.Timestamp(math.MaxUint64)

// Get returns the newest version of key at or below at (invariant 2).
func Get(r Reader, b Bucket, key []byte, at ts.Timestamp) (Value, error) {
	it, err := r.NewIter(nil)
	if err != nil {
		return Value{}, err
	}
	defer it.Close()
	// A prefix seek stays within key's versions and lets Pebble skip
	// sstables whose bloom filter rules the key out.
	if !it.SeekPrefixGE(VersionKey(b, key, at)) {
		return Value{}, it.Error()
	}
	_, k, version, err := DecodeVersionKey(it.Key())
	if err != nil {
		return Value{}, err
	}
	if !bytes.Equal(k, key) {
		return Value{}, fmt.Errorf("%w: prefix seek for %q landed on %q", ErrBadKey, key, k)
	}
	return decodeValue(it.Value(), version)
}

func decodeValue(raw []byte, version ts.Timestamp) (Value, error) {
	value, tombstone, _, err := splitValue(raw)
	if err != nil {
		return Value{}, err
	}
	if tombstone {
		return Value{Version: version}, nil
	}
	return Value{Bytes: append([]byte{}, value...), Version: version, Found: true}, nil
}

// splitValue decodes a stored version value into the value, whether it is
// a tombstone, and the id of the request that wrote it (nil if none was
// kept); value and id alias raw, so reads allocate nothing for the id.
func splitValue(raw []byte) (value []byte, tombstone bool, requestID []byte, err error) {
	if len(raw) == 0 {
		return nil, false, nil, fmt.Errorf("%w: empty version value", ErrBadValue)
	}
	tag, rest := raw[0], raw[1:]
	switch tag {
	case tagValue:
		return rest, false, nil, nil
	case tagTombstone:
		return nil, true, nil, nil
	case tagValueOfRequest, tagTombstoneOfRequest:
		n, w := binary.Uvarint(rest)
		if w <= 0 || n > uint64(len(rest)-w) {
			return nil, false, nil, fmt.Errorf("%w: request id of %d bytes in a %d-byte value", ErrBadValue, n, len(raw))
		}
		id, rest := rest[w:w+int(n)], rest[w+int(n):]
		if tag == tagTombstoneOfRequest {
			if len(rest) != 0 {
				return nil, false, nil, fmt.Errorf("%w: %d bytes after a tombstone", ErrBadValue, len(rest))
			}
			return nil, true, id, nil
		}
		return rest, false, id, nil
	default:
		return nil, false, nil, fmt.Errorf("%w: tag %q", ErrBadValue, tag)
	}
}

// PutVersion writes key's version at t.
func PutVersion(w Writer, b Bucket, key []byte, t ts.Timestamp, value []byte) error {
	return PutWrite(w, b, key, t, value, false, "")
}

// PutTombstone writes a deletion of key at t.
func PutTombstone(w Writer, b Bucket, key []byte, t ts.Timestamp) error {
	return PutWrite(w, b, key, t, nil, true, "")
}

// PutWrite writes key's version at t, value or a tombstone, as the write of
// request requestID: a retry of that request finds the version by its id
// (WrittenBy) for as long as the version is kept. An empty requestID keeps
// no id.
func PutWrite(w Writer, b Bucket, key []byte, t ts.Timestamp, value []byte, tombstone bool, requestID string) error {
	tag := byte(tagValue)
	switch {
	case tombstone && requestID == "":
		tag = tagTombstone
	case tombstone:
		tag = tagTombstoneOfRequest
	case requestID != "":
		tag = tagValueOfRequest
	}
	if tombstone {
		value = nil
	}
	size := 1 + len(value)
	if requestID != "" {
		size += binary.MaxVarintLen64 + len(requestID)
	}
	v := append(make([]byte, 0, size), tag)
	if requestID != "" {
		v = binary.AppendUvarint(v, uint64(len(requestID)))
		v = append(v, requestID...)
	}
	v = append(v, value...)
	return w.Set(VersionKey(b, key, t), v, nil)
}

// WrittenBy returns the version of key at or below at that request
// requestID wrote, if a version still kept carries that id (PutWrite). A
// retry passes its own timestamp as at: the first attempt was stamped
// before it. It reads every such version of key, newest first, so its cost
// grows with the key's versions in the GC window: it is for retries, which
// are rare, where a dedup record per write cost every write.
func WrittenBy(r Reader, b Bucket, key []byte, requestID string, at ts.Timestamp) (ts.Timestamp, bool, error) {
	if requestID == "" {
		return 0, false, nil
	}
	it, err := r.NewIter(nil)
	if err != nil {
		return 0, false, err
	}
	defer it.Close()
	for valid := it.SeekPrefixGE(VersionKey(b, key, at)); valid; valid = it.Next() {
		_, k, version, err := DecodeVersionKey(it.Key())
		if err != nil {
			return 0, false, err
		}
		if !bytes.Equal(k, key) {
			break
		}
		if _, _, id, err := splitValue(it.Value()); err != nil {
			return 0, false, err
		} else if string(id) == requestID { // compared without allocating
			return version, true, nil
		}
	}
	return 0, false, it.Error()
}

// Scan returns up to limit keys of bucket b that start with prefix and sort
// after startAfter (if set), each at its newest version <= at, skipping
// deleted keys. With maxBytes > 0 it also stops before a key that would
// take the keys' and values' total past maxBytes, though it always returns
// at least one. more reports that a bound cut the result.
func Scan(r Reader, b Bucket, prefix, startAfter []byte, at ts.Timestamp, limit, maxBytes int) (kvs []KV, more bool, err error) {
	size := 0
	lower, upper := kindSpan(b, KindData, prefix)
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return nil, false, err
	}
	defer it.Close()
	valid := it.First()
	if startAfter != nil {
		// The smallest key after startAfter is startAfter+0x00.
		valid = it.SeekGE(VersionKey(b, append(append([]byte{}, startAfter...), 0), at))
	}
	for valid {
		_, key, version, err := DecodeVersionKey(it.Key())
		if err != nil {
			return nil, false, err
		}
		if version > at {
			valid = it.SeekGE(VersionKey(b, key, at))
			continue
		}
		v, err := decodeValue(it.Value(), version)
		if err != nil {
			return nil, false, err
		}
		if v.Found {
			size += len(key) + len(v.Bytes)
			if len(kvs) == limit || maxBytes > 0 && size > maxBytes && len(kvs) > 0 {
				return kvs, true, it.Error()
			}
			kvs = append(kvs, KV{Key: append([]byte{}, key...), Value: v.Bytes, Version: version})
		}
		valid = it.NextPrefix()
	}
	return kvs, false, it.Error()
}

// GC deletes the versions of bucket b that no read at a timestamp >= before
// can see (invariant 4) and returns how many it deleted.
func GC(rw ReadWriter, b Bucket, before ts.Timestamp) (int, error) {
	lower, upper := kindSpan(b, KindData, nil)
	it, err := rw.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return 0, err
	}
	defer it.Close()
	var (
		deleted  int
		curKey   []byte
		keptBase bool // curKey's newest version <= before has been seen
	)
	var toDelete [][]byte
	for valid := it.First(); valid; valid = it.Next() {
		_, key, version, err := DecodeVersionKey(it.Key())
		if err != nil {
			return 0, err
		}
		if !bytes.Equal(key, curKey) {
			curKey, keptBase = append(curKey[:0], key...), false
		}
		if version > before {
			continue
		}
		if !keptBase {
			keptBase = true
			_, tombstone, _, err := splitValue(it.Value())
			if err != nil {
				return 0, err
			}
			if !tombstone {
				continue // the newest version at or below before stays
			}
		}
		toDelete = append(toDelete, append([]byte(nil), it.Key()...))
	}
	if err := it.Error(); err != nil {
		return 0, err
	}
	for _, k := range toDelete {
		if err := rw.Delete(k, nil); err != nil {
			return deleted, err
		}
		deleted++
	}
	return deleted, nil
}

var marshalOpts = proto.MarshalOptions{Deterministic: true}

// Marshal encodes a record deterministically (invariant 3).
func Marshal(m proto.Message) ([]byte, error) { return marshalOpts.Marshal(m) }

// GetRecord reads the record (kind, name) of bucket b into m. A cleared
// record is not found.
func GetRecord(r Reader, b Bucket, kind Kind, name []byte, m proto.Message) (bool, error) {
	raw, ok, err := GetRecordRaw(r, b, kind, name)
	if err != nil || !ok {
		return false, err
	}
	if err := UnmarshalRecord(b, kind, name, raw, m); err != nil {
		return false, err
	}
	return true, nil
}

// GetRecordRaw is GetRecord without the decoding: it returns a copy of the
// record's encoding.
func GetRecordRaw(r Reader, b Bucket, kind Kind, name []byte) ([]byte, bool, error) {
	raw, ok, err := getRaw(r, RecordKey(b, kind, name))
	if err != nil || !ok || isCleared(raw) {
		return nil, false, err
	}
	return raw, true, nil
}

// UnmarshalRecord decodes raw, the encoding of record (kind, name) of
// bucket b, into m.
func UnmarshalRecord(b Bucket, kind Kind, name, raw []byte, m proto.Message) error {
	if err := proto.Unmarshal(raw, m); err != nil {
		return fmt.Errorf("%w: %x: %w", ErrBadValue, RecordKey(b, kind, name), err)
	}
	return nil
}

// clearedRecord is the value of a cleared record. No protobuf encoding
// starts with a zero byte (field number 0 is invalid), so it is never
// taken for a record.
var clearedRecord = []byte{0}

func isCleared(raw []byte) bool { return len(raw) == 1 && raw[0] == 0 }

// ClearRecord removes the record (kind, name) of bucket b by overwriting
// it with a marker that GetRecord and ScanRecords skip, where
// DeleteRecord would write a Pebble tombstone. It is for records whose
// names are taken and freed over and over (key locks): a point read of a
// deleted key steps over every older entry of that key still in the
// memtable, one by one, which for a hot lock is thousands of entries per
// read (14% of a cluster's CPU under transfers), while a marker is the
// newest entry and found first. PurgeCleared deletes the markers, which
// GC does now and then.
func ClearRecord(w Writer, b Bucket, kind Kind, name []byte) error {
	return w.Set(RecordKey(b, kind, name), clearedRecord, nil)
}

// PurgeCleared deletes the cleared records of kind in bucket b and returns
// how many it deleted.
func PurgeCleared(rw ReadWriter, b Bucket, kind Kind) (int, error) {
	lower, upper := kindSpan(b, kind, nil)
	it, err := rw.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return 0, err
	}
	var cleared [][]byte
	for valid := it.First(); valid; valid = it.Next() {
		if isCleared(it.Value()) {
			cleared = append(cleared, append([]byte(nil), it.Key()...))
		}
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return 0, err
	}
	for i, k := range cleared {
		if err := rw.Delete(k, nil); err != nil {
			return i, err
		}
	}
	return len(cleared), nil
}

// PutRecord writes the record (kind, name) of bucket b.
func PutRecord(w Writer, b Bucket, kind Kind, name []byte, m proto.Message) error {
	return putProto(w, RecordKey(b, kind, name), m)
}

// PutRecordRaw is PutRecord of a record already encoded (Marshal).
func PutRecordRaw(w Writer, b Bucket, kind Kind, name, raw []byte) error {
	return w.Set(RecordKey(b, kind, name), raw, nil)
}

// DeleteRecord deletes the record (kind, name) of bucket b.
func DeleteRecord(w Writer, b Bucket, kind Kind, name []byte) error {
	return w.Delete(RecordKey(b, kind, name), nil)
}

// ScanRecords calls fn for each record of kind in bucket b whose name starts
// with prefix, in name order, skipping cleared records. The slices are
// only valid during the call.
func ScanRecords(r Reader, b Bucket, kind Kind, prefix []byte, fn func(name, raw []byte) error) error {
	lower, upper := kindSpan(b, kind, prefix)
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return err
	}
	defer it.Close()
	for valid := it.First(); valid; valid = it.Next() {
		if isCleared(it.Value()) {
			continue
		}
		_, _, name, err := DecodeRecordKey(it.Key())
		if err != nil {
			return err
		}
		if err := fn(name, it.Value()); err != nil {
			return err
		}
	}
	return it.Error()
}

// GetProto reads the protobuf at engine key k (meta and local items).
func GetProto(r Reader, k []byte, m proto.Message) (bool, error) { return getProto(r, k, m) }

// PutProto writes a protobuf at engine key k.
func PutProto(w Writer, k []byte, m proto.Message) error { return putProto(w, k, m) }

func getProto(r Reader, k []byte, m proto.Message) (bool, error) {
	raw, ok, err := getRaw(r, k)
	if err != nil || !ok {
		return false, err
	}
	if err := proto.Unmarshal(raw, m); err != nil {
		return false, fmt.Errorf("%w: %x: %w", ErrBadValue, k, err)
	}
	return true, nil
}

func putProto(w Writer, k []byte, m proto.Message) error {
	raw, err := Marshal(m)
	if err != nil {
		return err
	}
	return w.Set(k, raw, nil)
}
