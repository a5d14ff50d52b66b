package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The peer protocol. A peer process (cmd/ocbench-peers) drives a system
// whose client library must stay out of this module. The bench starts one
// peer per run:
//
//	stdin:  one PeerRequest as a JSON line
//	stdout: PeerEvent JSON lines: {"progress":…} every 500ms, then exactly
//	        one {"result":…} or {"error":"…"}, then the peer exits 0
//
// The peer runs the same Run as the bench does for its own targets, so
// workloads, checks and aggregation exist once.

// PeerRequest asks a peer for one run.
type PeerRequest struct {
	// Target is the system (etcd).
	Target string `json:"target"`
	// Endpoints are the system's client addresses (host:port).
	Endpoints []string `json:"endpoints"`
	Spec      Spec     `json:"spec"`
}

// PeerEvent is one line a peer writes.
type PeerEvent struct {
	Progress *Progress `json:"progress,omitempty"`
	Result   *Result   `json:"result,omitempty"`
	Error    string    `json:"error,omitempty"`
}

// OpenFunc opens a Target of a peer.
type OpenFunc func(ctx context.Context, target string, endpoints []string) (Target, error)

// ServePeer is the main loop of a peer process: it reads one request
// from in, runs it against the target open returns, and writes the events
// to out. It returns an error only if it could not write.
func ServePeer(ctx context.Context, in io.Reader, out io.Writer, open OpenFunc) error {
	var mu sync.Mutex // guards enc: progress comes from Run's goroutine
	enc := json.NewEncoder(out)
	emit := func(ev PeerEvent) error {
		mu.Lock()
		defer mu.Unlock()
		return enc.Encode(ev)
	}
	var req PeerRequest
	if err := json.NewDecoder(in).Decode(&req); err != nil {
		return emit(PeerEvent{Error: "bench peer: bad request: " + err.Error()})
	}
	t, err := open(ctx, req.Target, req.Endpoints)
	if err != nil {
		return emit(PeerEvent{Error: err.Error()})
	}
	defer t.Close()
	res, err := Run(ctx, t, req.Spec, func(p Progress) { _ = emit(PeerEvent{Progress: &p}) })
	if err != nil {
		return emit(PeerEvent{Error: err.Error()})
	}
	return emit(PeerEvent{Result: &res})
}

// RunPeer runs one request in a new peer process bin and returns its
// result. progress (if not nil) is called with the peer's progress on the
// calling goroutine. The peer is killed if ctx ends, and always reaped.
func RunPeer(ctx context.Context, bin string, req PeerRequest, progress func(Progress)) (Result, error) {
	line, err := json.Marshal(req)
	if err != nil {
		return Result{}, fmt.Errorf("bench: encode peer request: %w", err)
	}
	cmd := exec.CommandContext(ctx, bin)
	cmd.SysProcAttr = childAttr()
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	cmd.Stdin = bytes.NewReader(append(line, '\n'))
	var stderr tailBuffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return Result{}, fmt.Errorf("bench: peer stdout: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return Result{}, fmt.Errorf("bench: start peer %s: %w", bin, err)
	}
	var (
		res     *Result
		peerErr string
		decErr  error
	)
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		var ev PeerEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			decErr = fmt.Errorf("bench: peer wrote %q: %w", sc.Text(), err)
			continue
		}
		switch {
		case ev.Progress != nil && progress != nil:
			progress(*ev.Progress)
		case ev.Result != nil:
			res = ev.Result
		case ev.Error != "":
			peerErr = ev.Error
		}
	}
	waitErr := cmd.Wait() // reaps the peer, also after a scan error
	switch {
	case ctx.Err() != nil:
		return Result{}, ctx.Err()
	case peerErr != "":
		return Result{}, fmt.Errorf("%w: %s: %s", ErrPeer, req.Target, peerErr)
	case res != nil && waitErr == nil:
		return *res, nil
	}
	return Result{}, fmt.Errorf("bench: %s peer failed: %w", req.Target, errors.Join(waitErr, decErr, sc.Err(), errors.New(stderr.String())))
}

// tailBuffer keeps the last 8 KiB written to it.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > 8<<10 {
		t.buf = t.buf[len(t.buf)-8<<10:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.buf))
}
