package mvcc

import (
	"encoding/binary"
	"fmt"

	"github.com/cockroachdb/pebble/v2/cockroachkvs"
	"github.com/opencluster/opencluster/bucket"

	"github.com/opencluster/opencluster/mvcc/ts"
)

// MaxBuckets is the largest bucket count a cluster may be created with.
const MaxBuckets = 4096

// Bucket identifies one of the cluster's fixed number of buckets.
type Bucket uint16

// BucketOf returns the bucket of a key (or lock name): xxhash64 mod n.
func BucketOf(key []byte, n int) Bucket {
	return Bucket(bucket.Of(key, n))
}

// Kind is the kind byte that follows the bucket in a bucket-data key.
type Kind byte

// The kinds of bucket data.
const (
	KindData      Kind = 'd'
	KindKeyLock   Kind = 'k'
	KindFence     Kind = 'f'
	KindNamedLock Kind = 'n'
	KindTxn       Kind = 't'
	// KindRequest holds dedup records of applied releases by request id
	// (puts keep theirs in their version).
	KindRequest Kind = 'q'
)

const (
	prefixBucket = 'b'
	prefixRaft   = 'r'
	prefixMeta   = 'M'
	prefixLocal  = 'm'
)

// versionSuffixLen is the length of an encoded version: 8 bytes of
// timestamp and the length byte.
const versionSuffixLen = 9

func appendBucketPrefix(dst []byte, b Bucket, kind Kind) []byte {
	dst = append(dst, prefixBucket, byte(b>>8), byte(b))
	return append(dst, byte(kind))
}

// encode turns a prefix (the "roach key") into an unversioned engine key.
func encode(prefix []byte) []byte {
	return cockroachkvs.EncodeKey(make([]byte, 0, len(prefix)+1), prefix, nil)
}

// RecordKey is the engine key of an unversioned record of bucket b.
func RecordKey(b Bucket, kind Kind, name []byte) []byte {
	p := appendBucketPrefix(make([]byte, 0, 4+len(name)+1), b, kind)
	p = append(p, name...)
	return append(p, 0)
}

// VersionKey is the engine key of userKey's version at t (t > 0).
func VersionKey(b Bucket, userKey []byte, t ts.Timestamp) []byte {
	if t == 0 {
		panic("mvcc: version key with a zero timestamp")
	}
	k := appendBucketPrefix(make([]byte, 0, 4+len(userKey)+1+versionSuffixLen), b, KindData)
	k = append(k, userKey...)
	return cockroachkvs.EncodeTimestamp(k, uint64(t), 0)
}

// DecodeVersionKey splits a version key into its bucket, user key and
// timestamp.
func DecodeVersionKey(k []byte) (b Bucket, userKey []byte, t ts.Timestamp, err error) {
	prefix, version, ok := cockroachkvs.DecodeEngineKey(k)
	if !ok || len(prefix) < 4 || prefix[0] != prefixBucket || Kind(prefix[3]) != KindData {
		return 0, nil, 0, fmt.Errorf("%w: %x", ErrBadKey, k)
	}
	wall, logical, derr := cockroachkvs.DecodeMVCCTimestampSuffix(appendLen(version))
	if derr != nil || logical != 0 || wall == 0 {
		return 0, nil, 0, fmt.Errorf("%w: bad version in %x", ErrBadKey, k)
	}
	return Bucket(binary.BigEndian.Uint16(prefix[1:3])), prefix[4:], ts.Timestamp(wall), nil
}

// appendLen restores the length byte DecodeEngineKey strips from a version.
func appendLen(version []byte) []byte {
	if len(version) == 0 {
		return nil
	}
	return append(append(make([]byte, 0, len(version)+1), version...), byte(len(version)+1))
}

// DecodeRecordKey returns the bucket, kind and name of a record key.
func DecodeRecordKey(k []byte) (b Bucket, kind Kind, name []byte, err error) {
	prefix, version, ok := cockroachkvs.DecodeEngineKey(k)
	if !ok || len(version) != 0 || len(prefix) < 4 || prefix[0] != prefixBucket {
		return 0, 0, nil, fmt.Errorf("%w: %x", ErrBadKey, k)
	}
	return Bucket(binary.BigEndian.Uint16(prefix[1:3])), Kind(prefix[3]), prefix[4:], nil
}

// BucketSpan returns the engine-key span [start, end) holding everything of
// bucket b (invariant 1).
func BucketSpan(b Bucket) (start, end []byte) {
	return encode([]byte{prefixBucket, byte(b >> 8), byte(b)}),
		encode(successor([]byte{prefixBucket, byte(b >> 8), byte(b)}))
}

// kindSpan returns the span of all keys of one kind in bucket b whose name
// starts with prefix.
func kindSpan(b Bucket, kind Kind, prefix []byte) (start, end []byte) {
	p := appendBucketPrefix(nil, b, kind)
	p = append(p, prefix...)
	return encode(p), encode(successor(p))
}

// successor returns the smallest byte string greater than every string
// with prefix p.
func successor(p []byte) []byte {
	s := append([]byte(nil), p...)
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] != 0xff {
			s[i]++
			return s[:i+1]
		}
	}
	// All 0xff: nothing is greater with this prefix; use a longer key.
	return append(s, 0xff)
}

// RaftKey is the engine key of a Raft-storage item of group: kind names the
// item ('e' entries, 'h' HardState, ...); index is appended for entries.
func RaftKey(group uint32, kind byte, index uint64) []byte {
	p := make([]byte, 0, 1+4+1+8+1)
	p = append(p, prefixRaft)
	p = binary.BigEndian.AppendUint32(p, group)
	p = append(p, kind)
	if kind == RaftEntryKind {
		p = binary.BigEndian.AppendUint64(p, index)
	}
	return append(p, 0)
}

// RaftEntryKind is the kind byte of Raft log entries in RaftKey.
const RaftEntryKind = 'e'

// RaftEntryIndex decodes the index of a Raft entry key.
func RaftEntryIndex(k []byte) (uint64, error) {
	if len(k) != 1+4+1+8+1 || k[0] != prefixRaft || k[5] != RaftEntryKind || k[14] != 0 {
		return 0, fmt.Errorf("%w: not a raft entry key: %x", ErrBadKey, k)
	}
	return binary.BigEndian.Uint64(k[6:14]), nil
}

// MetaKey is the engine key of an item of the meta group's replicated state.
func MetaKey(name string) []byte {
	return encode(append([]byte{prefixMeta}, name...))
}

// MetaSpan returns the span of every meta item (the meta group's state).
func MetaSpan() (start, end []byte) {
	return encode([]byte{prefixMeta}), encode([]byte{prefixMeta + 1})
}

// LocalKey is the engine key of an item of this node's own metadata.
func LocalKey(name string) []byte {
	return encode(append([]byte{prefixLocal}, name...))
}
