package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/opencluster/opencluster/rpc/client"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Output formats (-o).
const (
	outputText = "text"
	outputJSON = "json"
)

// object is a JSON object that keeps its fields in order.
type object []field

type field struct {
	name  string
	value any
}

// MarshalJSON writes the fields in order.
func (o object) MarshalJSON() ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteByte('{')
	for i, f := range o {
		if i > 0 {
			buf.WriteByte(',')
		}
		k, err := json.Marshal(f.name)
		if err != nil {
			return nil, err
		}
		v, err := json.Marshal(f.value)
		if err != nil {
			return nil, err
		}
		buf.Write(k)
		buf.WriteByte(':')
		buf.Write(v)
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

// bytesField renders a key or value for JSON: a string when b is valid
// UTF-8, else base64 (standard encoding) under name+"_b64".
func bytesField(name string, b []byte) field {
	if utf8.Valid(b) {
		return field{name, string(b)}
	}
	return field{name + "_b64", base64.StdEncoding.EncodeToString(b)}
}

// textBytes renders a key or value for a table: as is when printable, else
// Go-quoted.
func textBytes(b []byte) string {
	s := string(b)
	if !utf8.ValidString(s) || strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
		return strconv.Quote(s)
	}
	return s
}

// emit prints a command's result: obj as one JSON object with -o json, or
// whatever text writes with -o text.
func (a *app) emit(obj object, text func(w io.Writer)) error {
	if a.flags.output == outputJSON {
		b, err := json.Marshal(obj)
		if err != nil {
			return failf(codes.Internal, "encode output: %s", err.Error())
		}
		b = append(b, '\n')
		_, err = a.stdout.Write(b)
		return ioError(err)
	}
	text(a.stdout)
	return nil
}

func (a *app) jsonOutput() bool { return a.flags.output == outputJSON }

// table writes rows (the first is the header) aligned in columns.
func table(w io.Writer, rows [][]string) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	_ = tw.Flush()
}

func lockInfoObject(info client.LockInfo) object {
	obj := object{
		{"name", info.Name},
		{"kind", info.Kind.String()},
		{"held", info.Held},
		{"fence", info.Fence},
		{"owner", info.Owner},
		{"acquired_version", info.AcquiredVersion},
		{"ttl", info.TTL.String()},
		{"expires_in", info.ExpiresIn.Round(time.Millisecond).String()},
		{"waiters", info.Waiters},
	}
	if info.Kind == client.KindRestrictive {
		keys := make([]object, 0, len(info.Keys))
		for _, k := range info.Keys {
			keys = append(keys, object{bytesField("key", k.Key), {"mode", k.Mode.String()}})
		}
		obj = append(obj,
			field{"status", info.Status},
			field{"isolation", isolationName(info.Snapshot)},
			field{"keys", keys},
			field{"commit_version", info.CommitVersion})
	}
	return obj
}

func isolationName(snapshot bool) string {
	if snapshot {
		return "snapshot"
	}
	return "strict"
}

// writeLockInfo writes a readable block describing a lock.
func writeLockInfo(w io.Writer, info client.LockInfo) {
	rows := [][]string{
		{"name:", info.Name},
		{"kind:", info.Kind.String()},
		{"held:", strconv.FormatBool(info.Held)},
		{"fence:", strconv.FormatUint(info.Fence, 10)},
		{"owner:", info.Owner},
		{"acquired version:", strconv.FormatUint(info.AcquiredVersion, 10)},
		{"ttl:", info.TTL.String()},
		{"expires in:", info.ExpiresIn.Round(time.Millisecond).String()},
		{"waiters:", strconv.Itoa(info.Waiters)},
	}
	if info.Kind == client.KindRestrictive {
		rows = append(rows,
			[]string{"status:", info.Status},
			[]string{"isolation:", isolationName(info.Snapshot)})
		if info.CommitVersion != 0 {
			rows = append(rows, []string{"commit version:", strconv.FormatUint(info.CommitVersion, 10)})
		}
		rows = append(rows, []string{"keys:", strconv.Itoa(len(info.Keys))})
		for _, k := range info.Keys {
			rows = append(rows, []string{"  " + k.Mode.String(), textBytes(k.Key)})
		}
	}
	tw := tabwriter.NewWriter(w, 0, 4, 1, ' ', 0)
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\n", r[0], r[1])
	}
	_ = tw.Flush()
}

// cliError is a command failure with the gRPC code printed in
// "Error: <Code>: <message>".
type cliError struct {
	code codes.Code
	msg  string
}

func (e *cliError) Error() string { return e.code.String() + ": " + e.msg }

// GRPCStatus lets status.Code classify the error.
func (e *cliError) GRPCStatus() *status.Status { return status.New(e.code, e.msg) }

// failf returns a failure with a code.
func failf(code codes.Code, format string, args ...any) error {
	return &cliError{code: code, msg: fmt.Sprintf(format, args...)}
}

// usagef returns an InvalidArgument failure for bad command-line input.
func usagef(format string, args ...any) error {
	return failf(codes.InvalidArgument, format, args...)
}

// ioError classifies a failed write to stdout.
func ioError(err error) error {
	if err == nil {
		return nil
	}
	return failf(codes.Unknown, "write output: %s", err.Error())
}

// exitError ends the program with a code and no "Error:" line (lock run
// passes on its command's exit code).
type exitError struct{ code int }

func (e *exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// describeError returns the code name and message printed for err.
// Errors with a gRPC status (the client's, ours) print its code and
// message; context errors print Canceled or DeadlineExceeded; anything
// else comes from parsing the command line (cobra) and prints
// InvalidArgument.
func describeError(err error) (codes.Code, string) {
	var se interface{ GRPCStatus() *status.Status }
	if errors.As(err, &se) {
		st := se.GRPCStatus()
		return st.Code(), st.Message()
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		st := status.FromContextError(err)
		return st.Code(), st.Message()
	}
	return codes.InvalidArgument, err.Error()
}

// syncWriter serialises writes from several goroutines (keep-alive
// callbacks and the command).
type syncWriter struct {
	mu sync.Mutex // guards w
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
