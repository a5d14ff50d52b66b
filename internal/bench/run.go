package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// drainGrace bounds how long the operations in flight at the end of the
// window may take to finish. They are not counted, but they are let
// finish rather than cancelled, so that no lock or transaction is left
// half done on the server.
const drainGrace = 30 * time.Second

// progressEvery is how often Run reports progress.
const progressEvery = 500 * time.Millisecond

// Progress is a snapshot of a run in flight.
type Progress struct {
	// Elapsed counts from the start of the warm-up; Total is warm-up plus
	// window.
	Elapsed time.Duration `json:"elapsed_ns"`
	Total   time.Duration `json:"total_ns"`
	// Ops and Errors count inside the measured window so far.
	Ops    int64 `json:"ops"`
	Errors int64 `json:"errors"`
}

// Run measures one run of spec against t: Prepare, then Concurrency client
// goroutines doing the workload's operations for Warmup+Duration, then the
// checks. progress (if not nil) is called every 500ms from a goroutine of
// Run's own; Run returns only after that goroutine and every client have
// stopped. A run whose safety checks failed returns its result with
// Violations > 0 and no error; an error means the run could not be done.
func Run(ctx context.Context, t Target, spec Spec, progress func(Progress)) (Result, error) {
	w, err := spec.Validate()
	if err != nil {
		return Result{}, err
	}
	if !t.Supports(w) {
		return Result{}, fmt.Errorf("%w: %s on %s", ErrUnsupported, w.Name, spec.Target)
	}
	if err := t.Prepare(ctx, spec, w); err != nil {
		return Result{}, fmt.Errorf("bench: prepare %s: %w", w.Name, err)
	}
	workers := make([]Worker, 0, spec.Concurrency)
	defer func() {
		for _, wk := range workers {
			_ = wk.Close()
		}
	}()
	for g := range spec.Concurrency {
		wk, err := t.NewWorker(ctx, spec, g)
		if err != nil {
			return Result{}, fmt.Errorf("bench: client %d: %w", g, err)
		}
		workers = append(workers, wk)
	}

	r := &runner{spec: spec, w: w, check: newExclusion(), value: Value()}
	start := time.Now()
	r.windowStart = start.Add(spec.Warmup)
	r.end = r.windowStart.Add(spec.Duration)
	opCtx, cancel := context.WithDeadline(ctx, r.end.Add(drainGrace))
	defer cancel()

	hists := make([]Histogram, spec.Concurrency)
	var wg sync.WaitGroup
	for g, wk := range workers {
		wg.Go(func() { r.client(opCtx, g, wk, &hists[g]) })
	}
	stopProgress := make(chan struct{})
	var pwg sync.WaitGroup
	if progress != nil {
		pwg.Go(func() {
			tick := time.NewTicker(progressEvery)
			defer tick.Stop()
			for {
				select {
				case <-tick.C:
					progress(Progress{Elapsed: time.Since(start), Total: spec.Warmup + spec.Duration, Ops: r.ops.Load(), Errors: r.errs.Load()})
				case <-stopProgress:
					return
				}
			}
		})
	}
	wg.Wait()
	close(stopProgress)
	pwg.Wait()
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}

	var all Histogram
	for i := range hists {
		all.Merge(&hists[i])
	}
	res := Result{Target: spec.Target, Workload: w.Name, Concurrency: spec.Concurrency, Nodes: spec.Nodes, Errors: r.errs.Load()}
	res.summarize(&all, spec.Duration)
	if e := r.firstErr.Load(); e != nil {
		res.ErrorSample = *e
	}
	if w.Kind == KindTransfer {
		accounts := spec.Accounts(w)
		total, err := t.Total(ctx, accounts)
		if err != nil {
			return res, fmt.Errorf("bench: reading the account total: %w", err)
		}
		if want := int64(InitialBalance * len(accounts)); total != want {
			r.check.violation("account total is %d after the run, want %d", total, want)
		}
	}
	res.Violations, res.Notes = r.check.report()
	return res, nil
}

// runner is the state the clients of one run share.
type runner struct {
	spec             Spec
	w                Workload
	check            *exclusion
	value            []byte
	windowStart, end time.Time
	// ops and errs count inside the window, for progress.
	ops, errs atomic.Int64
	firstErr  atomic.Pointer[string]
}

// client is one client goroutine: operations until the window ends.
func (r *runner) client(ctx context.Context, g int, wk Worker, h *Histogram) {
	rng := rand.New(rand.NewPCG(r.spec.Seed, uint64(g)))
	for time.Now().Before(r.end) && ctx.Err() == nil {
		lat, err := r.op(ctx, g, wk, rng)
		done := time.Now()
		if done.Before(r.windowStart) || done.After(r.end) {
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			r.errs.Add(1)
			if r.firstErr.Load() == nil {
				s := err.Error()
				r.firstErr.CompareAndSwap(nil, &s)
			}
			continue
		}
		r.ops.Add(1)
		h.Record(lat)
	}
}

// op does one operation and returns the latency to record.
func (r *runner) op(ctx context.Context, g int, wk Worker, rng *rand.Rand) (time.Duration, error) {
	switch r.w.Kind {
	case KindKV:
		key := Key(rng.IntN(KeySpace))
		read := rng.Float64() < r.w.ReadFraction
		t0 := time.Now()
		var err error
		if read {
			err = wk.Get(ctx, key)
		} else {
			err = wk.Put(ctx, key, r.value)
		}
		return time.Since(t0), err
	case KindLock:
		name := r.spec.LockName(r.w, g)
		t0 := time.Now()
		h, err := wk.Lock(ctx, name)
		lat := time.Since(t0)
		if err != nil {
			return lat, err
		}
		r.check.enter(name, h.Fence())
		r.check.exit(name)
		if err := h.Unlock(ctx); err != nil {
			return lat, fmt.Errorf("unlock: %w", err)
		}
		return lat, nil
	case KindTransfer:
		n := r.w.Accounts
		from := rng.IntN(n)
		to := (from + 1 + rng.IntN(n-1)) % n
		amount := int64(1 + rng.IntN(MaxAmount))
		t0 := time.Now()
		err := wk.Transfer(ctx, r.spec.Account(from), r.spec.Account(to), amount)
		return time.Since(t0), err
	}
	panic(fmt.Sprintf("bench: workload %q has unknown kind %d", r.w.Name, r.w.Kind))
}
