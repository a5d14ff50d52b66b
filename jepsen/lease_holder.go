package jepsen

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/opencluster/opencluster/rpc/ocpb"
)

// A lease holder is a separate process (`opencluster jepsen lease-holder`)
// that holds one named lock for the lease workload, so that the harness
// can kill a holder as a client machine dies: with SIGKILL, its
// connections torn down by the kernel, its lock left to expire.
//
// The holder does nothing by itself: the harness sends it one request at
// a time on its standard input (a JSON line: acquire, renew or release)
// and reads the answer on its standard output. The harness records the
// operation's invoke before it writes the request, so every renewal the
// server sees was sent after its recorded invoke: the checker's bounds
// need no clock but the harness's. Renewals go one per request over a
// fresh KeepAlive stream; nothing renews in the background.

// Holder request operations.
const (
	holderAcquire = "acquire"
	holderRenew   = "renew"
	holderRelease = "release"
)

// holderRequest is one line on a holder's standard input.
type holderRequest struct {
	Op   string `json:"op"`
	Name string `json:"name"`
	// TTL and Wait are an acquire's ttl and server-side wait.
	TTL  time.Duration `json:"ttl_ns,omitempty"`
	Wait time.Duration `json:"wait_ns,omitempty"`
	// Timeout bounds the request (the holder's RPC deadline).
	Timeout time.Duration `json:"timeout_ns"`
	// RequestID makes acquire and release retries idempotent.
	RequestID string `json:"request_id,omitempty"`
	// Code is the lock's code (renew, release).
	Code string `json:"code,omitempty"`
}

// holderResponse is one line on a holder's standard output.
type holderResponse struct {
	// Type is ok, fail (certainly not done: refused, or the lock is lost)
	// or info (unknown).
	Type  OpType `json:"type"`
	Error string `json:"error,omitempty"`
	// Code, Fence and TTL answer an acquire (TTL also a renewal).
	Code  string        `json:"code,omitempty"`
	Fence uint64        `json:"fence,omitempty"`
	TTL   time.Duration `json:"ttl_ns,omitempty"`
	// noAnswer marks an answer the harness made up for a holder that did
	// not answer in time (it has been killed).
	noAnswer bool
}

// ServeLeaseHolder is the lease holder's main loop: it answers the
// requests read from in on out, one line each, until in ends (EOF: it
// returns nil, releasing nothing) or a write fails. Requests go to the
// endpoints in turn: an answer of unknown outcome moves to the next one.
// Each request is bounded by its Timeout and by ctx; a blocked read of in
// is not (the harness ends a holder by closing its input or killing it).
func ServeLeaseHolder(ctx context.Context, endpoints []string, dial []grpc.DialOption, in io.Reader, out io.Writer) error {
	if len(endpoints) == 0 {
		return fmt.Errorf("%w: lease holder without endpoints", ErrInvalidConfig)
	}
	opts := append([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
			MinConnectTimeout: time.Second,
		}),
	}, dial...)
	stubs := make([]ocpb.LocksClient, len(endpoints))
	for i, ep := range endpoints {
		conn, err := grpc.NewClient(ep, opts...)
		if err != nil {
			return fmt.Errorf("jepsen: lease holder: endpoint %q: %w", ep, err)
		}
		defer conn.Close()
		stubs[i] = ocpb.NewLocksClient(conn)
	}
	cur := 0
	sc := bufio.NewScanner(in)
	enc := json.NewEncoder(out)
	for sc.Scan() {
		var req holderRequest
		var resp holderResponse
		if err := json.Unmarshal(sc.Bytes(), &req); err != nil {
			resp = holderResponse{Type: Fail, Error: "bad request: " + err.Error()}
		} else {
			resp = serveHolderRequest(ctx, stubs[cur], req)
		}
		if resp.Type == Info {
			cur = (cur + 1) % len(stubs)
		}
		if err := enc.Encode(resp); err != nil {
			return err
		}
	}
	return sc.Err()
}

// serveHolderRequest runs one request on stub.
func serveHolderRequest(ctx context.Context, stub ocpb.LocksClient, req holderRequest) holderResponse {
	if req.Timeout <= 0 {
		return holderResponse{Type: Fail, Error: "request without a timeout"}
	}
	rctx, cancel := context.WithTimeout(ctx, req.Timeout)
	defer cancel()
	var resp holderResponse
	var err error
	switch req.Op {
	case holderAcquire:
		var ar *ocpb.AcquireResponse
		ar, err = stub.Acquire(rctx, &ocpb.AcquireRequest{
			Name: req.Name, Ttl: durationpb.New(req.TTL), Wait: durationpb.New(req.Wait),
			Owner: fmt.Sprintf("jepsen-lease-holder-%d", os.Getpid()), RequestId: req.RequestID,
		})
		if err == nil {
			resp = holderResponse{Type: OK, Code: ar.GetCode(), Fence: ar.GetFence(), TTL: ar.GetTtl().AsDuration()}
		}
	case holderRenew:
		resp, err = renewOnce(rctx, stub, req)
	case holderRelease:
		_, err = stub.Release(rctx, &ocpb.ReleaseRequest{Name: req.Name, Code: req.Code, RequestId: req.RequestID})
		if err == nil {
			resp = holderResponse{Type: OK}
		}
	default:
		return holderResponse{Type: Fail, Error: fmt.Sprintf("unknown op %q", req.Op)}
	}
	if err != nil {
		return holderResponse{Type: grpcOutcome(rctx, err), Error: errorText(err)}
	}
	return resp
}

// renewOnce sends one keep-alive for the lock on a stream of its own and
// waits for its answer: ok with the ttl, fail if the server says the lock
// is lost.
func renewOnce(ctx context.Context, stub ocpb.LocksClient, req holderRequest) (holderResponse, error) {
	stream, err := stub.KeepAlive(ctx)
	if err != nil {
		return holderResponse{}, err
	}
	if err := stream.Send(&ocpb.KeepAliveRequest{Name: req.Name, Code: req.Code, Kind: ocpb.LockKind_NAMED}); err != nil {
		// Send reports io.EOF when the stream broke; Recv has the status.
		if _, rerr := stream.Recv(); rerr != nil {
			return holderResponse{}, rerr
		}
		return holderResponse{}, err
	}
	ka, err := stream.Recv()
	if err != nil {
		return holderResponse{}, err
	}
	_ = stream.CloseSend()
	if ka.GetLost() {
		return holderResponse{Type: Fail, Error: "lock lost: " + ka.GetReason()}, nil
	}
	return holderResponse{Type: OK, TTL: ka.GetTtl().AsDuration()}, nil
}

// grpcOutcome classifies a gRPC error as outcome does a client error: a
// refusal is fail; a server-side wait that ran out well before our
// deadline is fail; anything else (our deadline, Unavailable, a broken
// stream) is info.
func grpcOutcome(ctx context.Context, err error) OpType {
	switch status.Code(err) {
	case codes.NotFound, codes.FailedPrecondition, codes.Aborted, codes.InvalidArgument:
		return Fail
	case codes.DeadlineExceeded:
		if d, ok := ctx.Deadline(); ctx.Err() == nil && ok && time.Until(d) > 250*time.Millisecond {
			return Fail
		}
	}
	return Info
}

func errorText(err error) string {
	st := status.Convert(err)
	return st.Code().String() + ": " + st.Message()
}

// holderError is a holder's answer other than ok, as an error for
// outcome and retryAmbiguous.
type holderError struct {
	typ OpType
	msg string
}

func (e *holderError) Error() string { return "lease holder: " + e.msg }

func (r holderResponse) err() error {
	if r.Type == OK {
		return nil
	}
	return &holderError{typ: r.Type, msg: r.Error}
}

// leaseAgent is the harness's handle on one lease holder. One goroutine
// uses it at a time.
type leaseAgent interface {
	// call sends req and waits for the answer; a holder that does not
	// answer by ctx's end (or has died) answers info.
	call(ctx context.Context, req holderRequest) holderResponse
	// send sends req without waiting for the answer (a request in flight
	// when the holder is killed).
	send(req holderRequest) error
	// kill kills the holder at once (SIGKILL) and waits until it is gone.
	kill(ctx context.Context) error
	// close ends the holder gracefully (end of input: it releases
	// nothing), killing it if it does not exit within a few seconds.
	close(ctx context.Context) error
}

// procAgent is a lease holder process.
//
// Lifetimes: one reader goroutine per holder decodes its answers, then
// reaps the process (cmd.Wait after the last read) and closes done; kill
// and close wait for done.
type procAgent struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	enc   *json.Encoder
	// answers carries decoded answers; closed at the holder's EOF.
	answers chan holderResponse
	done    chan struct{}
	stderr  *tailBuffer
	// waitErr is cmd.Wait's result, readable after done.
	waitErr error
}

// startProcAgent starts `binary args…` as a lease holder.
func startProcAgent(binary string, args, env []string) (*procAgent, error) {
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = childProcAttr()
	a := &procAgent{cmd: cmd, answers: make(chan holderResponse, 4), done: make(chan struct{}), stderr: &tailBuffer{max: 2048}}
	cmd.Stderr = a.stderr
	var err error
	if a.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("jepsen: start lease holder: %w", err)
	}
	a.enc = json.NewEncoder(a.stdin)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var r holderResponse
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				r = holderResponse{Type: Info, Error: "undecodable answer: " + err.Error()}
			}
			select {
			case a.answers <- r:
			default: // an answer nobody waits for any more
			}
		}
		close(a.answers)
		a.waitErr = cmd.Wait()
		close(a.done)
	}()
	return a, nil
}

func (a *procAgent) send(req holderRequest) error { return a.enc.Encode(req) }

func (a *procAgent) call(ctx context.Context, req holderRequest) holderResponse {
	if err := a.send(req); err != nil {
		return holderResponse{Type: Info, Error: "holder gone: " + err.Error()}
	}
	select {
	case r, ok := <-a.answers:
		if !ok {
			<-a.done
			return holderResponse{Type: Info, Error: fmt.Sprintf("holder exited: %v %s", a.waitErr, a.stderr.String())}
		}
		return r
	case <-ctx.Done():
		return holderResponse{Type: Info, Error: "no answer from the holder: " + ctx.Err().Error()}
	}
}

func (a *procAgent) kill(ctx context.Context) error {
	_ = a.cmd.Process.Signal(syscall.SIGKILL) // fails only if already reaped
	select {
	case <-a.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("jepsen: lease holder %d not reaped after SIGKILL: %w", a.cmd.Process.Pid, ctx.Err())
	}
}

func (a *procAgent) close(ctx context.Context) error {
	_ = a.stdin.Close()
	t := time.NewTimer(5 * time.Second)
	defer t.Stop()
	select {
	case <-a.done:
		return nil
	case <-t.C:
	case <-ctx.Done():
	}
	return a.kill(context.WithoutCancel(ctx))
}

// memAgent is a lease holder served by a goroutine, for tests against an
// in-memory server (whose dialer cannot cross processes). Killing it
// cancels its requests and closes its connections.
type memAgent struct {
	cancel  context.CancelFunc
	inR     *io.PipeReader
	inW     *io.PipeWriter
	enc     *json.Encoder
	answers chan holderResponse
	done    chan struct{}
}

func startMemAgent(endpoints []string, dial []grpc.DialOption) *memAgent {
	ctx, cancel := context.WithCancel(context.Background())
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	a := &memAgent{cancel: cancel, inR: inR, inW: inW, enc: json.NewEncoder(inW), answers: make(chan holderResponse, 4), done: make(chan struct{})}
	var wg sync.WaitGroup
	wg.Go(func() {
		err := ServeLeaseHolder(ctx, endpoints, dial, inR, outW)
		_ = outW.CloseWithError(errors.Join(err, io.EOF))
	})
	wg.Go(func() {
		sc := bufio.NewScanner(outR)
		for sc.Scan() {
			var r holderResponse
			_ = json.Unmarshal(sc.Bytes(), &r)
			select {
			case a.answers <- r:
			default:
			}
		}
		close(a.answers)
	})
	go func() {
		wg.Wait()
		close(a.done)
	}()
	return a
}

func (a *memAgent) send(req holderRequest) error { return a.enc.Encode(req) }

func (a *memAgent) call(ctx context.Context, req holderRequest) holderResponse {
	if err := a.send(req); err != nil {
		return holderResponse{Type: Info, Error: "holder gone: " + err.Error()}
	}
	select {
	case r, ok := <-a.answers:
		if !ok {
			return holderResponse{Type: Info, Error: "holder exited"}
		}
		return r
	case <-ctx.Done():
		return holderResponse{Type: Info, Error: "no answer from the holder: " + ctx.Err().Error()}
	}
}

func (a *memAgent) kill(ctx context.Context) error {
	a.cancel()
	_ = a.inR.CloseWithError(errors.New("killed"))
	_ = a.inW.Close()
	select {
	case <-a.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (a *memAgent) close(ctx context.Context) error {
	_ = a.inW.Close()
	t := time.NewTimer(5 * time.Second)
	defer t.Stop()
	select {
	case <-a.done:
		return nil
	case <-t.C:
	case <-ctx.Done():
	}
	return a.kill(context.WithoutCancel(ctx))
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	max int
	mu  sync.Mutex
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = t.b[len(t.b)-t.max:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}
