package client

import (
	"log/slog"
	"time"

	"github.com/opencluster/opencluster/rpc/ocpb"
	"google.golang.org/grpc"
)

// Option configures a Client (see New).
type Option func(*options)

type options struct {
	// dialOpts are appended to the defaults (insecure transport
	// credentials), so a later WithTransportCredentials wins.
	dialOpts []grpc.DialOption
	// timeout is the default deadline of a call whose context has none; 0
	// means none. A call that asks the server to wait gets its wait on top.
	timeout time.Duration
	// owner labels locks in Describe and List.
	owner  string
	logger *slog.Logger
	// maxAttempts is how many times a call is tried on Unavailable (>= 1).
	maxAttempts int
	// backoff is the first pause between attempts; it doubles per attempt
	// up to maxBackoff.
	backoff time.Duration
}

const (
	defaultMaxAttempts = 5
	defaultBackoff     = 50 * time.Millisecond
	maxBackoff         = time.Second
)

// WithDialOptions adds gRPC dial options (TLS credentials, a custom
// dialer, interceptors). Without credentials among them the client dials
// without TLS.
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(o *options) { o.dialOpts = append(o.dialOpts, opts...) }
}

// WithTimeout sets the default deadline of a call whose context has none
// (default: none). A call that asks the server to wait (WithWait,
// WithLockWait, Wait) gets that wait on top of d. The keep-alive stream is
// not subject to it.
func WithTimeout(d time.Duration) Option {
	return func(o *options) { o.timeout = d }
}

// WithOwner sets the owner label recorded with the locks the client takes
// (default: hostname:pid).
func WithOwner(owner string) Option {
	return func(o *options) { o.owner = owner }
}

// WithLogger sets the logger (default: discard). Codes are never logged.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) { o.logger = l }
}

// WithRetry sets how many times a call is attempted when the server answers
// Unavailable (default 5; values below 1 mean 1), and the first pause
// between attempts (default 50ms), which doubles per attempt up to 1s (or
// backoff, if larger). It also bounds the attempts of Txn.
func WithRetry(maxAttempts int, backoff time.Duration) Option {
	return func(o *options) {
		o.maxAttempts = maxAttempts
		o.backoff = backoff
	}
}

// backoffFor returns the pause before attempt n+1 after n failures (n >= 1).
func (o *options) backoffFor(n int) time.Duration {
	limit := max(maxBackoff, o.backoff)
	d := o.backoff
	for i := 1; i < n && d < limit; i++ {
		d *= 2
	}
	return min(d, limit)
}

// WriteOption is an option of Put, Delete and the CAS calls.
type WriteOption interface{ applyWrite(*writeOptions) }

type writeOptions struct {
	code      string
	fence     *ocpb.Fence
	wait      *time.Duration
	requestID string
}

type writeOptionFunc func(*writeOptions)

func (f writeOptionFunc) applyWrite(o *writeOptions) { f(o) }

// WithCode writes provisionally under the restrictive lock with this code,
// which must hold the key in WRITE mode (Put, Delete).
func WithCode(code string) WriteOption {
	return writeOptionFunc(func(o *writeOptions) { o.code = code })
}

// WithFence guards the write with a named lock's fencing token: the store
// refuses it (ErrNotHolder) if it already accepted a higher token of that
// lock name for the key, or if the lock never granted that token (Put,
// Delete). Not with WithCode: the server refuses both together
// (ErrInvalid), since the restrictive lock orders that write.
func WithFence(name string, token uint64) WriteOption {
	return writeOptionFunc(func(o *writeOptions) { o.fence = &ocpb.Fence{Name: name, Token: token} })
}

// WithWait bounds how long the write may wait for a locked key (default:
// until the call's deadline; 0 does not wait).
func WithWait(d time.Duration) WriteOption {
	return writeOptionFunc(func(o *writeOptions) { o.wait = &d })
}

// ReadOption is an option of Get, BatchGet and Scan.
type ReadOption interface{ applyRead(*readOptions) }

type readOptions struct {
	code       string
	version    uint64
	wait       *time.Duration
	startAfter []byte
}

type readOptionFunc func(*readOptions)

func (f readOptionFunc) applyRead(o *readOptions) { f(o) }

// WithReadCode reads the caller's own provisional value under the
// restrictive lock with this code (Get).
func WithReadCode(code string) ReadOption {
	return readOptionFunc(func(o *readOptions) { o.code = code })
}

// AtVersion reads at a snapshot version instead of the newest value.
func AtVersion(v uint64) ReadOption {
	return readOptionFunc(func(o *readOptions) { o.version = v })
}

// WithReadWait bounds how long a read may wait on a WRITE-locked key
// (default: until the call's deadline).
func WithReadWait(d time.Duration) ReadOption {
	return readOptionFunc(func(o *readOptions) { o.wait = &d })
}

// StartAfter resumes a Scan after this key (exclusive). Other calls ignore it.
func StartAfter(key []byte) ReadOption {
	return readOptionFunc(func(o *readOptions) { o.startAfter = key })
}

// LockOption is an option of Lock and Attach.
type LockOption interface{ applyLock(*lockOptions) }

type lockOptions struct {
	wait      *time.Duration
	requestID string
	onRenew   func(ttl time.Duration)
}

type lockOptionFunc func(*lockOptions)

func (f lockOptionFunc) applyLock(o *lockOptions) { f(o) }

// WithLockWait bounds how long Lock queues for the lock (0 tries once).
// Without it Lock waits until its context ends.
func WithLockWait(d time.Duration) LockOption {
	return lockOptionFunc(func(o *lockOptions) { o.wait = &d })
}

// RequestIDOption sets the request id of a mutating call (see
// WithRequestID). It is a LockOption, a RestrictOption and a WriteOption.
type RequestIDOption string

// WithRequestID sets the request id of the call instead of a fresh random
// one, so that a caller can retry a whole call (even from another process)
// and get the same result: a retried Lock returns the same grant.
func WithRequestID(id string) RequestIDOption { return RequestIDOption(id) }

func (r RequestIDOption) applyLock(o *lockOptions)         { o.requestID = string(r) }
func (r RequestIDOption) applyRestrict(o *restrictOptions) { o.requestID = string(r) }
func (r RequestIDOption) applyWrite(o *writeOptions)       { o.requestID = string(r) }

// RenewOption calls a function after every successful renewal of the lock
// (see OnRenew). It is a LockOption and a RestrictOption.
type RenewOption func(ttl time.Duration)

// OnRenew calls fn with the lock's ttl after every successful keep-alive.
// fn runs on the client's keep-alive goroutine: it must return quickly and
// must not call the Client.
func OnRenew(fn func(ttl time.Duration)) RenewOption { return RenewOption(fn) }

func (r RenewOption) applyLock(o *lockOptions)         { o.onRenew = r }
func (r RenewOption) applyRestrict(o *restrictOptions) { o.onRenew = r }

// RestrictOption is an option of Restrict and Txn: the keys to lock (Read,
// Write), the isolation (Snapshot), TTL and Wait.
type RestrictOption interface{ applyRestrict(*restrictOptions) }

type restrictOptions struct {
	keys      []KeySpec
	snapshot  bool
	ttl       time.Duration
	wait      *time.Duration
	requestID string
	onRenew   func(ttl time.Duration)
	attempts  int
	prefetch  bool
}

type restrictOptionFunc func(*restrictOptions)

func (f restrictOptionFunc) applyRestrict(o *restrictOptions) { f(o) }

// KeyMode is how a restrictive lock holds a key.
type KeyMode int

const (
	// ModeRead lets others read the key and nobody change it.
	ModeRead KeyMode = KeyMode(ocpb.KeyMode_READ)
	// ModeWrite lets only the holder write the key; others' writes wait, and
	// so do their reads unless the lock is Snapshot.
	ModeWrite KeyMode = KeyMode(ocpb.KeyMode_WRITE)
)

// String returns "read" or "write".
func (m KeyMode) String() string {
	switch m {
	case ModeRead:
		return "read"
	case ModeWrite:
		return "write"
	}
	return "unknown"
}

// KeySpec is a key and the mode a restrictive lock holds it in. It is a
// RestrictOption.
type KeySpec struct {
	Key  []byte
	Mode KeyMode
}

func (k KeySpec) applyRestrict(o *restrictOptions) { o.keys = append(o.keys, k) }

// Read locks key in READ mode.
func Read(key []byte) KeySpec { return KeySpec{Key: key, Mode: ModeRead} }

// Write locks key in WRITE mode.
func Write(key []byte) KeySpec { return KeySpec{Key: key, Mode: ModeWrite} }

// Snapshot selects snapshot isolation: others read the last committed
// values of WRITE keys without waiting (default: strict, they wait).
func Snapshot() RestrictOption {
	return restrictOptionFunc(func(o *restrictOptions) { o.snapshot = true })
}

// Prefetch has the grant bring the committed values of the lock's keys,
// read as each key was locked: Tx.Get then answers them without a call
// (like etcd STM's WithPrefetch). Every key's value travels, so leave it
// out when values are large and few are read.
func Prefetch() RestrictOption {
	return restrictOptionFunc(func(o *restrictOptions) { o.prefetch = true })
}

// TTL sets how long the lock outlives its last keep-alive (default: the
// server's, 15s).
func TTL(d time.Duration) RestrictOption {
	return restrictOptionFunc(func(o *restrictOptions) { o.ttl = d })
}

// Wait bounds how long Restrict queues for the name and the keys (0 tries
// once). Without it Restrict waits until its context ends.
func Wait(d time.Duration) RestrictOption {
	return restrictOptionFunc(func(o *restrictOptions) { o.wait = &d })
}

// MaxAttempts bounds how many times Txn runs (default: the client's retry
// attempts). Restrict ignores it.
func MaxAttempts(n int) RestrictOption {
	return restrictOptionFunc(func(o *restrictOptions) { o.attempts = n })
}

// ListOption is an option of Describe and List.
type ListOption func(*listOptions)

type listOptions struct {
	kind     LockKind
	heldOnly bool
}

// OfKind restricts the result to one kind of lock.
func OfKind(k LockKind) ListOption { return func(o *listOptions) { o.kind = k } }

// HeldOnly lists only locks held now (List).
func HeldOnly() ListOption { return func(o *listOptions) { o.heldOnly = true } }

// waitOf returns the wait to add to the default deadline.
func waitOf(w *time.Duration) time.Duration {
	if w == nil || *w < 0 {
		return 0
	}
	return *w
}
