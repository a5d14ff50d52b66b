package clienttest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencluster/opencluster/rpc/ocpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Call records one RPC the fake received.
type Call struct {
	Method, Addr, RequestID string
}

type fakeVersion struct {
	value   []byte
	version uint64
	deleted bool
}

type fakeLock struct {
	name, code, owner string
	fence             uint64
	ttl               time.Duration
	deadline          time.Time
	acquired          uint64
}

type fakeTx struct {
	fakeLock
	keys     []*ocpb.KeyLockRequest
	snapshot bool
	start    uint64
	// writes holds provisional values (nil value with deleted set for a
	// delete), by key.
	writes map[string]fakeVersion
}

// Fake is the shared state of every fake node.
type Fake struct {
	mu struct {
		sync.Mutex
		version    uint64
		data       map[string][]fakeVersion // oldest first
		fences     map[string]uint64        // key + "\x00" + lock name -> token
		fenceSeq   map[string]uint64        // lock name -> last fence
		named      map[string]*fakeLock
		restr      map[string]*fakeTx
		aborted    map[string]bool // codes of lost restrictive locks
		dedup      map[string]proto.Message
		calls      []Call
		failures   map[string][]codes.Code
		keepAlives map[string]int // code -> renewals received
		// abortCommits makes the next n Commits lose their lock.
		abortCommits int
		// leader is the gRPC target Status names as the one bucket's
		// leader ("" none).
		leader string
	}
}

func newFake() *Fake {
	f := &Fake{}
	f.mu.data = map[string][]fakeVersion{}
	f.mu.fences = map[string]uint64{}
	f.mu.fenceSeq = map[string]uint64{}
	f.mu.named = map[string]*fakeLock{}
	f.mu.restr = map[string]*fakeTx{}
	f.mu.aborted = map[string]bool{}
	f.mu.dedup = map[string]proto.Message{}
	f.mu.failures = map[string][]codes.Code{}
	f.mu.keepAlives = map[string]int{}
	return f
}

func fakeCode() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Fail queues n failures with code for method.
func (f *Fake) Fail(method string, code codes.Code, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for range n {
		f.mu.failures[method] = append(f.mu.failures[method], code)
	}
}

// SetLeader makes Status report one bucket led by the node at target (a
// gRPC target, as Targets returns), for clients that route by placement.
func (f *Fake) SetLeader(target string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mu.leader = target
}

// CallsOf returns the calls of method received so far.
func (f *Fake) CallsOf(method string) []Call {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Call
	for _, c := range f.mu.calls {
		if c.Method == method {
			out = append(out, c)
		}
	}
	return out
}

func (f *Fake) KeepAliveCount(code string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.mu.keepAlives[code]
}

// NamedHeld reports whether the named lock name is held.
func (f *Fake) NamedHeld(name string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.mu.named[name] != nil
}

// DropLock makes the lock name (of either kind) lost.
func (f *Fake) DropLock(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.mu.named, name)
	if tx := f.mu.restr[name]; tx != nil {
		f.mu.aborted[tx.code] = true
		delete(f.mu.restr, name)
	}
}

func (f *Fake) SetAbortCommits(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mu.abortCommits = n
}

// begin records a call and returns a queued failure, if any.
func (f *Fake) begin(method, addr, requestID string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mu.calls = append(f.mu.calls, Call{method, addr, requestID})
	if q := f.mu.failures[method]; len(q) > 0 {
		f.mu.failures[method] = q[1:]
		return status.Errorf(q[0], "injected %s", q[0])
	}
	return nil
}

// dedupLocked returns the stored answer to requestID, if any.
func (f *Fake) dedupLocked(requestID string) proto.Message {
	if requestID == "" {
		return nil
	}
	return f.mu.dedup[requestID]
}

func (f *Fake) rememberLocked(requestID string, m proto.Message) {
	if requestID != "" {
		f.mu.dedup[requestID] = m
	}
}

func checkKey(key []byte) error {
	if len(key) == 0 || len(key) > 4096 {
		return status.Errorf(codes.InvalidArgument, "key must be 1..4096 bytes, not %d", len(key))
	}
	return nil
}

// readLocked returns the newest version of key at or below at (0: newest).
func (f *Fake) readLocked(key string, at uint64) (fakeVersion, bool) {
	vs := f.mu.data[key]
	for i := len(vs) - 1; i >= 0; i-- {
		if at == 0 || vs[i].version <= at {
			if vs[i].deleted {
				return fakeVersion{}, false
			}
			return vs[i], true
		}
	}
	return fakeVersion{}, false
}

func (f *Fake) writeLocked(key string, v fakeVersion) uint64 {
	f.mu.version++
	v.version = f.mu.version
	f.mu.data[key] = append(f.mu.data[key], v)
	return v.version
}

// txLocked returns the live restrictive lock with code, or nil.
func (f *Fake) txLocked(code string) *fakeTx {
	for _, tx := range f.mu.restr {
		if tx.code == code {
			if time.Now().After(tx.deadline) {
				f.mu.aborted[tx.code] = true
				delete(f.mu.restr, tx.name)
				return nil
			}
			return tx
		}
	}
	return nil
}

func (tx *fakeTx) mode(key []byte) ocpb.KeyMode {
	for _, k := range tx.keys {
		if bytes.Equal(k.Key, key) {
			return k.Mode
		}
	}
	return ocpb.KeyMode_KEY_MODE_UNSPECIFIED
}

func (f *Fake) checkFenceLocked(key []byte, fence *ocpb.Fence) error {
	if fence == nil {
		return nil
	}
	// As the server: a token its lock never granted is refused, or it
	// would lock the key's real holders out.
	if granted := max(f.mu.fenceSeq[fence.Name], f.mu.fenceSeq["\x00"+fence.Name]); fence.Token > granted {
		return status.Errorf(codes.FailedPrecondition, "fence %d of %q never granted (newest %d)", fence.Token, fence.Name, granted)
	}
	fk := string(key) + "\x00" + fence.Name
	if fence.Token < f.mu.fences[fk] {
		return status.Errorf(codes.FailedPrecondition, "fence %d too low (accepted %d)", fence.Token, f.mu.fences[fk])
	}
	f.mu.fences[fk] = fence.Token
	return nil
}

// --- KV ---

type fakeKV struct {
	ocpb.UnimplementedKVServer
	f    *Fake
	addr string
}

func (s *fakeKV) Get(ctx context.Context, req *ocpb.GetRequest) (*ocpb.GetResponse, error) {
	f := s.f
	if err := f.begin("Get", s.addr, ""); err != nil {
		return nil, err
	}
	if err := checkKey(req.Key); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if req.Code != "" {
		tx := f.txLocked(req.Code)
		if tx == nil {
			return nil, status.Error(codes.FailedPrecondition, "wrong or stale code")
		}
		if w, ok := tx.writes[string(req.Key)]; ok {
			if w.deleted {
				return nil, status.Error(codes.NotFound, "key not found")
			}
			return &ocpb.GetResponse{Kv: &ocpb.KeyValue{Key: req.Key, Value: w.value}}, nil
		}
	}
	v, ok := f.readLocked(string(req.Key), req.Version)
	if !ok {
		return nil, status.Error(codes.NotFound, "key not found")
	}
	return &ocpb.GetResponse{Kv: &ocpb.KeyValue{Key: req.Key, Value: v.value, Version: v.version}}, nil
}

func (s *fakeKV) Put(ctx context.Context, req *ocpb.PutRequest) (*ocpb.PutResponse, error) {
	return fakeWrite(s, "Put", req.Key, req.Code, req.Fence, req.RequestId, fakeVersion{value: req.Value},
		func(v uint64) *ocpb.PutResponse { return &ocpb.PutResponse{Version: v} })
}

func (s *fakeKV) Delete(ctx context.Context, req *ocpb.DeleteRequest) (*ocpb.DeleteResponse, error) {
	return fakeWrite(s, "Delete", req.Key, req.Code, req.Fence, req.RequestId, fakeVersion{deleted: true},
		func(v uint64) *ocpb.DeleteResponse { return &ocpb.DeleteResponse{Version: v} })
}

// fakeWrite is Put and Delete: a provisional write under code, or a
// (fenced) versioned one, answered with resp(version) and deduplicated by
// request id.
func fakeWrite[Resp proto.Message](s *fakeKV, method string, key []byte, code string, fence *ocpb.Fence, requestID string,
	v fakeVersion, resp func(version uint64) Resp) (Resp, error) {
	var zero Resp
	f := s.f
	if err := f.begin(method, s.addr, requestID); err != nil {
		return zero, err
	}
	if err := checkKey(key); err != nil {
		return zero, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if m := f.dedupLocked(requestID); m != nil {
		return m.(Resp), nil
	}
	if code != "" {
		tx := f.txLocked(code)
		if tx == nil || tx.mode(key) != ocpb.KeyMode_WRITE {
			return zero, status.Error(codes.FailedPrecondition, "wrong or stale code")
		}
		tx.writes[string(key)] = v
		return resp(0), nil
	}
	if err := f.checkFenceLocked(key, fence); err != nil {
		return zero, err
	}
	out := resp(f.writeLocked(string(key), v))
	f.rememberLocked(requestID, out)
	return out, nil
}

func (s *fakeKV) CompareAndSwap(ctx context.Context, req *ocpb.CompareAndSwapRequest) (*ocpb.CompareAndSwapResponse, error) {
	f := s.f
	if err := f.begin("CompareAndSwap", s.addr, req.RequestId); err != nil {
		return nil, err
	}
	if err := checkKey(req.Key); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if m := f.dedupLocked(req.RequestId); m != nil {
		return m.(*ocpb.CompareAndSwapResponse), nil
	}
	cur, ok := f.readLocked(string(req.Key), 0)
	curVersion := uint64(0)
	if ok {
		curVersion = cur.version
	}
	if curVersion != req.ExpectedVersion {
		resp := &ocpb.CompareAndSwapResponse{}
		if ok {
			resp.Current = &ocpb.KeyValue{Key: req.Key, Value: cur.value, Version: cur.version}
		}
		return resp, nil
	}
	v := f.writeLocked(string(req.Key), fakeVersion{value: req.Value, deleted: req.Delete})
	resp := &ocpb.CompareAndSwapResponse{Succeeded: true, Version: v}
	f.rememberLocked(req.RequestId, resp)
	return resp, nil
}

func (s *fakeKV) BatchGet(ctx context.Context, req *ocpb.BatchGetRequest) (*ocpb.BatchGetResponse, error) {
	f := s.f
	if err := f.begin("BatchGet", s.addr, ""); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	at := req.Version
	if at == 0 {
		at = f.mu.version
	}
	resp := &ocpb.BatchGetResponse{Version: at}
	for _, k := range req.Keys {
		v, ok := f.readLocked(string(k), at)
		resp.Results = append(resp.Results, &ocpb.BatchGetResult{Key: k, Found: ok, Value: v.value, Version: v.version})
	}
	return resp, nil
}

func (s *fakeKV) Scan(ctx context.Context, req *ocpb.ScanRequest) (*ocpb.ScanResponse, error) {
	f := s.f
	if err := f.begin("Scan", s.addr, ""); err != nil {
		return nil, err
	}
	if req.Limit < 0 {
		return nil, status.Error(codes.InvalidArgument, "negative limit")
	}
	limit := int(req.Limit)
	if limit == 0 {
		limit = 1000
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	at := req.Version
	if at == 0 {
		at = f.mu.version
	}
	var keys []string
	for k := range f.mu.data {
		if strings.HasPrefix(k, string(req.Prefix)) && (len(req.StartAfter) == 0 || k > string(req.StartAfter)) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	resp := &ocpb.ScanResponse{Version: at}
	for _, k := range keys {
		v, ok := f.readLocked(k, at)
		if !ok {
			continue
		}
		if len(resp.Kvs) == limit {
			resp.More = true
			break
		}
		resp.Kvs = append(resp.Kvs, &ocpb.KeyValue{Key: []byte(k), Value: v.value, Version: v.version})
	}
	return resp, nil
}

// --- Locks ---

type fakeLocks struct {
	ocpb.UnimplementedLocksServer
	f    *Fake
	addr string
}

// WaitFor polls try until it reports done, the wait ends (DeadlineExceeded)
// or ctx ends.
func WaitFor(ctx context.Context, wait *durationpb.Duration, try func() (bool, error)) error {
	var deadline time.Time
	if wait != nil {
		deadline = time.Now().Add(wait.AsDuration())
	}
	for {
		done, err := try()
		if done || err != nil {
			return err
		}
		if !deadline.IsZero() && !time.Now().Before(deadline) {
			return status.Error(codes.DeadlineExceeded, "lock wait timed out")
		}
		select {
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func ttlOf(d *durationpb.Duration) time.Duration {
	if d == nil || d.AsDuration() <= 0 {
		return 15 * time.Second
	}
	return d.AsDuration()
}

func (s *fakeLocks) Acquire(ctx context.Context, req *ocpb.AcquireRequest) (*ocpb.AcquireResponse, error) {
	f := s.f
	if err := f.begin("Acquire", s.addr, req.RequestId); err != nil {
		return nil, err
	}
	if req.Name == "" {
		return nil, status.Error(codes.InvalidArgument, "empty lock name")
	}
	var resp *ocpb.AcquireResponse
	err := WaitFor(ctx, req.Wait, func() (bool, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if m := f.dedupLocked(req.RequestId); m != nil {
			resp = m.(*ocpb.AcquireResponse)
			return true, nil
		}
		if l := f.mu.named[req.Name]; l != nil && time.Now().Before(l.deadline) {
			return false, nil
		}
		ttl := ttlOf(req.Ttl)
		f.mu.fenceSeq[req.Name]++
		l := &fakeLock{name: req.Name, code: fakeCode(), owner: req.Owner, fence: f.mu.fenceSeq[req.Name],
			ttl: ttl, deadline: time.Now().Add(ttl), acquired: f.mu.version}
		f.mu.named[req.Name] = l
		resp = &ocpb.AcquireResponse{Name: l.name, Code: l.code, Fence: l.fence, Ttl: durationpb.New(ttl)}
		f.rememberLocked(req.RequestId, resp)
		return true, nil
	})
	return resp, err
}

func (s *fakeLocks) Release(ctx context.Context, req *ocpb.ReleaseRequest) (*ocpb.ReleaseResponse, error) {
	f := s.f
	if err := f.begin("Release", s.addr, req.RequestId); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if m := f.dedupLocked(req.RequestId); m != nil {
		return m.(*ocpb.ReleaseResponse), nil
	}
	l := f.mu.named[req.Name]
	if l == nil || l.code != req.Code {
		return nil, status.Error(codes.FailedPrecondition, "lock not held with this code")
	}
	delete(f.mu.named, req.Name)
	resp := &ocpb.ReleaseResponse{}
	f.rememberLocked(req.RequestId, resp)
	return resp, nil
}

func (s *fakeLocks) KeepAlive(stream grpc.BidiStreamingServer[ocpb.KeepAliveRequest, ocpb.KeepAliveResponse]) error {
	f := s.f
	if err := f.begin("KeepAlive", s.addr, ""); err != nil {
		return err
	}
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		resp := f.renew(req)
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
}

func (f *Fake) renew(req *ocpb.KeepAliveRequest) *ocpb.KeepAliveResponse {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mu.keepAlives[req.Code]++
	now := time.Now()
	var l *fakeLock
	if req.Kind != ocpb.LockKind_RESTRICTIVE {
		if n := f.mu.named[req.Name]; n != nil && n.code == req.Code {
			l = n
		}
	}
	if req.Kind != ocpb.LockKind_NAMED && l == nil {
		if tx := f.txLocked(req.Code); tx != nil {
			l = &tx.fakeLock
		}
	}
	if l == nil || now.After(l.deadline) {
		return &ocpb.KeepAliveResponse{Name: req.Name, Code: req.Code, Lost: true, Reason: "not held"}
	}
	l.deadline = now.Add(l.ttl)
	return &ocpb.KeepAliveResponse{Name: req.Name, Code: req.Code, Ttl: durationpb.New(l.ttl)}
}

func (s *fakeLocks) Restrict(ctx context.Context, req *ocpb.RestrictRequest) (*ocpb.RestrictResponse, error) {
	f := s.f
	if err := f.begin("Restrict", s.addr, req.RequestId); err != nil {
		return nil, err
	}
	if req.Name == "" || len(req.Keys) == 0 {
		return nil, status.Error(codes.InvalidArgument, "a restrictive lock needs a name and keys")
	}
	var resp *ocpb.RestrictResponse
	err := WaitFor(ctx, req.Wait, func() (bool, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if m := f.dedupLocked(req.RequestId); m != nil {
			resp = m.(*ocpb.RestrictResponse)
			return true, nil
		}
		if tx := f.mu.restr[req.Name]; tx != nil && f.txLocked(tx.code) != nil {
			return false, nil
		}
		ttl := ttlOf(req.Ttl)
		f.mu.fenceSeq["\x00"+req.Name]++
		tx := &fakeTx{
			fakeLock: fakeLock{name: req.Name, code: fakeCode(), owner: req.Owner, fence: f.mu.fenceSeq["\x00"+req.Name],
				ttl: ttl, deadline: time.Now().Add(ttl), acquired: f.mu.version},
			keys: req.Keys, snapshot: req.Isolation == ocpb.Isolation_SNAPSHOT, start: f.mu.version,
			writes: map[string]fakeVersion{},
		}
		f.mu.restr[req.Name] = tx
		resp = &ocpb.RestrictResponse{Name: tx.name, Code: tx.code, Fence: tx.fence, StartVersion: tx.start, Ttl: durationpb.New(ttl)}
		if req.Prefetch {
			for _, k := range req.Keys {
				if v, ok := f.readLocked(string(k.Key), f.mu.version); ok {
					resp.Values = append(resp.Values, &ocpb.KeyValue{Key: k.Key, Value: v.value, Version: v.version})
				}
			}
		}
		f.rememberLocked(req.RequestId, resp)
		return true, nil
	})
	return resp, err
}

func (s *fakeLocks) Commit(ctx context.Context, req *ocpb.CommitRequest) (*ocpb.CommitResponse, error) {
	f := s.f
	if err := f.begin("Commit", s.addr, req.RequestId); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if m := f.dedupLocked(req.RequestId); m != nil {
		return m.(*ocpb.CommitResponse), nil
	}
	tx := f.txLocked(req.Code)
	if tx != nil && f.mu.abortCommits > 0 {
		f.mu.abortCommits--
		f.mu.aborted[tx.code] = true
		delete(f.mu.restr, tx.name)
		tx = nil
	}
	if tx == nil || tx.name != req.Name {
		if f.mu.aborted[req.Code] {
			return nil, status.Error(codes.Aborted, "lock lost, writes discarded")
		}
		return nil, status.Error(codes.FailedPrecondition, "lock not held with this code")
	}
	for _, w := range req.Writes {
		if tx.mode(w.Key) != ocpb.KeyMode_WRITE {
			return nil, status.Error(codes.FailedPrecondition, "key not locked WRITE by this code")
		}
		tx.writes[string(w.Key)] = fakeVersion{value: w.Value, deleted: w.Delete}
	}
	f.mu.version++
	v := f.mu.version
	for k, w := range tx.writes {
		w.version = v
		f.mu.data[k] = append(f.mu.data[k], w)
	}
	delete(f.mu.restr, tx.name)
	resp := &ocpb.CommitResponse{CommitVersion: v}
	f.rememberLocked(req.RequestId, resp)
	return resp, nil
}

func (s *fakeLocks) Abort(ctx context.Context, req *ocpb.AbortRequest) (*ocpb.AbortResponse, error) {
	f := s.f
	if err := f.begin("Abort", s.addr, req.RequestId); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if m := f.dedupLocked(req.RequestId); m != nil {
		return m.(*ocpb.AbortResponse), nil
	}
	tx := f.txLocked(req.Code)
	if tx == nil || tx.name != req.Name {
		return nil, status.Error(codes.FailedPrecondition, "lock not held with this code")
	}
	f.mu.aborted[tx.code] = true
	delete(f.mu.restr, tx.name)
	resp := &ocpb.AbortResponse{}
	f.rememberLocked(req.RequestId, resp)
	return resp, nil
}

func (f *Fake) infoLocked(l *fakeLock, kind ocpb.LockKind) *ocpb.LockInfo {
	now := time.Now()
	return &ocpb.LockInfo{
		Name: l.name, Kind: kind, Held: now.Before(l.deadline), Fence: l.fence, Owner: l.owner,
		AcquiredVersion: l.acquired, Ttl: durationpb.New(l.ttl), ExpiresIn: durationpb.New(max(l.deadline.Sub(now), 0)),
	}
}

func (f *Fake) txInfoLocked(tx *fakeTx) *ocpb.LockInfo {
	info := f.infoLocked(&tx.fakeLock, ocpb.LockKind_RESTRICTIVE)
	info.Status = "PENDING"
	if tx.snapshot {
		info.Isolation = ocpb.Isolation_SNAPSHOT
	}
	for _, k := range tx.keys {
		info.Keys = append(info.Keys, &ocpb.KeyLockInfo{Key: k.Key, Mode: k.Mode})
	}
	return info
}

func (f *Fake) locksLocked(match func(name string) bool, kind ocpb.LockKind, heldOnly bool) []*ocpb.LockInfo {
	var out []*ocpb.LockInfo
	if kind != ocpb.LockKind_RESTRICTIVE {
		for name, l := range f.mu.named {
			if info := f.infoLocked(l, ocpb.LockKind_NAMED); match(name) && (!heldOnly || info.Held) {
				out = append(out, info)
			}
		}
	}
	if kind != ocpb.LockKind_NAMED {
		for name, tx := range f.mu.restr {
			if info := f.txInfoLocked(tx); match(name) && (!heldOnly || info.Held) {
				out = append(out, info)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].Kind < out[j].Kind
	})
	return out
}

func (s *fakeLocks) Describe(ctx context.Context, req *ocpb.DescribeRequest) (*ocpb.DescribeResponse, error) {
	f := s.f
	if err := f.begin("Describe", s.addr, ""); err != nil {
		return nil, err
	}
	if req.Name == "" {
		return nil, status.Error(codes.InvalidArgument, "empty lock name")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	locks := f.locksLocked(func(n string) bool { return n == req.Name }, req.Kind, false)
	return &ocpb.DescribeResponse{Locks: locks}, nil
}

func (s *fakeLocks) List(ctx context.Context, req *ocpb.ListRequest) (*ocpb.ListResponse, error) {
	f := s.f
	if err := f.begin("List", s.addr, ""); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	locks := f.locksLocked(func(n string) bool { return strings.HasPrefix(n, req.Prefix) }, req.Kind, req.HeldOnly)
	return &ocpb.ListResponse{Locks: locks}, nil
}

// --- Cluster ---

type fakeCluster struct {
	ocpb.UnimplementedClusterServer
	f    *Fake
	addr string
}

func (s *fakeCluster) Status(ctx context.Context, req *ocpb.StatusRequest) (*ocpb.StatusResponse, error) {
	if err := s.f.begin("Status", s.addr, ""); err != nil {
		return nil, err
	}
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	st := &ocpb.StatusResponse{NodeId: s.addr, ClusterId: "fake", BucketCount: 1, Now: s.f.mu.version}
	if s.f.mu.leader != "" {
		st.Members = []*ocpb.Member{{Id: "leader", Addr: s.f.mu.leader, Alive: true}}
		st.Buckets = []*ocpb.BucketStatus{{Bucket: 0, Replicas: []string{"leader"}, Leader: "leader"}}
	}
	return st, nil
}

// --- Harness ---

// Harness runs one gRPC server per address, all sharing one fake.
type Harness struct {
	Fake *Fake
	mu   struct {
		sync.Mutex
		servers   map[string]*grpc.Server
		listeners map[string]*bufconn.Listener
	}
}

// Start starts fake nodes at addrs; they stop when the test ends.
func Start(t testing.TB, addrs ...string) *Harness {
	t.Helper()
	h := &Harness{Fake: newFake()}
	h.mu.servers = map[string]*grpc.Server{}
	h.mu.listeners = map[string]*bufconn.Listener{}
	for _, addr := range addrs {
		lis := bufconn.Listen(1 << 20)
		srv := grpc.NewServer()
		ocpb.RegisterKVServer(srv, &fakeKV{f: h.Fake, addr: addr})
		ocpb.RegisterLocksServer(srv, &fakeLocks{f: h.Fake, addr: addr})
		ocpb.RegisterClusterServer(srv, &fakeCluster{f: h.Fake, addr: addr})
		h.mu.servers[addr] = srv
		h.mu.listeners[addr] = lis
		go func() { _ = srv.Serve(lis) }()
	}
	t.Cleanup(func() {
		for _, addr := range addrs {
			h.Stop(addr)
		}
	})
	return h
}

// Stop stops the node at addr: its connections break and new dials fail.
func (h *Harness) Stop(addr string) {
	h.mu.Lock()
	srv := h.mu.servers[addr]
	delete(h.mu.servers, addr)
	h.mu.Unlock()
	if srv != nil {
		srv.Stop()
	}
}

func (h *Harness) dial(ctx context.Context, addr string) (net.Conn, error) {
	h.mu.Lock()
	lis := h.mu.listeners[addr]
	h.mu.Unlock()
	if lis == nil {
		return nil, errors.New("fake: no such node")
	}
	return lis.DialContext(ctx)
}

// Targets returns the gRPC targets of addrs.
func Targets(addrs ...string) []string {
	out := make([]string, len(addrs))
	for i, a := range addrs {
		out[i] = "passthrough:///" + a
	}
	return out
}

func (h *Harness) DialOption() grpc.DialOption {
	return grpc.WithContextDialer(h.dial)
}
