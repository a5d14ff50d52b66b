package jepsen

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"

	"github.com/opencluster/opencluster/rpc/client"
)

// fenced has holders of a few named locks write the key each lock guards,
// passing the lock's fence to the store. Every tenth iteration is a
// zombie: it takes the lock with a short ttl on a client it closes at
// once (so nothing keeps the lock alive, like a holder frozen by a long
// GC pause), sleeps past the ttl, and writes anyway with its stale fence.
// Another holder may have taken the lock and written meanwhile; the store
// must then refuse the zombie's write.
//
// One iteration in twenty is a forger: it writes without the lock, with
// a token the lock never granted (far above any grant). The store must
// refuse it: a token it kept as the key's highest would refuse every real
// holder afterwards.
//
// With unfenced set (the control run) writes carry no fence, so the store
// cannot refuse a zombie, and the checker must find lost updates.
type fenced struct {
	cfg      *Config
	unfenced bool
	names    []string
	values   atomic.Uint64
}

func newFenced(cfg *Config) workload { return newFencedWorkload(cfg, false) }

func newUnfenced(cfg *Config) workload { return newFencedWorkload(cfg, true) }

func newFencedWorkload(cfg *Config, unfenced bool) *fenced {
	f := &fenced{cfg: cfg, unfenced: unfenced}
	for i := range cfg.LockNames {
		f.names = append(f.names, fmt.Sprintf("jepsen/fenced/%d", i))
	}
	return f
}

// keyOf is the key the lock name guards.
func keyOf(name string) string { return name + "/data" }

func (f *fenced) Setup(context.Context, *process) error { return nil }

// Final reads every key once, after healing.
func (f *fenced) Final(ctx context.Context, p *process) {
	for _, name := range f.names {
		rctx, cancel := p.opContext(ctx, 0)
		inv := p.invoke(fFencedRead, keyOf(name), nil)
		kv, err := p.Client.Get(rctx, []byte(keyOf(name)))
		cancel()
		switch {
		case err == nil:
			p.complete(inv, OK, fencedResult{Found: true, Value: string(kv.Value), Version: kv.Version}, nil)
		case errors.Is(err, client.ErrNotFound):
			p.complete(inv, OK, fencedResult{}, nil)
		default:
			p.complete(inv, Fail, nil, err)
		}
	}
}

func (f *fenced) Step(ctx context.Context, p *process) {
	name := f.names[p.Rand.IntN(len(f.names))]
	if !f.unfenced && p.Rand.IntN(20) == 0 {
		f.forge(ctx, p, name)
		return
	}
	zombie := p.Rand.IntN(10) == 0
	ttl := f.cfg.LockTTL
	cl := p.Client
	if zombie {
		// A client of its own, closed once the lock is granted: nothing
		// renews the lock, which expires after ZombieTTL.
		ttl = f.cfg.ZombieTTL
		var err error
		if cl, err = p.dial(); err != nil {
			return
		}
		defer cl.Close()
	}

	inv := p.invoke(fAcquire, name, lockArgs{TTL: ttl})
	var l *client.Lock
	requestID := newRequestID()
	rctx, cancel := context.WithTimeout(ctx, 3*p.OpTimeout+f.cfg.LockWait)
	err := retryAmbiguous(rctx, func(ctx context.Context) error {
		actx, cancel := p.opContext(ctx, f.cfg.LockWait)
		defer cancel()
		var err error
		l, err = cl.Lock(actx, name, ttl, client.WithLockWait(f.cfg.LockWait), client.WithRequestID(requestID))
		return err
	})
	cancel()
	if err != nil {
		p.complete(inv, outcome(err), nil, err)
		return
	}
	p.complete(inv, OK, lockResult{Fence: l.Fence(), TTL: l.TTL()}, nil)
	holder := inv.Process
	if zombie {
		_ = cl.Close() // stop renewing: the lock will expire
		sleep(ctx, ttl+ttl/2)
	}

	f.write(ctx, p, name, l.Fence(), zombie)

	lost := zombie || isClosed(l.Lost())
	args := lockArgs{Fence: l.Fence(), Lost: lost}
	if p.ID != holder { // the write ended in info
		args.Holder = &holder
	}
	rinv := p.invoke(fRelease, name, args)
	rctx, cancel = context.WithTimeout(ctx, 3*p.OpTimeout)
	err = retryAmbiguous(rctx, func(ctx context.Context) error {
		uctx, cancel := p.opContext(ctx, 0)
		defer cancel()
		if zombie {
			// The handle's client is closed; release by code through ours.
			return p.Client.Release(uctx, name, l.Code())
		}
		return l.Unlock(uctx)
	})
	cancel()
	p.complete(rinv, outcome(err), nil, err)
}

// write puts a unique value under the lock's key, with the fence unless
// this is the unfenced control.
func (f *fenced) write(ctx context.Context, p *process, name string, fence uint64, zombie bool) {
	wctx, cancel := p.opContext(ctx, 0)
	defer cancel()
	value := strconv.FormatUint(f.values.Add(1), 10)
	inv := p.invoke(fFencedWrite, keyOf(name), fencedArgs{Value: value, Lock: name, Fence: fence, Zombie: zombie})
	var opts []client.WriteOption
	if !f.unfenced {
		opts = append(opts, client.WithFence(name, fence))
	}
	version, err := p.Client.Put(wctx, []byte(keyOf(name)), []byte(value), opts...)
	p.complete(inv, outcome(err), fencedResult{Version: version}, err)
}

// forge writes the lock's key without holding the lock, with a token far
// above any the lock can have granted in a run.
func (f *fenced) forge(ctx context.Context, p *process, name string) {
	wctx, cancel := p.opContext(ctx, 0)
	defer cancel()
	value := strconv.FormatUint(f.values.Add(1), 10)
	token := forgedFenceBase + p.Rand.Uint64N(1<<20)
	inv := p.invoke(fFencedWrite, keyOf(name), fencedArgs{Value: value, Lock: name, Fence: token, Forged: true})
	version, err := p.Client.Put(wctx, []byte(keyOf(name)), []byte(value), client.WithFence(name, token))
	p.complete(inv, outcome(err), fencedResult{Version: version}, err)
}

// forgedFenceBase is the least token a forger sends: far above the grants
// of any run (one per acquire).
const forgedFenceBase = 1 << 40
