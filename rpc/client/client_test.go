package client_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/opencluster/opencluster/rpc/client"
	"github.com/opencluster/opencluster/rpc/client/clienttest"
	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// newClient returns a client of the fake nodes at addrs with fast retries;
// it is closed when the test ends.
func newClient(t *testing.T, h *clienttest.Harness, addrs []string, opts ...client.Option) *client.Client {
	t.Helper()
	opts = append([]client.Option{client.WithDialOptions(h.DialOption()), client.WithRetry(3, 5*time.Millisecond)}, opts...)
	c, err := client.New(context.Background(), clienttest.Targets(addrs...), opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// within fails the test unless ch closes within d.
func within(t *testing.T, ch <-chan struct{}, d time.Duration, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(d):
		t.Fatalf("%s: not within %s", what, d)
	}
}

func TestKV(t *testing.T) {
	h := clienttest.Start(t, "n1")
	c := newClient(t, h, []string{"n1"})
	ctx := testCtx(t)

	v1, err := c.Put(ctx, []byte("a/1"), []byte("one"))
	if err != nil || v1 == 0 {
		t.Fatalf("Put = %d, %v", v1, err)
	}
	kv, err := c.Get(ctx, []byte("a/1"))
	if err != nil || string(kv.Value) != "one" || kv.Version != v1 {
		t.Fatalf("Get = %+v, %v", kv, err)
	}
	v2, err := c.Put(ctx, []byte("a/1"), []byte("uno"))
	if err != nil || v2 <= v1 {
		t.Fatalf("Put = %d, %v", v2, err)
	}
	if kv, err := c.Get(ctx, []byte("a/1"), client.AtVersion(v1)); err != nil || string(kv.Value) != "one" {
		t.Fatalf("Get at %d = %+v, %v", v1, kv, err)
	}

	// CAS: a stale expectation fails without an error and reports the
	// current value; the right one succeeds.
	ok, cur, err := c.CAS(ctx, []byte("a/1"), []byte("x"), v1)
	if err != nil || ok || cur.Version != v2 || string(cur.Value) != "uno" {
		t.Fatalf("stale CAS = %v, %+v, %v", ok, cur, err)
	}
	ok, cur, err = c.CAS(ctx, []byte("a/1"), []byte("x"), v2)
	if err != nil || !ok || cur.Version <= v2 || string(cur.Value) != "x" {
		t.Fatalf("CAS = %v, %+v, %v", ok, cur, err)
	}
	ok, _, err = c.CAS(ctx, []byte("a/2"), []byte("two"), 0)
	if err != nil || !ok {
		t.Fatalf("CAS on a missing key = %v, %v", ok, err)
	}
	if _, _, err := c.CAS(ctx, []byte("a/2"), nil, 0, client.WithCode("c")); !errors.Is(err, client.ErrInvalid) {
		t.Fatalf("CAS with a code = %v, want ErrInvalid", err)
	}

	res, err := c.BatchGet(ctx, [][]byte{[]byte("a/1"), []byte("nope"), []byte("a/2")})
	if err != nil || len(res.Items) != 3 || !res.Items[0].Found || res.Items[1].Found || string(res.Items[2].Value) != "two" {
		t.Fatalf("BatchGet = %+v, %v", res, err)
	}

	kvs, more, err := c.Scan(ctx, []byte("a/"), 1)
	if err != nil || len(kvs) != 1 || !more || string(kvs[0].Key) != "a/1" {
		t.Fatalf("Scan = %+v, %v, %v", kvs, more, err)
	}
	kvs, more, err = c.Scan(ctx, []byte("a/"), 10, client.StartAfter(kvs[0].Key))
	if err != nil || len(kvs) != 1 || more || string(kvs[0].Key) != "a/2" {
		t.Fatalf("Scan after = %+v, %v, %v", kvs, more, err)
	}

	if _, err := c.Delete(ctx, []byte("a/1")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, []byte("a/1")); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("Get after Delete = %v", err)
	}
	st, err := c.Status(ctx)
	if err != nil || st.ClusterId != "fake" {
		t.Fatalf("Status = %v, %v", st, err)
	}
}

// TestErrors checks that errors match their sentinel and keep their gRPC
// status (DESIGN.md §4: one code per failure class).
func TestErrors(t *testing.T) {
	h := clienttest.Start(t, "n1")
	c := newClient(t, h, []string{"n1"})
	ctx := testCtx(t)
	held, err := c.Lock(ctx, "busy", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = held.Unlock(ctx) }()

	for _, tc := range []struct {
		name     string
		call     func() error
		sentinel error
		code     codes.Code
	}{
		{"get missing", func() error { _, err := c.Get(ctx, []byte("missing")); return err }, client.ErrNotFound, codes.NotFound},
		{"put empty key", func() error { _, err := c.Put(ctx, nil, []byte("v")); return err }, client.ErrInvalid, codes.InvalidArgument},
		{"put wrong code", func() error {
			_, err := c.Put(ctx, []byte("k"), []byte("v"), client.WithCode("0123456789abcdef0123456789abcdef"))
			return err
		}, client.ErrNotHolder, codes.FailedPrecondition},
		{"release wrong code", func() error { return c.Release(ctx, "busy", "00000000000000000000000000000000") }, client.ErrNotHolder, codes.FailedPrecondition},
		{"lock wait", func() error {
			_, err := c.Lock(ctx, "busy", time.Second, client.WithLockWait(20*time.Millisecond))
			return err
		}, client.ErrWaitTimeout, codes.DeadlineExceeded},
		{"unavailable", func() error {
			h.Fake.Fail("Get", codes.Unavailable, 3)
			_, err := c.Get(ctx, []byte("k"))
			return err
		}, client.ErrUnavailable, codes.Unavailable},
		{"aborted", func() error {
			h.Fake.Fail("Commit", codes.Aborted, 1)
			_, err := c.Commit(ctx, "tx", "00000000000000000000000000000000")
			return err
		}, client.ErrAborted, codes.Aborted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if !errors.Is(err, tc.sentinel) {
				t.Fatalf("err = %v, want %v", err, tc.sentinel)
			}
			if got := status.Code(err); got != tc.code {
				t.Fatalf("status.Code = %s, want %s", got, tc.code)
			}
			wrapped := fmt.Errorf("outer: %w", err)
			if got := status.Code(wrapped); got != tc.code || !errors.Is(wrapped, tc.sentinel) {
				t.Fatalf("wrapped: code %s, Is %v", got, errors.Is(wrapped, tc.sentinel))
			}
			var ce *client.Error
			if !errors.As(err, &ce) || ce.Code() != tc.code {
				t.Fatalf("errors.As(*client.Error) failed for %v", err)
			}
		})
	}

	t.Run("caller deadline", func(t *testing.T) {
		dctx, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
		defer cancel()
		_, err := c.Lock(dctx, "busy", time.Second)
		if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, client.ErrWaitTimeout) || status.Code(err) != codes.DeadlineExceeded {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("fence too low", func(t *testing.T) {
		var fences []uint64
		for range 2 {
			l, err := c.Lock(ctx, "fenced", time.Second)
			if err != nil {
				t.Fatal(err)
			}
			fences = append(fences, l.Fence())
			if err := l.Unlock(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := c.Put(ctx, []byte("f"), []byte("v"), client.WithFence("fenced", fences[1])); err != nil {
			t.Fatal(err)
		}
		_, err := c.Put(ctx, []byte("f"), []byte("v"), client.WithFence("fenced", fences[0]))
		if !errors.Is(err, client.ErrNotHolder) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("fence never granted", func(t *testing.T) {
		_, err := c.Put(ctx, []byte("g"), []byte("v"), client.WithFence("fenced", 1000))
		if !errors.Is(err, client.ErrNotHolder) || status.Code(err) != codes.FailedPrecondition {
			t.Fatalf("err = %v", err)
		}
	})
}

// TestRetryReusesRequestID checks DESIGN.md §2 "Every mutating RPC carries a
// request id so retries are safe": Unavailable is retried on the next
// endpoint with the same id; other errors are not retried.
func TestRetryReusesRequestID(t *testing.T) {
	h := clienttest.Start(t, "n1", "n2")
	c := newClient(t, h, []string{"n1", "n2"})
	ctx := testCtx(t)

	h.Fake.Fail("Put", codes.Unavailable, 2)
	if _, err := c.Put(ctx, []byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	calls := h.Fake.CallsOf("Put")
	if len(calls) != 3 {
		t.Fatalf("Put calls = %+v, want 3", calls)
	}
	for _, cl := range calls[1:] {
		if cl.RequestID != calls[0].RequestID || cl.RequestID == "" {
			t.Fatalf("request ids differ: %+v", calls)
		}
	}
	if calls[0].Addr == calls[1].Addr {
		t.Fatalf("retry went to the same endpoint: %+v", calls)
	}
	if _, err := c.Put(ctx, []byte("k"), []byte("v2")); err != nil {
		t.Fatal(err)
	}
	if calls := h.Fake.CallsOf("Put"); calls[3].RequestID == calls[0].RequestID {
		t.Fatal("a new operation reused the old request id")
	}

	// A retried Acquire gets the same grant (same id, dedup on the server).
	h.Fake.Fail("Acquire", codes.Unavailable, 1)
	l, err := c.Lock(ctx, "L", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if acq := h.Fake.CallsOf("Acquire"); len(acq) != 2 || acq[0].RequestID != acq[1].RequestID {
		t.Fatalf("Acquire calls = %+v", acq)
	}
	// A caller-chosen id makes a repeated Lock return the same grant.
	l2, err := c.Lock(ctx, "L2", time.Minute, client.WithRequestID("my-id"))
	if err != nil {
		t.Fatal(err)
	}
	l2again, err := c.Lock(ctx, "L2", time.Minute, client.WithRequestID("my-id"), client.WithLockWait(0))
	if err != nil || l2again.Code() != l2.Code() || l2again.Fence() != l2.Fence() {
		t.Fatalf("repeated Lock = %v, %v", l2again, err)
	}
	_ = l2again.Unlock(ctx)

	// Unlock retries Release with one id; a second Unlock is a no-op.
	h.Fake.Fail("Release", codes.Unavailable, 1)
	if err := l.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if rel := h.Fake.CallsOf("Release"); len(rel) != 3 || rel[1].RequestID != rel[2].RequestID {
		t.Fatalf("Release calls = %+v", rel)
	}

	// Non-retryable codes are not retried.
	h.Fake.Fail("Delete", codes.FailedPrecondition, 1)
	if _, err := c.Delete(ctx, []byte("k")); !errors.Is(err, client.ErrNotHolder) {
		t.Fatalf("Delete = %v", err)
	}
	if n := len(h.Fake.CallsOf("Delete")); n != 1 {
		t.Fatalf("Delete calls = %d, want 1", n)
	}
}

func TestLockKeptAlive(t *testing.T) {
	h := clienttest.Start(t, "n1")
	c := newClient(t, h, []string{"n1"})
	ctx := testCtx(t)
	var renewals chanCounter = make(chan struct{}, 100)
	l, err := c.Lock(ctx, "L", 450*time.Millisecond, client.OnRenew(func(time.Duration) { renewals.add() }))
	if err != nil {
		t.Fatal(err)
	}
	if l.Name() != "L" || len(l.Code()) != 32 || l.Fence() == 0 || l.TTL() != 450*time.Millisecond {
		t.Fatalf("lock = %s %d %s", l.Name(), l.Fence(), l.TTL())
	}
	select {
	case <-l.Lost():
		t.Fatalf("lost: %v", l.Err())
	case <-time.After(1200 * time.Millisecond):
	}
	if n := h.Fake.KeepAliveCount(l.Code()); n < 4 {
		t.Fatalf("keep-alives = %d, want >= 4 in 1.2s at ttl/3 = 150ms", n)
	}
	if len(renewals) < 4 {
		t.Fatalf("OnRenew called %d times", len(renewals))
	}
	infos, err := c.Describe(ctx, "L")
	if err != nil || len(infos) != 1 || !infos[0].Held || infos[0].Kind != client.KindNamed {
		t.Fatalf("Describe = %+v, %v", infos, err)
	}
	if err := l.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
}

type chanCounter chan struct{}

func (c chanCounter) add() {
	select {
	case c <- struct{}{}:
	default:
	}
}

func TestLostWhenServerSaysLost(t *testing.T) {
	h := clienttest.Start(t, "n1")
	c := newClient(t, h, []string{"n1"})
	ctx := testCtx(t)
	l, err := c.Lock(ctx, "L", 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if l.Err() != nil {
		t.Fatal(l.Err())
	}
	h.Fake.DropLock("L")
	within(t, l.Lost(), time.Second, "Lost after the server dropped the lock")
	err = l.Err()
	if !errors.Is(err, client.ErrLost) || !errors.Is(err, client.ErrNotHolder) || status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("Err = %v", err)
	}
	// Lost closed once; Unlock still works (the server answers not held).
	if err := l.Unlock(ctx); !errors.Is(err, client.ErrNotHolder) {
		t.Fatalf("Unlock after loss = %v", err)
	}
}

func TestLostWhenServerGoesAway(t *testing.T) {
	h := clienttest.Start(t, "n1")
	c := newClient(t, h, []string{"n1"})
	ctx := testCtx(t)
	const ttl = 300 * time.Millisecond
	l, err := c.Lock(ctx, "L", ttl)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(ttl / 2) // a renewal or so
	h.Stop("n1")
	stopped := time.Now()
	within(t, l.Lost(), 3*ttl, "Lost after the server went away")
	// The last acknowledged renewal was sent at most ttl/3 before the stop.
	if elapsed := time.Since(stopped); elapsed < ttl/2 {
		t.Fatalf("Lost after %s, before the lock could have expired", elapsed)
	}
	if err := l.Err(); !errors.Is(err, client.ErrLost) {
		t.Fatalf("Err = %v", err)
	}
}

func TestKeepAliveFailsOver(t *testing.T) {
	h := clienttest.Start(t, "n1", "n2")
	c := newClient(t, h, []string{"n1", "n2"})
	ctx := testCtx(t)
	l, err := c.Lock(ctx, "L", 600*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	h.Stop("n1")
	select {
	case <-l.Lost():
		t.Fatalf("lost although n2 is up: %v", l.Err())
	case <-time.After(1500 * time.Millisecond):
	}
	var onN2 bool
	for _, cl := range h.Fake.CallsOf("KeepAlive") {
		onN2 = onN2 || cl.Addr == "n2"
	}
	if !onN2 {
		t.Fatal("keep-alive never moved to n2")
	}
}

func TestUnlockStopsKeepAlive(t *testing.T) {
	h := clienttest.Start(t, "n1")
	c := newClient(t, h, []string{"n1"})
	ctx := testCtx(t)
	l, err := c.Lock(ctx, "L", 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(250 * time.Millisecond)
	if err := l.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	n := h.Fake.KeepAliveCount(l.Code())
	if n == 0 {
		t.Fatal("no keep-alive before Unlock")
	}
	time.Sleep(300 * time.Millisecond)
	if m := h.Fake.KeepAliveCount(l.Code()); m != n {
		t.Fatalf("keep-alives after Unlock: %d -> %d", n, m)
	}
	select {
	case <-l.Lost():
		t.Fatal("Unlock closed Lost")
	default:
	}
	if infos, _ := c.Describe(ctx, "L"); len(infos) != 0 {
		t.Fatalf("lock still held: %+v", infos)
	}
}

func TestCloseLosesLocks(t *testing.T) {
	h := clienttest.Start(t, "n1")
	c := newClient(t, h, []string{"n1"})
	ctx := testCtx(t)
	l, err := c.Lock(ctx, "L", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	within(t, l.Lost(), time.Second, "Lost after Close")
	if !errors.Is(l.Err(), client.ErrClosed) {
		t.Fatalf("Err = %v", l.Err())
	}
	if _, err := c.Get(ctx, []byte("k")); !errors.Is(err, client.ErrClosed) || status.Code(err) != codes.Canceled {
		t.Fatalf("Get after Close = %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestAttach(t *testing.T) {
	h := clienttest.Start(t, "n1")
	owner := newClient(t, h, []string{"n1"})
	other := newClient(t, h, []string{"n1"})
	ctx := testCtx(t)
	l, err := owner.Lock(ctx, "L", 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	// Hand the lock over: the owner stops renewing, the other attaches.
	_ = owner.Close()
	a, err := other.Attach(ctx, "L", l.Code(), client.KindNamed)
	if err != nil {
		t.Fatal(err)
	}
	if a.TTL() != 300*time.Millisecond {
		t.Fatalf("TTL = %s", a.TTL())
	}
	select {
	case <-a.Lost():
		t.Fatalf("lost: %v", a.Err())
	case <-time.After(700 * time.Millisecond):
	}
	if err := a.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	_, err = other.Attach(ctx, "L", l.Code(), client.KindNamed)
	if !errors.Is(err, client.ErrLost) || status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("Attach of a released lock = %v", err)
	}
	if _, err := other.Attach(ctx, "L", l.Code(), client.KindAny); !errors.Is(err, client.ErrInvalid) {
		t.Fatalf("Attach of kind any = %v", err)
	}
}

func TestRestrict(t *testing.T) {
	h := clienttest.Start(t, "n1")
	c := newClient(t, h, []string{"n1"})
	ctx := testCtx(t)
	if _, err := c.Put(ctx, []byte("a"), []byte("1")); err != nil {
		t.Fatal(err)
	}
	tx, err := c.Restrict(ctx, "T", client.Read([]byte("a")), client.Write([]byte("b")), client.Snapshot(), client.TTL(time.Minute), client.Wait(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if tx.Name() != "T" || len(tx.Code()) != 32 || tx.Fence() == 0 || tx.StartVersion() == 0 || tx.TTL() != time.Minute {
		t.Fatalf("tx = %s %d %d %s", tx.Name(), tx.Fence(), tx.StartVersion(), tx.TTL())
	}
	if err := tx.Put(ctx, []byte("b"), []byte("2")); err != nil {
		t.Fatal(err)
	}
	if err := tx.Put(ctx, []byte("a"), []byte("x")); !errors.Is(err, client.ErrNotHolder) {
		t.Fatalf("Put of a READ key = %v", err)
	}
	if kv, err := tx.Get(ctx, []byte("b")); err != nil || string(kv.Value) != "2" {
		t.Fatalf("tx.Get = %+v, %v", kv, err)
	}
	if _, err := c.Get(ctx, []byte("b")); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("provisional write visible: %v", err)
	}
	infos, err := c.List(ctx, "", client.OfKind(client.KindRestrictive), client.HeldOnly())
	if err != nil || len(infos) != 1 || !infos[0].Snapshot || len(infos[0].Keys) != 2 || infos[0].Status != "PENDING" {
		t.Fatalf("List = %+v, %v", infos, err)
	}
	v, err := tx.Commit(ctx)
	if err != nil || v == 0 || tx.CommitVersion() != v {
		t.Fatalf("Commit = %d, %v", v, err)
	}
	if again, err := tx.Commit(ctx); again != v || err != nil {
		t.Fatalf("second Commit = %d, %v", again, err)
	}
	if kv, err := c.Get(ctx, []byte("b")); err != nil || kv.Version != v {
		t.Fatalf("Get after commit = %+v, %v", kv, err)
	}

	// A lost restrictive lock: Lost fires, Commit reports ErrAborted.
	tx, err = c.Restrict(ctx, "T", client.Write([]byte("b")), client.TTL(300*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	h.Fake.DropLock("T")
	within(t, tx.Lost(), time.Second, "tx Lost")
	if err := tx.Err(); !errors.Is(err, client.ErrAborted) || !errors.Is(err, client.ErrLost) {
		t.Fatalf("tx.Err = %v", err)
	}
	if _, err := tx.Commit(ctx); !errors.Is(err, client.ErrAborted) || status.Code(err) != codes.Aborted {
		t.Fatalf("Commit of a lost lock = %v", err)
	}
}

// TestTxWritesAreBufferedUntilCommit: Put and Delete under a Tx cost no
// call, read back from the handle, and reach the server with Commit.
func TestTxWritesAreBufferedUntilCommit(t *testing.T) {
	h := clienttest.Start(t, "n1")
	c := newClient(t, h, []string{"n1"})
	ctx := testCtx(t)
	if _, err := c.Put(ctx, []byte("gone"), []byte("x")); err != nil {
		t.Fatal(err)
	}
	tx, err := c.Restrict(ctx, "T", client.Write([]byte("k")), client.Write([]byte("gone")), client.Read([]byte("r")))
	if err != nil {
		t.Fatal(err)
	}
	puts := len(h.Fake.CallsOf("Put"))
	if err := tx.Put(ctx, []byte("k"), []byte("1")); err != nil {
		t.Fatal(err)
	}
	if err := tx.Put(ctx, []byte("k"), []byte("2")); err != nil {
		t.Fatal(err)
	}
	if err := tx.Delete(ctx, []byte("gone")); err != nil {
		t.Fatal(err)
	}
	if err := tx.Put(ctx, []byte("r"), []byte("no")); !errors.Is(err, client.ErrNotHolder) {
		t.Fatalf("Put of a READ key = %v, want ErrNotHolder (FailedPrecondition)", err)
	}
	if n := len(h.Fake.CallsOf("Put")) + len(h.Fake.CallsOf("Delete")) - puts; n != 0 {
		t.Fatalf("%d write calls before Commit, want 0", n)
	}
	if kv, err := tx.Get(ctx, []byte("k")); err != nil || string(kv.Value) != "2" {
		t.Fatalf("Get of a buffered write = %+v, %v", kv, err)
	}
	if _, err := tx.Get(ctx, []byte("gone")); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("Get of a buffered delete = %v", err)
	}
	if kv, err := c.Get(ctx, []byte("gone")); err != nil || string(kv.Value) != "x" {
		t.Fatalf("others read %+v, %v before Commit; want the committed x", kv, err)
	}
	v, err := tx.Commit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if kv, err := c.Get(ctx, []byte("k")); err != nil || string(kv.Value) != "2" || kv.Version != v {
		t.Fatalf("Get after Commit = %+v, %v; want 2@%d", kv, err, v)
	}
	if _, err := c.Get(ctx, []byte("gone")); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("Get of a committed delete = %v", err)
	}
	if err := tx.Put(ctx, []byte("k"), []byte("3")); err == nil {
		t.Fatal("Put after Commit succeeded")
	}
}

// TestTxPrefetch: a lock taken with Prefetch answers Gets of its keys
// from the grant, missing keys included; other keys still ask the server.
func TestTxPrefetch(t *testing.T) {
	h := clienttest.Start(t, "n1")
	c := newClient(t, h, []string{"n1"})
	ctx := testCtx(t)
	v, err := c.Put(ctx, []byte("a"), []byte("1"))
	if err != nil {
		t.Fatal(err)
	}
	tx, err := c.Restrict(ctx, "T", client.Write([]byte("a")), client.Read([]byte("missing")), client.Prefetch())
	if err != nil {
		t.Fatal(err)
	}
	gets := len(h.Fake.CallsOf("Get"))
	if kv, err := tx.Get(ctx, []byte("a")); err != nil || string(kv.Value) != "1" || kv.Version != v {
		t.Fatalf("prefetched Get = %+v, %v; want 1@%d", kv, err, v)
	}
	if _, err := tx.Get(ctx, []byte("missing")); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("prefetched Get of a missing key = %v", err)
	}
	if n := len(h.Fake.CallsOf("Get")) - gets; n != 0 {
		t.Fatalf("%d Get calls for prefetched keys", n)
	}
	_, _ = tx.Get(ctx, []byte("other"))
	if n := len(h.Fake.CallsOf("Get")) - gets; n != 1 {
		t.Fatalf("%d Get calls for a key outside the lock, want 1", n)
	}
	if err := tx.Abort(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestTxnRetriesOnAborted(t *testing.T) {
	h := clienttest.Start(t, "n1")
	c := newClient(t, h, []string{"n1"})
	ctx := testCtx(t)
	h.Fake.SetAbortCommits(2)
	runs := 0
	var codesSeen []string
	err := c.Txn(ctx, "T", []client.KeySpec{client.Write([]byte("k"))}, func(tx *client.Tx) error {
		runs++
		codesSeen = append(codesSeen, tx.Code())
		return tx.Put(ctx, []byte("k"), []byte(fmt.Sprint(runs)))
	})
	if err != nil {
		t.Fatal(err)
	}
	if runs != 3 || codesSeen[0] == codesSeen[1] {
		t.Fatalf("runs = %d, codes %v", runs, codesSeen)
	}
	if kv, err := c.Get(ctx, []byte("k")); err != nil || string(kv.Value) != "3" {
		t.Fatalf("Get = %+v, %v", kv, err)
	}
	if r := h.Fake.CallsOf("Restrict"); len(r) != 3 || r[0].RequestID == r[1].RequestID {
		t.Fatalf("Restrict calls = %+v", r)
	}

	// Out of attempts: the last ErrAborted is returned.
	h.Fake.SetAbortCommits(5)
	err = c.Txn(ctx, "T", []client.KeySpec{client.Write([]byte("k"))}, func(tx *client.Tx) error { return nil }, client.MaxAttempts(2))
	if !errors.Is(err, client.ErrAborted) {
		t.Fatalf("Txn = %v", err)
	}
	h.Fake.SetAbortCommits(0)
}

func TestTxnAbortsOnFnError(t *testing.T) {
	h := clienttest.Start(t, "n1")
	c := newClient(t, h, []string{"n1"})
	ctx := testCtx(t)
	errBoom := errors.New("boom")
	runs := 0
	var code string
	err := c.Txn(ctx, "T", []client.KeySpec{client.Write([]byte("k"))}, func(tx *client.Tx) error {
		runs++
		code = tx.Code()
		if err := tx.Put(ctx, []byte("k"), []byte("v")); err != nil {
			return err
		}
		return errBoom
	})
	if err != errBoom || runs != 1 {
		t.Fatalf("Txn = %v after %d runs", err, runs)
	}
	ab := h.Fake.CallsOf("Abort")
	if len(ab) != 1 || len(h.Fake.CallsOf("Commit")) != 0 {
		t.Fatalf("abort calls %+v, commit calls %d", ab, len(h.Fake.CallsOf("Commit")))
	}
	if _, err := c.Get(ctx, []byte("k")); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("aborted write visible: %v", err)
	}
	time.Sleep(50 * time.Millisecond)
	n := h.Fake.KeepAliveCount(code)
	time.Sleep(100 * time.Millisecond)
	if h.Fake.KeepAliveCount(code) != n {
		t.Fatal("keep-alive continued after abort")
	}
}

func TestNewValidates(t *testing.T) {
	ctx := testCtx(t)
	if _, err := client.New(ctx, nil); !errors.Is(err, client.ErrInvalid) {
		t.Fatalf("New(nil) = %v", err)
	}
	if _, err := client.New(ctx, []string{""}); !errors.Is(err, client.ErrInvalid) {
		t.Fatalf("New(\"\") = %v", err)
	}
}

// TestOneStreamForSuccessiveLocks checks that locks taken one after another
// share the keep-alive stream (it outlives its last lease for a while).
func TestOneStreamForSuccessiveLocks(t *testing.T) {
	h := clienttest.Start(t, "n1")
	c := newClient(t, h, []string{"n1"})
	ctx := testCtx(t)
	for i := range 3 {
		l, err := c.Lock(ctx, fmt.Sprint("L", i), 300*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(150 * time.Millisecond) // at least one renewal
		if err := l.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
		if h.Fake.KeepAliveCount(l.Code()) == 0 {
			t.Fatalf("lock %d never renewed", i)
		}
	}
	if n := len(h.Fake.CallsOf("KeepAlive")); n != 1 {
		t.Fatalf("KeepAlive streams = %d, want 1", n)
	}
}

// TestTxFlushAndCommitByCode: Flush sends the buffered writes as
// provisional writes, which a commit by code from another client commits;
// a commit by code from the client holding the Tx goes through the handle
// and its buffered writes.
func TestTxFlushAndCommitByCode(t *testing.T) {
	h := clienttest.Start(t, "n1")
	c := newClient(t, h, []string{"n1"})
	other := newClient(t, h, []string{"n1"})
	ctx := testCtx(t)

	tx, err := c.Restrict(ctx, "F", client.Write([]byte("f")))
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Put(ctx, []byte("f"), []byte("flushed")); err != nil {
		t.Fatal(err)
	}
	if err := tx.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Commit(ctx, "F", tx.Code()); err != nil {
		t.Fatal(err)
	}
	if kv, err := c.Get(ctx, []byte("f")); err != nil || string(kv.Value) != "flushed" {
		t.Fatalf("a flushed write committed by another client: %+v, %v", kv, err)
	}

	tx, err = c.Restrict(ctx, "B", client.Write([]byte("b")))
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Put(ctx, []byte("b"), []byte("buffered")); err != nil {
		t.Fatal(err)
	}
	v, err := c.Commit(ctx, "B", tx.Code())
	if err != nil {
		t.Fatal(err)
	}
	if kv, err := c.Get(ctx, []byte("b")); err != nil || string(kv.Value) != "buffered" || kv.Version != v {
		t.Fatalf("a buffered write committed by code through its own client: %+v, %v", kv, err)
	}
	if tx.CommitVersion() != v {
		t.Fatalf("the handle did not see its commit: %d, want %d", tx.CommitVersion(), v)
	}
}
