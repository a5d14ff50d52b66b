package jepsen

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencluster/opencluster/rpc/client"
)

// appendWorkload runs Elle-style list-append transactions: each key holds
// a comma-separated list of integers, and a transaction is a few
// micro-operations, each an append of a value unique in the run or a
// read of a whole list. Transactions that append run under a restrictive
// lock (WRITE on the keys they append to, READ on the keys they only
// read; strict or snapshot mode at random): they read the list under the
// lock, write it back with the value added, provisionally, and commit
// (unlock). Read-only transactions run under a restrictive lock holding
// their keys READ, or lock-free as one BatchGet at a fresh snapshot.
//
// A few keys are hot at a time; a key retires after appendsPerKey
// appends and a fresh one takes its place, so lists stay short and the
// checker sees many version orders.
type appendWorkload struct {
	restrictor // and its cfg, the run's
	// values makes every appended value unique in the run.
	values atomic.Int64

	mu struct {
		sync.Mutex
		// active are the hot keys. Invariant: len(active) ==
		// appendActiveKeys, and each active key < next.
		active []int
		// appends counts the appends generated on each active key.
		appends map[int]int
		// next is the next fresh key; keys 0..next-1 have been handed
		// out (the final reads read them all).
		next int
	}
}

// Tuning of the append workload (fixed: Config has no fields for it).
const (
	// appendActiveKeys is how many keys are hot at a time.
	appendActiveKeys = 5
	// appendsPerKey is how many appends a key gets before it retires.
	appendsPerKey = 100
	// appendMaxMops is the most micro-operations in one transaction.
	appendMaxMops = 4
	// appendFinalBatch is how many keys one final read reads.
	appendFinalBatch = 32
	// appendMaxPause bounds the pause before each micro-operation under
	// a lock, which widens the windows in which a broken lock would let
	// another transaction in.
	appendMaxPause = 5 * time.Millisecond
)

var (
	// errNotList fails an append to a key whose value is not a list.
	errNotList = errors.New("jepsen: not a list of integers")
	// errBatchSize fails a BatchGet answered with the wrong number of
	// items.
	errBatchSize = errors.New("jepsen: BatchGet answered the wrong number of items")
)

func newAppend(cfg *Config) workload {
	a := &appendWorkload{restrictor: restrictor{cfg: cfg, prefix: "jepsen/append/lock"}}
	a.mu.appends = map[int]int{}
	for range appendActiveKeys {
		a.mu.active = append(a.mu.active, a.mu.next)
		a.mu.next++
	}
	return a
}

// appendKey is the store key of list k.
func appendKey(k int) []byte { return fmt.Appendf(nil, "jepsen/append/%d", k) }

// encodeList renders a list as the store holds it: "1,2,3" ("" is empty).
func encodeList(l []int64) []byte {
	var b []byte
	for i, v := range l {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, v, 10)
	}
	return b
}

// decodeList parses a stored list.
func decodeList(b []byte) ([]int64, error) {
	if len(b) == 0 {
		return []int64{}, nil
	}
	parts := strings.Split(string(b), ",")
	l := make([]int64, len(parts))
	for i, s := range parts {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%w: %q", errNotList, b)
		}
		l[i] = v
	}
	return l, nil
}

func (a *appendWorkload) Setup(context.Context, *process) error { return nil }

func (a *appendWorkload) Step(ctx context.Context, p *process) {
	switch x := p.Rand.IntN(10); {
	case x < 2:
		a.snapshotRead(ctx, p)
	default:
		a.lockedTxn(ctx, p)
	}
}

// Final reads every key handed out, a batch at a time, each batch until
// it succeeds or ctx ends.
func (a *appendWorkload) Final(ctx context.Context, p *process) {
	a.mu.Lock()
	n := a.mu.next
	a.mu.Unlock()
	for from := 0; from < n; from += appendFinalBatch {
		var mops []appendMop
		for k := from; k < min(n, from+appendFinalBatch); k++ {
			mops = append(mops, appendMop{F: mopRead, Key: k})
		}
		for ctx.Err() == nil && !a.batchRead(ctx, p, appendArgs{Mops: mops, Mode: appendSnapshot, Final: true}) {
			sleep(ctx, 200*time.Millisecond)
		}
	}
}

// keys returns a copy of the hot keys.
func (a *appendWorkload) keys() []int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.mu.active)
}

// appended counts an append generated on k and retires k once it has had
// appendsPerKey of them.
func (a *appendWorkload) appended(k int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.mu.appends[k]++
	if a.mu.appends[k] < appendsPerKey {
		return
	}
	if i := slices.Index(a.mu.active, k); i >= 0 {
		delete(a.mu.appends, k)
		a.mu.active[i] = a.mu.next
		a.mu.next++
	}
}

// generate returns 1..appendMaxMops random micro-operations on the hot
// keys.
func (a *appendWorkload) generate(p *process) []appendMop {
	keys := a.keys()
	mops := make([]appendMop, 1+p.Rand.IntN(appendMaxMops))
	for i := range mops {
		k := keys[p.Rand.IntN(len(keys))]
		if p.Rand.IntN(2) == 0 {
			mops[i] = appendMop{F: mopRead, Key: k}
			continue
		}
		mops[i] = appendMop{F: mopAppend, Key: k, Value: a.values.Add(1)}
		a.appended(k)
	}
	return mops
}

// lockedTxn runs one transaction under a restrictive lock. It is
// recorded fail whenever Commit was never sent (the writes stay
// provisional and are discarded), info only when Commit's outcome is
// unknown. A read-only transaction commits too: Commit proves the lock
// was held, so nothing changed its keys, while it read.
func (a *appendWorkload) lockedTxn(ctx context.Context, p *process) {
	mops := a.generate(p)
	mode := appendLocked
	if p.Rand.IntN(2) == 0 {
		mode = appendLockedSnapshot
	}
	inv := p.invoke(fAppendTxn, "", appendArgs{Mops: mops, Mode: mode})

	write := map[int]bool{}
	var order []int
	for _, m := range mops {
		if _, seen := write[m.Key]; !seen {
			order = append(order, m.Key)
		}
		write[m.Key] = write[m.Key] || m.F == mopAppend
	}
	opts := make([]client.RestrictOption, 0, len(order)+1)
	for _, k := range order {
		if write[k] {
			opts = append(opts, client.Write(appendKey(k)))
		} else {
			opts = append(opts, client.Read(appendKey(k)))
		}
	}
	if mode == appendLockedSnapshot {
		opts = append(opts, client.Snapshot())
	}
	tx, err := a.restrict(ctx, p, opts...)
	if err != nil {
		p.complete(inv, Fail, nil, err)
		return
	}
	done, err := a.underLock(ctx, p, tx, mops)
	if err != nil {
		a.abort(ctx, p, tx)
		p.complete(inv, Fail, nil, err)
		return
	}
	version, err := a.commit(ctx, p, tx)
	p.complete(inv, outcome(err), appendResult{Mops: done, Version: version}, err)
}

// underLock runs mops under tx and returns them with the reads' lists.
// A read of a key the transaction wrote gets its own write back (the Tx
// keeps it until Commit), any other read asks the server; an append writes
// the list last seen with the value added, reading it first if the
// transaction has not seen it yet.
func (a *appendWorkload) underLock(ctx context.Context, p *process, tx *client.Tx, mops []appendMop) ([]appendMop, error) {
	out := slices.Clone(mops)
	seen := map[int][]int64{}
	for i, m := range out {
		sleep(ctx, time.Duration(p.Rand.Int64N(int64(appendMaxPause))))
		switch m.F {
		case mopRead:
			l, raw, err := a.get(ctx, p, tx, m.Key)
			if err != nil {
				return nil, err
			}
			if l == nil {
				out[i].Garbage = raw
				delete(seen, m.Key)
				continue
			}
			out[i].List = l
			seen[m.Key] = l
		case mopAppend:
			cur, ok := seen[m.Key]
			if !ok {
				l, raw, err := a.get(ctx, p, tx, m.Key)
				if err != nil {
					return nil, err
				}
				if l == nil {
					return nil, fmt.Errorf("%w: key %d holds %q", errNotList, m.Key, raw)
				}
				cur = l
			}
			next := append(slices.Clone(cur), m.Value)
			pctx, cancel := p.opContext(ctx, a.cfg.LockWait)
			err := tx.Put(pctx, appendKey(m.Key), encodeList(next))
			cancel()
			if err != nil {
				return nil, err
			}
			seen[m.Key] = next
		}
	}
	return out, nil
}

// get reads list k under tx: the list, or nil and the raw value if it is
// not a list. A missing key is the empty list.
func (a *appendWorkload) get(ctx context.Context, p *process, tx *client.Tx, k int) ([]int64, string, error) {
	gctx, cancel := p.opContext(ctx, a.cfg.LockWait)
	defer cancel()
	kv, err := tx.Get(gctx, appendKey(k), client.WithReadWait(a.cfg.LockWait))
	switch {
	case errors.Is(err, client.ErrNotFound):
		return []int64{}, "", nil
	case err != nil:
		return nil, "", err
	}
	l, err := decodeList(kv.Value)
	if err != nil {
		return nil, string(kv.Value), nil
	}
	return l, "", nil
}

// snapshotRead reads 1..appendMaxMops distinct hot keys lock-free, with
// one BatchGet at a fresh snapshot.
func (a *appendWorkload) snapshotRead(ctx context.Context, p *process) {
	keys := a.keys()
	p.Rand.Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
	keys = keys[:1+p.Rand.IntN(min(appendMaxMops, len(keys)))]
	mops := make([]appendMop, len(keys))
	for i, k := range keys {
		mops[i] = appendMop{F: mopRead, Key: k}
	}
	a.batchRead(ctx, p, appendArgs{Mops: mops, Mode: appendSnapshot})
}

// batchRead runs args (reads only) as one BatchGet and reports whether it
// succeeded.
func (a *appendWorkload) batchRead(ctx context.Context, p *process, args appendArgs) bool {
	ctx, cancel := p.opContext(ctx, a.cfg.LockWait)
	defer cancel()
	inv := p.invoke(fAppendTxn, "", args)
	keys := make([][]byte, len(args.Mops))
	for i, m := range args.Mops {
		keys[i] = appendKey(m.Key)
	}
	r, err := p.Client.BatchGet(ctx, keys, client.WithReadWait(a.cfg.LockWait))
	if err == nil && len(r.Items) != len(keys) {
		err = fmt.Errorf("%w: %d keys, %d items", errBatchSize, len(keys), len(r.Items))
	}
	if err != nil {
		p.complete(inv, Fail, nil, err)
		return false
	}
	out := slices.Clone(args.Mops)
	for i, item := range r.Items {
		if !item.Found {
			continue
		}
		l, err := decodeList(item.Value)
		if err != nil {
			out[i].Garbage = string(item.Value)
			continue
		}
		out[i].List = l
	}
	p.complete(inv, OK, appendResult{Mops: out, Version: r.Version}, nil)
	return true
}
