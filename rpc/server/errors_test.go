package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/opencluster/opencluster/kv"
	"github.com/opencluster/opencluster/rpc/ocpb"
)

// errorCases is the error table of the brief (and DESIGN.md §4), one row per
// error the backend may return, each wrapped with a reason as kv does.
var errorCases = []struct {
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
	{errors.New("disk on fire"), codes.Internal},
}

// TestErrorTable sends every sentinel, bare and wrapped (once and twice),
// from the backend through a real server and checks the code and that the
// message is the error's text.
func TestErrorTable(t *testing.T) {
	for _, tc := range errorCases {
		for _, wrap := range []struct {
			name string
			f    func(error) error
		}{
			{"bare", func(err error) error { return err }},
			{"wrapped", func(err error) error { return fmt.Errorf("%w: bucket 7", err) }},
			{"wrapped-twice", func(err error) error { return fmt.Errorf("forward to n2: %w", fmt.Errorf("%w: bucket 7", err)) }},
		} {
			t.Run(tc.err.Error()+"/"+wrap.name, func(t *testing.T) {
				sent := wrap.f(tc.err)
				e := newEnv(t, &fakeBackend{hook: func(context.Context, string, proto.Message) (proto.Message, error) {
					return nil, sent
				}})
				_, err := e.kv.Get(testCtx(t), &ocpb.GetRequest{Key: []byte("k")})
				st := status.Convert(err)
				if st.Code() != tc.code {
					t.Fatalf("code = %v, want %v (err %v)", st.Code(), tc.code, err)
				}
				if st.Message() != sent.Error() {
					t.Fatalf("message = %q, want the error's text %q", st.Message(), sent.Error())
				}
				logged := strings.Contains(e.logs.String(), "rpc: internal error")
				if logged != (tc.code == codes.Internal) {
					t.Fatalf("internal error logged = %v for code %v; logs:\n%s", logged, tc.code, e.logs)
				}
			})
		}
	}
}

// TestErrorTableComplete checks codeTable row by row against errorCases, so
// that a sentinel added to one and not the other is noticed.
func TestErrorTableComplete(t *testing.T) {
	if got, want := len(codeTable), len(errorCases)-1; got != want {
		t.Fatalf("codeTable has %d rows, errorCases %d sentinels", got, want)
	}
	for _, tc := range errorCases {
		code, ok := codeOf(tc.err)
		if code != tc.code || ok != (tc.code != codes.Internal) {
			t.Errorf("codeOf(%v) = %v, %v; want %v", tc.err, code, ok, tc.code)
		}
	}
}

func TestToStatus(t *testing.T) {
	s, err := New(Config{}, &fakeBackend{})
	if err != nil {
		t.Fatal(err)
	}
	forwarded := status.Error(codes.Unavailable, "n2: no leader for bucket 3")
	for _, tc := range []struct {
		name    string
		err     error
		code    codes.Code
		message string
	}{
		{"nil", nil, codes.OK, ""},
		{"status passes through", forwarded, codes.Unavailable, "n2: no leader for bucket 3"},
		{"wrapped status passes through", fmt.Errorf("forwarding: %w", forwarded), codes.Unavailable, "forwarding: rpc error: code = Unavailable desc = n2: no leader for bucket 3"},
		{"status beats the table", status.Error(codes.NotFound, kv.ErrAborted.Error()), codes.NotFound, kv.ErrAborted.Error()},
		{"joined: first row wins", errors.Join(io.EOF, kv.ErrUnavailable, kv.ErrNotFound), codes.NotFound, "EOF\n" + kv.ErrUnavailable.Error() + "\n" + kv.ErrNotFound.Error()},
		{"unknown", io.ErrUnexpectedEOF, codes.Internal, io.ErrUnexpectedEOF.Error()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := s.toStatus("/test", tc.err)
			if tc.err == nil {
				if got != nil {
					t.Fatalf("toStatus(nil) = %v", got)
				}
				return
			}
			st, ok := status.FromError(got)
			if !ok || st.Code() != tc.code || st.Message() != tc.message {
				t.Fatalf("toStatus = %v (status %v), want %v %q", got, ok, tc.code, tc.message)
			}
		})
	}
}

// TestInternalErrorRedacted: an unknown error is logged, but anything shaped
// like a code in its text is masked.
func TestInternalErrorRedacted(t *testing.T) {
	e := newEnv(t, &fakeBackend{hook: func(context.Context, string, proto.Message) (proto.Message, error) {
		return nil, fmt.Errorf("lock table corrupt near code %s", testCode)
	}})
	_, err := e.locks.Release(testCtx(t), &ocpb.ReleaseRequest{Name: "n", Code: testCode})
	if status.Code(err) != codes.Internal {
		t.Fatalf("got %v, want Internal", err)
	}
	logs := e.logs.String()
	if !strings.Contains(logs, "rpc: internal error") || !strings.Contains(logs, "<redacted>") {
		t.Fatalf("internal error not logged (redacted):\n%s", logs)
	}
	mustNotContain(t, logs, testCode, "log")
}

func TestRedact(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"no code here", "no code here"},
		{"code " + testCode + " end", "code <redacted> end"},
		{"upper " + strings.ToUpper(testCode), "upper <redacted>"},
		{"short " + testCode[:31], "short " + testCode[:31]},
		{strings.Repeat("x", 600), strings.Repeat("x", 512) + "…(truncated)"},
		// A code straddling the cut is masked before the cut.
		{strings.Repeat("x", 500) + testCode, strings.Repeat("x", 500) + "<redacted>"},
		{strings.Repeat("x", 505) + testCode + "tail", strings.Repeat("x", 505) + "<redact…(truncated)"},
	} {
		if got := redact(tc.in); got != tc.want {
			t.Errorf("redact(%.40q…) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
