package jepsen

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/opencluster/opencluster/rpc/client"
)

// workload generates one kind of operations. Its checkers (in the
// workloads table) judge the history it leaves.
//
// Concurrency: Setup and Final run alone; Step runs on Concurrency
// goroutines at once, one per worker, and may keep per-worker state
// indexed by process.Worker without locking.
type workload interface {
	// Setup prepares the store before any client starts, recording what
	// the checkers need through p.
	Setup(ctx context.Context, p *process) error
	// Step runs one operation of p (for lock: one acquire, hold and
	// release), recording invoke and completion. ctx outlives the time
	// limit, so an operation in flight finishes; Step bounds its own
	// requests with p.OpTimeout.
	Step(ctx context.Context, p *process)
	// Final runs the reads the checkers need after the cluster healed.
	Final(ctx context.Context, p *process)
}

// checker judges a workload's history.
type checker func(ctx context.Context, pairs []Pair, opts CheckOptions) Result

// workloadSpec is a workload's constructor and its checkers.
type workloadSpec struct {
	newWorkload func(cfg *Config) workload
	checkers    []checker
}

// workloads is the table of workloads by name.
var workloads = map[string]workloadSpec{
	"register": {newRegister, []checker{checkRegister}},
	"lock":     {newLockWorkload, []checker{checkLock}},
	"lease":    {newLease, []checker{checkLease}},
	"bank":     {newBank, []checker{checkBank}},
	"append":   {newAppend, []checker{checkAppend}},
	"fenced":   {newFenced, []checker{checkFenced, checkLock}},
	// unfenced is fenced without fences: a control run that must come
	// out INVALID (lost updates), showing what the fence prevents.
	"unfenced": {newUnfenced, []checker{checkFenced, checkLock}},
}

// WorkloadNames returns the workload names, sorted.
func WorkloadNames() []string {
	names := make([]string, 0, len(workloads))
	for n := range workloads {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// process is one logical client process, driven by one worker goroutine.
type process struct {
	// ID is the process id recorded in the history; it grows by the
	// concurrency after every info (see the package doc).
	ID int
	// Worker is the worker goroutine's index, 0..Concurrency-1.
	Worker int
	// Rand is the worker's random source, seeded from the run's seed.
	Rand *rand.Rand
	// Client talks to the cluster. The runner replaces it after an info
	// (rotating the endpoints), between Steps.
	Client *client.Client
	// OpTimeout bounds each request.
	OpTimeout time.Duration

	// endpoints are the servers, this worker's first (lease holders
	// connect to them).
	endpoints []string
	// limit ends at the time limit: a long Step (lease) winds down then.
	limit context.Context

	rec    *Recorder
	stride int
	// dial returns a new client like Client (for a workload that needs a
	// second one); the caller closes it.
	dial func() (*client.Client, error)
	// crashed is set by an info completion; the runner then reconnects.
	crashed bool
}

// invoke records the start of f on key with args.
func (p *process) invoke(f, key string, args any) Op {
	return p.rec.Invoke(p.ID, f, key, args)
}

// complete records inv's completion; after an info the process takes a
// new id, since its request may still be in flight.
func (p *process) complete(inv Op, t OpType, result any, err error) {
	if t != OK {
		result = nil
	}
	p.rec.Complete(inv, t, result, err)
	if t == Info {
		p.ID += p.stride
		p.crashed = true
	}
}

// stopping reports that the time limit has passed.
func (p *process) stopping() bool { return p.limit != nil && p.limit.Err() != nil }

// opContext bounds one request (plus a server-side wait) by OpTimeout.
func (p *process) opContext(ctx context.Context, wait time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, p.OpTimeout+wait)
}

// sleep pauses for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// retryAmbiguous calls try until it succeeds, fails definitely, or ctx
// ends (its deadline is the retry budget), pausing briefly between
// attempts. try must resend the same request (same request id), so a
// retry cannot apply twice, and should bound each attempt by ctx.
//
// A definite failure after an attempt with an unknown outcome is itself
// unknown (errUnknownOutcome): the earlier attempt may have done the work
// the retry is refused for. A Release that was applied but not answered
// makes its retry fail with "not holder", which does not mean the lock
// was lost (the server does not deduplicate releases).
func retryAmbiguous(ctx context.Context, try func(ctx context.Context) error) error {
	ambiguous := false
	for {
		err := try(ctx)
		switch t := outcome(err); {
		case t == Fail && ambiguous:
			return fmt.Errorf("%w: %w", errUnknownOutcome, err)
		case t != Info || ctx.Err() != nil:
			return err
		}
		ambiguous = true
		sleep(ctx, 100*time.Millisecond)
	}
}

// newRequestID returns 128 random bits in hex. Request ids are not part
// of the replayable choices: a replay against the same servers must not
// be deduplicated against the first run.
func newRequestID() string {
	var b [16]byte
	_, _ = crand.Read(b[:]) // never fails (crypto/rand)
	return hex.EncodeToString(b[:])
}
