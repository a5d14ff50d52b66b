package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// peerEnv makes the test binary act as a peer process: "serve" serves
// the protocol over the in-memory twin, "crash" exits 3 at once, "hang"
// blocks until killed.
const peerEnv = "OPENCLUSTER_BENCH_TEST_PEER"

func servePeerIfAsked() bool {
	switch os.Getenv(peerEnv) {
	case "":
		return false
	case "serve":
		err := ServePeer(context.Background(), os.Stdin, os.Stdout, func(_ context.Context, target string, _ []string) (Target, error) {
			if target != "mem" {
				return nil, fmt.Errorf("%w: no target %q", ErrInvalid, target)
			}
			return newMemTarget(memFaults{}), nil
		})
		if err != nil {
			os.Exit(1)
		}
	case "crash":
		fmt.Fprintln(os.Stderr, "peer crashed on purpose")
		os.Exit(3)
	case "hang":
		time.Sleep(time.Hour)
	}
	return true
}

func peerRequest(target string) PeerRequest {
	return PeerRequest{Target: target, Endpoints: []string{"x:1"}, Spec: shortSpec("lock-contended", 4)}
}

// TestRunPeer runs the peer protocol against a real child process.
func TestRunPeer(t *testing.T) {
	t.Setenv(peerEnv, "serve")
	var progress int
	spec := peerRequest("mem")
	spec.Spec.Duration = 700 * time.Millisecond // long enough for a progress event
	res, err := RunPeer(context.Background(), os.Args[0], spec, func(Progress) { progress++ })
	if err != nil {
		t.Fatal(err)
	}
	if res.Ops == 0 || res.Workload != "lock-contended" || res.Concurrency != 4 || res.Violations != 0 {
		t.Fatalf("result %+v", res)
	}
	if progress == 0 {
		t.Fatal("no progress event")
	}

	_, err = RunPeer(context.Background(), os.Args[0], peerRequest("nope"), nil)
	if err == nil || !strings.Contains(err.Error(), `no target "nope"`) {
		t.Fatalf("unknown target: err %v", err)
	}
}

func TestRunPeerFailures(t *testing.T) {
	t.Setenv(peerEnv, "crash")
	_, err := RunPeer(context.Background(), os.Args[0], peerRequest("mem"), nil)
	if err == nil || !strings.Contains(err.Error(), "exit status 3") || !strings.Contains(err.Error(), "crashed on purpose") {
		t.Fatalf("crash: err %v", err)
	}

	t.Setenv(peerEnv, "hang")
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = RunPeer(ctx, os.Args[0], peerRequest("mem"), nil)
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 10*time.Second {
		t.Fatalf("hang: err %v after %s", err, time.Since(start))
	}

	_, err = RunPeer(context.Background(), "/nonexistent/peer", peerRequest("mem"), nil)
	if err == nil {
		t.Fatal("missing binary: no error")
	}
}
