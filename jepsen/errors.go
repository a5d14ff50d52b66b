package jepsen

import (
	"context"
	"errors"

	"github.com/opencluster/opencluster/rpc/client"
)

var (
	// ErrInvalidConfig reports a Config field out of range.
	ErrInvalidConfig = errors.New("jepsen: invalid config")
	// ErrBadHistory reports a history that breaks the recording rules (a
	// completion without an invoke, an undecodable value).
	ErrBadHistory = errors.New("jepsen: malformed history")
	// ErrNodeDown reports a server process that exited or never served.
	ErrNodeDown = errors.New("jepsen: node down")
	// ErrNoNetNS reports that the harness cannot run in a private network
	// namespace (it lacks CAP_SYS_ADMIN, or the system has no network
	// namespaces), or is not in one: partitions are then refused, since
	// their rules would touch the host's packet filter.
	ErrNoNetNS = errors.New("jepsen: no private network namespace")
	// ErrNoPartitions reports that the packet filter cannot be programmed
	// (no CAP_NET_ADMIN, no nftables in the kernel, not Linux).
	ErrNoPartitions = errors.New("jepsen: cannot program the packet filter")
	// ErrSetup reports a workload that could not prepare its keys on a
	// healthy cluster.
	ErrSetup = errors.New("jepsen: workload setup failed")

	// errUnknownOutcome marks a definite refusal of a retry whose earlier
	// attempt's outcome is unknown: the operation may have happened.
	errUnknownOutcome = errors.New("jepsen: an earlier attempt may have succeeded")
	// errNoProcessControl reports a node operation on servers the harness
	// did not start.
	errNoProcessControl = errors.New("jepsen: no process control over given endpoints")
	// errInsufficientFunds fails a transfer from an account holding less
	// than the amount (it aborts; nothing is written).
	errInsufficientFunds = errors.New("jepsen: insufficient funds")
	// errGarbage fails a transfer that read a balance that is not an
	// integer.
	errGarbage = errors.New("jepsen: not a balance")
)

// outcome classifies the error of a mutating request (see the package
// doc): nil is OK; an answer that proves the request was not applied is
// Fail; anything else is Info.
func outcome(err error) OpType {
	var he *holderError
	switch {
	case err == nil:
		return OK
	case errors.Is(err, errUnknownOutcome):
		return Info
	case errors.As(err, &he):
		// A lease holder classified its own answer.
		return he.typ
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		// We stopped waiting; the request may still be applied.
		return Info
	case errors.Is(err, client.ErrNotFound),
		errors.Is(err, client.ErrNotHolder),
		errors.Is(err, client.ErrAborted),
		errors.Is(err, client.ErrInvalid),
		// The server's own wait ran out (our context had not ended, or
		// the first case would have matched): nothing was applied.
		errors.Is(err, client.ErrWaitTimeout):
		return Fail
	default:
		// Unavailable after sending, Internal, Unknown, a reset stream.
		return Info
	}
}
