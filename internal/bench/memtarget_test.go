package bench

import (
	"context"
	"errors"
	"strconv"
	"sync"
)

// memTarget is the in-memory twin of a Target: a map, one semaphore per
// lock name with a fence counter, transfers under a mutex. Its faults
// break one property each, so that the checks can be shown to fail.
type memTarget struct {
	faults memFaults

	mu struct {
		sync.Mutex
		kv    map[string][]byte
		locks map[string]*memLock
	}
}

type memFaults struct {
	// staleFence grants every lock with fence 1.
	staleFence bool
	// leak loses a unit in every transfer.
	leak bool
	// getFails makes every Get fail.
	getFails bool
}

type memLock struct {
	sem   chan struct{} // holds a token while the lock is held
	fence uint64
}

var _ Target = (*memTarget)(nil)

func newMemTarget(f memFaults) *memTarget {
	t := &memTarget{faults: f}
	t.mu.kv = map[string][]byte{}
	t.mu.locks = map[string]*memLock{}
	return t
}

func (t *memTarget) Supports(Workload) bool { return true }

func (t *memTarget) Prepare(_ context.Context, spec Spec, w Workload) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch w.Kind {
	case KindKV:
		for i := range KeySpace {
			t.mu.kv[string(Key(i))] = Value()
		}
	case KindTransfer:
		for _, a := range spec.Accounts(w) {
			t.mu.kv[string(a)] = []byte(strconv.Itoa(InitialBalance))
		}
	}
	return nil
}

func (t *memTarget) NewWorker(context.Context, Spec, int) (Worker, error) { return memWorker{t}, nil }

func (t *memTarget) Total(_ context.Context, accounts [][]byte) (int64, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var total int64
	for _, a := range accounts {
		v, err := strconv.ParseInt(string(t.mu.kv[string(a)]), 10, 64)
		if err != nil {
			return 0, err
		}
		total += v
	}
	return total, nil
}

func (t *memTarget) Close() error { return nil }

type memWorker struct{ t *memTarget }

func (w memWorker) Put(_ context.Context, key, value []byte) error {
	w.t.mu.Lock()
	defer w.t.mu.Unlock()
	w.t.mu.kv[string(key)] = value
	return nil
}

var errMemGet = errors.New("mem: get failed")

func (w memWorker) Get(_ context.Context, key []byte) error {
	if w.t.faults.getFails {
		return errMemGet
	}
	w.t.mu.Lock()
	defer w.t.mu.Unlock()
	if _, ok := w.t.mu.kv[string(key)]; !ok {
		return errors.New("mem: not found")
	}
	return nil
}

func (w memWorker) Lock(ctx context.Context, name string) (Held, error) {
	w.t.mu.Lock()
	l := w.t.mu.locks[name]
	if l == nil {
		l = &memLock{sem: make(chan struct{}, 1)}
		w.t.mu.locks[name] = l
	}
	w.t.mu.Unlock()
	select {
	case l.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	w.t.mu.Lock()
	defer w.t.mu.Unlock()
	l.fence++
	fence := l.fence
	if w.t.faults.staleFence {
		fence = 1
	}
	return &memHeld{l: l, fence: fence}, nil
}

type memHeld struct {
	l     *memLock
	fence uint64
}

func (h *memHeld) Fence() uint64 { return h.fence }

func (h *memHeld) Unlock(context.Context) error {
	<-h.l.sem
	return nil
}

func (w memWorker) Transfer(_ context.Context, from, to []byte, amount int64) error {
	w.t.mu.Lock()
	defer w.t.mu.Unlock()
	fb, _ := strconv.ParseInt(string(w.t.mu.kv[string(from)]), 10, 64)
	tb, _ := strconv.ParseInt(string(w.t.mu.kv[string(to)]), 10, 64)
	a := min(amount, fb)
	gain := a
	if w.t.faults.leak && a > 0 {
		gain--
	}
	w.t.mu.kv[string(from)] = strconv.AppendInt(nil, fb-a, 10)
	w.t.mu.kv[string(to)] = strconv.AppendInt(nil, tb+gain, 10)
	return nil
}

func (w memWorker) Close() error { return nil }
