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
	n  *Node
	mu struct {
		sync.Mutex
		oracle *ts.Oracle
		// ready: this node leads the meta group and reset the oracle.
		ready   bool
		readyCh chan struct{}
		raising bool
		// raisedCh is closed when a bound raise finishes.
		raisedCh chan struct{}
	}
}

func newTSOService(n *Node) *tsoService {
	t := &tsoService{n: n}
	t.mu.oracle = ts.NewOracle(ts.DefaultWindow)
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
// from the meta leader's (through Remote).
func (t *tsoService) now(ctx context.Context) (ts.Timestamp, error) {
	for {
		t.mu.Lock()
		if !t.mu.ready {
			ch := t.mu.readyCh
			t.mu.Unlock()
			if leader := t.remoteLeader(); leader != 0 {
				return t.n.cfg.Remote.Timestamp(ctx, leader)
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
		now := t.n.cfg.Clock.Now()
		if bound, need := t.mu.oracle.NeedBound(now); need && !t.mu.raising {
			t.mu.raising = true
			t.n.goBackground(func(ctx context.Context) { t.raise(ctx, bound) })
		}
		if first, ok := t.mu.oracle.Next(now, 1); ok {
			t.mu.Unlock()
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
	default:
		return nil, fmt.Errorf("kv: meta group cannot apply %T", cmd.Body)
	}
	if err := mvcc.PutProto(b, mvcc.MetaKey("state"), state); err != nil {
		return nil, err
	}
	return &cmdpb.Result{Ts: state.TsoBound}, nil
}
