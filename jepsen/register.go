package jepsen

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencluster/opencluster/rpc/client"
)

// register drives get, put and CAS on keys shared by small groups of
// processes. Each group works on one key at a time and moves to a fresh
// key after OpsPerKey operations, so porcupine never sees more than
// ProcessesPerKey concurrent processes (plus retired ids) on a key.
type register struct {
	cfg *Config
	// groups[w/ProcessesPerKey] is worker w's key group.
	groups []*keyGroup
	// values makes every written value unique in the run.
	values atomic.Uint64
	// versions[w] is the last version worker w saw of each key; only
	// worker w touches it.
	versions []map[string]uint64

	mu struct {
		sync.Mutex
		// used lists every key handed out, for the final reads.
		used []string
	}
}

// keyGroup is the current key of a group of processes.
type keyGroup struct {
	id int
	mu struct {
		sync.Mutex
		key string
		// generation counts the group's keys; ops counts operations on
		// the current one.
		generation, ops int
	}
}

func newRegister(cfg *Config) workload {
	r := &register{cfg: cfg, versions: make([]map[string]uint64, cfg.Concurrency)}
	for w := range cfg.Concurrency {
		r.versions[w] = map[string]uint64{}
	}
	for g := range (cfg.Concurrency + cfg.ProcessesPerKey - 1) / cfg.ProcessesPerKey {
		r.groups = append(r.groups, &keyGroup{id: g})
	}
	return r
}

// key returns worker w's key for its next operation, moving its group to
// a fresh key every OpsPerKey operations.
func (r *register) key(w int) string {
	g := r.groups[w/r.cfg.ProcessesPerKey]
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.mu.key == "" || g.mu.ops >= r.cfg.OpsPerKey {
		g.mu.generation++
		g.mu.key = fmt.Sprintf("jepsen/register/%d/%d", g.id, g.mu.generation)
		g.mu.ops = 0
		r.mu.Lock()
		r.mu.used = append(r.mu.used, g.mu.key)
		r.mu.Unlock()
	}
	g.mu.ops++
	return g.mu.key
}

func (r *register) Setup(context.Context, *process) error { return nil }

func (r *register) Step(ctx context.Context, p *process) {
	key := r.key(p.Worker)
	switch x := p.Rand.IntN(100); {
	case x < 40:
		r.read(ctx, p, key)
	case x < 50:
		r.snapshotRead(ctx, p, key)
	case x < 80:
		r.write(ctx, p, key)
	default:
		r.cas(ctx, p, key)
	}
}

// Final reads every key once more, after healing.
func (r *register) Final(ctx context.Context, p *process) {
	r.mu.Lock()
	keys := append([]string(nil), r.mu.used...)
	r.mu.Unlock()
	for _, key := range keys {
		if ctx.Err() != nil {
			return
		}
		r.read(ctx, p, key)
	}
}

func (r *register) read(ctx context.Context, p *process, key string) {
	ctx, cancel := p.opContext(ctx, 0)
	defer cancel()
	inv := p.invoke(fRead, key, nil)
	kv, err := p.Client.Get(ctx, []byte(key))
	switch {
	case err == nil:
		r.versions[p.Worker][key] = kv.Version
		p.complete(inv, OK, registerResult{Found: true, Value: string(kv.Value), Version: kv.Version}, nil)
	case errors.Is(err, client.ErrNotFound):
		p.complete(inv, OK, registerResult{}, nil)
	default:
		// A read has no effect: whatever went wrong, drop it.
		p.complete(inv, Fail, nil, err)
	}
}

// snapshotRepeatDelay is how long a snapshot read waits before it reads
// its snapshot again: long enough for a write that was in flight at the
// first read to apply.
const snapshotRepeatDelay = 5 * time.Millisecond

// snapshotRead reads key as a BatchGet at a fresh snapshot, which is a
// linearizable read and checked as one, then reads it again at that
// snapshot's version a moment later: the two answers must be the same
// (design T4: no version at or below a snapshot appears after a read at
// it).
func (r *register) snapshotRead(ctx context.Context, p *process, key string) {
	ctx, cancel := p.opContext(ctx, 0)
	defer cancel()
	inv := p.invoke(fSnapshotRead, key, nil)
	keys := [][]byte{[]byte(key)}
	first, err := p.Client.BatchGet(ctx, keys)
	if err == nil && len(first.Items) != 1 {
		err = errBatchSize
	}
	if err != nil {
		p.complete(inv, Fail, nil, err) // a read has no effect
		return
	}
	time.Sleep(snapshotRepeatDelay)
	again, err := p.Client.BatchGet(ctx, keys, client.AtVersion(first.Version))
	if err == nil && len(again.Items) != 1 {
		err = errBatchSize
	}
	if err != nil {
		p.complete(inv, Fail, nil, err)
		return
	}
	res := snapshotReadResult{registerResult: itemResult(first.Items[0]), Snapshot: first.Version, Again: itemResult(again.Items[0])}
	if res.Found {
		r.versions[p.Worker][key] = res.Version
	}
	p.complete(inv, OK, res, nil)
}

func itemResult(it client.BatchGetItem) registerResult {
	if !it.Found {
		return registerResult{}
	}
	return registerResult{Found: true, Value: string(it.Value), Version: it.Version}
}

func (r *register) write(ctx context.Context, p *process, key string) {
	ctx, cancel := p.opContext(ctx, 0)
	defer cancel()
	value := strconv.FormatUint(r.values.Add(1), 10)
	inv := p.invoke(fWrite, key, registerArgs{Value: value})
	version, err := p.Client.Put(ctx, []byte(key), []byte(value))
	if err == nil {
		r.versions[p.Worker][key] = version
	}
	p.complete(inv, outcome(err), registerResult{Version: version}, err)
}

func (r *register) cas(ctx context.Context, p *process, key string) {
	ctx, cancel := p.opContext(ctx, 0)
	defer cancel()
	expected := r.versions[p.Worker][key]
	value := strconv.FormatUint(r.values.Add(1), 10)
	inv := p.invoke(fCAS, key, registerArgs{Value: value, Expected: expected})
	swapped, cur, err := p.Client.CAS(ctx, []byte(key), []byte(value), expected)
	if err != nil {
		p.complete(inv, outcome(err), nil, err)
		return
	}
	r.versions[p.Worker][key] = cur.Version
	res := registerResult{Swapped: swapped, Version: cur.Version}
	if !swapped && cur.Version != 0 {
		res.Found, res.Value = true, string(cur.Value)
	}
	p.complete(inv, OK, res, nil)
}
