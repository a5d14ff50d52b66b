package mvcc

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/protobuf/proto"

	"github.com/opencluster/opencluster/mvcc/ts"
	"github.com/opencluster/opencluster/rpc/cmdpb"
)

// testLockRecord is a record to store under name. Its strings hold name
// quoted, as proto3 strings must be valid UTF-8.
func testLockRecord(name string, fence uint64) *cmdpb.NamedLockRecord {
	return &cmdpb.NamedLockRecord{
		Held:       true,
		Code:       []byte("code-" + name),
		Fence:      fence,
		Owner:      "owner-" + fmtKey([]byte(name)),
		TtlMs:      5000,
		AcquiredTs: 1 << 40,
		RequestId:  "req-" + fmtKey([]byte(name)),
	}
}

// TestRecordRoundTrip writes, reads, overwrites and deletes named-lock
// records, reading through an uncommitted batch (own writes) and the DB, and
// checks that kind and bucket separate records of the same name.
func TestRecordRoundTrip(t *testing.T) {
	e := newTestEngine(t)
	name := []byte("lock\x00with\xffbytes")
	want := testLockRecord("x", 7)

	b := e.NewBatch()
	defer b.Close()
	must(t, PutRecord(b, 3, KindNamedLock, name, want))
	for _, rd := range []struct {
		what string
		r    Reader
		want bool
	}{{"batch", b, true}, {"db before commit", e.DB(), false}} {
		var got cmdpb.NamedLockRecord
		ok, err := GetRecord(rd.r, 3, KindNamedLock, name, &got)
		must(t, err)
		if ok != rd.want {
			t.Fatalf("%s: GetRecord found=%t, want %t", rd.what, ok, rd.want)
		}
		if ok && !proto.Equal(&got, want) {
			t.Fatalf("%s: GetRecord = %v, want %v", rd.what, &got, want)
		}
	}
	must(t, b.Commit(pebble.Sync))

	get := func(bucket Bucket, kind Kind, name []byte) (*cmdpb.NamedLockRecord, bool) {
		t.Helper()
		var got cmdpb.NamedLockRecord
		ok, err := GetRecord(e.DB(), bucket, kind, name, &got)
		must(t, err)
		return &got, ok
	}
	if got, ok := get(3, KindNamedLock, name); !ok || !proto.Equal(got, want) {
		t.Fatalf("after commit: GetRecord = %v, %t; want %v", got, ok, want)
	}
	// Same name, other kind, other bucket, a prefix of the name, a longer
	// name: none of them exist.
	for _, miss := range []struct {
		b    Bucket
		kind Kind
		name []byte
	}{
		{3, KindTxn, name},
		{3, KindFence, name},
		{2, KindNamedLock, name},
		{4, KindNamedLock, name},
		{3, KindNamedLock, name[:4]},
		{3, KindNamedLock, append(slices.Clone(name), 0)},
	} {
		if got, ok := get(miss.b, miss.kind, miss.name); ok {
			t.Errorf("GetRecord(%d, %c, %q) = %v, want not found", miss.b, miss.kind, miss.name, got)
		}
	}
	// Nor is the record visible as a versioned key.
	v, err := Get(e.DB(), 3, name, Latest)
	must(t, err)
	if v.Found || v.Version != 0 {
		t.Fatalf("Get of a record's name = %s, want <not found>", fmtValue(v))
	}

	// Overwrite, then delete.
	want2 := testLockRecord("y", 8)
	want2.Held = false
	want2.LastCode = []byte("code-x")
	must(t, PutRecord(e.DB(), 3, KindNamedLock, name, want2))
	if got, ok := get(3, KindNamedLock, name); !ok || !proto.Equal(got, want2) {
		t.Fatalf("after overwrite: GetRecord = %v, %t; want %v", got, ok, want2)
	}
	must(t, DeleteRecord(e.DB(), 3, KindNamedLock, name))
	if got, ok := get(3, KindNamedLock, name); ok {
		t.Fatalf("after delete: GetRecord = %v, want not found", got)
	}
	// Deleting a missing record is not an error.
	must(t, DeleteRecord(e.DB(), 3, KindNamedLock, name))
}

// TestGetRecordBadValue checks that bytes that are not the message surface
// as ErrBadValue.
func TestGetRecordBadValue(t *testing.T) {
	e := newTestEngine(t)
	// Field 1 as a length-delimited field with a length past the end.
	must(t, e.DB().Set(RecordKey(3, KindNamedLock, []byte("n")), []byte{0x0a, 0x7f}, nil))
	var got cmdpb.NamedLockRecord
	ok, err := GetRecord(e.DB(), 3, KindNamedLock, []byte("n"), &got)
	if !errors.Is(err, ErrBadValue) || ok {
		t.Fatalf("GetRecord of garbage = %t, %v; want ErrBadValue", ok, err)
	}
}

// TestGetPutProto round-trips records at meta and local keys.
func TestGetPutProto(t *testing.T) {
	e := newTestEngine(t)
	want := &cmdpb.TSOBound{Bound: 12345}
	for _, k := range [][]byte{MetaKey("tso"), LocalKey("tso")} {
		var got cmdpb.TSOBound
		ok, err := GetProto(e.DB(), k, &got)
		must(t, err)
		if ok {
			t.Fatalf("GetProto(%x) found before any write", k)
		}
		must(t, PutProto(e.DB(), k, want))
		ok, err = GetProto(e.DB(), k, &got)
		must(t, err)
		if !ok || !proto.Equal(&got, want) {
			t.Fatalf("GetProto(%x) = %v, %t; want %v", k, &got, ok, want)
		}
	}
}

// TestScanRecords checks that ScanRecords returns the records of one kind
// and bucket whose names start with a prefix, in name order, and nothing
// else; and that an error from fn stops the scan and is returned.
func TestScanRecords(t *testing.T) {
	e := newTestEngine(t)
	names := []string{"", "a", "a\x00", "a\x00b", "ab", "a\xff", "b", "\xff\xff"}
	w := e.NewBatch()
	defer w.Close()
	for i, n := range names {
		// The records scanned, and the same names in every neighbouring
		// place: other kinds, other buckets, and as versioned user keys.
		must(t, PutRecord(w, 3, KindNamedLock, []byte(n), testLockRecord(n, uint64(i))))
		must(t, PutRecord(w, 3, KindTxn, []byte(n), testLockRecord("txn", 0)))
		must(t, PutRecord(w, 3, KindFence, []byte(n), testLockRecord("fence", 0)))
		must(t, PutRecord(w, 2, KindNamedLock, []byte(n), testLockRecord("b2", 0)))
		must(t, PutRecord(w, 4, KindNamedLock, []byte(n), testLockRecord("b4", 0)))
		must(t, PutVersion(w, 3, []byte(n), 10, []byte("version")))
	}
	must(t, w.Commit(pebble.Sync))

	scan := func(r Reader, prefix string) []string {
		t.Helper()
		var got []string
		must(t, ScanRecords(r, 3, KindNamedLock, []byte(prefix), func(name, raw []byte) error {
			var rec cmdpb.NamedLockRecord
			if err := proto.Unmarshal(raw, &rec); err != nil {
				return err
			}
			if want := testLockRecord(string(name), rec.Fence); !proto.Equal(&rec, want) {
				return fmt.Errorf("record %q = %v, want %v", name, &rec, want)
			}
			got = append(got, string(name))
			return nil
		}))
		return got
	}
	for _, tc := range []struct {
		prefix string
		want   []string
	}{
		{"", names},
		{"a", []string{"a", "a\x00", "a\x00b", "ab", "a\xff"}},
		{"a\x00", []string{"a\x00", "a\x00b"}},
		{"ab", []string{"ab"}},
		{"\xff", []string{"\xff\xff"}},
		{"c", nil},
	} {
		for _, r := range []Reader{e.DB(), e.NewBatch()} {
			if got := scan(r, tc.prefix); !slices.Equal(got, tc.want) {
				t.Errorf("ScanRecords(prefix %q) = %q, want %q", tc.prefix, got, tc.want)
			}
		}
	}

	errStop := errors.New("stop")
	calls := 0
	err := ScanRecords(e.DB(), 3, KindNamedLock, nil, func(name, raw []byte) error {
		calls++
		if calls == 2 {
			return errStop
		}
		return nil
	})
	if !errors.Is(err, errStop) || calls != 2 {
		t.Fatalf("ScanRecords with a failing fn = %v after %d calls, want errStop after 2", err, calls)
	}
}

// TestBucketSpan checks invariant 1 against a real database: BucketSpan(b)
// holds every key of every kind of bucket b, and no key of any other bucket
// or of the Raft, meta and local keyspaces. Buckets 255 and 256 differ in
// both bucket bytes; 4095 is the last bucket of the largest cluster and
// 65535 the last a Bucket can name.
func TestBucketSpan(t *testing.T) {
	buckets := []Bucket{0, 1, 2, 254, 255, 256, 257, 4094, 4095, 4096, 65534, 65535}
	names := [][]byte{nil, []byte("a"), []byte("a\x00"), []byte("\xff\xff\xff")}
	keysOf := func(b Bucket) [][]byte {
		var ks [][]byte
		for _, n := range names {
			ks = append(ks, VersionKey(b, n, 1), VersionKey(b, n, ts.Timestamp(Latest-1)))
			for _, kind := range []Kind{KindKeyLock, KindFence, KindNamedLock, KindTxn} {
				ks = append(ks, RecordKey(b, kind, n))
			}
		}
		return ks
	}
	others := [][]byte{
		RaftKey(0, RaftEntryKind, 1), RaftKey(0xffffffff, 'h', 0),
		MetaKey(""), MetaKey("\xff"), LocalKey(""), LocalKey("ident"),
	}

	e := newTestEngine(t)
	w := e.NewBatch()
	for _, b := range buckets {
		for _, k := range keysOf(b) {
			must(t, w.Set(k, []byte{tagValue}, nil))
		}
	}
	for _, k := range others {
		must(t, w.Set(k, nil, nil))
	}
	must(t, w.Commit(pebble.Sync))
	must(t, w.Close())
	flushAndCompact(t, e)

	for _, b := range buckets {
		want := keysOf(b)
		slices.SortFunc(want, engineCmp)
		lo, hi := BucketSpan(b)
		it, err := e.DB().NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
		must(t, err)
		var got [][]byte
		for valid := it.First(); valid; valid = it.Next() {
			got = append(got, slices.Clone(it.Key()))
		}
		must(t, it.Close())
		if !slices.EqualFunc(got, want, bytes.Equal) {
			t.Errorf("BucketSpan(%d) = [%x, %x) holds %d keys, want the bucket's %d:\n%s", b, lo, hi, len(got), len(want), fmtKeys(got))
		}
	}

	// Deleting a bucket's span removes that bucket and nothing else.
	lo, hi := BucketSpan(256)
	must(t, e.DB().DeleteRange(lo, hi, nil))
	all, err := e.DB().NewIter(nil)
	must(t, err)
	n := 0
	for valid := all.First(); valid; valid = all.Next() {
		n++
		if b, _, _, err := DecodeVersionKey(all.Key()); err == nil && b == 256 {
			t.Errorf("%x survived DeleteRange(BucketSpan(256))", all.Key())
		}
		if b, _, _, err := DecodeRecordKey(all.Key()); err == nil && b == 256 {
			t.Errorf("%x survived DeleteRange(BucketSpan(256))", all.Key())
		}
	}
	must(t, all.Close())
	if want := (len(buckets)-1)*len(keysOf(0)) + len(others); n != want {
		t.Errorf("after DeleteRange(BucketSpan(256)): %d keys, want %d", n, want)
	}
}

func fmtKeys(ks [][]byte) string {
	var buf bytes.Buffer
	for _, k := range ks {
		fmt.Fprintf(&buf, "  %s\n", fmtEngineKV(k, nil))
	}
	return buf.String()
}

// TestMarshalDeterministic checks invariant 3: a record marshals to the same
// bytes however the message was built, on every call, and to the bytes
// pinned below (fields are append-only, so these bytes must not change).
func TestMarshalDeterministic(t *testing.T) {
	a := testLockRecord("x", 7)
	a.LastCode = []byte{}
	// Built in another field order, with a decode/encode round trip.
	b := &cmdpb.NamedLockRecord{RequestId: `req-"x"`, AcquiredTs: 1 << 40, TtlMs: 5000}
	b.Owner, b.Fence, b.Code, b.Held = `owner-"x"`, 7, []byte("code-x"), true
	raw, err := Marshal(b)
	must(t, err)
	var c cmdpb.NamedLockRecord
	must(t, proto.Unmarshal(raw, &c))

	const golden = "0801" + // held: true
		"1206636f64652d78" + // code: "code-x"
		"1807" + // fence: 7
		"22096f776e65722d227822" + // owner: `owner-"x"`
		"288827" + // ttl_ms: 5000
		"30808080808020" + // acquired_ts: 1<<40
		"3a077265712d227822" // request_id: `req-"x"`
	for i, m := range []proto.Message{a, b, &c, a, b} {
		got, err := Marshal(m)
		must(t, err)
		if h := hex.EncodeToString(got); h != golden {
			t.Errorf("Marshal #%d = %s, want %s", i, h, golden)
		}
	}
}

// TestPutRecordInvalidMessage checks that a record that does not marshal
// (proto3 strings must be valid UTF-8) is refused and nothing is written.
func TestPutRecordInvalidMessage(t *testing.T) {
	e := newTestEngine(t)
	bad := testLockRecord("x", 1)
	bad.Owner = "\xff"
	if err := PutRecord(e.DB(), 3, KindNamedLock, []byte("x"), bad); err == nil {
		t.Fatal("PutRecord of a record with an invalid UTF-8 string succeeded")
	}
	if dump, err := dumpEngine(e.DB()); err != nil || dump != "<empty>\n" {
		t.Fatalf("after a refused PutRecord the engine holds:\n%s (%v)", dump, err)
	}
}

// TestClearedRecords: a cleared record is absent to GetRecord and
// ScanRecords whether read through a batch or the DB, a record written
// over it is found again, and PurgeCleared deletes only the markers.
func TestClearedRecords(t *testing.T) {
	e := newTestEngine(t)
	names := [][]byte{[]byte("a"), []byte("b"), []byte("c")}
	b := e.NewBatch()
	defer b.Close()
	for i, name := range names {
		must(t, PutRecord(b, 1, KindKeyLock, name, testLockRecord(string(name), uint64(i+1))))
	}
	must(t, ClearRecord(b, 1, KindKeyLock, names[0]))
	must(t, ClearRecord(b, 1, KindKeyLock, names[1]))
	must(t, PutRecord(b, 1, KindKeyLock, names[1], testLockRecord("b", 9)))
	scan := func(r Reader) []string {
		t.Helper()
		var got []string
		must(t, ScanRecords(r, 1, KindKeyLock, nil, func(name, _ []byte) error {
			got = append(got, string(name))
			return nil
		}))
		return got
	}
	check := func(what string, r Reader) {
		t.Helper()
		var rec cmdpb.NamedLockRecord
		if ok, err := GetRecord(r, 1, KindKeyLock, names[0], &rec); err != nil || ok {
			t.Fatalf("%s: cleared record: found=%t err=%v", what, ok, err)
		}
		if ok, err := GetRecord(r, 1, KindKeyLock, names[1], &rec); err != nil || !ok || rec.Fence != 9 {
			t.Fatalf("%s: record written over a cleared one: %v found=%t err=%v", what, &rec, ok, err)
		}
		if got := scan(r); !slices.Equal(got, []string{"b", "c"}) {
			t.Fatalf("%s: ScanRecords = %v, want [b c]", what, got)
		}
	}
	check("batch", b)
	must(t, b.Commit(pebble.Sync))
	check("db", e.DB())

	pb := e.NewBatch()
	defer pb.Close()
	n, err := PurgeCleared(pb, 1, KindKeyLock)
	must(t, err)
	if n != 1 {
		t.Fatalf("PurgeCleared deleted %d, want 1", n)
	}
	must(t, pb.Commit(pebble.Sync))
	check("after purge", e.DB())
	if _, ok, err := getRaw(e.DB(), RecordKey(1, KindKeyLock, names[0])); err != nil || ok {
		t.Fatalf("the purged marker is still stored: found=%t err=%v", ok, err)
	}
}
