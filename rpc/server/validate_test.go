package server

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/opencluster/opencluster/kv"
	"github.com/opencluster/opencluster/rpc/ocpb"
)

// validateAny runs the validator for m's request type.
func validateAny(v validator, m proto.Message) error {
	switch r := m.(type) {
	case *ocpb.GetRequest:
		return v.get(r)
	case *ocpb.PutRequest:
		return v.put(r)
	case *ocpb.DeleteRequest:
		return v.delete(r)
	case *ocpb.CompareAndSwapRequest:
		return v.compareAndSwap(r)
	case *ocpb.BatchGetRequest:
		return v.batchGet(r)
	case *ocpb.ScanRequest:
		return v.scan(r)
	case *ocpb.AcquireRequest:
		return v.acquire(r)
	case *ocpb.ReleaseRequest:
		return v.release(r)
	case *ocpb.KeepAliveRequest:
		return v.keepAlive(r)
	case *ocpb.RestrictRequest:
		return v.restrict(r)
	case *ocpb.CommitRequest:
		return v.commit(r)
	case *ocpb.AbortRequest:
		return v.abort(r)
	case *ocpb.DescribeRequest:
		return v.describe(r)
	case *ocpb.ListRequest:
		return v.list(r)
	case *ocpb.StatusRequest:
		return v.status(r)
	}
	panic(fmt.Sprintf("validateAny: unknown request type %T", m))
}

func bs(n int) []byte                          { return []byte(strings.Repeat("k", n)) }
func str(n int) string                         { return strings.Repeat("n", n) }
func dur(d time.Duration) *durationpb.Duration { return durationpb.New(d) }

// keys returns n distinct keys.
func keys(n int) [][]byte {
	ks := make([][]byte, n)
	for i := range ks {
		ks[i] = fmt.Appendf(nil, "key-%d", i)
	}
	return ks
}

// keyLocks returns n distinct WRITE key locks.
func keyLocks(n int) []*ocpb.KeyLockRequest {
	ks := make([]*ocpb.KeyLockRequest, n)
	for i, k := range keys(n) {
		ks[i] = &ocpb.KeyLockRequest{Key: k, Mode: ocpb.KeyMode_WRITE}
	}
	return ks
}

const invalidUTF8 = "bad\xff"

// validationCase is one request and the verdict: wantField is empty for an
// accepted request, else the field the InvalidArgument message must name.
// want, if set, is the request after normalisation.
type validationCase struct {
	name      string
	req       proto.Message
	wantField string
	want      proto.Message
}

// validationCases covers each rule of validate.go on both sides of its
// limit (DESIGN.md §1, the brief's table of limits).
func validationCases() []validationCase {
	k := []byte("k")
	named := ocpb.LockKind_NAMED
	return []validationCase{
		// Keys: 1..4096 bytes.
		{name: "get/key-empty", req: &ocpb.GetRequest{}, wantField: "key"},
		{name: "get/key-1", req: &ocpb.GetRequest{Key: bs(1)}},
		{name: "get/key-4096", req: &ocpb.GetRequest{Key: bs(4096)}},
		{name: "get/key-4097", req: &ocpb.GetRequest{Key: bs(4097)}, wantField: "key"},
		// Codes: optional on Get/Put/Delete, else 32 lowercase hex.
		{name: "get/code-valid", req: &ocpb.GetRequest{Key: k, Code: testCode}},
		{name: "get/code-31", req: &ocpb.GetRequest{Key: k, Code: testCode[:31]}, wantField: "code"},
		{name: "get/code-33", req: &ocpb.GetRequest{Key: k, Code: testCode + "0"}, wantField: "code"},
		{name: "get/code-upper", req: &ocpb.GetRequest{Key: k, Code: strings.ToUpper(testCode)}, wantField: "code"},
		{name: "get/code-nonhex", req: &ocpb.GetRequest{Key: k, Code: "g" + testCode[1:]}, wantField: "code"},
		// Waits: unset, or 0..1h.
		{name: "get/wait-0", req: &ocpb.GetRequest{Key: k, Wait: dur(0)}},
		{name: "get/wait-1h", req: &ocpb.GetRequest{Key: k, Wait: dur(time.Hour)}},
		{name: "get/wait-1h+1ns", req: &ocpb.GetRequest{Key: k, Wait: dur(time.Hour + 1)}, wantField: "wait"},
		{name: "get/wait-negative", req: &ocpb.GetRequest{Key: k, Wait: dur(-1)}, wantField: "wait"},
		{name: "get/wait-malformed", req: &ocpb.GetRequest{Key: k, Wait: &durationpb.Duration{Seconds: 1, Nanos: -1}}, wantField: "wait"},
		{name: "get/wait-huge", req: &ocpb.GetRequest{Key: k, Wait: &durationpb.Duration{Seconds: 1 << 62}}, wantField: "wait"},

		// Values: at most 1 MiB.
		{name: "put/value-empty", req: &ocpb.PutRequest{Key: k}},
		{name: "put/value-1MiB", req: &ocpb.PutRequest{Key: k, Value: bs(1 << 20)}},
		{name: "put/value-1MiB+1", req: &ocpb.PutRequest{Key: k, Value: bs(1<<20 + 1)}, wantField: "value"},
		{name: "put/key-empty", req: &ocpb.PutRequest{Value: k}, wantField: "key"},
		{name: "put/code-bad", req: &ocpb.PutRequest{Key: k, Code: "x"}, wantField: "code"},
		{name: "put/wait-negative", req: &ocpb.PutRequest{Key: k, Wait: dur(-time.Second)}, wantField: "wait"},
		// Fences: name non-empty if token > 0; an empty fence is dropped.
		{name: "put/fence-ok", req: &ocpb.PutRequest{Key: k, Fence: &ocpb.Fence{Name: "f", Token: 1}}},
		{name: "put/fence-empty-dropped", req: &ocpb.PutRequest{Key: k, Fence: &ocpb.Fence{}}, want: &ocpb.PutRequest{Key: k}},
		{name: "put/fence-token-no-name", req: &ocpb.PutRequest{Key: k, Fence: &ocpb.Fence{Token: 5}}, wantField: "fence.name"},
		{name: "put/fence-name-no-token", req: &ocpb.PutRequest{Key: k, Fence: &ocpb.Fence{Name: "f"}}, wantField: "fence.token"},
		{name: "put/fence-name-1024", req: &ocpb.PutRequest{Key: k, Fence: &ocpb.Fence{Name: str(1024), Token: 1}}},
		{name: "put/fence-name-1025", req: &ocpb.PutRequest{Key: k, Fence: &ocpb.Fence{Name: str(1025), Token: 1}}, wantField: "fence.name"},
		{name: "put/fence-name-utf8", req: &ocpb.PutRequest{Key: k, Fence: &ocpb.Fence{Name: invalidUTF8, Token: 1}}, wantField: "fence.name"},
		{name: "put/retry-without-id", req: &ocpb.PutRequest{Key: k, Retry: true}, wantField: "retry"},
		{name: "put/retry-with-id", req: &ocpb.PutRequest{Key: k, Retry: true, RequestId: "r"}},
		{name: "delete/retry-without-id", req: &ocpb.DeleteRequest{Key: k, Retry: true}, wantField: "retry"},
		{name: "cas/retry-without-id", req: &ocpb.CompareAndSwapRequest{Key: k, Retry: true}, wantField: "retry"},
		{name: "release/retry-without-id", req: &ocpb.ReleaseRequest{Name: "n", Code: testCode, Retry: true}, wantField: "retry"},
		{name: "put/fence-with-code", req: &ocpb.PutRequest{Key: k, Code: testCode, Fence: &ocpb.Fence{Name: "f", Token: 1}}, wantField: "fence"},
		{name: "put/empty-fence-with-code", req: &ocpb.PutRequest{Key: k, Code: testCode, Fence: &ocpb.Fence{}}, want: &ocpb.PutRequest{Key: k, Code: testCode}},
		// Request ids: at most 128 bytes.
		{name: "put/request-id-128", req: &ocpb.PutRequest{Key: k, RequestId: str(128)}},
		{name: "put/request-id-129", req: &ocpb.PutRequest{Key: k, RequestId: str(129)}, wantField: "request_id"},
		{name: "put/request-id-utf8", req: &ocpb.PutRequest{Key: k, RequestId: invalidUTF8}, wantField: "request_id"},

		{name: "delete/ok", req: &ocpb.DeleteRequest{Key: k, Code: testCode, RequestId: "r"}},
		{name: "delete/key-4097", req: &ocpb.DeleteRequest{Key: bs(4097)}, wantField: "key"},
		{name: "delete/fence-token-no-name", req: &ocpb.DeleteRequest{Key: k, Fence: &ocpb.Fence{Token: 1}}, wantField: "fence.name"},
		{name: "delete/fence-empty-dropped", req: &ocpb.DeleteRequest{Key: k, Fence: &ocpb.Fence{}}, want: &ocpb.DeleteRequest{Key: k}},
		{name: "delete/fence-with-code", req: &ocpb.DeleteRequest{Key: k, Code: testCode, Fence: &ocpb.Fence{Name: "f", Token: 1}}, wantField: "fence"},
		{name: "delete/request-id-129", req: &ocpb.DeleteRequest{Key: k, RequestId: str(129)}, wantField: "request_id"},
		{name: "delete/wait-1h+1ns", req: &ocpb.DeleteRequest{Key: k, Wait: dur(time.Hour + 1)}, wantField: "wait"},

		{name: "cas/ok", req: &ocpb.CompareAndSwapRequest{Key: k, Value: bs(1 << 20), ExpectedVersion: 7}},
		{name: "cas/delete", req: &ocpb.CompareAndSwapRequest{Key: k, Delete: true}},
		{name: "cas/delete-with-value", req: &ocpb.CompareAndSwapRequest{Key: k, Delete: true, Value: k}, wantField: "value"},
		{name: "cas/value-1MiB+1", req: &ocpb.CompareAndSwapRequest{Key: k, Value: bs(1<<20 + 1)}, wantField: "value"},
		{name: "cas/key-empty", req: &ocpb.CompareAndSwapRequest{}, wantField: "key"},
		{name: "cas/request-id-129", req: &ocpb.CompareAndSwapRequest{Key: k, RequestId: str(129)}, wantField: "request_id"},
		{name: "cas/wait-negative", req: &ocpb.CompareAndSwapRequest{Key: k, Wait: dur(-1)}, wantField: "wait"},

		// BatchGet: 1..1024 keys.
		{name: "batchget/0-keys", req: &ocpb.BatchGetRequest{}, wantField: "keys"},
		{name: "batchget/1-key", req: &ocpb.BatchGetRequest{Keys: keys(1)}},
		{name: "batchget/1024-keys", req: &ocpb.BatchGetRequest{Keys: keys(1024)}},
		{name: "batchget/1025-keys", req: &ocpb.BatchGetRequest{Keys: keys(1025)}, wantField: "keys"},
		{name: "batchget/duplicates-allowed", req: &ocpb.BatchGetRequest{Keys: [][]byte{k, k}}},
		{name: "batchget/empty-key", req: &ocpb.BatchGetRequest{Keys: [][]byte{k, k, k, nil}}, wantField: "keys[3]"},
		{name: "batchget/key-4097", req: &ocpb.BatchGetRequest{Keys: [][]byte{bs(4097)}}, wantField: "keys[0]"},
		{name: "batchget/wait-negative", req: &ocpb.BatchGetRequest{Keys: keys(1), Wait: dur(-1)}, wantField: "wait"},

		// Scan: limit 0 -> 1000, at most 10000, never negative; prefix <= 4096.
		{name: "scan/limit-0", req: &ocpb.ScanRequest{}, want: &ocpb.ScanRequest{Limit: 1000}},
		{name: "scan/limit-1", req: &ocpb.ScanRequest{Limit: 1}},
		{name: "scan/limit-10000", req: &ocpb.ScanRequest{Limit: 10000}},
		{name: "scan/limit-10001", req: &ocpb.ScanRequest{Limit: 10001}, wantField: "limit"},
		{name: "scan/limit-negative", req: &ocpb.ScanRequest{Limit: -1}, wantField: "limit"},
		{name: "scan/prefix-4096", req: &ocpb.ScanRequest{Prefix: bs(4096), Limit: 5}},
		{name: "scan/prefix-4097", req: &ocpb.ScanRequest{Prefix: bs(4097)}, wantField: "prefix"},
		{name: "scan/start-after-4096", req: &ocpb.ScanRequest{StartAfter: bs(4096), Limit: 5}},
		{name: "scan/start-after-4097", req: &ocpb.ScanRequest{StartAfter: bs(4097)}, wantField: "start_after"},
		{name: "scan/wait-1h+1ns", req: &ocpb.ScanRequest{Wait: dur(time.Hour + 1)}, wantField: "wait"},

		// Lock names: 1..1024 bytes of UTF-8. TTL: unset -> default, else 1s..1h.
		{name: "acquire/defaults", req: &ocpb.AcquireRequest{Name: "n"}, want: &ocpb.AcquireRequest{Name: "n", Ttl: dur(15 * time.Second)}},
		{name: "acquire/name-empty", req: &ocpb.AcquireRequest{}, wantField: "name"},
		{name: "acquire/name-1024", req: &ocpb.AcquireRequest{Name: str(1024), Ttl: dur(time.Second)}},
		{name: "acquire/name-1025", req: &ocpb.AcquireRequest{Name: str(1025)}, wantField: "name"},
		{name: "acquire/name-utf8", req: &ocpb.AcquireRequest{Name: invalidUTF8}, wantField: "name"},
		{name: "acquire/name-unicode", req: &ocpb.AcquireRequest{Name: "verrou-é", Ttl: dur(time.Second)}},
		{name: "acquire/ttl-1s", req: &ocpb.AcquireRequest{Name: "n", Ttl: dur(time.Second)}},
		{name: "acquire/ttl-1s-1ns", req: &ocpb.AcquireRequest{Name: "n", Ttl: dur(time.Second - 1)}, wantField: "ttl"},
		{name: "acquire/ttl-0", req: &ocpb.AcquireRequest{Name: "n", Ttl: dur(0)}, wantField: "ttl"},
		{name: "acquire/ttl-1h", req: &ocpb.AcquireRequest{Name: "n", Ttl: dur(time.Hour)}},
		{name: "acquire/ttl-1h+1ns", req: &ocpb.AcquireRequest{Name: "n", Ttl: dur(time.Hour + 1)}, wantField: "ttl"},
		{name: "acquire/ttl-malformed", req: &ocpb.AcquireRequest{Name: "n", Ttl: &durationpb.Duration{Seconds: -1, Nanos: 1}}, wantField: "ttl"},
		{name: "acquire/wait-0", req: &ocpb.AcquireRequest{Name: "n", Ttl: dur(time.Second), Wait: dur(0)}},
		{name: "acquire/wait-negative", req: &ocpb.AcquireRequest{Name: "n", Wait: dur(-1)}, wantField: "wait"},
		{name: "acquire/owner-256", req: &ocpb.AcquireRequest{Name: "n", Ttl: dur(time.Second), Owner: str(256)}},
		{name: "acquire/owner-257", req: &ocpb.AcquireRequest{Name: "n", Owner: str(257)}, wantField: "owner"},
		{name: "acquire/request-id-129", req: &ocpb.AcquireRequest{Name: "n", RequestId: str(129)}, wantField: "request_id"},

		// Release, Commit, Abort: name and code required.
		{name: "release/ok", req: &ocpb.ReleaseRequest{Name: "n", Code: testCode, RequestId: str(128)}},
		{name: "release/no-code", req: &ocpb.ReleaseRequest{Name: "n"}, wantField: "code"},
		{name: "release/bad-code", req: &ocpb.ReleaseRequest{Name: "n", Code: testCode[1:]}, wantField: "code"},
		{name: "release/no-name", req: &ocpb.ReleaseRequest{Code: testCode}, wantField: "name"},
		{name: "release/request-id-129", req: &ocpb.ReleaseRequest{Name: "n", Code: testCode, RequestId: str(129)}, wantField: "request_id"},
		{name: "commit/ok", req: &ocpb.CommitRequest{Name: "n", Code: testCode}},
		{name: "commit/no-code", req: &ocpb.CommitRequest{Name: "n"}, wantField: "code"},
		{name: "commit/no-name", req: &ocpb.CommitRequest{Code: testCode}, wantField: "name"},
		{name: "commit/request-id-129", req: &ocpb.CommitRequest{Name: "n", Code: testCode, RequestId: str(129)}, wantField: "request_id"},
		{name: "commit/writes-ok", req: &ocpb.CommitRequest{Name: "n", Code: testCode, Writes: []*ocpb.TxnWrite{{Key: []byte("a"), Value: []byte("v")}, {Key: []byte("b"), Delete: true}}}},
		{name: "commit/write-no-key", req: &ocpb.CommitRequest{Name: "n", Code: testCode, Writes: []*ocpb.TxnWrite{{Value: []byte("v")}}}, wantField: "writes[0].key"},
		{name: "commit/write-twice", req: &ocpb.CommitRequest{Name: "n", Code: testCode, Writes: []*ocpb.TxnWrite{{Key: []byte("a")}, {Key: []byte("a")}}}, wantField: "writes[1].key"},
		{name: "commit/delete-with-value", req: &ocpb.CommitRequest{Name: "n", Code: testCode, Writes: []*ocpb.TxnWrite{{Key: []byte("a"), Value: []byte("v"), Delete: true}}}, wantField: "writes[0].value"},
		{name: "abort/ok", req: &ocpb.AbortRequest{Name: "n", Code: testCode}},
		{name: "abort/no-code", req: &ocpb.AbortRequest{Name: "n"}, wantField: "code"},
		{name: "abort/no-name", req: &ocpb.AbortRequest{Code: testCode}, wantField: "name"},
		{name: "abort/name-1025", req: &ocpb.AbortRequest{Name: str(1025), Code: testCode}, wantField: "name"},

		// KeepAlive: name and code required, kind NAMED or RESTRICTIVE.
		{name: "keepalive/named", req: &ocpb.KeepAliveRequest{Name: "n", Code: testCode, Kind: named}},
		{name: "keepalive/restrictive", req: &ocpb.KeepAliveRequest{Name: "n", Code: testCode, Kind: ocpb.LockKind_RESTRICTIVE}},
		{name: "keepalive/kind-unspecified", req: &ocpb.KeepAliveRequest{Name: "n", Code: testCode}, wantField: "kind"},
		{name: "keepalive/kind-unknown", req: &ocpb.KeepAliveRequest{Name: "n", Code: testCode, Kind: 7}, wantField: "kind"},
		{name: "keepalive/no-code", req: &ocpb.KeepAliveRequest{Name: "n", Kind: named}, wantField: "code"},
		{name: "keepalive/no-name", req: &ocpb.KeepAliveRequest{Code: testCode, Kind: named}, wantField: "name"},

		// Restrict: 1..1024 distinct keys, each READ or WRITE.
		{name: "restrict/defaults", req: &ocpb.RestrictRequest{Name: "n", Keys: keyLocks(1)},
			want: &ocpb.RestrictRequest{Name: "n", Keys: keyLocks(1), Ttl: dur(15 * time.Second)}},
		{name: "restrict/0-keys", req: &ocpb.RestrictRequest{Name: "n"}, wantField: "keys"},
		{name: "restrict/1024-keys", req: &ocpb.RestrictRequest{Name: "n", Keys: keyLocks(1024), Ttl: dur(time.Second)}},
		{name: "restrict/1025-keys", req: &ocpb.RestrictRequest{Name: "n", Keys: keyLocks(1025)}, wantField: "keys"},
		{name: "restrict/duplicate", req: &ocpb.RestrictRequest{Name: "n", Keys: []*ocpb.KeyLockRequest{
			{Key: []byte("a"), Mode: ocpb.KeyMode_READ}, {Key: []byte("b"), Mode: ocpb.KeyMode_READ}, {Key: []byte("a"), Mode: ocpb.KeyMode_WRITE}}},
			wantField: "keys[2].key"},
		{name: "restrict/mode-unspecified", req: &ocpb.RestrictRequest{Name: "n", Keys: []*ocpb.KeyLockRequest{{Key: k}}}, wantField: "keys[0].mode"},
		{name: "restrict/mode-unknown", req: &ocpb.RestrictRequest{Name: "n", Keys: []*ocpb.KeyLockRequest{{Key: k, Mode: 3}}}, wantField: "keys[0].mode"},
		{name: "restrict/read-write", req: &ocpb.RestrictRequest{Name: "n", Ttl: dur(time.Second), Keys: []*ocpb.KeyLockRequest{
			{Key: []byte("a"), Mode: ocpb.KeyMode_READ}, {Key: []byte("b"), Mode: ocpb.KeyMode_WRITE}}}},
		{name: "restrict/nil-key-lock", req: &ocpb.RestrictRequest{Name: "n", Keys: []*ocpb.KeyLockRequest{nil}}, wantField: "keys[0]"},
		{name: "restrict/key-empty", req: &ocpb.RestrictRequest{Name: "n", Keys: []*ocpb.KeyLockRequest{{Mode: ocpb.KeyMode_READ}}}, wantField: "keys[0].key"},
		{name: "restrict/key-4097", req: &ocpb.RestrictRequest{Name: "n", Keys: []*ocpb.KeyLockRequest{{Key: bs(4097), Mode: ocpb.KeyMode_READ}}}, wantField: "keys[0].key"},
		{name: "restrict/snapshot", req: &ocpb.RestrictRequest{Name: "n", Keys: keyLocks(1), Ttl: dur(time.Second), Isolation: ocpb.Isolation_SNAPSHOT}},
		{name: "restrict/isolation-unknown", req: &ocpb.RestrictRequest{Name: "n", Keys: keyLocks(1), Isolation: 2}, wantField: "isolation"},
		{name: "restrict/name-empty", req: &ocpb.RestrictRequest{Keys: keyLocks(1)}, wantField: "name"},
		{name: "restrict/ttl-1h+1ns", req: &ocpb.RestrictRequest{Name: "n", Keys: keyLocks(1), Ttl: dur(time.Hour + 1)}, wantField: "ttl"},
		{name: "restrict/wait-1h+1ns", req: &ocpb.RestrictRequest{Name: "n", Keys: keyLocks(1), Wait: dur(time.Hour + 1)}, wantField: "wait"},
		{name: "restrict/owner-257", req: &ocpb.RestrictRequest{Name: "n", Keys: keyLocks(1), Owner: str(257)}, wantField: "owner"},
		{name: "restrict/request-id-129", req: &ocpb.RestrictRequest{Name: "n", Keys: keyLocks(1), RequestId: str(129)}, wantField: "request_id"},

		{name: "describe/ok", req: &ocpb.DescribeRequest{Name: "n"}},
		{name: "describe/restrictive", req: &ocpb.DescribeRequest{Name: "n", Kind: ocpb.LockKind_RESTRICTIVE}},
		{name: "describe/no-name", req: &ocpb.DescribeRequest{}, wantField: "name"},
		{name: "describe/kind-unknown", req: &ocpb.DescribeRequest{Name: "n", Kind: 9}, wantField: "kind"},
		{name: "list/empty", req: &ocpb.ListRequest{}},
		{name: "list/prefix-1024", req: &ocpb.ListRequest{Prefix: str(1024), Kind: named, HeldOnly: true}},
		{name: "list/prefix-1025", req: &ocpb.ListRequest{Prefix: str(1025)}, wantField: "prefix"},
		{name: "list/prefix-utf8", req: &ocpb.ListRequest{Prefix: invalidUTF8}, wantField: "prefix"},
		{name: "list/kind-unknown", req: &ocpb.ListRequest{Kind: -1}, wantField: "kind"},
		{name: "status/ok", req: &ocpb.StatusRequest{}},

		// Nil requests (only possible when called directly).
		{name: "nil/get", req: (*ocpb.GetRequest)(nil), wantField: "request"},
		{name: "nil/put", req: (*ocpb.PutRequest)(nil), wantField: "request"},
		{name: "nil/delete", req: (*ocpb.DeleteRequest)(nil), wantField: "request"},
		{name: "nil/cas", req: (*ocpb.CompareAndSwapRequest)(nil), wantField: "request"},
		{name: "nil/batchget", req: (*ocpb.BatchGetRequest)(nil), wantField: "request"},
		{name: "nil/scan", req: (*ocpb.ScanRequest)(nil), wantField: "request"},
		{name: "nil/acquire", req: (*ocpb.AcquireRequest)(nil), wantField: "request"},
		{name: "nil/release", req: (*ocpb.ReleaseRequest)(nil), wantField: "request"},
		{name: "nil/keepalive", req: (*ocpb.KeepAliveRequest)(nil), wantField: "request"},
		{name: "nil/restrict", req: (*ocpb.RestrictRequest)(nil), wantField: "request"},
		{name: "nil/commit", req: (*ocpb.CommitRequest)(nil), wantField: "request"},
		{name: "nil/abort", req: (*ocpb.AbortRequest)(nil), wantField: "request"},
		{name: "nil/describe", req: (*ocpb.DescribeRequest)(nil), wantField: "request"},
		{name: "nil/list", req: (*ocpb.ListRequest)(nil), wantField: "request"},
		{name: "nil/status", req: (*ocpb.StatusRequest)(nil), wantField: "request"},
	}
}

func TestValidate(t *testing.T) {
	v := validator{defaultTTL: DefaultLockTTL}
	for _, tc := range validationCases() {
		t.Run(tc.name, func(t *testing.T) {
			// Validate tc.req itself: Clone would turn a nil element of a
			// repeated field into an empty message.
			req := tc.req
			want := tc.want
			if want == nil && req.ProtoReflect().IsValid() {
				want = proto.Clone(req) // accepted as is
			}
			err := validateAny(v, req)
			if tc.wantField == "" {
				if err != nil {
					t.Fatalf("want accepted, got %v", err)
				}
				if !proto.Equal(req, want) {
					t.Fatalf("normalised request:\n got %v\nwant %v", req, want)
				}
				checkAccepted(t, req)
				return
			}
			if err == nil {
				t.Fatalf("want an error naming %q, got none", tc.wantField)
			}
			if !errors.Is(err, kv.ErrInvalid) {
				t.Fatalf("error %v does not wrap kv.ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), ": "+tc.wantField+":") && !strings.HasSuffix(err.Error(), tc.wantField+" is nil") {
				t.Fatalf("error %q does not name field %q", err, tc.wantField)
			}
			mustNotContain(t, err.Error(), testCode[:31], "validation message")
		})
	}
}

// TestValidateOverGRPC sends requests through a real server: a refused one
// is answered with InvalidArgument naming the field and never reaches the
// backend; an accepted one reaches it normalised.
func TestValidateOverGRPC(t *testing.T) {
	e := newEnv(t, nil)
	ctx := testCtx(t)

	_, err := e.kv.Put(ctx, &ocpb.PutRequest{Key: []byte("k"), Value: bs(1<<20 + 1)})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), "value: 1048577 bytes") {
		t.Fatalf("oversized value: got %v", err)
	}
	_, err = e.locks.Restrict(ctx, &ocpb.RestrictRequest{Name: "n", Keys: []*ocpb.KeyLockRequest{{Key: []byte("k")}}})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), "keys[0].mode") {
		t.Fatalf("unspecified mode: got %v", err)
	}
	_, err = e.locks.Release(ctx, &ocpb.ReleaseRequest{Name: "n", Code: strings.ToUpper(testCode)})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("upper-case code: got %v", err)
	}
	mustNotContain(t, status.Convert(err).Message(), strings.ToUpper(testCode), "status message")
	if calls := e.fake.calls(); len(calls) != 0 {
		t.Fatalf("backend saw refused requests: %v", calls)
	}

	// A 1 MiB value is within both the value limit and MaxRecvMsgBytes.
	if _, err := e.kv.Put(ctx, &ocpb.PutRequest{Key: []byte("k"), Value: bs(1 << 20)}); err != nil {
		t.Fatalf("1 MiB put: %v", err)
	}
	// Normalisation reaches the backend: TestConfig's default ttl, the
	// default scan limit.
	if _, err := e.locks.Acquire(ctx, &ocpb.AcquireRequest{Name: "n"}); err != nil {
		t.Fatal(err)
	}
	if got := e.fake.lastReq("Acquire").(*ocpb.AcquireRequest).GetTtl().AsDuration(); got != MinTTL {
		t.Fatalf("Acquire ttl at backend = %s, want TestConfig's %s", got, MinTTL)
	}
	if _, err := e.kv.Scan(ctx, &ocpb.ScanRequest{Prefix: []byte("p")}); err != nil {
		t.Fatal(err)
	}
	if got := e.fake.lastReq("Scan").(*ocpb.ScanRequest).GetLimit(); got != DefaultScanLimit {
		t.Fatalf("Scan limit at backend = %d, want %d", got, DefaultScanLimit)
	}
}

// TestMaxRecvMsgBytes: a message over the limit is refused by gRPC before
// it is decoded.
func TestMaxRecvMsgBytes(t *testing.T) {
	e := newEnv(t, nil)
	ctx := testCtx(t)
	_, err := e.kv.BatchGet(ctx, &ocpb.BatchGetRequest{Keys: [][]byte{bs(4 << 20)}})
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("4 MiB key: got %v, want ResourceExhausted", err)
	}
}
