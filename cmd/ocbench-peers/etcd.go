package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"

	"github.com/opencluster/opencluster/internal/bench"
)

// etcdClients is how many clientv3 clients (gRPC connections) the target
// opens; goroutines use them round-robin (as OpenCluster's target does).
const etcdClients = 8

// sessionTTL is the lease ttl of a lock session, in seconds (etcd's
// default is 60; the baseline used 30).
const sessionTTL = 30

// maxTxnOps is how many operations one preload transaction carries (etcd
// allows 128 by default).
const maxTxnOps = 100

// loadedMarker is written after the key space was loaded.
const loadedMarker = "bench/loaded"

// etcdTarget drives etcd: KV through clientv3, locks through
// concurrency.Mutex (one session per client goroutine), transfers through
// concurrency.NewSTM with SerializableSnapshot.
type etcdTarget struct {
	clients []*clientv3.Client
}

var _ bench.Target = (*etcdTarget)(nil)

func newEtcdTarget(ctx context.Context, endpoints []string) (*etcdTarget, error) {
	t := &etcdTarget{}
	for range etcdClients {
		c, err := clientv3.New(clientv3.Config{
			Endpoints:   endpoints,
			DialTimeout: 5 * time.Second,
			Logger:      zap.NewNop(),
			Context:     ctx,
		})
		if err != nil {
			t.Close()
			return nil, fmt.Errorf("etcd client: %w", err)
		}
		t.clients = append(t.clients, c)
	}
	return t, nil
}

func (t *etcdTarget) Supports(bench.Workload) bool { return true }

// Prepare loads the key space once (transactions of 100 puts), or creates
// the run's accounts.
func (t *etcdTarget) Prepare(ctx context.Context, spec bench.Spec, w bench.Workload) error {
	c := t.clients[0]
	var ops []clientv3.Op
	switch w.Kind {
	case bench.KindKV:
		resp, err := c.Get(ctx, loadedMarker)
		if err != nil {
			return err
		}
		if len(resp.Kvs) > 0 {
			return nil
		}
		val := string(bench.Value())
		for i := range bench.KeySpace {
			ops = append(ops, clientv3.OpPut(string(bench.Key(i)), val))
		}
		ops = append(ops, clientv3.OpPut(loadedMarker, "1"))
	case bench.KindTransfer:
		for _, a := range spec.Accounts(w) {
			ops = append(ops, clientv3.OpPut(string(a), strconv.Itoa(bench.InitialBalance)))
		}
	}
	for len(ops) > 0 {
		n := min(len(ops), maxTxnOps)
		if _, err := c.Txn(ctx).Then(ops[:n]...).Commit(); err != nil {
			return err
		}
		ops = ops[n:]
	}
	return nil
}

// NewWorker returns the worker of goroutine g, with its own session for
// lock workloads.
func (t *etcdTarget) NewWorker(ctx context.Context, spec bench.Spec, g int) (bench.Worker, error) {
	w := &etcdWorker{c: t.clients[g%len(t.clients)]}
	if wl, _ := bench.LookupWorkload(spec.Workload); wl.Kind == bench.KindLock {
		s, err := concurrency.NewSession(w.c, concurrency.WithTTL(sessionTTL), concurrency.WithContext(ctx))
		if err != nil {
			return nil, fmt.Errorf("etcd session: %w", err)
		}
		w.sess = s
	}
	return w, nil
}

// Total sums the accounts, read in one transaction (one revision).
func (t *etcdTarget) Total(ctx context.Context, accounts [][]byte) (int64, error) {
	var ops []clientv3.Op
	for _, a := range accounts {
		ops = append(ops, clientv3.OpGet(string(a)))
	}
	resp, err := t.clients[0].Txn(ctx).Then(ops...).Commit()
	if err != nil {
		return 0, err
	}
	var total int64
	for i, r := range resp.Responses {
		kvs := r.GetResponseRange().GetKvs()
		if len(kvs) != 1 {
			return 0, fmt.Errorf("%w: account %s", bench.ErrMissing, accounts[i])
		}
		v, err := strconv.ParseInt(string(kvs[0].Value), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("etcd: account %s: %w", accounts[i], err)
		}
		total += v
	}
	return total, nil
}

func (t *etcdTarget) Close() error {
	for _, c := range t.clients {
		_ = c.Close()
	}
	return nil
}

type etcdWorker struct {
	c    *clientv3.Client
	sess *concurrency.Session // lock workloads only
}

func (w *etcdWorker) Put(ctx context.Context, key, value []byte) error {
	_, err := w.c.Put(ctx, string(key), string(value))
	return err
}

// Get is linearizable (clientv3's default).
func (w *etcdWorker) Get(ctx context.Context, key []byte) error {
	resp, err := w.c.Get(ctx, string(key))
	if err == nil && len(resp.Kvs) == 0 {
		err = fmt.Errorf("%w: key %s", bench.ErrMissing, key)
	}
	return err
}

// Lock acquires a concurrency.Mutex. Its fence is the revision of the
// acquiring response, which grows with every grant of a name: a waiter's
// response comes after its predecessor's delete, a revision above the
// predecessor's grant.
func (w *etcdWorker) Lock(ctx context.Context, name string) (bench.Held, error) {
	m := concurrency.NewMutex(w.sess, name)
	if err := m.Lock(ctx); err != nil {
		return nil, err
	}
	return etcdHeld{m}, nil
}

type etcdHeld struct{ m *concurrency.Mutex }

func (h etcdHeld) Fence() uint64                    { return uint64(h.m.Header().Revision) }
func (h etcdHeld) Unlock(ctx context.Context) error { return h.m.Unlock(ctx) }

// Transfer runs an STM transaction (SerializableSnapshot), as in etcd's
// example, prefetching both accounts (the OpenCluster target prefetches
// them with its lock). The STM retries conflicts itself; a read at a revision a
// member has not applied yet (ErrFutureRev, possible with several
// endpoints) is retried here.
func (w *etcdWorker) Transfer(ctx context.Context, from, to []byte, amount int64) error {
	fk, tk := string(from), string(to)
	for {
		_, err := concurrency.NewSTM(w.c, func(s concurrency.STM) error {
			fb, err := strconv.ParseInt(s.Get(fk), 10, 64)
			if err != nil {
				return fmt.Errorf("etcd: account %s: %w", fk, err)
			}
			tb, err := strconv.ParseInt(s.Get(tk), 10, 64)
			if err != nil {
				return fmt.Errorf("etcd: account %s: %w", tk, err)
			}
			a := min(amount, fb)
			s.Put(fk, strconv.FormatInt(fb-a, 10))
			s.Put(tk, strconv.FormatInt(tb+a, 10))
			return nil
		}, concurrency.WithIsolation(concurrency.SerializableSnapshot), concurrency.WithAbortContext(ctx), concurrency.WithPrefetch(fk, tk))
		if errors.Is(err, rpctypes.ErrFutureRev) && ctx.Err() == nil {
			continue
		}
		return err
	}
}

func (w *etcdWorker) Close() error {
	if w.sess != nil {
		return w.sess.Close()
	}
	return nil
}
