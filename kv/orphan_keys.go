package kv

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/opencluster/opencluster/locks"
	"github.com/opencluster/opencluster/mvcc"
	"github.com/opencluster/opencluster/rpc/cmdpb"
)

// orphanSweeper releases, every Config.OrphanSweepInterval, the orphaned
// key locks of the buckets this node leads: key locks whose holder's
// record no longer accounts for them (locks.TracksKeyLocks). One arises
// when a LockKeys applies after its coordinator gave up and resolved the
// lock's keys: the coordinator's call failed (a partition, a dropped
// connection) while the key's leader, which had not heard of it, still
// waited in the key's queue and was granted the key later. Nothing else
// would ever release such a lock, and every later lock of the key would
// wait for it.
//
// A holder is checked once two sweeps in a row listed it, so only locks
// held at least one interval cost a question to their record's leader,
// and an orphan is released within two to three intervals.
type orphanSweeper struct {
	n *Node
	// last holds the holders listed by the previous sweep.
	last map[orphanHolder][][]byte
	// busy is set while the previous sweep's checks run.
	busy atomic.Bool
}

// orphanHolder is one restrictive lock holding key locks in a bucket.
type orphanHolder struct {
	bucket mvcc.Bucket
	name   string
	code   string
}

func newOrphanSweeper(n *Node) *orphanSweeper {
	return &orphanSweeper{n: n}
}

// sweep lists the holders of the key locks of every bucket this node
// leads, and checks in the background those the previous sweep listed
// too. It skips a round while the previous checks still run.
func (s *orphanSweeper) sweep() {
	if !s.busy.CompareAndSwap(false, true) {
		return
	}
	n := s.n
	held := make(map[orphanHolder][][]byte)
	for _, r := range n.replicas[:n.buckets] {
		if !r.isReadyLeader() {
			continue
		}
		err := mvcc.ScanRecords(n.eng.DB(), r.bucket, mvcc.KindKeyLock, nil, func(key, raw []byte) error {
			kl := &cmdpb.KeyLock{}
			if err := unmarshalRecord(raw, kl); err != nil {
				return err
			}
			for _, h := range kl.Holders {
				id := orphanHolder{bucket: r.bucket, name: h.Name, code: string(h.Code)}
				held[id] = append(held[id], append([]byte(nil), key...))
			}
			return nil
		})
		if err != nil {
			n.log.Warn("listing key locks for orphans", "bucket", r.bucket, "err", err)
		}
	}
	var suspects []orphanHolder
	for id := range held {
		if _, ok := s.last[id]; ok {
			suspects = append(suspects, id)
		}
	}
	s.last = held
	if len(suspects) == 0 {
		s.busy.Store(false)
		return
	}
	n.goBackground(func(ctx context.Context) {
		defer s.busy.Store(false)
		ctx, cancel := context.WithTimeout(ctx, max(n.cfg.OrphanSweepInterval, time.Second))
		defer cancel()
		for _, id := range suspects {
			if err := s.check(ctx, id, held[id]); err != nil {
				n.log.Debug("checking a key lock for an orphan; will retry", "lock", id.name, "bucket", id.bucket, "err", err)
			}
		}
	})
}

// check asks id's record whether it still accounts for id's key locks,
// and releases them (without committing anything) if it does not.
func (s *orphanSweeper) check(ctx context.Context, id orphanHolder, keys [][]byte) error {
	n := s.n
	live, err := n.txnLive(ctx, id.name, []byte(id.code))
	if err != nil || live {
		return err
	}
	res, err := n.replicas[id.bucket].propose(ctx, &cmdpb.Command{Body: &cmdpb.Command_ResolveKeys{ResolveKeys: &cmdpb.ResolveKeys{
		Name: id.name, Code: []byte(id.code), Keys: keys,
	}}})
	if err != nil {
		return err
	}
	if res.Count > 0 {
		n.metrics.orphanedKeyLocks.Add(float64(res.Count))
		n.log.Warn("released key locks orphaned by a finished restrictive lock", "lock", id.name, "bucket", id.bucket, "keys", res.Count)
	}
	return resultErr(res)
}

// txnLive reports whether the record of restrictive lock name still
// accounts for key locks held with code (locks.TracksKeyLocks), read on
// the leader of name's bucket once its leadership is confirmed.
func (n *Node) txnLive(ctx context.Context, name string, code []byte) (bool, error) {
	r := n.replicaOfName(name)
	leader, err := n.leaderOf(ctx, r)
	if err != nil {
		return false, err
	}
	if leader != 0 {
		return n.cfg.Remote.TxnLive(ctx, leader, &cmdpb.BucketTxnLiveRequest{Group: r.group, Name: name, Code: code})
	}
	return n.txnLiveHere(ctx, r, name, code)
}

// ServeTxnLive is the leader's half of txnLive.
func (n *Node) ServeTxnLive(ctx context.Context, req *cmdpb.BucketTxnLiveRequest) (bool, error) {
	r, err := n.servedReplica(ctx, req.GetGroup())
	if err != nil {
		return false, err
	}
	if r != n.replicaOfName(req.GetName()) {
		return false, fmt.Errorf("%w: lock %q is not in bucket %d", ErrInvalid, req.GetName(), req.GetGroup())
	}
	return n.txnLiveHere(ctx, r, req.GetName(), req.GetCode())
}

func (n *Node) txnLiveHere(ctx context.Context, r *replica, name string, code []byte) (bool, error) {
	if err := r.linearizable(ctx); err != nil {
		return false, err
	}
	// A lock's key locks may apply before its record (beginWithFirstStep):
	// while this leader is creating the record, the code is live. A
	// record an earlier leader proposed has applied here (a ready leader
	// has applied its predecessors' entries) or never will; then its
	// coordinator gives the keys back, and if that failed too, they are
	// orphans, whether the name has an older record or none.
	if n.pendingBegins.has(code) {
		return true, nil
	}
	rec, found, err := locks.TxnRecord(n.eng.DB(), r.bucket, name)
	if err != nil || !found {
		return false, err
	}
	return locks.TracksKeyLocks(rec, code), nil
}
