// Package octarget drives OpenCluster for the bench (internal/bench)
// through the Go client: Put and linearizable Get, named locks (Lock,
// whose fence grows with every grant), and transfers as restrictive locks
// with both accounts WRITE (Txn).
//
// Connections: like the etcd peer, it opens clients (gRPC connections)
// and gives them to the run's goroutines round-robin, so both systems are
// driven through the same number of connections.
package octarget

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/opencluster/opencluster/internal/bench"
	"github.com/opencluster/opencluster/rpc/client"
)

// Clients is how many clients (gRPC connections) a target opens.
const Clients = 8

// loadedMarker is written after the key space was loaded, so later runs
// against the same server skip the load.
var loadedMarker = []byte("bench/loaded")

// Target is the bench's OpenCluster target.
type Target struct {
	clients []*client.Client
}

var _ bench.Target = (*Target)(nil)

// New returns a target for the cluster at endpoints; opts are passed to
// every client.
func New(ctx context.Context, endpoints []string, opts ...client.Option) (*Target, error) {
	t := &Target{}
	for range Clients {
		c, err := client.New(ctx, endpoints, opts...)
		if err != nil {
			t.Close()
			return nil, err
		}
		t.clients = append(t.clients, c)
	}
	return t, nil
}

// Supports reports true: OpenCluster runs every workload.
func (t *Target) Supports(bench.Workload) bool { return true }

// Prepare loads the key space (key-value workloads, once per cluster) or
// creates the run's accounts (transfers).
func (t *Target) Prepare(ctx context.Context, spec bench.Spec, w bench.Workload) error {
	c := t.clients[0]
	switch w.Kind {
	case bench.KindKV:
		if _, err := c.Get(ctx, loadedMarker); err == nil {
			return nil
		} else if !errors.Is(err, client.ErrNotFound) {
			return err
		}
		val := bench.Value()
		if err := parallel(ctx, bench.KeySpace, func(ctx context.Context, i int) error {
			_, err := t.clients[i%len(t.clients)].Put(ctx, bench.Key(i), val)
			return err
		}); err != nil {
			return err
		}
		_, err := c.Put(ctx, loadedMarker, []byte("1"))
		return err
	case bench.KindTransfer:
		balance := []byte(strconv.Itoa(bench.InitialBalance))
		return parallel(ctx, w.Accounts, func(ctx context.Context, i int) error {
			_, err := c.Put(ctx, spec.Account(i), balance)
			return err
		})
	}
	return nil
}

// parallel runs fn(0..n-1) on 32 goroutines and returns the first error.
// It returns after every goroutine has ended.
func parallel(ctx context.Context, n int, fn func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	next := make(chan int)
	var (
		wg       sync.WaitGroup
		once     sync.Once
		firstErr error
	)
	for range 32 {
		wg.Go(func() {
			for i := range next {
				if err := fn(ctx, i); err != nil {
					once.Do(func() { firstErr = err; cancel() })
				}
			}
		})
	}
feed:
	for i := range n {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}

// NewWorker returns the worker of goroutine g.
func (t *Target) NewWorker(_ context.Context, spec bench.Spec, g int) (bench.Worker, error) {
	return &worker{c: t.clients[g%len(t.clients)], txName: fmt.Sprintf("bench/%s/tx/g%d", spec.RunID, g)}, nil
}

// Total sums the balances of accounts, read at one snapshot.
func (t *Target) Total(ctx context.Context, accounts [][]byte) (int64, error) {
	res, err := t.clients[0].BatchGet(ctx, accounts)
	if err != nil {
		return 0, err
	}
	var total int64
	for _, it := range res.Items {
		if !it.Found {
			return 0, fmt.Errorf("%w: account %s", bench.ErrMissing, it.Key)
		}
		v, err := strconv.ParseInt(string(it.Value), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("octarget: account %s: %w", it.Key, err)
		}
		total += v
	}
	return total, nil
}

// Close closes the clients.
func (t *Target) Close() error {
	for _, c := range t.clients {
		_ = c.Close()
	}
	return nil
}

type worker struct {
	c *client.Client
	// txName is the name of this goroutine's restrictive locks: one
	// transaction at a time per goroutine, so names never collide.
	txName string
}

func (w *worker) Put(ctx context.Context, key, value []byte) error {
	_, err := w.c.Put(ctx, key, value)
	return err
}

func (w *worker) Get(ctx context.Context, key []byte) error {
	_, err := w.c.Get(ctx, key)
	return err
}

// lockTTL is the ttl of the bench's named locks: the server's default.
const lockTTL = 15 * time.Second

func (w *worker) Lock(ctx context.Context, name string) (bench.Held, error) {
	l, err := w.c.Lock(ctx, name, lockTTL)
	if err != nil {
		return nil, err
	}
	return held{l}, nil
}

type held struct{ l *client.Lock }

func (h held) Fence() uint64                    { return h.l.Fence() }
func (h held) Unlock(ctx context.Context) error { return h.l.Unlock(ctx) }

// Transfer takes a restrictive lock with both accounts WRITE, prefetching
// their balances with the grant (as the etcd target's STM prefetches its
// two keys), writes both, and commits (Txn retries a lost lock).
func (w *worker) Transfer(ctx context.Context, from, to []byte, amount int64) error {
	return w.c.Txn(ctx, w.txName, []client.KeySpec{client.Write(from), client.Write(to)}, func(tx *client.Tx) error {
		fb, err := balance(ctx, tx, from)
		if err != nil {
			return err
		}
		tb, err := balance(ctx, tx, to)
		if err != nil {
			return err
		}
		a := min(amount, fb)
		if err := tx.Put(ctx, from, strconv.AppendInt(nil, fb-a, 10)); err != nil {
			return err
		}
		return tx.Put(ctx, to, strconv.AppendInt(nil, tb+a, 10))
	}, client.Prefetch())
}

func balance(ctx context.Context, tx *client.Tx, key []byte) (int64, error) {
	kv, err := tx.Get(ctx, key)
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseInt(string(kv.Value), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("octarget: account %s: %w", key, err)
	}
	return v, nil
}

func (w *worker) Close() error { return nil }
