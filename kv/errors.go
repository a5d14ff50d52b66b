package kv

import "errors"

// The errors a node returns to its callers. rpc/server maps each to one gRPC
// code in a single table; callers check them with errors.Is. Errors may be
// wrapped with more detail ("%w: ...").
var (
	// ErrInvalid reports bad input (InvalidArgument).
	ErrInvalid = errors.New("kv: invalid argument")
	// ErrNotFound reports a missing key or lock (NotFound).
	ErrNotFound = errors.New("kv: not found")
	// ErrNotHolder reports a wrong, stale or expired lock code
	// (FailedPrecondition).
	ErrNotHolder = errors.New("kv: lock not held with this code")
	// ErrFenceTooLow reports a write whose fence is below one the key has
	// accepted (FailedPrecondition).
	ErrFenceTooLow = errors.New("kv: fencing token too low")
	// ErrFenceUnknown reports a write whose fence the lock never granted:
	// no lock of that name, or a token above its newest grant's
	// (FailedPrecondition).
	ErrFenceUnknown = errors.New("kv: fencing token never granted")
	// ErrNotWriteLocked reports a write under a code that does not hold the
	// key WRITE (FailedPrecondition).
	ErrNotWriteLocked = errors.New("kv: key not write-locked by this code")
	// ErrAborted reports that a restrictive lock was lost (expired or
	// aborted) and its writes discarded (Aborted).
	ErrAborted = errors.New("kv: lock lost, writes discarded")
	// ErrWaitTimeout reports that waiting for a lock or a locked key ran out
	// of time (DeadlineExceeded).
	ErrWaitTimeout = errors.New("kv: timed out waiting for a lock")
	// ErrUnavailable reports a transient condition, such as a bucket without
	// a leader or a node shutting down; retry (Unavailable).
	ErrUnavailable = errors.New("kv: unavailable, retry")
	// ErrNotApplied marks an ErrUnavailable failure that certainly changed
	// nothing (no leader here yet, a proposal Raft dropped, a read whose
	// leader stepped down): the request can be retried as it is.
	ErrNotApplied = errors.New("kv: not applied")
	// ErrTooLarge reports a response that would exceed MaxResponseBytes
	// (ResourceExhausted); ask for fewer keys.
	ErrTooLarge = errors.New("kv: response too large")
	// ErrPrecondition reports an operator command the cluster is not in a
	// state to carry out (FailedPrecondition), such as removing a live
	// node that still holds replicas.
	ErrPrecondition = errors.New("kv: precondition failed")
)

// MaxResponseBytes bounds the keys and values of one BatchGet or Scan
// response, a Restrict's prefetched values and a List's locks, so that
// each fits gRPC's default 4 MiB receive limit with room for framing (the
// same limit between nodes: a bucket's leader bounds its own part too). A
// Scan stops early (more = true) at the bound; the others fail with
// ErrTooLarge past it (a Restrict releasing what it took). One value (at
// most 1 MiB) always fits.
const MaxResponseBytes = 3 << 20

// errorKinds names the sentinels for carrying errors between nodes
// (rpc/peer): the sender sends the name of the first entry its error
// matches, the receiver rebuilds an error matching all of that entry's
// sentinels. More specific entries come first.
var errorKinds = []struct {
	name string
	errs []error
}{
	{"INVALID", []error{ErrInvalid}},
	{"NOT_FOUND", []error{ErrNotFound}},
	{"NOT_HOLDER", []error{ErrNotHolder}},
	{"FENCE_TOO_LOW", []error{ErrFenceTooLow}},
	{"FENCE_UNKNOWN", []error{ErrFenceUnknown}},
	{"NOT_WRITE_LOCKED", []error{ErrNotWriteLocked}},
	{"ABORTED", []error{ErrAborted}},
	{"WAIT_TIMEOUT", []error{ErrWaitTimeout}},
	{"NOT_LEADER", []error{ErrNotLeader, ErrNotApplied, ErrUnavailable}},
	{"NOT_APPLIED", []error{ErrNotApplied, ErrUnavailable}},
	{"UNAVAILABLE", []error{ErrUnavailable}},
	{"TOO_LARGE", []error{ErrTooLarge}},
	{"PRECONDITION", []error{ErrPrecondition}},
}

// ErrorKind returns the name of the first kind err matches ("" if none).
func ErrorKind(err error) string {
	for _, k := range errorKinds {
		if errors.Is(err, k.errs[0]) {
			return k.name
		}
	}
	return ""
}

// ErrorOfKind rebuilds an error received from another node: its text is
// msg and it matches the sentinels of kind (none if kind is unknown).
func ErrorOfKind(kind, msg string) error {
	for _, k := range errorKinds {
		if k.name == kind {
			return &remoteError{kinds: k.errs, msg: msg}
		}
	}
	return errors.New(msg)
}

type remoteError struct {
	kinds []error
	msg   string
}

func (e *remoteError) Error() string   { return e.msg }
func (e *remoteError) Unwrap() []error { return e.kinds }
