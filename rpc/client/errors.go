package client

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The sentinels below classify every error the client returns. Check them
// with errors.Is; status.Code(err) still gives the gRPC code (see Error).
var (
	// ErrNotFound reports a Get of a key that does not exist (NotFound).
	ErrNotFound = errors.New("client: not found")
	// ErrNotHolder reports a wrong or stale lock code, or a fence lower than
	// one the store already accepted (FailedPrecondition).
	ErrNotHolder = errors.New("client: not the lock holder")
	// ErrAborted reports that a restrictive lock was lost and its writes
	// discarded (Aborted).
	ErrAborted = errors.New("client: lock lost, writes discarded")
	// ErrWaitTimeout reports a wait (for a lock or a locked key) that timed
	// out, or a deadline that passed (DeadlineExceeded).
	ErrWaitTimeout = errors.New("client: wait timed out")
	// ErrUnavailable reports that no endpoint could serve the request after
	// every retry (Unavailable). The operation may be retried with the same
	// request id.
	ErrUnavailable = errors.New("client: unavailable")
	// ErrInvalid reports a bad argument (InvalidArgument).
	ErrInvalid = errors.New("client: invalid argument")
	// ErrLost marks the error of a lock handle whose lock is gone: the
	// server said so, or keep-alives failed for longer than the ttl, or the
	// client was closed. It comes together with ErrNotHolder (named locks)
	// or ErrAborted (restrictive locks), or ErrClosed.
	ErrLost = errors.New("client: lock lost")
	// ErrClosed reports a call on a closed Client (Canceled).
	ErrClosed = errors.New("client: closed")
)

// Error is the type of every error a Client call returns. It carries the
// gRPC status of the failure, so that status.Code and status.FromError work
// on it (through GRPCStatus), and it matches the sentinel of its code with
// errors.Is. When the caller's context ended it also wraps the context's
// error, so errors.Is(err, context.DeadlineExceeded) holds.
type Error struct {
	st *status.Status
	// mark is an extra sentinel the error matches (ErrLost, ErrClosed), or nil.
	mark error
	// cause is the context error when the caller's context ended, or nil.
	cause error
}

// Error formats the code and the server's message.
func (e *Error) Error() string {
	return fmt.Sprintf("client: %s: %s", e.st.Code(), e.st.Message())
}

// GRPCStatus returns the gRPC status of the failure.
func (e *Error) GRPCStatus() *status.Status { return e.st }

// Code returns the gRPC code of the failure.
func (e *Error) Code() codes.Code { return e.st.Code() }

// Message returns the status message, without the code.
func (e *Error) Message() string { return e.st.Message() }

// Is matches the sentinel of the error's code, and its mark.
func (e *Error) Is(target error) bool {
	if target == nil {
		return false
	}
	if e.mark != nil && target == e.mark {
		return true
	}
	return target == sentinelOf(e.st.Code())
}

// Unwrap returns the context error when the caller's context ended.
func (e *Error) Unwrap() error { return e.cause }

// sentinelOf maps a gRPC code to its sentinel (nil for codes without one).
func sentinelOf(c codes.Code) error {
	switch c {
	case codes.NotFound:
		return ErrNotFound
	case codes.FailedPrecondition:
		return ErrNotHolder
	case codes.Aborted:
		return ErrAborted
	case codes.DeadlineExceeded:
		return ErrWaitTimeout
	case codes.Unavailable:
		return ErrUnavailable
	case codes.InvalidArgument:
		return ErrInvalid
	}
	return nil
}

// newError builds an *Error from a code and a message.
func newError(c codes.Code, mark error, format string, args ...any) *Error {
	return &Error{st: status.Newf(c, format, args...), mark: mark}
}

// invalidf builds an InvalidArgument error for bad input caught locally.
func invalidf(format string, args ...any) *Error {
	return newError(codes.InvalidArgument, nil, format, args...)
}

// errClosed is returned by calls on a closed client.
func errClosed() *Error {
	return newError(codes.Canceled, ErrClosed, "client is closed")
}

// wrapError turns an error from a gRPC call into an *Error. ctx is the
// caller's context: if it ended, the result also wraps ctx.Err().
func wrapError(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	var ce *Error
	if errors.As(err, &ce) {
		return err
	}
	st, ok := status.FromError(err)
	if !ok {
		st = status.FromContextError(err)
	}
	e := &Error{st: st}
	if cerr := ctx.Err(); cerr != nil {
		e.cause = cerr
	} else if d, ok := ctx.Deadline(); ok && st.Code() == codes.DeadlineExceeded && !time.Now().Before(d) {
		// gRPC may report the deadline a moment before ctx's timer fires.
		e.cause = context.DeadlineExceeded
	}
	return e
}
