// Package redistarget drives a Redis server for the bench (internal/bench):
// the fast but unsafe baseline. Put and Get are SET and GET; a lock is
// SET name token NX PX ttl, polled every 1–3 ms while someone else holds
// it, and released by a compare-and-delete script. Redis locks have no
// fencing token (Fence is 0: the bench checks only that holders do not
// overlap), and Redis has no transfer workload.
//
// Each worker owns one connection (RESP is one request at a time per
// connection), spoken by the small client in resp.go: the product module
// takes no Redis dependency.
package redistarget

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"time"

	"github.com/opencluster/opencluster/internal/bench"
)

// lockTTL is the expiry of a lock key (PX), like OpenCluster's ttl.
const lockTTL = 15 * time.Second

// unlockScript deletes the lock key only if it still holds our token.
const unlockScript = `if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) else return 0 end`

// loadedMarker is set after the key space was loaded.
const loadedMarker = "bench/loaded"

// errNotHolder reports an unlock whose token no longer held the lock.
var errNotHolder = errors.New("redistarget: lock expired or taken before unlock")

// Target is the bench's Redis target.
type Target struct {
	addr string
}

var _ bench.Target = (*Target)(nil)

// New returns a target for the Redis server at addr (host:port).
func New(addr string) *Target { return &Target{addr: addr} }

// Supports reports false for transfers: the baseline has no transactions
// that hold locks over keys.
func (t *Target) Supports(w bench.Workload) bool { return w.Kind != bench.KindTransfer }

// Prepare loads the key space once per server (MSET batches).
func (t *Target) Prepare(ctx context.Context, _ bench.Spec, w bench.Workload) error {
	if w.Kind != bench.KindKV {
		return nil
	}
	c, err := dial(ctx, t.addr)
	if err != nil {
		return err
	}
	defer c.close()
	r, err := c.do(ctx, "EXISTS", loadedMarker)
	if err != nil {
		return err
	}
	if r.int == 1 {
		return nil
	}
	val := string(bench.Value())
	for i := 0; i < bench.KeySpace; i += 500 {
		args := []string{"MSET"}
		for j := i; j < min(i+500, bench.KeySpace); j++ {
			args = append(args, string(bench.Key(j)), val)
		}
		if _, err := c.do(ctx, args...); err != nil {
			return err
		}
	}
	_, err = c.do(ctx, "SET", loadedMarker, "1")
	return err
}

// NewWorker dials the worker's own connection.
func (t *Target) NewWorker(ctx context.Context, spec bench.Spec, g int) (bench.Worker, error) {
	c, err := dial(ctx, t.addr)
	if err != nil {
		return nil, err
	}
	return &worker{c: c, rng: mrand.New(mrand.NewPCG(spec.Seed, uint64(g)))}, nil
}

// Total is not supported (no transfers).
func (t *Target) Total(context.Context, [][]byte) (int64, error) {
	return 0, bench.ErrUnsupported
}

// Close does nothing: workers own the connections.
func (t *Target) Close() error { return nil }

type worker struct {
	c   *conn
	rng *mrand.Rand
}

func (w *worker) Put(ctx context.Context, key, value []byte) error {
	_, err := w.c.do(ctx, "SET", string(key), string(value))
	return err
}

func (w *worker) Get(ctx context.Context, key []byte) error {
	r, err := w.c.do(ctx, "GET", string(key))
	if err == nil && r.null {
		err = fmt.Errorf("%w: key %s", bench.ErrMissing, key)
	}
	return err
}

// Lock polls SET NX PX until it succeeds or ctx ends.
func (w *worker) Lock(ctx context.Context, name string) (bench.Held, error) {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	token := hex.EncodeToString(b[:])
	px := fmt.Sprint(lockTTL.Milliseconds())
	for {
		r, err := w.c.do(ctx, "SET", name, token, "NX", "PX", px)
		if err != nil {
			return nil, err
		}
		if !r.null {
			return &held{w: w, name: name, token: token}, nil
		}
		pause := time.NewTimer(time.Millisecond + time.Duration(w.rng.Int64N(int64(2*time.Millisecond))))
		select {
		case <-pause.C:
		case <-ctx.Done():
			pause.Stop()
			return nil, ctx.Err()
		}
	}
}

type held struct {
	w           *worker
	name, token string
}

// Fence returns 0: SET NX locks have no fencing token.
func (h *held) Fence() uint64 { return 0 }

func (h *held) Unlock(ctx context.Context) error {
	r, err := h.w.c.do(ctx, "EVAL", unlockScript, "1", h.name, h.token)
	if err != nil {
		return err
	}
	if r.int != 1 {
		return errNotHolder
	}
	return nil
}

func (w *worker) Transfer(context.Context, []byte, []byte, int64) error {
	return bench.ErrUnsupported
}

func (w *worker) Close() error { return w.c.close() }

// Ping checks that a Redis server answers at addr.
func Ping(ctx context.Context, addr string) error {
	c, err := dial(ctx, addr)
	if err != nil {
		return err
	}
	defer c.close()
	_, err = c.do(ctx, "PING")
	return err
}
