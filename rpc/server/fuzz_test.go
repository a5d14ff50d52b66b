package server

import (
	"testing"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/opencluster/opencluster/rpc/ocpb"
)

// fuzzTypes are the request types FuzzValidate decodes into, indexed by the
// fuzzer's kind byte.
var fuzzTypes = []func() proto.Message{
	func() proto.Message { return new(ocpb.GetRequest) },
	func() proto.Message { return new(ocpb.PutRequest) },
	func() proto.Message { return new(ocpb.DeleteRequest) },
	func() proto.Message { return new(ocpb.CompareAndSwapRequest) },
	func() proto.Message { return new(ocpb.BatchGetRequest) },
	func() proto.Message { return new(ocpb.ScanRequest) },
	func() proto.Message { return new(ocpb.AcquireRequest) },
	func() proto.Message { return new(ocpb.ReleaseRequest) },
	func() proto.Message { return new(ocpb.KeepAliveRequest) },
	func() proto.Message { return new(ocpb.RestrictRequest) },
	func() proto.Message { return new(ocpb.CommitRequest) },
	func() proto.Message { return new(ocpb.AbortRequest) },
	func() proto.Message { return new(ocpb.DescribeRequest) },
	func() proto.Message { return new(ocpb.ListRequest) },
	func() proto.Message { return new(ocpb.StatusRequest) },
}

func fuzzKind(m proto.Message) uint8 {
	name := m.ProtoReflect().Descriptor().FullName()
	for i, f := range fuzzTypes {
		if f().ProtoReflect().Descriptor().FullName() == name {
			return uint8(i)
		}
	}
	panic("fuzzKind: unknown type " + string(name))
}

// maxFuzzSeedBytes bounds the seeds FuzzValidate takes from TestValidate.
const maxFuzzSeedBytes = 16 << 10

// FuzzValidate decodes arbitrary bytes into one of the request types and
// validates it: validation must never panic, a refused request must not be
// changed into an accepted one by validating again, and an accepted request
// must satisfy every limit (checked by checkAccepted, written independently
// of validate.go) and be a fixed point of normalisation.
//
// The seed corpus (every case of TestValidate that marshals) runs in plain
// `go test`; fuzz with
//
//	go test -run '^$' -fuzz FuzzValidate ./rpc/server/
func FuzzValidate(f *testing.F) {
	for _, tc := range validationCases() {
		if !tc.req.ProtoReflect().IsValid() {
			continue
		}
		b, err := proto.Marshal(tc.req)
		if err != nil {
			continue // invalid UTF-8 does not marshal, and cannot arrive over gRPC
		}
		if len(b) > maxFuzzSeedBytes {
			continue // the 1 MiB and 1024-key cases stall the mutator; TestValidate has them
		}
		f.Add(fuzzKind(tc.req), b)
	}
	v := validator{defaultTTL: 15 * time.Second}
	f.Fuzz(func(t *testing.T, kind uint8, data []byte) {
		m := fuzzTypes[int(kind)%len(fuzzTypes)]()
		if err := proto.Unmarshal(data, m); err != nil {
			return
		}
		if err := validateAny(v, m); err != nil {
			return
		}
		checkAccepted(t, m)
		again := proto.Clone(m)
		if err := validateAny(v, again); err != nil {
			t.Fatalf("normalised request refused on second validation: %v", err)
		}
		if !proto.Equal(m, again) {
			t.Fatalf("normalisation not idempotent:\n%v\n%v", m, again)
		}
	})
}

// checkAccepted fails t unless the accepted, normalised request m satisfies
// the limits of DESIGN.md §1 and the brief, spelled out here with literals
// rather than validate.go's constants.
func checkAccepted(t *testing.T, m proto.Message) {
	t.Helper()
	key := func(field string, k []byte) {
		if len(k) < 1 || len(k) > 4096 {
			t.Fatalf("accepted %s of %d bytes", field, len(k))
		}
	}
	value := func(v []byte) {
		if len(v) > 1<<20 {
			t.Fatalf("accepted value of %d bytes", len(v))
		}
	}
	name := func(field, s string) {
		if len(s) < 1 || len(s) > 1024 || !utf8.ValidString(s) {
			t.Fatalf("accepted %s %q", field, s)
		}
	}
	code := func(c string, required bool) {
		if c == "" && !required {
			return
		}
		if len(c) != 32 {
			t.Fatalf("accepted code of %d bytes", len(c))
		}
		for _, r := range c {
			if !('0' <= r && r <= '9' || 'a' <= r && r <= 'f') {
				t.Fatalf("accepted code with %q", r)
			}
		}
	}
	label := func(field, s string, max int) {
		if len(s) > max || !utf8.ValidString(s) {
			t.Fatalf("accepted %s of %d bytes", field, len(s))
		}
	}
	wait := func(d *durationpb.Duration) {
		if d == nil {
			return
		}
		if d.CheckValid() != nil || d.AsDuration() < 0 || d.AsDuration() > time.Hour {
			t.Fatalf("accepted wait %v", d)
		}
	}
	ttl := func(d *durationpb.Duration) {
		if d == nil {
			t.Fatalf("ttl not normalised")
		}
		if d.CheckValid() != nil || d.AsDuration() < time.Second || d.AsDuration() > time.Hour {
			t.Fatalf("accepted ttl %v", d)
		}
	}
	fence := func(f *ocpb.Fence) {
		if f == nil {
			return
		}
		if f.Token == 0 {
			t.Fatalf("accepted fence with token 0: %v", f)
		}
		name("fence.name", f.Name)
	}
	kind := func(k ocpb.LockKind, anyOK bool) {
		if k != ocpb.LockKind_NAMED && k != ocpb.LockKind_RESTRICTIVE && !(anyOK && k == ocpb.LockKind_LOCK_KIND_UNSPECIFIED) {
			t.Fatalf("accepted kind %v", k)
		}
	}
	switch r := m.(type) {
	case *ocpb.GetRequest:
		key("key", r.Key)
		code(r.Code, false)
		wait(r.Wait)
	case *ocpb.PutRequest:
		key("key", r.Key)
		value(r.Value)
		code(r.Code, false)
		fence(r.Fence)
		label("request_id", r.RequestId, 128)
		wait(r.Wait)
	case *ocpb.DeleteRequest:
		key("key", r.Key)
		code(r.Code, false)
		fence(r.Fence)
		label("request_id", r.RequestId, 128)
		wait(r.Wait)
	case *ocpb.CompareAndSwapRequest:
		key("key", r.Key)
		value(r.Value)
		if r.Delete && len(r.Value) > 0 {
			t.Fatalf("accepted delete with a value")
		}
		label("request_id", r.RequestId, 128)
		wait(r.Wait)
	case *ocpb.BatchGetRequest:
		if len(r.Keys) < 1 || len(r.Keys) > 1024 {
			t.Fatalf("accepted BatchGet of %d keys", len(r.Keys))
		}
		for _, k := range r.Keys {
			key("keys[]", k)
		}
		wait(r.Wait)
	case *ocpb.ScanRequest:
		if len(r.Prefix) > 4096 || len(r.StartAfter) > 4096 {
			t.Fatalf("accepted prefix %d / start_after %d bytes", len(r.Prefix), len(r.StartAfter))
		}
		if r.Limit < 1 || r.Limit > 10000 {
			t.Fatalf("accepted (normalised) limit %d", r.Limit)
		}
		wait(r.Wait)
	case *ocpb.AcquireRequest:
		name("name", r.Name)
		ttl(r.Ttl)
		wait(r.Wait)
		label("owner", r.Owner, 256)
		label("request_id", r.RequestId, 128)
	case *ocpb.ReleaseRequest:
		name("name", r.Name)
		code(r.Code, true)
		label("request_id", r.RequestId, 128)
	case *ocpb.KeepAliveRequest:
		name("name", r.Name)
		code(r.Code, true)
		kind(r.Kind, false)
	case *ocpb.RestrictRequest:
		name("name", r.Name)
		if len(r.Keys) < 1 || len(r.Keys) > 1024 {
			t.Fatalf("accepted Restrict of %d keys", len(r.Keys))
		}
		seen := map[string]bool{}
		for _, kl := range r.Keys {
			key("keys[].key", kl.GetKey())
			if seen[string(kl.GetKey())] {
				t.Fatalf("accepted duplicate key %q", kl.GetKey())
			}
			seen[string(kl.GetKey())] = true
			if kl.GetMode() != ocpb.KeyMode_READ && kl.GetMode() != ocpb.KeyMode_WRITE {
				t.Fatalf("accepted mode %v", kl.GetMode())
			}
		}
		if r.Isolation != ocpb.Isolation_STRICT && r.Isolation != ocpb.Isolation_SNAPSHOT {
			t.Fatalf("accepted isolation %v", r.Isolation)
		}
		ttl(r.Ttl)
		wait(r.Wait)
		label("owner", r.Owner, 256)
		label("request_id", r.RequestId, 128)
	case *ocpb.CommitRequest:
		name("name", r.Name)
		code(r.Code, true)
		label("request_id", r.RequestId, 128)
	case *ocpb.AbortRequest:
		name("name", r.Name)
		code(r.Code, true)
		label("request_id", r.RequestId, 128)
	case *ocpb.DescribeRequest:
		name("name", r.Name)
		kind(r.Kind, true)
	case *ocpb.ListRequest:
		label("prefix", r.Prefix, 1024)
		kind(r.Kind, true)
	case *ocpb.StatusRequest:
	default:
		t.Fatalf("checkAccepted: unknown type %T", m)
	}
}
