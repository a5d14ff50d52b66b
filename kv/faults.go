package kv

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/opencluster/opencluster/mvcc"
	"github.com/opencluster/opencluster/mvcc/ts"
)

// Faults are bugs planted on purpose, so that the consistency harness can
// show it catches them (its negative controls). Every one is off unless a
// test-only admin surface switches it on; a production server has none
// (Config.Faults nil).
type Faults struct {
	// StaleReads makes Get read the newest version as of StaleBy ago,
	// without the ReadIndex barrier: reads miss recent writes.
	StaleReads atomic.Bool
	// NoFenceCheck makes the leader drop a write's fence, so a stale
	// holder's write is accepted.
	NoFenceCheck atomic.Bool
	// EarlyExpiry makes the leader expire locks after half their ttl.
	EarlyExpiry atomic.Bool
}

// staleBy is how far in the past a planted stale read reads.
const staleBy = 500 * time.Millisecond

func (n *Node) fault(f func(*Faults) *atomic.Bool) bool {
	return n.cfg.Faults != nil && f(n.cfg.Faults).Load()
}

// leaseTTL is the ttl the leader's deadlines use for a lock of ttl
// (halved by the EarlyExpiry fault).
func (n *Node) leaseTTL(ttl time.Duration) time.Duration {
	if n.fault(func(f *Faults) *atomic.Bool { return &f.EarlyExpiry }) {
		return ttl / 2
	}
	return ttl
}

// staleRead serves a Get under the StaleReads fault: the key as of staleBy
// ago, from this node's state, with no barrier.
func (n *Node) staleRead(ctx context.Context, r *replica, key []byte) (mvcc.Value, error) {
	now, err := n.tso.now(ctx)
	if err != nil {
		return mvcc.Value{}, err
	}
	at := now - ts.FromDuration(staleBy)
	return mvcc.Get(n.eng.DB(), r.bucket, key, at)
}
