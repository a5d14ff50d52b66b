// Package client is the Go client of OpenCluster: versioned key-value reads
// and writes, named locks (Lock) and restrictive locks (Restrict, Txn),
// over the gRPC API of rpc/ocpb.
//
//	c, err := client.New(ctx, []string{"127.0.0.1:7400"})
//	defer c.Close()
//	ver, err := c.Put(ctx, []byte("k"), []byte("v"))
//	l, err := c.Lock(ctx, "job", 15*time.Second)
//	defer l.Unlock(ctx)
//	_, err = c.Put(ctx, []byte("out"), data, client.WithFence(l.Name(), l.Fence()))
//	err = c.Txn(ctx, "transfer", []client.KeySpec{client.Write(a), client.Write(b)},
//		func(tx *client.Tx) error { ...tx.Get / tx.Put... })
//
// # Model
//
// A Client holds one gRPC connection per endpoint. Any node serves any
// request, so calls go to one current endpoint and move to the next when it
// answers Unavailable; a request about one key or lock name goes first to
// its bucket's leader, from a placement refreshed in the background
// (route.go). A resend of a write is marked as a retry. Every call is one logical operation: it may be sent
// several times, but always as the same request. A held lock is a lease on
// the server that expires ttl after its last keep-alive; the client renews
// every lease it holds (Lock, Tx, Attach) from one background goroutine
// over one KeepAlive stream, and tells the holder through a Lost channel
// when a lease is gone. A lock's code is its secret: whoever has it may
// write under the lock, so the client never logs codes. A Tx keeps its
// writes until Commit, which carries them (so a Put costs no call), and
// with Prefetch its grant brings the locked keys' values for its Gets.
//
// # Invariants
//
//  1. Request ids. Every mutating call (Put, Delete, CAS, Lock, Release,
//     Restrict, Commit, Abort) carries a request id, generated once per
//     logical operation (128 random bits) and reused on every retry of it,
//     so a retry cannot apply twice: a retried Lock gets the same grant. A
//     handle reuses one id for all its Unlock (or Commit, or Abort) calls.
//     Txn's retries are new operations with new ids.
//  2. Retries. Only Unavailable is retried, after a backoff that doubles
//     from WithRetry's base up to 1s, on the next endpoint, at most
//     WithRetry's attempts times and never past the context.
//  3. Errors. Every error from a call is an *Error: status.Code(err) and
//     status.FromError give the server's gRPC status, and errors.Is matches
//     the sentinel of its code (ErrNotFound, ErrNotHolder, ErrAborted,
//     ErrWaitTimeout, ErrUnavailable, ErrInvalid) and, when the caller's
//     context ended, the context's error.
//  4. Keep-alive. While a lease is held the keeper sends it a renewal every
//     ttl/3 (at once on a new stream). A stream that fails, does not open,
//     or leaves a renewal unanswered for ttl/3 (within [50ms, 2s]) is
//     replaced, after a backoff, by one to the next endpoint. The stream is
//     opened when the first lease arrives and closed 30s after the last
//     one leaves.
//  5. Lost. A lease's Lost channel closes at most once, and only after the
//     lease has left the keeper (it is never renewed again): when the
//     server answers lost, when no renewal has been acknowledged for a full
//     ttl, when Commit finds the lock aborted, or when the client closes.
//     Staleness is measured from the send time of the newest acknowledged
//     renewal (from the grant's arrival for a fresh lock): the server
//     restarts its ttl only on receiving a renewal, so the client gives up
//     no later than the server would expire the lock, up to clock rate
//     differences and the grant's one-way latency. Unlock and Abort do not
//     close Lost.
//  6. Stopping renewal. Unlock, Abort and a Commit with a known outcome
//     stop the renewal before they return (Unlock and Abort before they
//     send their request): once the keeper acknowledges the removal, it
//     sends no further renewal of that lease.
//  7. Lifetimes. New starts exactly one goroutine (the keeper); the keeper
//     runs at most one session goroutine at a time, for the KeepAlive
//     stream. Close stops both and waits for them, then closes the
//     connections. Close does not release locks: they expire after their
//     ttl.
//  8. Contexts. Every call that blocks takes ctx first and returns when it
//     ends; WithTimeout only sets a deadline for calls whose ctx has none,
//     extended by the wait the call asks the server for.
//
// # Concurrency
//
// Client, Lock and Tx are safe for concurrent use. OnRenew callbacks run
// on the keeper's session goroutine and must return quickly.
package client
