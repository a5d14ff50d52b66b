package server

import (
	"errors"
	"io"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/opencluster/opencluster/rpc/ocpb"
)

// KeepAlive serves one keep-alive stream, which may carry requests for many
// locks: each request is validated, passed to Backend.KeepAlive, and answered
// with exactly one response carrying the request's name and code.
//
//   - A lock that is lost is answered with lost=true and the reason, and the
//     stream goes on serving the other locks. Lost means the backend error
//     maps to FailedPrecondition (ErrNotHolder: wrong, stale or expired
//     code), Aborted (ErrAborted) or NotFound (no such lock any more),
//     directly or as a status forwarded from another node.
//   - Any other error (an invalid request, Unavailable, a deadline, an
//     internal error) ends the stream with the mapped status; the client
//     reconnects and resumes.
//   - The stream ends cleanly (OK) when the client closes its side, and with
//     the stream's error when the client goes away or the context ends.
//
// Requests are served one at a time, in order.
func (l locksService) KeepAlive(stream ocpb.Locks_KeepAliveServer) (err error) {
	s := l.s
	const method = ocpb.Locks_KeepAlive_FullMethodName
	defer func() {
		if r := recover(); r != nil {
			err = s.recovered(method, r)
		}
	}()
	ctx := stream.Context()
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			// The client went away or ctx ended; grpc reports a status.
			return s.toStatus(method, err)
		}
		if err := s.v.keepAlive(req); err != nil {
			return s.toStatus(method, err)
		}
		resp, err := s.backend.KeepAlive(ctx, req)
		out := &ocpb.KeepAliveResponse{Name: req.Name, Code: req.Code}
		switch {
		case err != nil:
			st := status.Convert(s.toStatus(method, err))
			switch st.Code() {
			case codes.FailedPrecondition, codes.Aborted, codes.NotFound:
				out.Lost, out.Reason = true, st.Message()
			default:
				return st.Err()
			}
		case !resp.ProtoReflect().IsValid():
			return s.toStatus(method, errNilResponse)
		default:
			out.Lost, out.Reason, out.Ttl = resp.Lost, resp.Reason, resp.Ttl
		}
		if err := stream.Send(out); err != nil {
			return s.toStatus(method, err)
		}
	}
}
