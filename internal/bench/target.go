package bench

import (
	"context"
	"errors"
	"fmt"
	"time"
)

var (
	// ErrInvalid reports a bad configuration or spec (a flag's value).
	ErrInvalid = errors.New("bench: invalid")
	// ErrUnsupported reports a workload that a target does not implement
	// (Redis has no transfers).
	ErrUnsupported = errors.New("bench: workload not supported by target")
	// ErrProcess reports a server process that exited, or never served.
	ErrProcess = errors.New("bench: server process failed")
	// ErrPeer reports a peer process that failed or answered an error.
	ErrPeer = errors.New("bench: peer failed")
	// ErrMissing reports a key or account that should exist and does not.
	ErrMissing = errors.New("bench: missing")
	// ErrCheck reports a failed safety check: two holders of one lock, a
	// fence that did not grow, or account totals that changed.
	ErrCheck = errors.New("bench: safety check failed")
)

// Spec is one measured run: a workload at a concurrency against one
// target. It crosses the peer protocol as JSON (durations in
// nanoseconds).
type Spec struct {
	// Target and Nodes label the result.
	Target string `json:"target"`
	Nodes  int    `json:"nodes"`
	// Workload is a name from the workload table.
	Workload    string `json:"workload"`
	Concurrency int    `json:"concurrency"`
	// Warmup runs before the measured window; its operations are not
	// counted (but are safety-checked).
	Warmup time.Duration `json:"warmup_ns"`
	// Duration is the measured window.
	Duration time.Duration `json:"duration_ns"`
	// RunID prefixes the lock names and account keys of the run, so that
	// no run meets a lock or account another run left behind.
	RunID string `json:"run_id"`
	// Seed seeds the clients' random sources (client g uses Seed+g).
	Seed uint64 `json:"seed"`
	// Round is the round of the suite the run belongs to (1, 2, ...).
	Round int `json:"round,omitempty"`
}

// runLabel names a run in messages: "target workload c=N", and its
// round when the suite has several.
func runLabel(target, workload string, concurrency, round int, severalRounds bool) string {
	l := fmt.Sprintf("%s %s c=%d", target, workload, concurrency)
	if severalRounds {
		l += fmt.Sprintf(" round %d", round)
	}
	return l
}

// Validate checks the spec and returns its workload.
func (s Spec) Validate() (Workload, error) {
	w, ok := LookupWorkload(s.Workload)
	switch {
	case !ok:
		return w, fmt.Errorf("%w: Spec.Workload %q unknown", ErrInvalid, s.Workload)
	case s.Concurrency < 1:
		return w, fmt.Errorf("%w: Spec.Concurrency %d < 1", ErrInvalid, s.Concurrency)
	case s.Duration <= 0:
		return w, fmt.Errorf("%w: Spec.Duration %s <= 0", ErrInvalid, s.Duration)
	case s.Warmup < 0:
		return w, fmt.Errorf("%w: Spec.Warmup %s < 0", ErrInvalid, s.Warmup)
	case s.RunID == "":
		return w, fmt.Errorf("%w: Spec.RunID empty", ErrInvalid)
	}
	return w, nil
}

// LockName returns the lock name client g uses in this run.
func (s Spec) LockName(w Workload, g int) string {
	if w.Contended {
		return fmt.Sprintf("bench/%s/lock/one", s.RunID)
	}
	return fmt.Sprintf("bench/%s/lock/g%d", s.RunID, g)
}

// Account returns the key of account i of this run.
func (s Spec) Account(i int) []byte { return fmt.Appendf(nil, "bench/%s/acct/%03d", s.RunID, i) }

// Accounts returns the keys of every account of this run.
func (s Spec) Accounts(w Workload) [][]byte {
	keys := make([][]byte, w.Accounts)
	for i := range keys {
		keys[i] = s.Account(i)
	}
	return keys
}

// Target drives one system under test from this process: the same
// operations for every system, so the runner and its checks are written
// once. Implementations: octarget (OpenCluster), redistarget (Redis), and
// the etcd target of the peer module (cmd/ocbench-peers).
type Target interface {
	// Supports reports whether the target implements the workload.
	Supports(w Workload) bool
	// Prepare runs before a run, outside its window: it loads the key
	// space (once per server; it may check a marker) or creates the
	// run's accounts with InitialBalance each.
	Prepare(ctx context.Context, spec Spec, w Workload) error
	// NewWorker returns the client of goroutine g (0 <= g <
	// spec.Concurrency) for a run. Workers may share connections; each is
	// used by one goroutine.
	NewWorker(ctx context.Context, spec Spec, g int) (Worker, error)
	// Total returns the sum of the balances of accounts, read at one
	// point in time.
	Total(ctx context.Context, accounts [][]byte) (int64, error)
	// Close releases the target's connections.
	Close() error
}

// Worker is one client goroutine's view of a target. Its methods are
// called by one goroutine at a time.
type Worker interface {
	// Put writes value under key.
	Put(ctx context.Context, key, value []byte) error
	// Get reads key (linearizable where the system offers it).
	Get(ctx context.Context, key []byte) error
	// Lock acquires the named lock, waiting while another holds it.
	Lock(ctx context.Context, name string) (Held, error)
	// Transfer moves min(amount, balance of from) from one account to
	// the other, atomically with respect to every other transfer.
	Transfer(ctx context.Context, from, to []byte, amount int64) error
	// Close releases what the worker holds (sessions, connections).
	Close() error
}

// Held is a granted lock.
type Held interface {
	// Fence returns the grant's fencing token, or 0 if the system has
	// none. Tokens of one name must grow with every grant.
	Fence() uint64
	// Unlock releases the lock.
	Unlock(ctx context.Context) error
}
