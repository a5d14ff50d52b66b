package server

import (
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/opencluster/opencluster/kv"
	"github.com/opencluster/opencluster/rpc/ocpb"
)

// The limits every request is held to (DESIGN.md §1). A request outside them
// is answered with InvalidArgument and never reaches the Backend.
const (
	// MaxKeyBytes bounds a key; keys are 1..MaxKeyBytes bytes.
	MaxKeyBytes = 4096
	// MaxValueBytes bounds a value (1 MiB); an empty value is allowed.
	MaxValueBytes = 1 << 20
	// MaxLockNameBytes bounds a lock name; names are 1..MaxLockNameBytes
	// bytes of valid UTF-8. Fence names and List prefixes follow the same
	// rule (a List prefix may be empty).
	MaxLockNameBytes = 1024
	// CodeLen is the length of a lock code: 32 lowercase hex characters.
	CodeLen = 32
	// MinTTL and MaxTTL bound a lock's ttl.
	MinTTL = time.Second
	MaxTTL = time.Hour
	// DefaultLockTTL is the default of Config.DefaultTTL.
	DefaultLockTTL = 15 * time.Second
	// MaxWait bounds a wait; a wait is unset (until the RPC deadline) or
	// 0..MaxWait.
	MaxWait = time.Hour
	// MaxRestrictKeys bounds the keys of one Restrict (1..MaxRestrictKeys,
	// no duplicates).
	MaxRestrictKeys = 1024
	// MaxBatchGetKeys bounds the keys of one BatchGet (1..MaxBatchGetKeys;
	// duplicates are allowed).
	MaxBatchGetKeys = 1024
	// DefaultScanLimit replaces a Scan limit of 0; MaxScanLimit bounds it.
	DefaultScanLimit = 1000
	MaxScanLimit     = 10000
	// MaxPrefixBytes bounds a Scan prefix and start_after (both may be
	// empty).
	MaxPrefixBytes = 4096
	// MaxRequestIDBytes bounds a request_id (optional, valid UTF-8).
	MaxRequestIDBytes = 128
	// MaxOwnerBytes bounds the free-form owner label of Acquire and
	// Restrict (optional, valid UTF-8).
	MaxOwnerBytes = 256
)

// validator checks requests against the limits above and normalises them in
// place. Every check is total: it returns an error for any input, including
// nil messages and out-of-range enums and durations, and never panics.
//
// Normalisation (the only writes into a request):
//   - Acquire, Restrict: an unset ttl becomes defaultTTL.
//   - Scan: a limit of 0 becomes DefaultScanLimit.
//   - Put, Delete: a fence with an empty name and token 0 becomes nil (no
//     fence).
//
// Defaults are written only into requests that pass every check; a refused
// Put or Delete may have had its empty fence dropped, which is harmless.
// Nothing else changes: an unset wait stays unset (it means "until the RPC
// deadline", while 0 means "try once"), Restrict keys keep their order, and
// codes are not case-folded (an upper-case code is refused).
type validator struct {
	defaultTTL time.Duration
}

// invalid returns an ErrInvalid that names the field; the text becomes the
// InvalidArgument status message. It must never include a code or a value.
func invalid(field, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", kv.ErrInvalid, field, fmt.Sprintf(format, args...))
}

func nilRequest() error {
	return fmt.Errorf("%w: request is nil", kv.ErrInvalid)
}

func checkKey(field string, k []byte) error {
	switch {
	case len(k) == 0:
		return invalid(field, "empty, want 1..%d bytes", MaxKeyBytes)
	case len(k) > MaxKeyBytes:
		return invalid(field, "%d bytes, want at most %d", len(k), MaxKeyBytes)
	}
	return nil
}

func checkValue(field string, v []byte) error {
	if len(v) > MaxValueBytes {
		return invalid(field, "%d bytes, want at most %d (1 MiB)", len(v), MaxValueBytes)
	}
	return nil
}

// checkName checks a lock name: 1..MaxLockNameBytes bytes of valid UTF-8.
func checkName(field, name string) error {
	switch {
	case name == "":
		return invalid(field, "empty, want 1..%d bytes", MaxLockNameBytes)
	case len(name) > MaxLockNameBytes:
		return invalid(field, "%d bytes, want at most %d", len(name), MaxLockNameBytes)
	case !utf8.ValidString(name):
		return invalid(field, "not valid UTF-8")
	}
	return nil
}

// checkCode checks a lock code: CodeLen lowercase hex characters, or empty
// when not required. The message never echoes the code.
func checkCode(field, code string, required bool) error {
	if code == "" {
		if required {
			return invalid(field, "required (%d lowercase hex characters)", CodeLen)
		}
		return nil
	}
	if len(code) != CodeLen {
		return invalid(field, "%d bytes, want %d lowercase hex characters", len(code), CodeLen)
	}
	for i := 0; i < len(code); i++ {
		c := code[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return invalid(field, "not %d lowercase hex characters", CodeLen)
		}
	}
	return nil
}

// checkLabel checks an optional free-form string: at most max bytes of valid
// UTF-8.
func checkLabel(field, s string, max int) error {
	switch {
	case len(s) > max:
		return invalid(field, "%d bytes, want at most %d", len(s), max)
	case !utf8.ValidString(s):
		return invalid(field, "not valid UTF-8")
	}
	return nil
}

func checkRequestID(id string) error { return checkLabel("request_id", id, MaxRequestIDBytes) }

// checkRetry refuses retry without a request id: the server finds an
// earlier attempt by its id, so such a retry would silently be a first
// attempt, applying again what may have applied.
func checkRetry(retry bool, id string) error {
	if retry && id == "" {
		return invalid("retry", "true without request_id: an earlier attempt is found by its request_id")
	}
	return nil
}

// checkDuration returns d as a time.Duration, refusing malformed durations
// (nanos out of range, or of a different sign than seconds, or beyond
// ±10000 years).
func checkDuration(field string, d *durationpb.Duration) (time.Duration, error) {
	if err := d.CheckValid(); err != nil {
		return 0, invalid(field, "malformed duration (seconds=%d nanos=%d)", d.GetSeconds(), d.GetNanos())
	}
	return d.AsDuration(), nil
}

// checkWait checks an optional wait: unset, or 0..MaxWait.
func checkWait(d *durationpb.Duration) error {
	if d == nil {
		return nil
	}
	w, err := checkDuration("wait", d)
	if err != nil {
		return err
	}
	switch {
	case w < 0:
		return invalid("wait", "negative (%s), want unset or 0..%s", w, MaxWait)
	case w > MaxWait:
		return invalid("wait", "%s, want at most %s", w, MaxWait)
	}
	return nil
}

// checkTTL checks a ttl and writes the default into an unset one.
func (v validator) checkTTL(p **durationpb.Duration) error {
	if *p == nil {
		*p = durationpb.New(v.defaultTTL)
		return nil
	}
	t, err := checkDuration("ttl", *p)
	if err != nil {
		return err
	}
	if t < MinTTL || t > MaxTTL {
		return invalid("ttl", "%s, want unset (default %s) or %s..%s", t, v.defaultTTL, MinTTL, MaxTTL)
	}
	return nil
}

// checkFence checks an optional fence and drops an empty one ({"", 0}).
func checkFence(p **ocpb.Fence) error {
	f := *p
	if f == nil {
		return nil
	}
	switch {
	case f.Name == "" && f.Token == 0:
		*p = nil
		return nil
	case f.Name == "":
		return invalid("fence.name", "required when fence.token > 0")
	case f.Token == 0:
		return invalid("fence.token", "0, want > 0 when fence.name is set (tokens start at 1)")
	}
	return checkName("fence.name", f.Name)
}

// checkFenceOutsideLock refuses a fence on a write under a restrictive
// lock: that write is provisional and its key is locked WRITE, so no
// fence is checked or recorded for it (the lock's own fence is the one
// that orders its holders), and accepting one would pass a stale token
// silently.
func checkFenceOutsideLock(f *ocpb.Fence, code string) error {
	if f != nil && code != "" {
		return invalid("fence", "not allowed with code: a write under a restrictive lock is ordered by the lock, not by a fence")
	}
	return nil
}

func checkKind(field string, k ocpb.LockKind, allowUnspecified bool) error {
	switch k {
	case ocpb.LockKind_NAMED, ocpb.LockKind_RESTRICTIVE:
		return nil
	case ocpb.LockKind_LOCK_KIND_UNSPECIFIED:
		if allowUnspecified {
			return nil
		}
	}
	if allowUnspecified {
		return invalid(field, "%s, want LOCK_KIND_UNSPECIFIED (any), NAMED or RESTRICTIVE", k)
	}
	return invalid(field, "%s, want NAMED or RESTRICTIVE", k)
}

// nameAndCode checks the (name, code, request_id) triple of Release, Commit
// and Abort: all but request_id required.
func nameAndCode(name, code, requestID string) error {
	if err := checkName("name", name); err != nil {
		return err
	}
	if err := checkCode("code", code, true); err != nil {
		return err
	}
	return checkRequestID(requestID)
}

func (validator) get(r *ocpb.GetRequest) error {
	if r == nil {
		return nilRequest()
	}
	if err := checkKey("key", r.Key); err != nil {
		return err
	}
	if err := checkCode("code", r.Code, false); err != nil {
		return err
	}
	return checkWait(r.Wait)
}

func (validator) put(r *ocpb.PutRequest) error {
	if r == nil {
		return nilRequest()
	}
	if err := checkKey("key", r.Key); err != nil {
		return err
	}
	if err := checkValue("value", r.Value); err != nil {
		return err
	}
	if err := checkCode("code", r.Code, false); err != nil {
		return err
	}
	if err := checkFence(&r.Fence); err != nil {
		return err
	}
	if err := checkFenceOutsideLock(r.Fence, r.Code); err != nil {
		return err
	}
	if err := checkRequestID(r.RequestId); err != nil {
		return err
	}
	if err := checkRetry(r.Retry, r.RequestId); err != nil {
		return err
	}
	return checkWait(r.Wait)
}

func (validator) delete(r *ocpb.DeleteRequest) error {
	if r == nil {
		return nilRequest()
	}
	if err := checkKey("key", r.Key); err != nil {
		return err
	}
	if err := checkCode("code", r.Code, false); err != nil {
		return err
	}
	if err := checkFence(&r.Fence); err != nil {
		return err
	}
	if err := checkFenceOutsideLock(r.Fence, r.Code); err != nil {
		return err
	}
	if err := checkRequestID(r.RequestId); err != nil {
		return err
	}
	if err := checkRetry(r.Retry, r.RequestId); err != nil {
		return err
	}
	return checkWait(r.Wait)
}

func (validator) compareAndSwap(r *ocpb.CompareAndSwapRequest) error {
	if r == nil {
		return nilRequest()
	}
	if err := checkKey("key", r.Key); err != nil {
		return err
	}
	if err := checkValue("value", r.Value); err != nil {
		return err
	}
	if r.Delete && len(r.Value) > 0 {
		return invalid("value", "must be empty when delete is set")
	}
	if err := checkRequestID(r.RequestId); err != nil {
		return err
	}
	if err := checkRetry(r.Retry, r.RequestId); err != nil {
		return err
	}
	return checkWait(r.Wait)
}

func (validator) batchGet(r *ocpb.BatchGetRequest) error {
	if r == nil {
		return nilRequest()
	}
	switch n := len(r.Keys); {
	case n == 0:
		return invalid("keys", "empty, want 1..%d keys", MaxBatchGetKeys)
	case n > MaxBatchGetKeys:
		return invalid("keys", "%d keys, want at most %d", n, MaxBatchGetKeys)
	}
	for i, k := range r.Keys {
		if err := checkKey(fmt.Sprintf("keys[%d]", i), k); err != nil {
			return err
		}
	}
	return checkWait(r.Wait)
}

func (validator) scan(r *ocpb.ScanRequest) error {
	if r == nil {
		return nilRequest()
	}
	if len(r.Prefix) > MaxPrefixBytes {
		return invalid("prefix", "%d bytes, want at most %d", len(r.Prefix), MaxPrefixBytes)
	}
	if len(r.StartAfter) > MaxKeyBytes {
		return invalid("start_after", "%d bytes, want at most %d", len(r.StartAfter), MaxKeyBytes)
	}
	switch {
	case r.Limit < 0:
		return invalid("limit", "%d, want 0 (default %d) or 1..%d", r.Limit, DefaultScanLimit, MaxScanLimit)
	case r.Limit > MaxScanLimit:
		return invalid("limit", "%d, want at most %d", r.Limit, MaxScanLimit)
	}
	if err := checkWait(r.Wait); err != nil {
		return err
	}
	if r.Limit == 0 {
		r.Limit = DefaultScanLimit
	}
	return nil
}

func (v validator) acquire(r *ocpb.AcquireRequest) error {
	if r == nil {
		return nilRequest()
	}
	if err := checkName("name", r.Name); err != nil {
		return err
	}
	return v.grant(r.Wait, r.Owner, r.RequestId, &r.Ttl)
}

// grant checks the fields every lock grant (Acquire, Restrict) shares and
// fills in the default ttl.
func (v validator) grant(wait *durationpb.Duration, owner, requestID string, ttl **durationpb.Duration) error {
	if err := checkWait(wait); err != nil {
		return err
	}
	if err := checkLabel("owner", owner, MaxOwnerBytes); err != nil {
		return err
	}
	if err := checkRequestID(requestID); err != nil {
		return err
	}
	return v.checkTTL(ttl)
}

func (validator) release(r *ocpb.ReleaseRequest) error {
	if r == nil {
		return nilRequest()
	}
	if err := checkRetry(r.Retry, r.RequestId); err != nil {
		return err
	}
	return nameAndCode(r.Name, r.Code, r.RequestId)
}

func (validator) keepAlive(r *ocpb.KeepAliveRequest) error {
	if r == nil {
		return nilRequest()
	}
	if err := checkName("name", r.Name); err != nil {
		return err
	}
	if err := checkCode("code", r.Code, true); err != nil {
		return err
	}
	return checkKind("kind", r.Kind, false)
}

func (v validator) restrict(r *ocpb.RestrictRequest) error {
	if r == nil {
		return nilRequest()
	}
	if err := checkName("name", r.Name); err != nil {
		return err
	}
	switch n := len(r.Keys); {
	case n == 0:
		return invalid("keys", "empty, want 1..%d keys", MaxRestrictKeys)
	case n > MaxRestrictKeys:
		return invalid("keys", "%d keys, want at most %d", n, MaxRestrictKeys)
	}
	seen := make(map[string]int, len(r.Keys))
	for i, kl := range r.Keys {
		if kl == nil {
			return invalid(fmt.Sprintf("keys[%d]", i), "nil")
		}
		if err := checkKey(fmt.Sprintf("keys[%d].key", i), kl.Key); err != nil {
			return err
		}
		if j, dup := seen[string(kl.Key)]; dup {
			return invalid(fmt.Sprintf("keys[%d].key", i), "duplicate of keys[%d].key", j)
		}
		seen[string(kl.Key)] = i
		if kl.Mode != ocpb.KeyMode_READ && kl.Mode != ocpb.KeyMode_WRITE {
			return invalid(fmt.Sprintf("keys[%d].mode", i), "%s, want READ or WRITE", kl.Mode)
		}
	}
	if r.Isolation != ocpb.Isolation_STRICT && r.Isolation != ocpb.Isolation_SNAPSHOT {
		return invalid("isolation", "%s, want STRICT or SNAPSHOT", r.Isolation)
	}
	return v.grant(r.Wait, r.Owner, r.RequestId, &r.Ttl)
}

func (validator) commit(r *ocpb.CommitRequest) error {
	if r == nil {
		return nilRequest()
	}
	seen := make(map[string]bool, len(r.Writes))
	for i, w := range r.Writes {
		field := fmt.Sprintf("writes[%d]", i)
		if w == nil {
			return invalid(field, "nil write")
		}
		if err := checkKey(field+".key", w.Key); err != nil {
			return err
		}
		if err := checkValue(field+".value", w.Value); err != nil {
			return err
		}
		if w.Delete && len(w.Value) > 0 {
			return invalid(field+".value", "a delete carries no value")
		}
		if seen[string(w.Key)] {
			return invalid(field+".key", "%q written twice", w.Key)
		}
		seen[string(w.Key)] = true
	}
	return nameAndCode(r.Name, r.Code, r.RequestId)
}

func (validator) abort(r *ocpb.AbortRequest) error {
	if r == nil {
		return nilRequest()
	}
	return nameAndCode(r.Name, r.Code, r.RequestId)
}

func (validator) describe(r *ocpb.DescribeRequest) error {
	if r == nil {
		return nilRequest()
	}
	if err := checkName("name", r.Name); err != nil {
		return err
	}
	return checkKind("kind", r.Kind, true)
}

func (validator) list(r *ocpb.ListRequest) error {
	if r == nil {
		return nilRequest()
	}
	if err := checkLabel("prefix", r.Prefix, MaxLockNameBytes); err != nil {
		return err
	}
	return checkKind("kind", r.Kind, true)
}

func (validator) status(r *ocpb.StatusRequest) error {
	if r == nil {
		return nilRequest()
	}
	return nil
}

func (validator) moveReplica(r *ocpb.MoveReplicaRequest) error {
	if r == nil {
		return nilRequest()
	}
	for field, id := range map[string]string{"from": r.From, "to": r.To} {
		if err := checkNodeID(field, id); err != nil {
			return err
		}
	}
	if r.From == r.To {
		return invalid("to", "the same node as from")
	}
	return nil
}

func (validator) transferLeader(r *ocpb.TransferLeaderRequest) error {
	if r == nil {
		return nilRequest()
	}
	return checkNodeID("to", r.To)
}

func (validator) drainNode(r *ocpb.DrainNodeRequest) error {
	if r == nil {
		return nilRequest()
	}
	return checkNodeID("node_id", r.NodeId)
}

func (validator) removeNode(r *ocpb.RemoveNodeRequest) error {
	if r == nil {
		return nilRequest()
	}
	return checkNodeID("node_id", r.NodeId)
}

// checkNodeID checks a node id as Status prints it: a non-zero decimal.
func checkNodeID(field, id string) error {
	if v, err := strconv.ParseUint(id, 10, 64); err != nil || v == 0 {
		return invalid(field, "%q is not a node id", id)
	}
	return nil
}
