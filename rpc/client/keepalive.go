package client

import (
	"context"
	"sync"
	"time"

	"github.com/opencluster/opencluster/rpc/ocpb"
	"google.golang.org/grpc/codes"
)

// LockKind is the kind of a lock: named (a mutex) or restrictive (key locks
// whose writes commit at unlock).
type LockKind int

const (
	// KindAny matches both kinds (Describe, List).
	KindAny LockKind = LockKind(ocpb.LockKind_LOCK_KIND_UNSPECIFIED)
	// KindNamed is a named lock (Lock).
	KindNamed LockKind = LockKind(ocpb.LockKind_NAMED)
	// KindRestrictive is a restrictive lock (Restrict).
	KindRestrictive LockKind = LockKind(ocpb.LockKind_RESTRICTIVE)
)

// String returns "named", "restrictive" or "any".
func (k LockKind) String() string {
	switch k {
	case KindNamed:
		return "named"
	case KindRestrictive:
		return "restrictive"
	case KindAny:
		return "any"
	}
	return "unknown"
}

// leaseKey identifies a lease in the keeper and in keep-alive answers
// (which carry the name and the code but not the kind; codes are unique).
type leaseKey struct{ name, code string }

// lease is one lock the keeper renews.
type lease struct {
	kind       LockKind
	name, code string
	onRenew    func(ttl time.Duration)
	// lost is closed (at most once, by loseLocked) when the lock is lost.
	lost chan struct{}
	// acked is closed at the first successful renewal or when the lock is
	// lost (Attach waits on it).
	acked chan struct{}

	// The fields below are guarded by keeper.mu.

	// ttl is the lock's ttl; 0 until the first answer for an attached lock.
	ttl time.Duration
	// lastOK is the send time of the newest acknowledged renewal (for a
	// fresh grant: when its answer arrived).
	// Invariant: the server does not expire the lock before lastOK+ttl
	// (it restarts the ttl when it receives a renewal, after we sent it).
	lastOK time.Time
	// nextDue is when to send the next renewal; zero means now.
	nextDue time.Time
	// inflight holds the send times of unanswered renewals on the current
	// stream, oldest first (the server answers a lock's renewals in order).
	inflight []time.Time
	// isAcked reports that acked is closed.
	isAcked bool
	// err is why the lock was lost. Invariant: err != nil iff lost is
	// closed, iff the lease is not in keeper.mu.leases because it was lost.
	err error
}

func newLease(kind LockKind, name, code string, ttl time.Duration, onRenew func(time.Duration)) *lease {
	l := &lease{
		kind:    kind,
		name:    name,
		code:    code,
		onRenew: onRenew,
		lost:    make(chan struct{}),
		acked:   make(chan struct{}),
		ttl:     ttl,
	}
	if ttl > 0 {
		now := time.Now()
		l.lastOK = now
		l.nextDue = now.Add(ttl / 3)
	}
	return l
}

// errLocked returns why the lease was lost, or nil. keeper.mu must be held.
func (l *lease) errLocked() error { return l.err }

// lostError is the error of a lease the server reported lost.
func lostError(kind LockKind, format string, args ...any) *Error {
	if kind == KindRestrictive {
		return newError(codes.Aborted, ErrLost, format, args...)
	}
	return newError(codes.FailedPrecondition, ErrLost, format, args...)
}

// idleStreamTimeout is how long the keep-alive stream stays open without
// leases, so that a client taking locks one after another keeps one stream.
const idleStreamTimeout = 30 * time.Second

// keeper renews every lease of a client over one KeepAlive stream.
//
// It is one goroutine (run) plus, while connected, one session goroutine
// that opens the stream and reads its answers. run owns the timers: it
// sends due renewals, declares stale leases lost, notices failed or stalled
// sessions and reconnects with backoff, rotating endpoints. Only run calls
// Send on a stream; only the session goroutine calls Recv.
//
// Mutex order: keeper.mu is a leaf; it is never held across I/O (Send,
// Recv, opening a stream) or while calling onRenew.
type keeper struct {
	c *Client
	// wake is poked (non-blocking, capacity 1) when leases or the session
	// change, so run re-evaluates.
	wake chan struct{}
	// syncc lets remove wait until run is outside its send phase.
	syncc chan chan struct{}
	stop  chan struct{} // closed by close
	done  chan struct{} // closed when run returns

	mu struct {
		sync.Mutex
		// leases holds the leases being renewed.
		leases map[leaseKey]*lease
		// sess is the current session, or nil. run sets it; the session
		// goroutine fills in stream, err and answered.
		sess *kaSession
		// closed is set when run stops; later leases are lost at once.
		closed bool
	}
}

// kaSession is one KeepAlive stream attempt.
type kaSession struct {
	ep      int64 // index of the endpoint
	addr    string
	started time.Time
	cancel  context.CancelFunc
	done    chan struct{} // closed when the session goroutine returns

	// Guarded by keeper.mu.
	stream   ocpb.Locks_KeepAliveClient // set once the stream is open
	err      error                      // set when the stream failed
	answered bool                       // the stream delivered an answer
}

func newKeeper(c *Client) *keeper {
	k := &keeper{
		c:     c,
		wake:  make(chan struct{}, 1),
		syncc: make(chan chan struct{}),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	k.mu.leases = make(map[leaseKey]*lease)
	go k.run()
	return k
}

// close stops run and waits for it (and its session). Leases still held
// are lost with ErrClosed.
func (k *keeper) close() {
	close(k.stop)
	<-k.done
}

func (k *keeper) poke() {
	select {
	case k.wake <- struct{}{}:
	default:
	}
}

// add starts renewing l.
func (k *keeper) add(l *lease) {
	k.mu.Lock()
	if k.mu.closed {
		k.loseLocked(l, errClosed())
	} else {
		k.mu.leases[leaseKey{l.name, l.code}] = l
	}
	k.mu.Unlock()
	k.poke()
}

// remove stops renewing l. When it returns, no renewal of l is being sent
// or will be sent (unless ctx ended first).
func (k *keeper) remove(ctx context.Context, l *lease) {
	k.mu.Lock()
	key := leaseKey{l.name, l.code}
	if k.mu.leases[key] == l {
		delete(k.mu.leases, key)
	}
	k.mu.Unlock()
	ack := make(chan struct{})
	select {
	case k.syncc <- ack:
	case <-k.done:
		return
	case <-ctx.Done():
		return
	}
	// run closes ack as soon as it receives it.
	<-ack
}

// leaseErr returns why l was lost, or nil.
func (k *keeper) leaseErr(l *lease) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return l.errLocked()
}

// leaseTTL returns l's current ttl.
func (k *keeper) leaseTTL(l *lease) time.Duration {
	k.mu.Lock()
	defer k.mu.Unlock()
	return l.ttl
}

// lose marks l lost with err (see loseLocked).
func (k *keeper) lose(l *lease, err error) {
	k.mu.Lock()
	k.loseLocked(l, err)
	k.mu.Unlock()
	k.poke()
}

// loseLocked marks l lost with err, stops renewing it and closes its
// channels. It does nothing if l is already lost.
func (k *keeper) loseLocked(l *lease, err error) {
	if l.err != nil {
		return
	}
	l.err = err
	key := leaseKey{l.name, l.code}
	if k.mu.leases[key] == l {
		delete(k.mu.leases, key)
	}
	close(l.lost)
	if !l.isAcked {
		l.isAcked = true
		close(l.acked)
	}
}

// run is the keeper's goroutine.
func (k *keeper) run() {
	defer close(k.done)
	var (
		sess     *kaSession
		retryAt  time.Time
		failures int
		// idleSince is when the last lease left (zero while there are
		// leases); an idle stream is closed after idleStreamTimeout.
		idleSince time.Time
	)
	stopSession := func() {
		sess.cancel()
		<-sess.done
		k.mu.Lock()
		k.mu.sess = nil
		k.mu.Unlock()
		sess = nil
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		now := time.Now()
		k.mu.Lock()
		k.expireLocked(now)
		active := len(k.mu.leases) > 0
		var (
			failed   error
			stream   ocpb.Locks_KeepAliveClient
			answered bool
		)
		if sess != nil {
			failed, stream, answered = sess.err, sess.stream, sess.answered
			if failed == nil {
				failed = k.stalledLocked(sess, now)
			}
		}
		k.mu.Unlock()
		switch {
		case active:
			idleSince = time.Time{}
		case idleSince.IsZero():
			idleSince = now
		}

		switch {
		case sess != nil && failed != nil:
			if answered {
				failures = 0
			}
			failures++
			retryAt = now.Add(k.c.opts.backoffFor(failures))
			k.c.opts.logger.Warn("client: keep-alive stream failed", "endpoint", sess.addr, "err", failed)
			k.c.rotate(sess.ep)
			stopSession()
			continue
		case sess != nil && !active && !now.Before(idleSince.Add(idleStreamTimeout)):
			stopSession()
			continue
		case sess == nil && active && !now.Before(retryAt):
			sess = k.startSession(now)
		case stream != nil:
			if err := k.sendDue(stream, now); err != nil {
				k.mu.Lock()
				if sess.err == nil {
					sess.err = err
				}
				k.mu.Unlock()
				continue
			}
		}

		wake := k.nextWake(sess, retryAt, time.Now())
		if sess != nil && !idleSince.IsZero() {
			wake = min(wake, max(time.Until(idleSince.Add(idleStreamTimeout)), 0))
		}
		timer.Reset(wake)
		select {
		case <-k.stop:
			if sess != nil {
				stopSession()
			}
			k.mu.Lock()
			k.mu.closed = true
			for _, l := range k.mu.leases {
				k.loseLocked(l, errClosed())
			}
			k.mu.Unlock()
			return
		case <-k.wake:
		case ack := <-k.syncc:
			close(ack)
		case <-timer.C:
		}
	}
}

// startSession opens a KeepAlive stream on the current endpoint in a new
// goroutine.
func (k *keeper) startSession(now time.Time) *kaSession {
	ep, e := k.c.current()
	ctx, cancel := context.WithCancel(context.Background())
	s := &kaSession{ep: ep, addr: e.addr, started: now, cancel: cancel, done: make(chan struct{})}
	k.mu.Lock()
	k.mu.sess = s
	k.mu.Unlock()
	go k.runSession(ctx, s, e.locks)
	return s
}

// runSession opens the stream and applies its answers until it fails or
// ctx is cancelled.
func (k *keeper) runSession(ctx context.Context, s *kaSession, stub ocpb.LocksClient) {
	defer close(s.done)
	stream, err := stub.KeepAlive(ctx)
	k.mu.Lock()
	if err != nil {
		s.err = err
	} else {
		s.stream = stream
		// A new stream: renew everything now; answers to renewals sent on
		// an old stream will never come.
		for _, l := range k.mu.leases {
			l.nextDue = time.Time{}
			l.inflight = nil
		}
	}
	k.mu.Unlock()
	k.poke()
	if err != nil {
		return
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			k.mu.Lock()
			if s.err == nil {
				s.err = err
			}
			k.mu.Unlock()
			k.poke()
			return
		}
		k.apply(s, resp, time.Now())
	}
}

// apply handles one keep-alive answer.
func (k *keeper) apply(s *kaSession, resp *ocpb.KeepAliveResponse, now time.Time) {
	k.mu.Lock()
	if k.mu.sess != s {
		k.mu.Unlock()
		return
	}
	s.answered = true
	l := k.mu.leases[leaseKey{resp.Name, resp.Code}]
	if l == nil {
		k.mu.Unlock()
		return
	}
	sent := now
	if len(l.inflight) > 0 {
		sent = l.inflight[0]
		l.inflight = l.inflight[1:]
	}
	if resp.Lost {
		reason := resp.Reason
		if reason == "" {
			reason = "not held"
		}
		k.loseLocked(l, lostError(l.kind, "lock %q lost: %s", l.name, reason))
		k.mu.Unlock()
		k.poke()
		return
	}
	pending := l.ttl == 0
	if d := resp.Ttl.AsDuration(); d > 0 {
		l.ttl = d
	}
	if sent.After(l.lastOK) {
		l.lastOK = sent
	}
	if pending && l.ttl > 0 {
		l.nextDue = sent.Add(l.ttl / 3)
	}
	if !l.isAcked {
		l.isAcked = true
		close(l.acked)
	}
	fn, ttl := l.onRenew, l.ttl
	k.mu.Unlock()
	if pending {
		k.poke()
	}
	if fn != nil {
		fn(ttl)
	}
}

// expireLocked declares lost every lease not renewed for a full ttl.
func (k *keeper) expireLocked(now time.Time) {
	for _, l := range k.mu.leases {
		if l.ttl > 0 && now.Sub(l.lastOK) >= l.ttl {
			k.loseLocked(l, lostError(l.kind, "lock %q lost: keep-alive failed for longer than its ttl (%s)", l.name, l.ttl))
		}
	}
}

// openTimeoutLocked bounds how long a session may take to open, and how
// long a renewal may go unanswered, before the session counts as failed:
// a third of the shortest ttl, within [50ms, 2s].
func (k *keeper) openTimeoutLocked() time.Duration {
	d := 2 * time.Second
	for _, l := range k.mu.leases {
		if l.ttl > 0 {
			d = min(d, l.ttl/3)
		}
	}
	return max(d, 50*time.Millisecond)
}

// stalledLocked returns an error if s took too long to open or to answer.
func (k *keeper) stalledLocked(s *kaSession, now time.Time) error {
	limit := k.openTimeoutLocked()
	if s.stream == nil {
		if now.Sub(s.started) > limit {
			return newError(codes.Unavailable, nil, "keep-alive stream did not open within %s", limit)
		}
		return nil
	}
	for _, l := range k.mu.leases {
		if len(l.inflight) > 0 && now.Sub(l.inflight[0]) > limit {
			return newError(codes.Unavailable, nil, "keep-alive not answered within %s", limit)
		}
	}
	return nil
}

// sendDue sends a renewal for every lease that is due.
func (k *keeper) sendDue(stream ocpb.Locks_KeepAliveClient, now time.Time) error {
	var reqs []*ocpb.KeepAliveRequest
	k.mu.Lock()
	for _, l := range k.mu.leases {
		if now.Before(l.nextDue) {
			continue
		}
		reqs = append(reqs, &ocpb.KeepAliveRequest{Name: l.name, Code: l.code, Kind: ocpb.LockKind(l.kind)})
		l.inflight = append(l.inflight, now)
		if l.ttl > 0 {
			l.nextDue = now.Add(l.ttl / 3)
		} else {
			l.nextDue = now.Add(time.Second)
		}
	}
	k.mu.Unlock()
	for _, r := range reqs {
		if err := stream.Send(r); err != nil {
			return err
		}
	}
	return nil
}

// nextWake returns how long run may sleep: until the next renewal is due
// (when connected), a lease would go stale, a session would count as
// stalled, or a reconnect is due.
func (k *keeper) nextWake(s *kaSession, retryAt, now time.Time) time.Duration {
	k.mu.Lock()
	defer k.mu.Unlock()
	wake := now.Add(time.Hour)
	earlier := func(t time.Time) {
		if t.Before(wake) {
			wake = t
		}
	}
	connected := s != nil && s.stream != nil
	limit := k.openTimeoutLocked()
	for _, l := range k.mu.leases {
		if l.ttl > 0 {
			earlier(l.lastOK.Add(l.ttl))
		}
		if connected {
			earlier(l.nextDue)
			if len(l.inflight) > 0 {
				earlier(l.inflight[0].Add(limit + time.Millisecond))
			}
		}
	}
	switch {
	case s == nil && len(k.mu.leases) > 0:
		earlier(retryAt)
	case s != nil && s.stream == nil:
		earlier(s.started.Add(limit + time.Millisecond))
	}
	return max(wake.Sub(now), 0)
}
