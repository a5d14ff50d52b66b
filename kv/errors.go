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
	// ErrTooLarge reports a response that would exceed MaxResponseBytes
	// (ResourceExhausted); ask for fewer keys.
	ErrTooLarge = errors.New("kv: response too large")
)

// MaxResponseBytes bounds the keys and values of one BatchGet or Scan
// response, so that it fits gRPC's default 4 MiB receive limit with room
// for framing. A Scan stops early (more = true) at the bound; a BatchGet
// past it fails with ErrTooLarge. One value (at most 1 MiB) always fits.
const MaxResponseBytes = 3 << 20

// errorKinds names the sentinels for carrying errors between nodes
// (rpc/peer): the sender sends the name, the receiver rebuilds an error
// that matches the same sentinel.
var errorKinds = []struct {
	name string
	err  error
}{
	{"INVALID", ErrInvalid},
	{"NOT_FOUND", ErrNotFound},
	{"NOT_HOLDER", ErrNotHolder},
	{"FENCE_TOO_LOW", ErrFenceTooLow},
	{"NOT_WRITE_LOCKED", ErrNotWriteLocked},
	{"ABORTED", ErrAborted},
	{"WAIT_TIMEOUT", ErrWaitTimeout},
	{"UNAVAILABLE", ErrUnavailable},
	{"TOO_LARGE", ErrTooLarge},
	{"NOT_LEADER", ErrNotLeader},
}

// ErrorKind returns the name of the first sentinel err matches ("" if
// none).
func ErrorKind(err error) string {
	for _, k := range errorKinds {
		if errors.Is(err, k.err) {
			return k.name
		}
	}
	return ""
}

// ErrorOfKind rebuilds an error received from another node: its text is
// msg and it matches the sentinel named kind (none if kind is unknown).
func ErrorOfKind(kind, msg string) error {
	for _, k := range errorKinds {
		if k.name == kind {
			return &remoteError{kind: k.err, msg: msg}
		}
	}
	return errors.New(msg)
}

type remoteError struct {
	kind error
	msg  string
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.kind }
