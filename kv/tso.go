package kv

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/opencluster/opencluster/mvcc"
	"github.com/opencluster/opencluster/mvcc/ts"
	"github.com/opencluster/opencluster/rpc/cmdpb"
)

// tsoService is the timestamp oracle, served by the meta group's leader
// (T1, T2): it issues timestamps below a bound persisted through the meta
// group, so a new leader never goes backwards.
type tsoService struct {
	n      *Node
	remote remoteBatcher
	mu     struct {
		sync.Mutex
		oracle *ts.Oracle
		// ready: this node leads the meta group and reset the oracle.
		ready   bool
		readyCh chan struct{}
		raising bool
		// raisedCh is closed when a bound raise finishes.
		raisedCh chan struct{}
		// seen is the newest timestamp this node issued or received.
		seen ts.Timestamp
	}
}

// datingStaleness bounds how old (by this node's clock) a timestamp that
// only dates a record may be; see dating.
const datingStaleness = time.Second

// dating returns a timestamp to date a record by, where no ordering
// against other operations depends on it (a named lock's grant, shown as
// its acquired version; a dedup record, dated for its GC): the newest this
// node has seen, unless that is older than datingStaleness, then a fresh
// one. It is not above any timestamp the oracle issues later, so it is
// never in the future; it saves a named lock's Acquire and Release the
// round trip to the oracle that a node not leading the meta group pays.
func (t *tsoService) dating(ctx context.Context) (ts.Timestamp, error) {
	if seen, ok := t.recent(); ok {
		return seen, nil
	}
	return t.now(ctx)
}

// recent returns the newest timestamp this node has seen, if it is less
// than datingStaleness old by this node's clock.
func (t *tsoService) recent() (ts.Timestamp, bool) {
	t.mu.Lock()
	seen := t.mu.seen
	t.mu.Unlock()
	return seen, seen != 0 && t.n.cfg.OracleClock.Now().Sub(seen.Physical()) < datingStaleness
}

// saw records a timestamp issued or received.
func (t *tsoService) saw(last ts.Timestamp) {
	t.mu.Lock()
	t.mu.seen = max(t.mu.seen, last)
	t.mu.Unlock()
}

func newTSOService(n *Node) *tsoService {
	t := &tsoService{n: n}
	t.mu.oracle = ts.NewOracle(ts.DefaultWindow)
	t.remote.t = t
	t.mu.readyCh = make(chan struct{})
	t.mu.raisedCh = make(chan struct{})
	return t
}

// reset starts serving from the persisted bound (meta leader ready).
func (t *tsoService) reset(bound uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.mu.oracle.Reset(ts.Timestamp(bound))
	if !t.mu.ready {
		t.mu.ready = true
		close(t.mu.readyCh)
	}
}

// lost stops serving (meta leadership lost).
func (t *tsoService) lost() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.mu.ready {
		t.mu.ready = false
		t.mu.readyCh = make(chan struct{})
	}
}

// isReady reports whether this node serves the oracle (it is the ready
// meta leader).
func (t *tsoService) isReady() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.mu.ready
}

// now returns a fresh timestamp, larger than every timestamp issued before
// the call: from this node's oracle when it leads the meta group, else
// from the meta leader's (through Remote, concurrent calls sharing one
// round trip).
func (t *tsoService) now(ctx context.Context) (ts.Timestamp, error) {
	return t.nowN(ctx, 1, true)
}

// nowN returns the first of count consecutive fresh timestamps; remote
// allows asking the meta leader when this node does not lead it.
func (t *tsoService) nowN(ctx context.Context, count int, remote bool) (ts.Timestamp, error) {
	for {
		t.mu.Lock()
		if !t.mu.ready {
			ch := t.mu.readyCh
			t.mu.Unlock()
			if leader := t.remoteLeader(); leader != 0 && remote {
				return t.remote.get(ctx, leader)
			}
			select {
			case <-ch:
				continue
			case <-time.After(5 * time.Millisecond):
				continue // the meta leader may be known by now
			case <-ctx.Done():
				return 0, fmt.Errorf("%w: no timestamp oracle: %w", ErrUnavailable, ctx.Err())
			case <-t.n.stopper:
				return 0, fmt.Errorf("%w: node stopping", ErrUnavailable)
			}
		}
		now := t.n.cfg.OracleClock.Now()
		if bound, need := t.mu.oracle.NeedBound(now); need && !t.mu.raising {
			t.mu.raising = true
			t.n.goBackground(func(ctx context.Context) { t.raise(ctx, bound) })
		}
		if first, ok := t.mu.oracle.Next(now, count); ok {
			t.mu.seen = max(t.mu.seen, first+ts.Timestamp(count-1))
			t.mu.Unlock()
			if err := t.confirmLeading(ctx); err != nil {
				return 0, err
			}
			return first, nil
		}
		ch := t.mu.raisedCh
		t.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return 0, fmt.Errorf("%w: timestamp oracle bound not persisted: %w", ErrUnavailable, ctx.Err())
		case <-t.n.stopper:
			return 0, fmt.Errorf("%w: node stopping", ErrUnavailable)
		}
	}
}

// confirmLeading returns once this node is known to have led the meta
// group at a moment after the timestamps it just issued: under its read
// lease (checked now, after issuing), or after a ReadIndex round. Only
// then are they below every timestamp a successor issues, in real time as
// well as in value (T1): a successor starts from the persisted bound,
// while a deposed leader that has not heard of it yet (its Raft loop was
// paused or cut off) would go on issuing from its old window, below what
// the successor has handed out already.
func (t *tsoService) confirmLeading(ctx context.Context) error {
	if _, _, ok := t.n.meta.leased(); ok {
		return nil
	}
	if err := t.n.meta.linearizable(ctx); err != nil {
		return fmt.Errorf("%w: %w: confirming the timestamp oracle's leadership: %w", ErrUnavailable, ErrNotApplied, err)
	}
	return nil
}

// remoteBatcher coalesces the timestamp requests of concurrent callers on
// a node that does not lead the meta group: while one round trip is in
// flight, new callers queue; the next round trip asks for all of them at
// once. Every caller's timestamp is issued by a round trip sent after its
// call began, so it is as fresh as its own round trip would be.
type remoteBatcher struct {
	t  *tsoService
	mu struct {
		sync.Mutex
		queue    []chan tsResult
		inFlight bool
		// leader is the meta leader as the newest caller saw it: each
		// round trip goes there. Callers that retry keep the queue from
		// emptying, so a leader read once, when the loop started, would
		// be asked on after it moved; the callers read it afresh each
		// time (tsoService.remoteLeader).
		leader uint64
	}
}

type tsResult struct {
	ts  ts.Timestamp
	err error
}

// get returns one fresh timestamp from the meta leader, leader as the
// caller sees it now.
func (b *remoteBatcher) get(ctx context.Context, leader uint64) (ts.Timestamp, error) {
	ch := make(chan tsResult, 1)
	b.mu.Lock()
	b.mu.queue = append(b.mu.queue, ch)
	b.mu.leader = leader
	if !b.mu.inFlight {
		b.mu.inFlight = true
		b.t.n.goBackground(b.run)
	}
	b.mu.Unlock()
	select {
	case r := <-ch:
		return r.ts, r.err
	case <-ctx.Done():
		return 0, fmt.Errorf("%w: timestamp from node %d: %w", ErrUnavailable, leader, ctx.Err())
	case <-b.t.n.stopper:
		return 0, fmt.Errorf("%w: node stopping", ErrUnavailable)
	}
}

// run sends round trips until the queue is empty, each to the leader the
// newest caller named.
func (b *remoteBatcher) run(ctx context.Context) {
	for {
		b.mu.Lock()
		batch, leader := b.mu.queue, b.mu.leader
		b.mu.queue = nil
		if len(batch) == 0 {
			b.mu.inFlight = false
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		start := time.Now()
		first, err := b.t.n.cfg.Remote.Timestamp(rctx, leader, len(batch))
		cancel()
		if err == nil {
			// Answered trips only: a failed one may have waited out the
			// timeout for a meta leader that moved.
			b.t.n.metrics.tsoRemote.Observe(time.Since(start).Seconds())
			b.t.saw(first + ts.Timestamp(len(batch)-1))
		}
		for i, ch := range batch {
			ch <- tsResult{ts: first + ts.Timestamp(i), err: err}
		}
	}
}

// remoteLeader returns the meta leader when it is another node that
// Remote can reach, else 0.
func (t *tsoService) remoteLeader() uint64 {
	if t.n.cfg.Remote == nil {
		return 0
	}
	if leader, _, _ := t.n.meta.membership(); leader != t.n.id {
		return leader
	}
	return 0
}

// raise persists a new bound through the meta group.
func (t *tsoService) raise(ctx context.Context, bound ts.Timestamp) {
	_, err := t.n.meta.propose(ctx, &cmdpb.Command{Body: &cmdpb.Command_TsoBound{TsoBound: &cmdpb.TSOBound{Bound: uint64(bound)}}})
	t.mu.Lock()
	defer t.mu.Unlock()
	if err == nil {
		t.mu.oracle.SetBound(bound)
	} else {
		t.n.log.Warn("raising the timestamp bound", "err", err)
	}
	t.mu.raising = false
	close(t.mu.raisedCh)
	t.mu.raisedCh = make(chan struct{})
}

// applyMeta applies a meta-group command.
func applyMeta(b mvcc.ReadWriter, cmd *cmdpb.Command) (*cmdpb.Result, error) {
	state := &cmdpb.MetaState{}
	if _, err := mvcc.GetProto(b, mvcc.MetaKey("state"), state); err != nil {
		return nil, err
	}
	switch c := cmd.Body.(type) {
	case *cmdpb.Command_TsoBound:
		state.TsoBound = max(state.TsoBound, c.TsoBound.Bound)
	case *cmdpb.Command_Noop:
	case *cmdpb.Command_RegisterNode:
		applyRegister(state, c.RegisterNode)
	case *cmdpb.Command_UpdatePlacement:
		applyPlacement(state, c.UpdatePlacement.GetPlacement())
	case *cmdpb.Command_SetNodeState:
		applySetNodeState(state, c.SetNodeState)
	case *cmdpb.Command_RecordMove:
		applyRecordMove(state, c.RecordMove)
	default:
		return nil, fmt.Errorf("kv: meta group cannot apply %T", cmd.Body)
	}
	if err := mvcc.PutProto(b, mvcc.MetaKey("state"), state); err != nil {
		return nil, err
	}
	return &cmdpb.Result{Ts: state.TsoBound}, nil
}
