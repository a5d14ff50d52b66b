package mvcc

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"math"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/cockroachkvs"

	"github.com/opencluster/opencluster/mvcc/ts"
)

// The fuzz targets below check the key layout of doc.go. Their seed corpus
// (the f.Add calls, and any files under testdata/fuzz/) runs in plain go
// test; to fuzz one, e.g.
//
//	go test ./mvcc -run '^$' -fuzz '^FuzzVersionKey$' -fuzztime 60s

var engineCmp = cockroachkvs.Comparer.Compare

// FuzzVersionKey checks that VersionKey and DecodeVersionKey round-trip for
// any bucket, user key and ts > 0, and that the engine comparer orders two
// version keys of a bucket by user key bytes, then newest first (invariant
// 2), with the user key as the Split prefix (so bloom filters and
// NextPrefix work per user key) and the key inside its bucket's span
// (invariant 1) and its data span.
func FuzzVersionKey(f *testing.F) {
	for _, s := range []struct {
		b  uint16
		k1 string
		t1 uint64
		k2 string
		t2 uint64
	}{
		{3, "a", 10, "a", 20},
		{3, "a", 10, "ab", 10},
		{3, "a", 10, "a\x00", 5},
		{3, "a\x00", 1, "a\x00b", math.MaxUint64},
		{0, "", 1, "\x00", 1},
		{255, "\xff", math.MaxUint64, "\xff\xff", 1},
		{256, "k\x00\x09", 9, "k", 9},
		{4095, "ab", 1 << 40, "a\xff", 1 << 40},
		{math.MaxUint16, "x", 2, "x", 1},
	} {
		f.Add(s.b, []byte(s.k1), s.t1, []byte(s.k2), s.t2)
	}
	f.Fuzz(func(t *testing.T, b16 uint16, k1 []byte, t1 uint64, k2 []byte, t2 uint64) {
		if t1 == 0 || t2 == 0 {
			return // VersionKey panics on a zero timestamp by design.
		}
		b := Bucket(b16)
		e1, e2 := VersionKey(b, k1, ts.Timestamp(t1)), VersionKey(b, k2, ts.Timestamp(t2))

		// Round trip.
		gb, gk, gt, err := DecodeVersionKey(e1)
		if err != nil {
			t.Fatalf("DecodeVersionKey(VersionKey(%d, %q, %d)): %v", b, k1, t1, err)
		}
		if gb != b || !bytes.Equal(gk, k1) || uint64(gt) != t1 {
			t.Fatalf("round trip of (%d, %q, %d) gave (%d, %q, %d)", b, k1, t1, gb, gk, gt)
		}

		// Order: user key bytes, then timestamps descending.
		want := bytes.Compare(k1, k2)
		if want == 0 {
			want = -cmp.Compare(t1, t2)
		}
		if got := engineCmp(e1, e2); got != want {
			t.Fatalf("Compare((%q,%d), (%q,%d)) = %d, want %d", k1, t1, k2, t2, got, want)
		}
		if got := engineCmp(e2, e1); got != -want {
			t.Fatalf("Compare((%q,%d), (%q,%d)) = %d, want %d", k2, t2, k1, t1, got, -want)
		}

		// Split: the prefix is the bare user key, and it is what Get and
		// Scan bound their iterators with.
		split := cockroachkvs.Comparer.Split(e1)
		if split != len(e1)-versionSuffixLen {
			t.Fatalf("Split(%x) = %d, want %d", e1, split, len(e1)-versionSuffixLen)
		}
		if lo, _ := kindSpan(b, KindData, k1); !bytes.Equal(e1[:split], lo) {
			t.Fatalf("Split prefix %x, want the unversioned key %x", e1[:split], lo)
		}

		// Spans: the key lies in its data span, its bucket's span, and no
		// neighbouring bucket's span.
		if lo, hi := kindSpan(b, KindData, k1); !inSpan(e1, lo, hi) {
			t.Fatalf("%x outside its data span [%x, %x)", e1, lo, hi)
		}
		checkBucketSpans(t, e1, b)
	})
}

// FuzzRecordKey checks that RecordKey and DecodeRecordKey round-trip for any
// bucket, kind and name, that record keys are never taken for version keys,
// and that they lie in their bucket's span (invariant 1) and kind span.
func FuzzRecordKey(f *testing.F) {
	for _, s := range []struct {
		b    uint16
		kind byte
		name string
	}{
		{3, byte(KindNamedLock), "lock"},
		{3, byte(KindTxn), ""},
		{0, byte(KindFence), "a\x00"},
		{255, byte(KindKeyLock), "\xff\xff"},
		{256, byte(KindData), "x"},
		{4095, 0, "\x00\x09"},
		{math.MaxUint16, 0xff, "\x09"},
	} {
		f.Add(s.b, s.kind, []byte(s.name))
	}
	f.Fuzz(func(t *testing.T, b16 uint16, kind byte, name []byte) {
		b := Bucket(b16)
		k := RecordKey(b, Kind(kind), name)
		gb, gkind, gname, err := DecodeRecordKey(k)
		if err != nil {
			t.Fatalf("DecodeRecordKey(RecordKey(%d, %q, %q)): %v", b, kind, name, err)
		}
		if gb != b || gkind != Kind(kind) || !bytes.Equal(gname, name) {
			t.Fatalf("round trip of (%d, %q, %q) gave (%d, %q, %q)", b, kind, name, gb, gkind, gname)
		}
		if _, _, _, err := DecodeVersionKey(k); !errors.Is(err, ErrBadKey) {
			t.Fatalf("DecodeVersionKey(record key %x) = %v, want ErrBadKey", k, err)
		}
		if lo, hi := kindSpan(b, Kind(kind), name); !inSpan(k, lo, hi) {
			t.Fatalf("%x outside its kind span [%x, %x)", k, lo, hi)
		}
		checkBucketSpans(t, k, b)
	})
}

// FuzzDecodeKey checks that decoding arbitrary bytes never panics, that
// failures wrap ErrBadKey, and that whatever decodes re-encodes to the same
// key: byte for byte for records, and equal under the engine comparer for
// versions (a timestamp may also be spelled with a zero logical part or a
// synthetic bit, which the comparer ignores).
func FuzzDecodeKey(f *testing.F) {
	for _, k := range [][]byte{
		nil,
		{0},
		{1},
		{9},
		{'b', 0, 3, 'd', 0},
		VersionKey(3, []byte("a"), 10),
		VersionKey(3, nil, 1),
		VersionKey(256, []byte("a\x00\x09"), math.MaxUint64),
		RecordKey(3, KindNamedLock, []byte("lock")),
		RecordKey(3, KindNamedLock, nil),
		RaftKey(7, RaftEntryKind, 42),
		RaftKey(7, 'h', 0),
		MetaKey("cluster"),
		LocalKey("ident"),
		// "a"@10 with a zero logical part, and with a synthetic bit.
		cockroachkvs.EncodeKey(nil, []byte("b\x00\x03da"), append(binary.BigEndian.AppendUint64(nil, 10), 0, 0, 0, 0)),
		cockroachkvs.EncodeKey(nil, []byte("b\x00\x03da"), append(binary.BigEndian.AppendUint64(nil, 10), 0, 0, 0, 0, 1)),
		// A logical part, a lock-table-sized version, a zero wall time.
		cockroachkvs.EncodeKey(nil, []byte("b\x00\x03da"), append(binary.BigEndian.AppendUint64(nil, 10), 0, 0, 0, 1)),
		cockroachkvs.EncodeKey(nil, []byte("b\x00\x03da"), make([]byte, 16)),
		cockroachkvs.EncodeKey(nil, []byte("b\x00\x03da"), make([]byte, 8)),
		// Too short for a bucket prefix; wrong kind; wrong length byte.
		cockroachkvs.EncodeKey(nil, []byte("b\x00"), binary.BigEndian.AppendUint64(nil, 10)),
		cockroachkvs.EncodeKey(nil, []byte("b\x00\x03na"), binary.BigEndian.AppendUint64(nil, 10)),
		{'b', 0, 3, 'd', 'a', 0, 0, 0, 0, 0, 0, 0, 0, 10, 200},
	} {
		f.Add(k)
	}
	f.Fuzz(func(t *testing.T, k []byte) {
		if b, key, at, err := DecodeVersionKey(k); err == nil {
			if at == 0 {
				t.Fatalf("DecodeVersionKey(%x) returned a zero timestamp", k)
			}
			if re := VersionKey(b, key, at); !cockroachkvs.Comparer.Equal(re, k) {
				t.Fatalf("DecodeVersionKey(%x) = (%d, %q, %d), which encodes to %x", k, b, key, at, re)
			}
		} else if !errors.Is(err, ErrBadKey) {
			t.Fatalf("DecodeVersionKey(%x): %v does not wrap ErrBadKey", k, err)
		}
		if b, kind, name, err := DecodeRecordKey(k); err == nil {
			if re := RecordKey(b, kind, name); !bytes.Equal(re, k) {
				t.Fatalf("DecodeRecordKey(%x) = (%d, %q, %q), which encodes to %x", k, b, kind, name, re)
			}
		} else if !errors.Is(err, ErrBadKey) {
			t.Fatalf("DecodeRecordKey(%x): %v does not wrap ErrBadKey", k, err)
		}
		if idx, err := RaftEntryIndex(k); err == nil {
			if g := binary.BigEndian.Uint32(k[1:5]); !bytes.Equal(RaftKey(g, RaftEntryKind, idx), k) {
				t.Fatalf("RaftEntryIndex(%x) = %d, which does not re-encode", k, idx)
			}
		} else if !errors.Is(err, ErrBadKey) {
			t.Fatalf("RaftEntryIndex(%x): %v does not wrap ErrBadKey", k, err)
		}
	})
}

// inSpan reports whether engine key k lies in [lo, hi).
func inSpan(k, lo, hi []byte) bool {
	return engineCmp(lo, k) <= 0 && engineCmp(k, hi) < 0
}

// checkBucketSpans checks that k lies in BucketSpan(b) and in neither
// neighbour's span.
func checkBucketSpans(t *testing.T, k []byte, b Bucket) {
	t.Helper()
	if lo, hi := BucketSpan(b); !inSpan(k, lo, hi) {
		t.Fatalf("%x outside BucketSpan(%d) = [%x, %x)", k, b, lo, hi)
	}
	if b > 0 {
		if lo, hi := BucketSpan(b - 1); inSpan(k, lo, hi) {
			t.Fatalf("%x of bucket %d inside BucketSpan(%d)", k, b, b-1)
		}
	}
	if b < math.MaxUint16 {
		if lo, hi := BucketSpan(b + 1); inSpan(k, lo, hi) {
			t.Fatalf("%x of bucket %d inside BucketSpan(%d)", k, b, b+1)
		}
	}
}

// FuzzVersionValue checks that a version value PutWrite stores decodes back
// to its value, tombstone flag and request id, and that decoding arbitrary
// bytes never panics and never reads a request id longer than the value.
func FuzzVersionValue(f *testing.F) {
	f.Add([]byte("x"), false, "")
	f.Add([]byte(""), false, "05d2a3")
	f.Add([]byte("v"), true, "r")
	f.Add([]byte{tagValueOfRequest, 0x80}, false, "")
	f.Add([]byte{tagTombstoneOfRequest, 1, 'a', 'b'}, false, "")
	f.Fuzz(func(t *testing.T, value []byte, tombstone bool, requestID string) {
		// Arbitrary bytes: an error or a decoding, never a panic.
		if v, _, id, err := splitValue(value); err == nil && len(v)+len(id) >= len(value) {
			t.Fatalf("decoded %d value and %d id bytes from %d", len(v), len(id), len(value))
		}
		var w setRecorder
		if err := PutWrite(&w, 3, []byte("k"), 10, value, tombstone, requestID); err != nil {
			t.Fatal(err)
		}
		v, tomb, id, err := splitValue(w.value)
		if err != nil {
			t.Fatalf("decoding what PutWrite stored: %v", err)
		}
		if tomb != tombstone || string(id) != requestID || (!tombstone && !bytes.Equal(v, value)) || (tombstone && len(v) != 0) {
			t.Fatalf("PutWrite(%q, %v, %q) decodes as (%q, %v, %q)", value, tombstone, requestID, v, tomb, id)
		}
	})
}

// setRecorder is a Writer that keeps the value of the last Set.
type setRecorder struct{ value []byte }

func (w *setRecorder) Set(_, value []byte, _ *pebble.WriteOptions) error {
	w.value = append([]byte(nil), value...)
	return nil
}
func (*setRecorder) Delete([]byte, *pebble.WriteOptions) error             { return nil }
func (*setRecorder) DeleteRange(_, _ []byte, _ *pebble.WriteOptions) error { return nil }
