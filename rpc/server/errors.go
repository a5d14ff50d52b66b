package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/opencluster/opencluster/kv"
)

// errNilResponse reports a Backend bug: a nil response with a nil error.
var errNilResponse = errors.New("server: backend returned a nil response without an error")

// codeTable is the one mapping from errors to gRPC codes (house rule 9).
// Entries are matched with errors.Is in order, so wrapped errors map like
// the sentinel they wrap, and for an error that wraps several (errors.Join)
// the first entry wins. An error matching none maps to codes.Internal.
var codeTable = []struct {
	err  error
	code codes.Code
}{
	{kv.ErrInvalid, codes.InvalidArgument},
	{kv.ErrNotFound, codes.NotFound},
	{kv.ErrNotHolder, codes.FailedPrecondition},
	{kv.ErrFenceTooLow, codes.FailedPrecondition},
	{kv.ErrFenceUnknown, codes.FailedPrecondition},
	{kv.ErrNotWriteLocked, codes.FailedPrecondition},
	{kv.ErrAborted, codes.Aborted},
	{kv.ErrWaitTimeout, codes.DeadlineExceeded},
	{kv.ErrUnavailable, codes.Unavailable},
	{kv.ErrTooLarge, codes.ResourceExhausted},
	{kv.ErrPrecondition, codes.FailedPrecondition},
	{context.DeadlineExceeded, codes.DeadlineExceeded},
	{context.Canceled, codes.Canceled},
}

// codeOf returns the code codeTable gives err, and false if no entry
// matches.
func codeOf(err error) (codes.Code, bool) {
	for _, e := range codeTable {
		if errors.Is(err, e.err) {
			return e.code, true
		}
	}
	return codes.Internal, false
}

// toStatus turns an error from validation or the Backend into the status
// error a client sees. nil stays nil. An error that already is a gRPC status
// (also when wrapped) passes through unchanged. Otherwise the code comes from
// codeTable and the message is err's text. An error that matches no entry
// becomes codes.Internal and is logged, with anything shaped like a lock code
// masked.
func (s *Server) toStatus(method string, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	code, ok := codeOf(err)
	if !ok {
		s.log.Error("rpc: internal error", slog.String("method", method), slog.String("error", redact(err.Error())))
	}
	return status.Error(code, err.Error())
}

// codeLike matches what could be a lock code, so that it is never logged.
var codeLike = regexp.MustCompile(`[0-9a-fA-F]{32}`)

// maxLoggedText bounds a logged error text or panic value, so that a value
// wrapped into an error text cannot flood the log.
const maxLoggedText = 512

// redact prepares a text for the log: it masks every run of 32 hex
// characters (a lock code has that shape) and truncates it.
// Masking comes first, so that the cut cannot leave part of a code behind.
func redact(s string) string {
	s = codeLike.ReplaceAllLiteralString(s, "<redacted>")
	if len(s) > maxLoggedText {
		s = strings.ToValidUTF8(s[:maxLoggedText], "") + "…(truncated)"
	}
	return s
}

// panicText renders a recovered panic value for the log.
func panicText(r any) string {
	if err, ok := r.(error); ok {
		return redact(err.Error())
	}
	return redact(fmt.Sprint(r))
}
