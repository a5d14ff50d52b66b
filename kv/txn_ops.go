package kv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/opencluster/opencluster/locks"
	"github.com/opencluster/opencluster/mvcc"
	"github.com/opencluster/opencluster/rpc/cmdpb"
	"github.com/opencluster/opencluster/rpc/ocpb"
)

// Restrict implements rpc/server.Backend: it creates the lock's record
// (queueing for the name; alongside its first key locks when the name
// looks free), then takes the key locks in (bucket, key) order, queueing
// per key. On a timeout it releases what it took.
func (n *Node) Restrict(ctx context.Context, req *ocpb.RestrictRequest) (*ocpb.RestrictResponse, error) {
	if resp, done, err := routed[*ocpb.RestrictResponse](ctx, n, []byte(req.Name), "Restrict", req); done {
		return resp, err
	}
	rr := n.replicaOfName(req.Name)
	if err := rr.waitReady(ctx); err != nil {
		return nil, err
	}
	code, err := n.newCode()
	if err != nil {
		return nil, err
	}
	ttl := req.Ttl.AsDuration()
	plan, specs := n.planKeyLocks(req.Keys)
	wctx, cancel := waitContext(ctx, req.Wait)
	defer cancel()
	iso := cmdpb.Isolation(req.Isolation)

	// 1. The record, FIFO per name, and 2. the key locks, in (bucket, key)
	// order. While the name looks free, the record and the first key step
	// (a no-wait try of every bucket, or the first bucket's lock) go at
	// once: one Raft round, not two, when nothing is held.
	var rec *cmdpb.Result
	var first *firstTry
	try := n.tryFirst(plan)
	if len(plan.order) > 0 && n.nameLooksFree(rr, req.Name) {
		rec, first, err = n.beginWithFirstStep(ctx, wctx, rr, req, code, specs, plan, try)
		if err != nil {
			return nil, err
		}
	}
	if rec == nil {
		if rec, err = n.beginTxn(ctx, wctx, rr, req, code, specs, false); err != nil {
			return nil, err
		}
	}
	code = rec.Code // a retried request gets its first grant back (TxnBegin checks it is the same request)
	id := locks.LeaseID{Kind: locks.Restrictive, Name: req.Name, Code: string(code)}
	n.deadlines.Pause(id, n.leaseTTL(ttl))
	// However this ends, the deadline runs again: a grant that fails half
	// way (a timeout, the oracle unreachable) must still expire, or its
	// key locks would outlive every client (found by the append workload).
	defer func() { n.deadlines.Resume(id, n.cfg.Clock.Now()) }()

	var values []*ocpb.KeyValue
	if first != nil {
		values, err = n.lockKeysAfter(ctx, wctx, req.Name, code, iso, plan, first, req.Prefetch)
	} else { // the sequential way
		values, err = n.lockKeys(ctx, wctx, req.Name, code, iso, plan, try, req.Prefetch)
	}
	if err == nil {
		err = checkPrefetchSize(values)
	}
	if err != nil {
		if aerr := n.abortTxn(n.bg, req.Name, code, false); aerr != nil {
			// The deadline (resumed on return) releases it later.
			n.log.Warn("releasing a restrictive lock that failed", "lock", req.Name, "err", aerr)
		}
		return nil, err
	}
	start, err := n.tso.now(ctx)
	if err != nil {
		return nil, err
	}
	return &ocpb.RestrictResponse{Name: req.Name, Code: encodeCode(code), Fence: rec.Fence, StartVersion: uint64(start), Ttl: durationpb.New(ttl), Values: values}, nil
}

// checkPrefetchSize fails a grant whose prefetched values would not fit
// in a response (MaxResponseBytes, as BatchGet): the client would get a
// transport error and never learn the code of a lock left held until its
// ttl ran out. Restrict aborts the lock instead.
func checkPrefetchSize(values []*ocpb.KeyValue) error {
	size := 0
	for _, kv := range values {
		if size += len(kv.Key) + len(kv.Value); size > MaxResponseBytes {
			return fmt.Errorf("%w: the prefetched values of the lock's keys exceed %d bytes; take it without prefetch and read them under it", ErrTooLarge, MaxResponseBytes)
		}
	}
	return nil
}

// beginTxn creates the lock's record, waiting in the name's queue. early
// is for a record created alongside the first key locks
// (beginWithFirstStep): the name was just seen free, so it is not read
// again; and the record does not wait (its proposal is dropped rather than
// forwarded should this node have lost the leadership: replica.propose).
func (n *Node) beginTxn(ctx, wctx context.Context, rr *replica, req *ocpb.RestrictRequest, code []byte, specs []*cmdpb.KeySpec, early bool) (*cmdpb.Result, error) {
	holder := func() lockHolder { return rr.txnHolder(req.Name, req.RequestId, code) }
	if early {
		holder = func() lockHolder { return holderNone }
	}
	return n.takeInTurn(wctx, txnResource(req.Name), fmt.Sprintf("restrictive lock %q is held", req.Name), early, nil, holder, func() (*cmdpb.Result, error) {
		// start_ts only dates the record (its acquired version); the
		// version the holder reads at is taken once its keys are locked.
		t, err := n.tso.dating(ctx)
		if err != nil {
			return nil, err
		}
		return n.proposeCarryingMarks(ctx, rr, req.Name, &cmdpb.Command{Body: &cmdpb.Command_TxnBegin{TxnBegin: &cmdpb.TxnBegin{
			Name: req.Name, Code: code, Owner: req.Owner, TtlMs: ttlMillis(req.Ttl), StartTs: uint64(t),
			Isolation: cmdpb.Isolation(req.Isolation), Keys: specs, RequestId: req.RequestId,
		}}})
	})
}

// proposeCarryingMarks proposes cmd, a TxnBegin or TxnFinish of name on
// its bucket rr, carrying name's resolved marks (resolved_marks.go); they
// are put back if the proposal may not have applied.
func (n *Node) proposeCarryingMarks(ctx context.Context, rr *replica, name string, cmd *cmdpb.Command) (*cmdpb.Result, error) {
	marks := n.marks.take(name)
	switch c := cmd.Body.(type) {
	case *cmdpb.Command_TxnBegin:
		c.TxnBegin.Resolved = marks
	case *cmdpb.Command_TxnFinish:
		c.TxnFinish.Resolved = marks
	}
	res, err := rr.propose(ctx, cmd)
	if err != nil {
		n.marks.restore(name, marks)
	}
	return res, err
}

// keyLockPlan is a lock's key specs grouped by bucket, in (bucket, key)
// order: groups[i] are the keys of bucket order[i].
type keyLockPlan struct {
	order  []mvcc.Bucket
	groups [][]*cmdpb.KeySpec
}

// planKeyLocks puts a lock's keys in (bucket, key) order, the order its
// waits follow, grouped by bucket; specs are all of them in that order,
// as the record lists them.
func (n *Node) planKeyLocks(keys []*ocpb.KeyLockRequest) (keyLockPlan, []*cmdpb.KeySpec) {
	modes := make(map[string]cmdpb.KeyMode, len(keys))
	raw := make([][]byte, 0, len(keys))
	for _, k := range keys {
		modes[string(k.Key)] = cmdpb.KeyMode(k.Mode)
		raw = append(raw, k.Key)
	}
	order, groups := n.byBucket(raw)
	p := keyLockPlan{order: order, groups: make([][]*cmdpb.KeySpec, len(order))}
	specs := make([]*cmdpb.KeySpec, 0, len(keys))
	for i, b := range order {
		start := len(specs)
		for _, k := range groups[b] {
			specs = append(specs, &cmdpb.KeySpec{Key: k, Mode: modes[string(k)]})
		}
		p.groups[i] = specs[start:]
	}
	return p, specs
}

// tryFirst reports whether a lock of several buckets should first try
// them all at once without waiting, as firstPassGate says (counting the
// skipped passes).
func (n *Node) tryFirst(p keyLockPlan) bool {
	if len(p.order) <= 1 {
		return false
	}
	if n.firstPass.try() {
		return true
	}
	n.metrics.firstPassesSkipped.Inc()
	return false
}

// firstTry is the outcome of the first key step of a plan (firstStep):
// values[i] are bucket i's (with read set) and errs[i] is nil if it took
// bucket i's keys; all says every bucket was tried at once.
type firstTry struct {
	values [][]*ocpb.KeyValue
	errs   []error
	all    bool
}

// errNotHolding marks, in a firstTry, a bucket whose keys the lock
// certainly does not hold: the step did not try it, or gave it back.
var errNotHolding = errors.New("kv: bucket not tried, or given back")

// firstStep takes the first step of locking p's keys: with try (see
// tryFirst), a no-wait try of every bucket at once; else the first
// bucket's lock, waiting (the lock holds nothing else meanwhile).
func (n *Node) firstStep(ctx, wctx context.Context, name string, code []byte, iso cmdpb.Isolation, p keyLockPlan, try, read bool) *firstTry {
	if try {
		return n.tryAll(ctx, wctx, name, code, iso, p, read)
	}
	f := &firstTry{values: make([][]*ocpb.KeyValue, len(p.order)), errs: make([]error, len(p.order))}
	for i := 1; i < len(p.order); i++ {
		f.errs[i] = errNotHolding
	}
	f.values[0], f.errs[0] = n.bucketLockKeys(ctx, wctx, p.order[0], name, code, iso, p.groups[0], read)
	return f
}

// tryAll tries every bucket of p at once, each on its leader, without
// waiting.
func (n *Node) tryAll(ctx, wctx context.Context, name string, code []byte, iso cmdpb.Isolation, p keyLockPlan, read bool) *firstTry {
	noWait, cancel := context.WithCancel(wctx)
	cancel()
	f := &firstTry{values: make([][]*ocpb.KeyValue, len(p.order)), errs: make([]error, len(p.order)), all: true}
	var wg sync.WaitGroup
	for i, b := range p.order {
		wg.Go(func() { f.values[i], f.errs[i] = n.bucketLockKeys(ctx, noWait, b, name, code, iso, p.groups[i], read) })
	}
	wg.Wait()
	return f
}

// giveBackKeys releases the key locks of the buckets of p that f tried
// and keep does not keep, on their leaders, which hand the keys to
// whoever queued for them meanwhile; f forgets them. Every tried bucket
// counts, whatever its answer: a refusal may come after some of the
// bucket's keys were taken, and another error may hide a LockKeys that
// applied; releasing keys not held changes nothing.
func (n *Node) giveBackKeys(ctx context.Context, name string, code []byte, p keyLockPlan, f *firstTry, keep func(i int) bool) error {
	var buckets []mvcc.Bucket
	keys := make(map[mvcc.Bucket][][]byte)
	for i, b := range p.order {
		if errors.Is(f.errs[i], errNotHolding) || keep(i) {
			continue
		}
		buckets = append(buckets, b)
		for _, k := range p.groups[i] {
			keys[b] = append(keys[b], k.Key)
		}
		f.values[i], f.errs[i] = nil, errNotHolding
	}
	if len(buckets) == 0 {
		return nil
	}
	n.metrics.keysGivenBack.Add(float64(len(buckets)))
	return n.proposeEach(ctx, buckets, func(b mvcc.Bucket) *cmdpb.Command {
		return &cmdpb.Command{Body: &cmdpb.Command_ResolveKeys{ResolveKeys: &cmdpb.ResolveKeys{
			Name: name, Code: code, Keys: keys[b],
		}}}
	})
}

// giveBackTimeout bounds giving back the keys of a lock whose record
// could not be created.
const giveBackTimeout = 5 * time.Second

// lockKeys takes the key locks of plan p, each bucket's on its leader,
// and returns the keys' committed values if read is set. Waiting follows
// the plan's (bucket, key) order, so two locks never wait for each other
// in a cycle: with try (tryFirst's answer: several buckets, and this node
// does not see most tries fall short), the lock first tries them all at
// once without waiting, which is one round when no key is taken;
// lockKeysAfter goes on from there.
func (n *Node) lockKeys(ctx, wctx context.Context, name string, code []byte, iso cmdpb.Isolation, p keyLockPlan, try, read bool) ([]*ocpb.KeyValue, error) {
	if len(p.order) == 0 {
		return nil, nil
	}
	return n.lockKeysAfter(ctx, wctx, name, code, iso, p, n.firstStep(ctx, wctx, name, code, iso, p, try, read), read)
}

// lockKeysAfter takes the key locks of p that the first step f did not:
// the lock keeps the buckets before the first that fell short (a prefix
// of the order) and what that one took, gives back what later buckets
// took, and goes on in order, waiting. It never waits while it holds a
// key beyond the one it waits for.
func (n *Node) lockKeysAfter(ctx, wctx context.Context, name string, code []byte, iso cmdpb.Isolation, p keyLockPlan, f *firstTry, read bool) ([]*ocpb.KeyValue, error) {
	values := make([][]*ocpb.KeyValue, len(p.order))
	short := 0 // the first bucket that fell short
	for short < len(p.order) && f.errs[short] == nil {
		short++
	}
	// Only contention counts: an unavailable leader says nothing about
	// whether the try pays.
	if f.all && (short == len(p.order) || errors.Is(f.errs[short], ErrWaitTimeout)) {
		n.firstPass.observe(short < len(p.order))
	}
	if err := n.giveBackKeys(ctx, name, code, p, f, func(i int) bool { return i <= short }); err != nil {
		return nil, err
	}
	copy(values, f.values[:short])
	for i := short; i < len(p.order); i++ {
		// A bucket's keys already held come back as held (a retry).
		v, err := n.bucketLockKeys(ctx, wctx, p.order[i], name, code, iso, p.groups[i], read)
		if err != nil {
			return nil, err
		}
		values[i] = v
	}
	var all []*ocpb.KeyValue
	for _, v := range values {
		all = append(all, v...)
	}
	return all, nil
}

// nameLooksFree reports whether rr's applied state, as its ready leader
// sees it, shows restrictive lock name free with nobody queued for it.
func (n *Node) nameLooksFree(rr *replica, name string) bool {
	return n.waits.Len(txnResource(name)) == 0 && rr.txnHolder(name, "", nil) == holderNone
}

// beginWithFirstStep creates the lock's record without waiting while it
// takes the first key step (firstStep), so that a lock whose name and
// keys are free takes them in one round. The record's creation does not
// wait, and the step waits only for the first bucket, holding nothing
// else, so no lock waits while holding what another waits for (deadlock
// freedom as in lockKeys). If the record could not be created, the step
// is cancelled and what it took given back; rec is then nil if the name
// was merely held, and the caller goes the sequential way. A retried
// request that got its first grant (another code) back also gives the
// step's keys back: its keys go under the first code. While the record's
// proposal is out, its leader (this node) counts the code as live for
// the orphan sweeper, which may see the key locks first.
func (n *Node) beginWithFirstStep(ctx, wctx context.Context, rr *replica, req *ocpb.RestrictRequest, code []byte, specs []*cmdpb.KeySpec, p keyLockPlan, try bool) (*cmdpb.Result, *firstTry, error) {
	n.pendingBegins.add(code)
	defer n.pendingBegins.remove(code)
	// The step's own contexts, to call it off if the record fails.
	stepCtx, cancelStep := context.WithCancel(ctx)
	defer cancelStep()
	stepWait, cancelStepWait := context.WithCancel(wctx)
	defer cancelStepWait()
	iso := cmdpb.Isolation(req.Isolation)
	var f *firstTry
	var wg sync.WaitGroup
	wg.Go(func() { f = n.firstStep(stepCtx, stepWait, req.Name, code, iso, p, try, req.Prefetch) })
	rec, err := n.beginTxn(ctx, wctx, rr, req, code, specs, true)
	ours := err == nil && bytes.Equal(rec.Code, code)
	switch {
	case err != nil:
		cancelStepWait()
		cancelStep()
	case ours:
		// The step may wait long for its first bucket: as when the record
		// came first, its deadline is paused from now until Restrict
		// returns.
		n.deadlines.Pause(locks.LeaseID{Kind: locks.Restrictive, Name: req.Name, Code: string(code)}, n.leaseTTL(req.Ttl.AsDuration()))
	}
	wg.Wait()
	if ours {
		n.metrics.beginsWithFirstStep.Inc()
		return rec, f, nil
	}
	// Given back even if the client has gone; should that fail, the lock
	// fails too rather than go on under a code whose late releases could
	// undo its next key locks (the sweeper frees these: once the pending
	// mark goes, no record shows the code).
	gctx, cancelGive := context.WithTimeout(n.bg, giveBackTimeout)
	defer cancelGive()
	if gerr := n.giveBackKeys(gctx, req.Name, code, p, f, func(int) bool { return false }); gerr != nil {
		return nil, nil, fmt.Errorf("giving back the keys of restrictive lock %q after its record failed: %w", req.Name, gerr)
	}
	switch {
	case err == nil:
		return rec, nil, nil // a retry's first grant: its keys go under its code
	case errors.Is(err, ErrWaitTimeout):
		return nil, nil, nil // held after all: wait for it in turn
	}
	return nil, nil, err
}

// Commit implements rpc/server.Backend: (snapshot mode: prepare ->) commit
// timestamp -> record COMMITTED (strict mode: with the writes) -> answer ->
// resolve keys behind the answer (T5).
func (n *Node) Commit(ctx context.Context, req *ocpb.CommitRequest) (*ocpb.CommitResponse, error) {
	if resp, done, err := routed[*ocpb.CommitResponse](ctx, n, []byte(req.Name), "Commit", req); done {
		return resp, err
	}
	code, err := decodeCode(req.Code)
	if err != nil {
		return nil, err
	}
	rr := n.replicaOfName(req.Name)
	// A ready leader has applied every record its term inherited, so a
	// PENDING record with this code needs no ReadIndex round: were the
	// leader deposed meanwhile, its TxnFinish, which checks the record again
	// as it applies, could not commit. Any other answer is final for the
	// client, so it is read again once the leadership is confirmed.
	if err := rr.waitReady(ctx); err != nil {
		return nil, err
	}
	rec, found, err := locks.TxnRecord(n.eng.DB(), rr.bucket, req.Name)
	if err == nil && (!found || !bytes.Equal(rec.Code, code) || rec.Status != cmdpb.TxnStatus_PENDING) {
		if err = rr.linearizable(ctx); err == nil {
			rec, found, err = locks.TxnRecord(n.eng.DB(), rr.bucket, req.Name)
		}
	}
	if err != nil {
		return nil, err
	}
	if found && !bytes.Equal(rec.Code, code) {
		// A retried Commit after the name was taken again: the outcome is
		// kept until the keys are resolved.
		if done, ok := locks.FinishedTxn(rec, code); ok {
			rec = done
		}
	}
	if !found || !bytes.Equal(rec.Code, code) {
		return nil, fmt.Errorf("%w: restrictive lock %q", ErrNotHolder, req.Name)
	}
	switch rec.Status {
	case cmdpb.TxnStatus_COMMITTED:
		return &ocpb.CommitResponse{CommitVersion: rec.CommitTs}, nil
	case cmdpb.TxnStatus_ABORTED:
		return nil, fmt.Errorf("%w: restrictive lock %q", ErrAborted, req.Name)
	}
	id := locks.LeaseID{Kind: locks.Restrictive, Name: req.Name, Code: string(code)}
	n.deadlines.Pause(id, n.leaseTTL(millis(rec.TtlMs)))
	// Unless the commit removes it, the deadline runs again on return: a
	// lock still PENDING lives on and may be committed again, or expires.
	defer func() { n.deadlines.Resume(id, n.cfg.Clock.Now()) }()

	writes, err := commitWrites(req.Name, code, rec, req.Writes)
	if err != nil {
		return nil, err
	}
	res, err := n.prepareAndFinish(ctx, req.Name, code, rec, writes)
	if err != nil {
		return nil, err
	}
	if res.Error != cmdpb.ErrorCode_OK {
		// Expired while committing: finish the abort it started.
		if res.Error == cmdpb.ErrorCode_TXN_ABORTED {
			_ = n.resolveFinished(n.bg, req.Name)
		}
		return nil, resultErr(res)
	}
	n.deadlines.Remove(id)
	// The outcome is decided and durable: answer now and release the keys
	// behind the answer. Until they are, a reader or writer of them waits
	// (a prepared key blocks every read at or above its stamp), so nobody
	// sees the commit half done; the name is free already.
	n.goBackground(func(ctx context.Context) {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := n.resolve(ctx, req.Name, false); err != nil {
			n.log.Warn("resolving a committed restrictive lock; the sweeper retries", "lock", req.Name, "err", err)
		}
	})
	return &ocpb.CommitResponse{CommitVersion: res.Ts}, nil
}

// commitWrites checks that every write a Commit carries is to a key rec
// holds WRITE, and returns them as the provisional writes of their
// buckets' prepares.
func commitWrites(name string, code []byte, rec *cmdpb.TxnRecord, writes []*ocpb.TxnWrite) ([]*cmdpb.TxnWrite, error) {
	if len(writes) == 0 {
		return nil, nil
	}
	modes := make(map[string]cmdpb.KeyMode, len(rec.Keys))
	for _, k := range rec.Keys {
		modes[string(k.Key)] = k.Mode
	}
	out := make([]*cmdpb.TxnWrite, 0, len(writes))
	for _, w := range writes {
		if modes[string(w.Key)] != cmdpb.KeyMode_WRITE {
			return nil, fmt.Errorf("%w: key %q is not locked WRITE by restrictive lock %q", ErrNotWriteLocked, w.Key, name)
		}
		out = append(out, &cmdpb.TxnWrite{Name: name, Code: code, Key: w.Key, Value: w.Value, Tombstone: w.Delete})
	}
	return out, nil
}

// prepareAndFinish commits the record: in snapshot mode it first prepares
// the keys (prepare), then it takes the commit timestamp from the oracle
// and proposes the record's move to COMMITTED, carrying the writes in
// strict mode. An error leaves the record PENDING; a refusal (the lock
// expired meanwhile) comes back as the result.
func (n *Node) prepareAndFinish(ctx context.Context, name string, code []byte, rec *cmdpb.TxnRecord, writes []*cmdpb.TxnWrite) (*cmdpb.Result, error) {
	// Strict mode: every reader waits for a strict WRITE lock until it is
	// resolved, so no read can land between a commit timestamp and the
	// commit; the keys need no stamp, and the record, durable with the
	// writes, is the whole commit (resolving applies the writes).
	if rec.Isolation != cmdpb.Isolation_STRICT {
		// Snapshot mode: readers do not wait for the lock until its keys
		// are stamped; the writes go with the stamps. The buckets are
		// prepared at once: each stamp is independent of the others, and
		// any failure leaves the record PENDING.
		if err := n.prepare(ctx, name, code, rec, writes); err != nil {
			return nil, err
		}
		writes = nil
	}
	commitTS, err := n.tso.now(ctx)
	if err != nil {
		return nil, err
	}
	return n.proposeCarryingMarks(ctx, n.replicaOfName(name), name, &cmdpb.Command{Body: &cmdpb.Command_TxnFinish{TxnFinish: &cmdpb.TxnFinish{
		Name: name, Code: code, Status: cmdpb.TxnStatus_COMMITTED, CommitTs: uint64(commitTS), Writes: writes,
	}}})
}

// prepare applies writes and stamps rec's WRITE keys with a fresh minimum
// commit timestamp, in every bucket at once.
func (n *Node) prepare(ctx context.Context, name string, code []byte, rec *cmdpb.TxnRecord, writes []*cmdpb.TxnWrite) error {
	var writeKeys [][]byte
	for _, k := range rec.Keys {
		if k.Mode == cmdpb.KeyMode_WRITE {
			writeKeys = append(writeKeys, k.Key)
		}
	}
	minCommit, err := n.tso.now(ctx)
	if err != nil {
		return err
	}
	order, groups := n.byBucket(writeKeys)
	bucketWrites := n.writesByBucket(writes)
	return n.proposeEach(ctx, order, func(b mvcc.Bucket) *cmdpb.Command {
		return &cmdpb.Command{Body: &cmdpb.Command_TxnPrepare{TxnPrepare: &cmdpb.TxnPrepare{
			Name: name, Code: code, Keys: groups[b], MinCommitTs: uint64(minCommit), Writes: bucketWrites[b],
		}}}
	})
}

// Abort implements rpc/server.Backend.
func (n *Node) Abort(ctx context.Context, req *ocpb.AbortRequest) (*ocpb.AbortResponse, error) {
	if resp, done, err := routed[*ocpb.AbortResponse](ctx, n, []byte(req.Name), "Abort", req); done {
		return resp, err
	}
	code, err := decodeCode(req.Code)
	if err != nil {
		return nil, err
	}
	if err := n.abortTxn(ctx, req.Name, code, false); err != nil {
		return nil, err
	}
	return &ocpb.AbortResponse{}, nil
}

// abortTxn moves the record to ABORTED and releases its keys.
func (n *Node) abortTxn(ctx context.Context, name string, code []byte, expired bool) error {
	rr := n.replicaOfName(name)
	res, err := n.proposeCarryingMarks(ctx, rr, name, &cmdpb.Command{Body: &cmdpb.Command_TxnFinish{TxnFinish: &cmdpb.TxnFinish{
		Name: name, Code: code, Status: cmdpb.TxnStatus_ABORTED, Expired: expired,
	}}})
	if err != nil {
		return err
	}
	n.deadlines.Remove(locks.LeaseID{Kind: locks.Restrictive, Name: name, Code: string(code)})
	if res.Error != cmdpb.ErrorCode_OK {
		return resultErr(res)
	}
	if expired {
		n.metrics.lockExpired.Inc()
		n.log.Info("restrictive lock expired", "lock", name)
	}
	return n.resolveFinished(n.bg, name)
}

// resolveFinished releases the key locks of a finished record (committing
// its provisional values if it committed) and frees the name. Idempotent.
func (n *Node) resolveFinished(ctx context.Context, name string) error {
	return n.resolve(ctx, name, true)
}

// resolve is resolveFinished; confirm reads the record only once this
// node is confirmed as the name's leader (ReadIndex). Commit, which just
// applied the record's move to COMMITTED here, skips that round: nothing
// but its own proposals changes a finished record.
func (n *Node) resolve(ctx context.Context, name string, confirm bool) error {
	rr := n.replicaOfName(name)
	if confirm {
		if err := rr.linearizable(ctx); err != nil {
			return err
		}
	}
	rec, found, err := locks.TxnRecord(n.eng.DB(), rr.bucket, name)
	if err != nil || !found {
		return err
	}
	var errs []error
	for _, u := range rec.Unresolved {
		if !n.marks.has(name, u.Code) { // marked: released already
			errs = append(errs, n.resolveRecord(ctx, name, u))
		}
	}
	if rec.Status != cmdpb.TxnStatus_PENDING && !rec.Resolved && !n.marks.has(name, rec.Code) {
		errs = append(errs, n.resolveRecord(ctx, name, rec))
	}
	return errors.Join(errs...)
}

// writesByBucket groups writes by their keys' buckets.
func (n *Node) writesByBucket(writes []*cmdpb.TxnWrite) map[mvcc.Bucket][]*cmdpb.TxnWrite {
	out := make(map[mvcc.Bucket][]*cmdpb.TxnWrite)
	for _, w := range writes {
		b := mvcc.BucketOf(w.Key, n.buckets)
		out[b] = append(out[b], w)
	}
	return out
}

// needsResolving reports whether a restrictive-lock record, or an earlier
// holder it tracks, finished with key locks not known released.
func needsResolving(rec *cmdpb.TxnRecord) bool {
	return len(rec.Unresolved) > 0 || (rec.Status != cmdpb.TxnStatus_PENDING && !rec.Resolved)
}

// resolveRecord releases the key locks of one finished record of name
// (committing its provisional values if it committed), then marks it
// resolved: the mark rides on the name's next command from this node, or
// the sweeper proposes it (resolved_marks.go).
func (n *Node) resolveRecord(ctx context.Context, name string, rec *cmdpb.TxnRecord) error {
	keys := make([][]byte, 0, len(rec.Keys))
	for _, k := range rec.Keys {
		keys = append(keys, k.Key)
	}
	order, groups := n.byBucket(keys)
	commit := rec.Status == cmdpb.TxnStatus_COMMITTED
	writes := n.writesByBucket(rec.Writes)
	// Each bucket resolves its own keys, all at once, on its leader: a
	// leader's ResolveKeys hands each key to the head of its queue there
	// (key_handoff.go). Resolving twice changes nothing.
	if err := n.proposeEach(ctx, order, func(b mvcc.Bucket) *cmdpb.Command {
		return &cmdpb.Command{Body: &cmdpb.Command_ResolveKeys{ResolveKeys: &cmdpb.ResolveKeys{
			Name: name, Code: rec.Code, Keys: groups[b], Commit: commit, CommitTs: rec.CommitTs, Writes: writes[b],
		}}}
	}); err != nil {
		return err
	}
	n.marks.add(name, rec.Code)
	return nil
}

// proposeEach proposes cmd(b) on the leader of every bucket b at once and
// returns their errors, refusals included, joined (nil if all applied
// successfully). One bucket runs inline.
func (n *Node) proposeEach(ctx context.Context, buckets []mvcc.Bucket, cmd func(b mvcc.Bucket) *cmdpb.Command) error {
	propose := func(b mvcc.Bucket) error {
		res, err := n.bucketPropose(ctx, b, cmd(b))
		if err != nil {
			return err
		}
		return resultErr(res)
	}
	if len(buckets) == 1 {
		return propose(buckets[0])
	}
	errs := make([]error, len(buckets))
	var wg sync.WaitGroup
	for i, b := range buckets {
		wg.Go(func() { errs[i] = propose(b) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// resolveSweepInterval is how often each bucket's leader retries the
// resolution of restrictive locks that finished (committed or aborted) but
// still hold key locks: a resolution that failed midway (a leader change
// in another bucket, a partition) must not leave keys locked forever.
const resolveSweepInterval = time.Second

// resolveSweeper retries unfinished resolutions on the buckets this node
// leads; one resolution per lock name at a time.
type resolveSweeper struct {
	n        *Node
	mu       sync.Mutex
	inFlight map[string]bool
}

// begin claims name for one resolution (or proposal of its marks), unless
// one is under way.
func (s *resolveSweeper) begin(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inFlight[name] {
		return false
	}
	s.inFlight[name] = true
	return true
}

// done releases name's claim.
func (s *resolveSweeper) done(name string) {
	s.mu.Lock()
	delete(s.inFlight, name)
	s.mu.Unlock()
}

func (s *resolveSweeper) sweep() {
	n := s.n
	s.proposeDueMarks()
	for _, r := range n.replicas[:n.buckets] {
		if !r.isReadyLeader() {
			continue
		}
		var names []string
		err := mvcc.ScanRecords(n.eng.DB(), r.bucket, mvcc.KindTxn, nil, func(name, raw []byte) error {
			rec := &cmdpb.TxnRecord{}
			if err := unmarshalRecord(raw, rec); err != nil {
				return err
			}
			if needsResolving(rec) {
				names = append(names, string(name))
			}
			return nil
		})
		if err != nil {
			n.log.Warn("scanning for unresolved restrictive locks", "bucket", r.bucket, "err", err)
			continue
		}
		for _, name := range names {
			if !s.begin(name) {
				continue
			}
			n.goBackground(func(ctx context.Context) {
				defer s.done(name)
				ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				defer cancel()
				if err := n.resolveFinished(ctx, name); err != nil {
					n.log.Debug("resolving a finished restrictive lock; will retry", "lock", name, "err", err)
				}
			})
		}
	}
}
