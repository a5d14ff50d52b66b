package kv

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/opencluster/opencluster/rpc/cmdpb"
	"github.com/opencluster/opencluster/rpc/ocpb"
)

// keysFree reports whether a no-wait lock of keys, under a fresh name,
// is granted; it commits the grant at once.
func keysFree(t *testing.T, n *Node, name string, keys ...[]byte) bool {
	t.Helper()
	ctx := ctxT(t)
	l, err := n.Restrict(ctx, &ocpb.RestrictRequest{Name: name, Ttl: durationpb.New(5 * time.Second), Wait: durationpb.New(0), Keys: writeKeys(keys...)})
	if errors.Is(err, ErrWaitTimeout) {
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.Commit(ctx, &ocpb.CommitRequest{Name: name, Code: l.Code}); err != nil {
		t.Fatal(err)
	}
	return true
}

// TestRestrictBeginsWithKeyTries: with its name free, a Restrict creates
// its record while it tries its buckets, and holds every key when it
// returns.
func TestRestrictBeginsWithKeyTries(t *testing.T) {
	n := openTestNode(t)
	ctx := ctxT(t)
	keys := keysInBuckets(t, n, 2)
	l, err := n.Restrict(ctx, &ocpb.RestrictRequest{Name: "t", Ttl: durationpb.New(5 * time.Second), Keys: writeKeys(keys...)})
	if err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(n.metrics.beginsWithFirstStep); got != 1 {
		t.Fatalf("begins with key tries = %v, want 1", got)
	}
	for _, k := range keys {
		if keysFree(t, n, "probe-"+string(k), k) {
			t.Fatalf("key %s is free under a granted lock", k)
		}
	}
	if _, err := n.Commit(ctx, &ocpb.CommitRequest{Name: "t", Code: l.Code}); err != nil {
		t.Fatal(err)
	}
}

// TestBeginWithKeyTriesGivesBackOnHeldName: when the record cannot be
// created because the name is held after all, the keys the tries took
// are given back at once (the lock will wait for the name holding
// nothing), and the caller is told to wait in turn.
func TestBeginWithKeyTriesGivesBackOnHeldName(t *testing.T) {
	n := openTestNode(t)
	ctx := ctxT(t)
	ttl := durationpb.New(5 * time.Second)
	holder, err := n.Restrict(ctx, &ocpb.RestrictRequest{Name: "t", Ttl: ttl, Keys: writeKeys([]byte("x"))})
	if err != nil {
		t.Fatal(err)
	}
	keys := keysInBuckets(t, n, 2)
	req := &ocpb.RestrictRequest{Name: "t", Ttl: ttl, Keys: writeKeys(keys...)}
	plan, specs := n.planKeyLocks(req.Keys)
	code := []byte("0123456789abcdef")
	rec, first, err := n.beginWithFirstStep(ctx, ctx, n.replicaOfName("t"), req, code, specs, plan, true)
	if err != nil || rec != nil || first != nil {
		t.Fatalf("begin of a held name: rec %v, first %v, err %v; want all nil (wait in turn)", rec, first, err)
	}
	if got := testutil.ToFloat64(n.metrics.keysGivenBack); got != 2 {
		t.Fatalf("key_locks_given_back_total = %v, want 2", got)
	}
	if !keysFree(t, n, "probe", keys...) {
		t.Fatal("the keys tried are still held after a failed begin")
	}
	if _, err := n.Commit(ctx, &ocpb.CommitRequest{Name: "t", Code: holder.Code}); err != nil {
		t.Fatal(err)
	}
}

// TestTxnLiveCountsPendingBegins: while a record is being created by its
// leader, the orphan sweeper's question about its code says live, even
// though the record still shows the previous holder, or none; otherwise
// such key locks are orphans.
func TestTxnLiveCountsPendingBegins(t *testing.T) {
	n := openTestNode(t)
	ctx := ctxT(t)
	// A name without a record: its key locks are orphans unless their
	// record is being created.
	code := []byte("0123456789abcdef")
	if live, err := n.txnLiveHere(ctx, n.replicaOfName("fresh"), "fresh", code); err != nil || live {
		t.Fatalf("a code of a name without a record: live %v, err %v; want not live", live, err)
	}
	n.pendingBegins.add(code)
	if live, err := n.txnLiveHere(ctx, n.replicaOfName("fresh"), "fresh", code); err != nil || !live {
		t.Fatalf("a code whose first record is being created: live %v, err %v; want live", live, err)
	}
	n.pendingBegins.remove(code)
	prev, err := n.Restrict(ctx, &ocpb.RestrictRequest{Name: "t", Ttl: durationpb.New(5 * time.Second), Keys: writeKeys([]byte("x"))})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.Commit(ctx, &ocpb.CommitRequest{Name: "t", Code: prev.Code}); err != nil {
		t.Fatal(err)
	}
	rr := n.replicaOfName("t")
	next := []byte("fedcba9876543210")
	if live, err := n.txnLiveHere(ctx, rr, "t", next); err != nil || live {
		t.Fatalf("a code the record does not show: live %v, err %v; want not live", live, err)
	}
	n.pendingBegins.add(next)
	if live, err := n.txnLiveHere(ctx, rr, "t", next); err != nil || !live {
		t.Fatalf("a code whose record is being created: live %v, err %v; want live", live, err)
	}
	n.pendingBegins.remove(next)
}

// TestBeginWithWaitingStepCalledOff: when the first key step waits for a
// held key and the record cannot be created (its name is held), the wait
// is called off at once: the lock does not queue for keys while it will
// queue for its name.
func TestBeginWithWaitingStepCalledOff(t *testing.T) {
	n := openTestNode(t)
	ctx := ctxT(t)
	ttl := durationpb.New(5 * time.Second)
	keys := keysInBuckets(t, n, 2)
	holder, err := n.Restrict(ctx, &ocpb.RestrictRequest{Name: "t", Ttl: ttl, Keys: writeKeys([]byte("x"))})
	if err != nil {
		t.Fatal(err)
	}
	keyHolder, err := n.Restrict(ctx, &ocpb.RestrictRequest{Name: "k", Ttl: ttl, Keys: writeKeys(keys[0])})
	if err != nil {
		t.Fatal(err)
	}
	req := &ocpb.RestrictRequest{Name: "t", Ttl: ttl, Keys: writeKeys(keys...)}
	plan, specs := n.planKeyLocks(req.Keys)
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	start := time.Now()
	rec, first, err := n.beginWithFirstStep(ctx, wctx, n.replicaOfName("t"), req, []byte("0123456789abcdef"), specs, plan, false)
	if err != nil || rec != nil || first != nil {
		t.Fatalf("begin of a held name: rec %v, first %v, err %v; want all nil (wait in turn)", rec, first, err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("the step's wait for the held key was not called off: %s", d)
	}
	if w := n.waits.Len(keyResource(keys[0])); w != 0 {
		t.Fatalf("%d waiters left on the held key", w)
	}
	for _, l := range []*ocpb.RestrictResponse{holder, keyHolder} {
		if _, err := n.Commit(ctx, &ocpb.CommitRequest{Name: l.Name, Code: l.Code}); err != nil {
			t.Fatal(err)
		}
	}
	if !keysFree(t, n, "probe", keys...) {
		t.Fatal("keys held after the called-off begin")
	}
}

// TestRestrictGivesBackPartlyTakenBuckets: a later bucket whose no-wait
// try took one key and was refused another is given back whole while the
// lock waits for an earlier bucket: its free key must not stay held.
func TestRestrictGivesBackPartlyTakenBuckets(t *testing.T) {
	n := openTestNode(t)
	laterKeyFreeWhileWaiting(t, n, 0, true, "the free key of a partly taken later bucket stayed held while the lock waits for an earlier bucket", func() {})
}

// TestRecordOutlivesFirstStepWait: a lock whose first key step waits
// longer than its ttl for the first bucket does not expire meanwhile (its
// deadline runs from the grant, as when the record came first).
func TestRecordOutlivesFirstStepWait(t *testing.T) {
	n := openTestNode(t)
	ctx := ctxT(t)
	for range 100 {
		n.firstPass.observe(true) // tries do not pay: the step waits for the first bucket
	}
	keys := keysInBuckets(t, n, 2)
	holder, err := n.Restrict(ctx, &ocpb.RestrictRequest{Name: "h", Ttl: durationpb.New(20 * time.Second), Keys: writeKeys(keys[0])})
	if err != nil {
		t.Fatal(err)
	}
	type grant struct {
		l   *ocpb.RestrictResponse
		err error
	}
	got := make(chan grant, 1)
	go func() {
		l, err := n.Restrict(ctx, &ocpb.RestrictRequest{Name: "t", Ttl: durationpb.New(time.Second), Wait: durationpb.New(10 * time.Second), Keys: writeKeys(keys...)})
		got <- grant{l, err}
	}()
	waitUntil(t, 3*time.Second, func() bool { return n.waits.Len(keyResource(keys[0])) > 0 })
	time.Sleep(2500 * time.Millisecond) // more than t's ttl
	if _, err := n.Commit(ctx, &ocpb.CommitRequest{Name: "h", Code: holder.Code}); err != nil {
		t.Fatal(err)
	}
	g := <-got
	if g.err != nil {
		t.Fatalf("the waiting lock: %v", g.err)
	}
	if _, err := n.Commit(ctx, &ocpb.CommitRequest{Name: "t", Code: g.l.Code}); err != nil {
		t.Fatalf("commit of a lock that waited longer than its ttl for its first key: %v", err)
	}
}

// TestBucketProposalNotForwarded: a bucket command proposed by its ready
// leader (a named lock's grant here) that reaches Raft after the node lost
// the leadership fails with ErrNotApplied, so the server retries it on
// the new leader, rather than being forwarded there by Raft, where it
// would apply with no deadline tracking it (invariant 8).
func TestBucketProposalNotForwarded(t *testing.T) {
	n := openTestNode(t)
	ctx := ctxT(t)
	r := n.replicaOfName("n")
	if err := r.waitReady(ctx); err != nil {
		t.Fatal(err)
	}
	proposed := make(chan struct{})
	// Holds the scheduler until the proposal is queued, then makes the
	// node a follower in the same cycle that hands the proposal to Raft.
	n.submit(func() {
		<-proposed
		if _, err := stepLaterTerm(r); err != nil {
			t.Error(err)
		}
	})
	done := make(chan error, 1)
	go func() {
		_, err := r.propose(ctx, &cmdpb.Command{Body: &cmdpb.Command_NamedAcquire{NamedAcquire: &cmdpb.NamedAcquire{Name: "n", Code: []byte("0123456789abcdef")}}})
		done <- err
	}()
	waitUntil(t, 3*time.Second, func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return len(r.mu.pending) > 0
	})
	close(proposed)
	select {
	case err := <-done:
		if !errors.Is(err, ErrNotApplied) {
			t.Fatalf("a grant proposed as leader and handed to Raft as follower: %v, want ErrNotApplied", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the proposal neither failed nor applied")
	}
}

// stepLaterTerm makes r a follower, as a heartbeat of the next term from a
// node outside the group does, and returns the term r led in (scheduler
// goroutine only).
func stepLaterTerm(r *replica) (uint64, error) {
	st := r.rn.BasicStatus()
	hb := &raftpb.Message{Type: raftpb.MsgHeartbeat.Enum(), From: proto.Uint64(r.node.id + 100), To: proto.Uint64(r.node.id), Term: proto.Uint64(st.GetTerm() + 1)}
	if err := r.rn.Step(hb); err != nil {
		return 0, err
	}
	if s := r.rn.BasicStatus().RaftState; s == raft.StateLeader {
		return 0, fmt.Errorf("still %s after a later term's heartbeat", s)
	}
	return st.GetTerm(), nil
}

// TestProposalBoundToItsTerm: a proposal bound to its node's leadership
// and handed to Raft after the node lost it fails with ErrNotApplied
// instead of going to the new leader, where it could apply after that
// leader had judged the lock's key locks orphans, or served a snapshot
// read above the write's timestamp. So does one handed to Raft after its
// node won the leadership back in a later term: the leader in between may
// have done the same.
func TestProposalBoundToItsTerm(t *testing.T) {
	for _, regain := range []bool{false, true} {
		t.Run(map[bool]string{false: "follower", true: "leader in a later term"}[regain], func(t *testing.T) {
			n := openTestNode(t)
			ctx := ctxT(t)
			r := n.replicaOfName("t")
			cmd := &cmdpb.Command{Body: &cmdpb.Command_TxnBegin{TxnBegin: &cmdpb.TxnBegin{Name: "t", Code: []byte("0123456789abcdef")}}}
			var p *proposal
			var term uint64
			// On the scheduler, so that the same cycle hands it to Raft:
			// another node's heartbeat of a later term makes this one a
			// follower first.
			err := n.onScheduler(ctx, func() error {
				var err error
				if term, err = stepLaterTerm(r); err != nil {
					return err
				}
				if regain {
					return r.rn.Campaign()
				}
				p = r.enqueue(cmd, term)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if regain {
				waitUntil(t, 3*time.Second, func() bool {
					err := n.onScheduler(ctx, func() error {
						if now := r.rn.BasicStatus(); now.RaftState != raft.StateLeader || now.GetTerm() <= term+1 {
							return fmt.Errorf("%s in term %d", now.RaftState, now.GetTerm())
						}
						p = r.enqueue(cmd, term)
						return nil
					})
					return err == nil
				})
			}
			actx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			if _, err := r.await(actx, p); !errors.Is(err, ErrNotApplied) {
				t.Fatalf("a proposal bound to an earlier leadership: %v, want ErrNotApplied", err)
			}
		})
	}
}
