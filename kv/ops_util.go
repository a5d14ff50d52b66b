package kv

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/opencluster/opencluster/locks"
	"github.com/opencluster/opencluster/mvcc"
	"github.com/opencluster/opencluster/rpc/cmdpb"
)

// waitContext bounds a wait by the request's wait duration (nil: only ctx).
func waitContext(ctx context.Context, wait *durationpb.Duration) (context.Context, context.CancelFunc) {
	if wait == nil {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, wait.AsDuration())
}

// waitFor blocks on w, turning a timeout into ErrWaitTimeout.
func (n *Node) waitFor(ctx context.Context, w *locks.Waiter, what string) error {
	n.metrics.lockWaits.Inc()
	if err := w.Wait(ctx); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("%w: %s", ErrWaitTimeout, what)
		}
		return err
	}
	return nil
}

// resultErr maps a refused command to the node's errors.
func resultErr(res *cmdpb.Result) error {
	switch res.Error {
	case cmdpb.ErrorCode_OK:
		return nil
	case cmdpb.ErrorCode_NOT_HOLDER:
		return fmt.Errorf("%w: %s", ErrNotHolder, res.Detail)
	case cmdpb.ErrorCode_NOT_WRITE_LOCKED:
		return fmt.Errorf("%w: %s", ErrNotWriteLocked, res.Detail)
	case cmdpb.ErrorCode_FENCE_TOO_LOW:
		return fmt.Errorf("%w: %s", ErrFenceTooLow, res.Detail)
	case cmdpb.ErrorCode_TXN_ABORTED:
		return fmt.Errorf("%w: %s", ErrAborted, res.Detail)
	case cmdpb.ErrorCode_REQUEST_REUSED:
		return fmt.Errorf("%w: %s", ErrInvalid, res.Detail)
	case cmdpb.ErrorCode_LOCK_HELD, cmdpb.ErrorCode_KEY_LOCKED:
		return fmt.Errorf("%w: %s", ErrWaitTimeout, res.Detail)
	default:
		return fmt.Errorf("%w: unexpected refusal %s: %s", ErrUnavailable, res.Error, res.Detail)
	}
}

// decodeCode parses a hex lock code; "" is no code.
func decodeCode(s string) ([]byte, error) {
	if s == "" {
		return nil, nil
	}
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 16 {
		return nil, fmt.Errorf("%w: code must be 32 hex characters", ErrInvalid)
	}
	return b, nil
}

func encodeCode(b []byte) string { return hex.EncodeToString(b) }

func ttlMillis(d *durationpb.Duration) int64 { return d.AsDuration().Milliseconds() }

func millis(ms int64) time.Duration { return time.Duration(ms) * time.Millisecond }

// byBucket groups keys by bucket, in (bucket, key) order: the global order
// every restrictive lock takes its key locks in.
func (n *Node) byBucket(keys [][]byte) ([]mvcc.Bucket, map[mvcc.Bucket][][]byte) {
	groups := make(map[mvcc.Bucket][][]byte)
	for _, k := range keys {
		b := mvcc.BucketOf(k, n.buckets)
		groups[b] = append(groups[b], k)
	}
	order := make([]mvcc.Bucket, 0, len(groups))
	for b, ks := range groups {
		order = append(order, b)
		sort.Slice(ks, func(i, j int) bool { return string(ks[i]) < string(ks[j]) })
	}
	sort.Slice(order, func(i, j int) bool { return order[i] < order[j] })
	return order, groups
}

// takeInTurn grants a lock first come, first served: it queues for
// resource and calls try whenever it is at the head of the queue, until try
// succeeds, fails with anything but LOCK_HELD, or wctx ends. noWait tries
// once. With handoff (a named lock's acquire), the head offers it to the
// next Release while it waits, which may grant it in its own round
// (handoff.go).
//
// holder tells from this node's applied state who holds the lock
// (holderUnknown when this node does not lead its group). Two
// shortcuts follow, both only ever skipping work:
//   - holderRequest: a retry of the acquire that holds the lock tries at
//     once, wherever it queued, and gets its grant back, instead of
//     waiting behind waiters that wait for it;
//   - holderOther: the head waits (offering its hand-off, if any) without
//     proposing an acquire that would only be refused, which saves a Raft
//     round per grant of a contended lock. A stale look is harmless: the
//     waiter joined before looking, so a release applied after it still
//     wakes the waiter.
func (n *Node) takeInTurn(wctx context.Context, resource, what string, noWait bool, handoff *cmdpb.NamedAcquire, holder func() lockHolder, try func() (*cmdpb.Result, error)) (*cmdpb.Result, error) {
	w := n.waits.Join(resource)
	defer w.Leave()
	var offer *handoffOffer[*cmdpb.NamedAcquire]
	canOffer := handoff != nil && !noWait
	for first := true; ; first = false {
		head := w.IsHead()
		held := holderUnknown
		if head || first {
			held = holder()
		}
		if head || held == holderRequest {
			if grant := reclaim(n, &n.handoffs, &offer); grant != nil {
				return grant, nil
			}
			// Without a wait left the try's refusal is the answer, and
			// only a committed command gives it (the look may be stale).
			if held == holderOther && !noWait && wctx.Err() == nil {
				n.metrics.triesSkipped.Inc()
			} else {
				res, err := try()
				if err != nil {
					return nil, err
				}
				if res.Error == cmdpb.ErrorCode_OK {
					return res, nil
				}
				if res.Error != cmdpb.ErrorCode_LOCK_HELD {
					return nil, resultErr(res)
				}
			}
			if canOffer && head {
				offer = n.handoffs.offer(handoff.Name, handoff, w)
			}
		}
		if noWait {
			return nil, fmt.Errorf("%w: %s", ErrWaitTimeout, what)
		}
		if err := n.waitFor(wctx, w, what); err != nil {
			if grant := reclaim(n, &n.handoffs, &offer); grant != nil {
				n.giveBack(handoff.Name, grant.Code)
			}
			return nil, err
		}
	}
}

// lockHolder is who holds a lock, as its leader's applied state shows.
type lockHolder int

const (
	holderUnknown lockHolder = iota // not looked, or not the leader
	holderNone                      // free
	holderOther                     // held by another request
	holderRequest                   // held by the asking request (a retry)
)
