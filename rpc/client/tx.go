package client

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"time"

	"github.com/opencluster/opencluster/rpc/ocpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Tx is a held restrictive lock: a snapshot-isolated transaction over the
// keys it locked. Its reads carry its code; its writes are kept in the
// handle and sent with Commit, which makes them visible at one version
// (Abort, or expiry, discards them). So a Put costs no round trip, and a
// write the server would refuse (the lock lost meanwhile) fails at Commit.
// It is kept alive in the background until Commit or Abort. It is safe
// for concurrent use.
type Tx struct {
	c            *Client
	name         string
	code         string
	fence        uint64
	startVersion uint64
	lease        *lease
	// modes are the lock's keys and how it holds them (only WRITE keys may
	// be written).
	modes map[string]KeyMode
	// prefetched holds the keys' committed values when the lock was taken
	// with Prefetch (a key absent from it does not exist); nil otherwise.
	prefetched map[string]KeyValue
	// commitID and abortID are the request ids of every Commit and Abort
	// of this handle, so repeating them is safe.
	commitID, abortID string

	mu struct {
		sync.Mutex
		// commitVersion is set once Commit succeeded.
		commitVersion uint64
		// aborted is set once Abort succeeded.
		aborted bool
		// writes are the buffered writes, in the order of their keys' first
		// write; written indexes them by key.
		writes  []*ocpb.TxnWrite
		written map[string]int
	}
}

// Restrict takes the restrictive lock name over the keys given as Read and
// Write options, waiting for the name and the keys (until Wait's bound,
// then ErrWaitTimeout, or until ctx ends), and keeps it alive until Commit
// or Abort.
func (c *Client) Restrict(ctx context.Context, name string, opts ...RestrictOption) (*Tx, error) {
	var o restrictOptions
	for _, opt := range opts {
		opt.applyRestrict(&o)
	}
	return c.restrict(ctx, name, o)
}

func (c *Client) restrict(ctx context.Context, name string, o restrictOptions) (*Tx, error) {
	if o.requestID == "" {
		o.requestID = newRequestID()
	}
	if o.ttl < 0 {
		return nil, invalidf("negative ttl %s", o.ttl)
	}
	req := &ocpb.RestrictRequest{Name: name, Wait: durationOf(o.wait), Owner: c.opts.owner, RequestId: o.requestID, Prefetch: o.prefetch}
	for _, k := range o.keys {
		req.Keys = append(req.Keys, &ocpb.KeyLockRequest{Key: k.Key, Mode: ocpb.KeyMode(k.Mode)})
	}
	if o.ttl > 0 {
		req.Ttl = durationpb.New(o.ttl)
	}
	if o.snapshot {
		req.Isolation = ocpb.Isolation_SNAPSHOT
	}
	var resp *ocpb.RestrictResponse
	err := c.doKey(ctx, "Restrict", []byte(name), waitOf(o.wait), func(ctx context.Context, e *endpoint) (err error) {
		resp, err = e.locks.Restrict(ctx, req)
		return err
	})
	if err != nil {
		return nil, err
	}
	ttl := resp.Ttl.AsDuration()
	if ttl <= 0 {
		ttl = o.ttl
	}
	if ttl <= 0 {
		return nil, newError(codes.Internal, nil, "server granted restrictive lock %q without a ttl", name)
	}
	tx := &Tx{
		c:            c,
		name:         name,
		code:         resp.Code,
		fence:        resp.Fence,
		startVersion: resp.StartVersion,
		lease:        newLease(KindRestrictive, name, resp.Code, ttl, o.onRenew),
		commitID:     newRequestID(),
		abortID:      newRequestID(),
		modes:        make(map[string]KeyMode, len(o.keys)),
	}
	for _, k := range o.keys {
		tx.modes[string(k.Key)] = k.Mode
	}
	if o.prefetch {
		tx.prefetched = make(map[string]KeyValue, len(resp.Values))
		for _, kv := range resp.Values {
			tx.prefetched[string(kv.Key)] = KeyValue{Key: kv.Key, Value: kv.Value, Version: kv.Version}
		}
	}
	c.keeper.add(tx.lease)
	c.txs.Lock()
	if c.txs.m == nil {
		c.txs.m = make(map[leaseKey]*Tx)
	}
	c.txs.m[leaseKey{name, tx.code}] = tx
	c.txs.Unlock()
	return tx, nil
}

// openTx returns this client's open handle of the lock, if any.
func (c *Client) openTx(name, code string) *Tx {
	c.txs.Lock()
	defer c.txs.Unlock()
	return c.txs.m[leaseKey{name, code}]
}

// forget drops the handle from the client's open ones.
func (tx *Tx) forget() {
	tx.c.txs.Lock()
	delete(tx.c.txs.m, leaseKey{tx.name, tx.code})
	tx.c.txs.Unlock()
}

// Name returns the lock's name.
func (tx *Tx) Name() string { return tx.name }

// Code returns the lock's code.
func (tx *Tx) Code() string { return tx.code }

// Fence returns the lock's fencing token.
func (tx *Tx) Fence() uint64 { return tx.fence }

// StartVersion returns the version every key of the lock reads as of.
func (tx *Tx) StartVersion() uint64 { return tx.startVersion }

// TTL returns the lock's ttl as last confirmed by the server.
func (tx *Tx) TTL() time.Duration { return tx.c.keeper.leaseTTL(tx.lease) }

// Lost returns a channel closed when the lock is lost (see Lock.Lost).
// Commit and Abort do not close it, except a Commit that finds the lock
// lost.
func (tx *Tx) Lost() <-chan struct{} { return tx.lease.lost }

// Err returns nil while the lock is not known lost, and then why: an error
// matching ErrLost and ErrAborted, or ErrClosed.
func (tx *Tx) Err() error { return tx.c.keeper.leaseErr(tx.lease) }

// CommitVersion returns the version of the lock's writes once Commit
// succeeded, else 0.
func (tx *Tx) CommitVersion() uint64 {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	return tx.mu.commitVersion
}

// Get reads key under the lock: the lock's own write if it wrote one (its
// Version is then 0: it has none until Commit), else the committed value
// (prefetched with the grant, if the lock was taken with Prefetch and no
// read option is given).
func (tx *Tx) Get(ctx context.Context, key []byte, opts ...ReadOption) (KeyValue, error) {
	tx.mu.Lock()
	i, ok := tx.mu.written[string(key)]
	var w *ocpb.TxnWrite
	if ok {
		w = tx.mu.writes[i]
	}
	tx.mu.Unlock()
	if w != nil {
		if w.Delete {
			return KeyValue{}, newError(codes.NotFound, nil, "key %q deleted by restrictive lock %q", key, tx.name)
		}
		return KeyValue{Key: bytes.Clone(key), Value: bytes.Clone(w.Value)}, nil
	}
	if _, locked := tx.modes[string(key)]; locked && tx.prefetched != nil && len(opts) == 0 {
		kv, ok := tx.prefetched[string(key)]
		if !ok {
			return KeyValue{}, newError(codes.NotFound, nil, "key %q not found", key)
		}
		return KeyValue{Key: bytes.Clone(kv.Key), Value: bytes.Clone(kv.Value), Version: kv.Version}, nil
	}
	return tx.c.Get(ctx, key, append(opts[:len(opts):len(opts)], WithReadCode(tx.code))...)
}

// Put writes value under key provisionally, in the handle until Commit
// (or Flush); the key must be locked WRITE. Write options do not apply to
// it.
func (tx *Tx) Put(ctx context.Context, key, value []byte, opts ...WriteOption) error {
	return tx.buffer(key, value, false)
}

// Delete deletes key provisionally, in the handle until Commit; the key
// must be locked WRITE.
func (tx *Tx) Delete(ctx context.Context, key []byte, opts ...WriteOption) error {
	return tx.buffer(key, nil, true)
}

// Flush sends the buffered writes to the server as provisional writes (a
// Put or Delete with the code each), for a lock that another process will
// commit by its code: Client.Commit there commits what the server holds.
// Writes after Flush are buffered again.
func (tx *Tx) Flush(ctx context.Context) error {
	tx.mu.Lock()
	writes := tx.mu.writes
	tx.mu.Unlock()
	for _, w := range writes {
		var err error
		if w.Delete {
			_, err = tx.c.Delete(ctx, w.Key, WithCode(tx.code))
		} else {
			_, err = tx.c.Put(ctx, w.Key, w.Value, WithCode(tx.code))
		}
		if err != nil {
			return err
		}
	}
	tx.mu.Lock()
	defer tx.mu.Unlock()
	// Keep only what was written since (a later write of a flushed key
	// replaced its entry, so it is kept too).
	var kept []*ocpb.TxnWrite
	written := make(map[string]int)
	sent := make(map[*ocpb.TxnWrite]bool, len(writes))
	for _, w := range writes {
		sent[w] = true
	}
	for _, w := range tx.mu.writes {
		if !sent[w] {
			written[string(w.Key)] = len(kept)
			kept = append(kept, w)
		}
	}
	tx.mu.writes, tx.mu.written = kept, written
	return nil
}

// buffer records a write for Commit; a later write of a key replaces an
// earlier one.
func (tx *Tx) buffer(key, value []byte, del bool) error {
	if tx.modes[string(key)] != ModeWrite {
		return newError(codes.FailedPrecondition, nil, "key %q is not locked WRITE by restrictive lock %q", key, tx.name)
	}
	if err := tx.Err(); err != nil {
		return err
	}
	tx.mu.Lock()
	defer tx.mu.Unlock()
	if tx.mu.commitVersion != 0 || tx.mu.aborted {
		return newError(codes.FailedPrecondition, nil, "restrictive lock %q is already committed or aborted", tx.name)
	}
	w := &ocpb.TxnWrite{Key: bytes.Clone(key), Value: bytes.Clone(value), Delete: del}
	if i, ok := tx.mu.written[string(key)]; ok {
		tx.mu.writes[i] = w
		return nil
	}
	if tx.mu.written == nil {
		tx.mu.written = make(map[string]int)
	}
	tx.mu.written[string(key)] = len(tx.mu.writes)
	tx.mu.writes = append(tx.mu.writes, w)
	return nil
}

// Commit unlocks the lock and makes its writes visible at one version,
// which it returns. If the lock was lost the error matches ErrAborted and
// the writes are discarded. Renewal stops once the outcome is known
// (success, or an answer other than Unavailable or a deadline); after an
// ambiguous failure the lock stays alive so Commit (same request id) or
// Abort can be called again. Committing twice returns the first version.
func (tx *Tx) Commit(ctx context.Context) (uint64, error) {
	if v := tx.CommitVersion(); v != 0 {
		return v, nil
	}
	tx.mu.Lock()
	writes := tx.mu.writes
	tx.mu.Unlock()
	v, err := tx.c.commit(ctx, tx.name, tx.code, tx.commitID, writes)
	if err != nil {
		if isCode(err, codes.Aborted) {
			tx.c.keeper.lose(tx.lease, err)
		}
		if definite(err) {
			tx.c.keeper.remove(ctx, tx.lease)
			tx.forget()
		}
		return 0, err
	}
	tx.c.keeper.remove(ctx, tx.lease)
	tx.forget()
	tx.mu.Lock()
	tx.mu.commitVersion = v
	tx.mu.Unlock()
	return v, nil
}

// definite reports whether err is a server's final answer (the operation
// certainly did not happen and retrying it cannot help).
func definite(err error) bool {
	var e *Error
	if !errors.As(err, &e) {
		return false
	}
	switch e.Code() {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled, codes.Unknown, codes.Internal:
		return false
	}
	return true
}

// Abort stops keeping the lock alive (before it returns) and unlocks it,
// discarding its writes. Aborting twice is a no-op.
func (tx *Tx) Abort(ctx context.Context) error {
	tx.c.keeper.remove(ctx, tx.lease)
	tx.forget()
	tx.mu.Lock()
	done := tx.mu.aborted
	tx.mu.Unlock()
	if done {
		return nil
	}
	if err := tx.c.abort(ctx, tx.name, tx.code, tx.abortID); err != nil {
		return err
	}
	tx.mu.Lock()
	tx.mu.aborted = true
	tx.mu.Unlock()
	return nil
}

// Commit commits the restrictive lock name held with code, without a
// handle (for example one taken by another process): it commits the
// provisional writes the server holds. If this client has the lock's Tx
// open, it is Tx.Commit, buffered writes included. Prefer Tx.Commit.
func (c *Client) Commit(ctx context.Context, name, code string) (uint64, error) {
	if tx := c.openTx(name, code); tx != nil {
		return tx.Commit(ctx)
	}
	return c.commit(ctx, name, code, newRequestID(), nil)
}

// Abort aborts the restrictive lock name held with code, without a handle
// (through it if this client has it open). Prefer Tx.Abort.
func (c *Client) Abort(ctx context.Context, name, code string) error {
	if tx := c.openTx(name, code); tx != nil {
		return tx.Abort(ctx)
	}
	return c.abort(ctx, name, code, newRequestID())
}

func (c *Client) commit(ctx context.Context, name, code, requestID string, writes []*ocpb.TxnWrite) (uint64, error) {
	req := &ocpb.CommitRequest{Name: name, Code: code, RequestId: requestID, Writes: writes}
	var resp *ocpb.CommitResponse
	err := c.doKey(ctx, "Commit", []byte(name), 0, func(ctx context.Context, e *endpoint) (err error) {
		resp, err = e.locks.Commit(ctx, req)
		return err
	})
	if err != nil {
		return 0, err
	}
	return resp.CommitVersion, nil
}

func (c *Client) abort(ctx context.Context, name, code, requestID string) error {
	req := &ocpb.AbortRequest{Name: name, Code: code, RequestId: requestID}
	return c.doKey(ctx, "Abort", []byte(name), 0, func(ctx context.Context, e *endpoint) error {
		_, err := e.locks.Abort(ctx, req)
		return err
	})
}

// Txn runs fn under the restrictive lock name over keys, then commits. If
// the lock is lost (ErrAborted or ErrLost from Restrict, fn or Commit) or
// the cluster stays unavailable, it retries the whole transaction (a new
// lock, a new request id) after a backoff, up to MaxAttempts times
// (default: the client's retry attempts). If fn returns another error, Txn
// aborts the lock and returns fn's error unchanged. opts are passed to
// Restrict.
func (c *Client) Txn(ctx context.Context, name string, keys []KeySpec, fn func(tx *Tx) error, opts ...RestrictOption) error {
	var o restrictOptions
	for _, opt := range opts {
		opt.applyRestrict(&o)
	}
	o.keys = append(append([]KeySpec(nil), keys...), o.keys...)
	attempts := o.attempts
	if attempts <= 0 {
		attempts = c.opts.maxAttempts
	}
	userRequestID := o.requestID
	for attempt := 1; ; attempt++ {
		err := c.txnOnce(ctx, name, o, fn)
		if err == nil || !retryableTxn(err) || attempt >= attempts || ctx.Err() != nil {
			return err
		}
		pause := c.opts.backoffFor(attempt)
		c.opts.logger.Debug("client: retrying transaction", "name", name, "attempt", attempt, "pause", pause, "err", err)
		if !c.sleep(ctx, pause) {
			return err
		}
		// A retry is a new logical operation: a fresh lock.
		if userRequestID == "" {
			o.requestID = ""
		} else {
			o.requestID = userRequestID + "-" + newRequestID()[:8]
		}
	}
}

func (c *Client) txnOnce(ctx context.Context, name string, o restrictOptions, fn func(tx *Tx) error) error {
	tx, err := c.restrict(ctx, name, o)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		actx, cancel := c.detached(ctx)
		if aerr := tx.Abort(actx); aerr != nil {
			c.opts.logger.Debug("client: abort after failed transaction function", "name", name, "err", aerr)
		}
		cancel()
		return err
	}
	_, err = tx.Commit(ctx)
	return err
}

// retryableTxn reports whether a transaction attempt failed because its lock
// was lost or the cluster was unavailable.
func retryableTxn(err error) bool {
	return errors.Is(err, ErrAborted) || errors.Is(err, ErrLost) || errors.Is(err, ErrUnavailable)
}
