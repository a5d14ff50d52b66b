package kv

import (
	"fmt"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/opencluster/opencluster/locks"
	"github.com/opencluster/opencluster/rpc/cmdpb"
)

// scheduler drives every Raft group of a node from one goroutine: it ticks
// them, hands them proposals, persists all their new entries in one synced
// batch and applies all committed entries in one batch.
type scheduler struct {
	n      *Node
	wakeCh chan struct{} // buffered(1): a pending wake-up
	// compactEvery: truncate a group's log once this many entries are
	// applied beyond its first index.
	compactEvery uint64
	mu           struct {
		sync.Mutex
		// fns run on the scheduler goroutine at the next cycle (they may
		// touch RawNodes).
		fns []func()
		// inbox holds Raft messages from other nodes, stepped at the next
		// cycle.
		inbox []*cmdpb.GroupMessage
	}
	// ticks counts ticks, to run the cluster maintenance every few.
	ticks int
	// ticked: a tick since the last cycle, which may have left any group
	// a Ready (heartbeats, elections), so the cycle asks every group.
	ticked bool
	// work is the cycle's Ready list, kept between cycles so that a
	// Ready (a large struct) is not reallocated for every group every
	// cycle; cleared after each cycle so it pins no entries.
	work []readyWork
	// ackWork is the Ready list of the rounds run while a round's log
	// write is being synced (serveAcks).
	ackWork []readyWork
}

func (s *scheduler) wake() {
	select {
	case s.wakeCh <- struct{}{}:
	default:
	}
}

// run is the scheduler goroutine; it returns when the node stops.
func (s *scheduler) run() {
	ticker := time.NewTicker(s.n.cfg.TickInterval)
	defer ticker.Stop()
	for {
		select {
		case <-s.n.stopper:
			return
		case <-ticker.C:
			for _, r := range s.n.replicas {
				r.rn.Tick()
			}
			s.ticked = true
			if s.ticks++; s.ticks%maintainEveryTicks == 0 {
				s.n.maintain()
				s.n.establishVersionBounds()
			}
		case <-s.wakeCh:
		}
		if k := s.n.cfg.Knobs; k != nil && k.BeforeCycle != nil {
			k.BeforeCycle(s.n.id)
		}
		if err := s.cycle(); err != nil {
			// Storage failures leave state unknown: stop rather than risk
			// acknowledging what is not durable.
			panic(fmt.Sprintf("kv: scheduler: %v", err))
		}
	}
}

type readyWork struct {
	r  *replica
	rd raft.Ready
}

// cycle runs one round of Ready handling for every group.
func (s *scheduler) cycle() error {
	n := s.n
	start := time.Now()
	s.mu.Lock()
	fns, inbox := s.mu.fns, s.mu.inbox
	s.mu.fns, s.mu.inbox = nil, nil
	s.mu.Unlock()
	for _, fn := range fns {
		fn()
	}
	// Only a group that a RawNode call touched can have a Ready: asking
	// all 65 groups every cycle was 4% of the CPU under transfers. A tick
	// or a submitted function (elections, leader transfers, conf changes,
	// replica resets) may touch any group, so then every group is asked.
	all := s.ticked || len(fns) > 0
	s.ticked = false
	n.stepInbox(inbox)
	for _, r := range n.replicas {
		if r.queued.Swap(false) {
			r.handOff()
			r.touched = true
		}
	}
	ran, err := s.round(&s.work, all, true)
	if ran {
		n.metrics.cycle.Observe(time.Since(start).Seconds())
	}
	return err
}

// round handles the Ready of every group touched since the last round
// (of every group, with all): it persists their entries in one batch,
// synced if any must be, applies their committed entries, sends their
// messages and advances them. It reports whether any group had a Ready.
// buf holds the round's Ready list between rounds. With serve, the round
// serves acknowledgements while its log write is being synced
// (syncWaitServingAcks).
func (s *scheduler) round(buf *[]readyWork, all, serve bool) (bool, error) {
	n := s.n
	work := (*buf)[:0]
	defer func() {
		clear(work)
		*buf = work[:0]
	}()
	var early map[uint64][]*cmdpb.GroupMessage
	// mustSync: the round persists entries, a new term or vote
	// (Ready.MustSync), or a snapshot. A round that only moves commit
	// indexes need not wait for the disk (as etcd's server does): a commit
	// index is recovered from the leader after a crash, and the WAL keeps
	// writes in order, so an applied index never survives without the
	// commit index written before it.
	mustSync := false
	logBatch := n.eng.DB().NewBatch()
	defer logBatch.Close()
	for _, r := range n.replicas {
		if !all && !r.touched {
			continue
		}
		r.touched = false
		if !r.rn.HasReady() {
			continue
		}
		rd := r.rn.Ready()
		r.noteHardState(rd.HardState)
		r.noteConfEntries(rd.Entries)
		// A leader that was leader already at its last Ready (same term,
		// same vote) sends its appends and heartbeats before its own log
		// write is durable, so that the followers' fsyncs overlap its own
		// (Raft thesis §10.2.1; etcd's server does the same). Its own
		// acknowledgement still waits for the write (Advance, below), so
		// nothing commits on a copy that is not durable. Snapshots wait.
		if rd.SoftState == nil && r.rn.BasicStatus().RaftState == raft.StateLeader {
			var err error
			if early, rd.Messages, err = n.outgoing(early, r, rd.Messages, false); err != nil {
				return true, err
			}
		}
		if !raft.IsEmptySnap(rd.Snapshot) {
			mustSync = true
			if err := n.applySnapshot(logBatch, r, rd.Snapshot); err != nil {
				return true, err
			}
		}
		mustSync = mustSync || rd.MustSync
		if err := r.storage.Append(logBatch, rd.Entries, hardStateOrNil(rd.HardState)); err != nil {
			return true, err
		}
		r.setFloors()
		work = append(work, readyWork{r: r, rd: rd})
	}
	for to, msgs := range early {
		n.cfg.Transport.Send(to, msgs)
	}
	if len(work) == 0 {
		return false, nil
	}
	// The round's log write goes to the WAL now and its fsync runs while
	// the committed entries are applied (as etcd's server applies while it
	// saves): an entry a quorum committed may be applied and answered before
	// this node's own copy of newer entries is durable. Crash order holds
	// because the WAL is one sequence: the apply batch is written after
	// this log batch, so no applied index survives without the entries and
	// commit index it stands on. What must wait for the fsync does: the
	// messages sent below (votes, acknowledgements) and Advance.
	syncPending := false
	var syncStart time.Time
	if !logBatch.Empty() {
		if mustSync {
			syncStart = time.Now()
			if err := n.eng.DB().ApplyNoSyncWait(logBatch, pebble.Sync); err != nil {
				return true, err
			}
			syncPending = true
			// A batch must not be closed while its fsync is in flight.
			defer func() {
				if syncPending {
					_ = logBatch.SyncWait()
				}
			}()
		} else if err := logBatch.Commit(pebble.NoSync); err != nil {
			return true, err
		}
	}
	// Leadership changes, before apply so readiness is judged on apply.
	for _, w := range work {
		if !raft.IsEmptySnap(w.rd.Snapshot) {
			w.r.setConfState(w.rd.Snapshot.GetMetadata().GetConfState(), w.rd.Snapshot.GetMetadata().GetIndex())
			w.r.setApplied(w.rd.Snapshot.GetMetadata().GetIndex())
		}
		if ss := w.rd.SoftState; ss != nil {
			w.r.setLeaderID(ss.Lead)
			termStart := uint64(0)
			if ss.RaftState == raft.StateLeader {
				termStart = w.r.rn.BasicStatus().GetCommit()
				if k := len(w.rd.Entries); k > 0 {
					termStart = max(termStart, w.rd.Entries[k-1].GetIndex())
				}
			}
			w.r.setLeader(ss.RaftState == raft.StateLeader, termStart)
		}
	}
	if err := s.apply(work); err != nil {
		return true, err
	}
	if syncPending {
		syncPending = false
		var err error
		if serve {
			err = s.syncWaitServingAcks(logBatch, work)
		} else {
			err = logBatch.SyncWait()
		}
		if err != nil {
			return true, err
		}
		n.metrics.logSync.Observe(time.Since(syncStart).Seconds())
	}
	if err := n.send(work); err != nil {
		return true, err
	}
	again := false
	for _, w := range work {
		w.r.readStates(w.rd.ReadStates)
		w.r.rn.Advance(w.rd)
		// Advance acknowledges the leader's own append, which commits the
		// entries just persisted; apply them now rather than at the next
		// tick (a 100ms stall per write for a lone client).
		if w.r.rn.HasReady() {
			w.r.touched, again = true, true
		}
	}
	if again {
		s.wake()
	}
	return true, nil
}

func hardStateOrNil(hs *raftpb.HardState) *raftpb.HardState {
	if hs == nil || raft.IsEmptyHardState(hs) {
		return nil
	}
	return hs
}

type applied struct {
	r      *replica
	id     uint64
	res    *cmdpb.Result
	effect locks.Effects
}

// apply applies every committed entry of this round in one batch, then
// answers the proposers and wakes waiters (invariant 1).
func (s *scheduler) apply(work []readyWork) error {
	n := s.n
	b := n.eng.NewBatch()
	defer b.Close()
	var done []applied
	lastApplied := make(map[*replica]uint64)
	for _, w := range work {
		for _, e := range w.rd.CommittedEntries {
			switch e.GetType() {
			case raftpb.EntryNormal:
				if len(e.GetData()) == 0 {
					break // a new leader's empty entry
				}
				id, res, eff, err := w.r.apply(b, e)
				if err != nil {
					return fmt.Errorf("group %d index %d: %w", w.r.group, e.GetIndex(), err)
				}
				done = append(done, applied{r: w.r, id: id, res: res, effect: eff})
			case raftpb.EntryConfChange, raftpb.EntryConfChangeV2:
				cc, err := confChangeOf(e)
				if err != nil {
					return err
				}
				cs := w.r.rn.ApplyConfChange(cc)
				if err := w.r.storage.SetConfState(b, cs); err != nil {
					return err
				}
				w.r.setConfState(cs, e.GetIndex())
			}
			lastApplied[w.r] = e.GetIndex()
		}
		if idx, ok := lastApplied[w.r]; ok {
			if err := w.r.storage.SetApplied(b, idx); err != nil {
				return err
			}
		}
	}
	if len(lastApplied) == 0 {
		return nil
	}
	for r := range lastApplied {
		r.keyLocksMayAppear()
	}
	// NoSync: the Raft log is durable; a crash replays from the applied
	// index, which commits atomically with the state it describes.
	if err := b.Commit(pebble.NoSync); err != nil {
		return err
	}
	for r := range lastApplied {
		if err := r.publishKeyLocks(); err != nil {
			return err
		}
	}
	// Publish the applied indexes before answering, so that a proposer
	// reads its own write in anything keyed by them (the meta view).
	for r, idx := range lastApplied {
		r.setApplied(idx)
	}
	for _, a := range done {
		a.r.finish(a.id, a.res, nil)
		n.notify(a.r, a.effect)
	}
	for r, idx := range lastApplied {
		if err := s.maybeCompact(r, idx); err != nil {
			return err
		}
	}
	return nil
}

// maybeCompact truncates a group's log well behind its applied index.
func (s *scheduler) maybeCompact(r *replica, applied uint64) error {
	first, err := r.storage.FirstIndex()
	if err != nil {
		return err
	}
	if applied < first+2*s.compactEvery {
		return nil
	}
	b := s.n.eng.DB().NewBatch()
	defer b.Close()
	if err := r.storage.Compact(b, applied-s.compactEvery); err != nil {
		return err
	}
	return b.Commit(pebble.NoSync)
}

func unmarshalCommand(data []byte, cmd *cmdpb.Command) error {
	if err := proto.Unmarshal(data, cmd); err != nil {
		return fmt.Errorf("kv: corrupt command: %w", err)
	}
	return nil
}

// confChangeOf decodes a configuration-change entry.
func confChangeOf(e *raftpb.Entry) (raftpb.ConfChangeI, error) {
	if e.GetType() == raftpb.EntryConfChange {
		cc := &raftpb.ConfChange{}
		if err := proto.Unmarshal(e.GetData(), cc); err != nil {
			return nil, fmt.Errorf("kv: corrupt conf change: %w", err)
		}
		return cc, nil
	}
	cc := &raftpb.ConfChangeV2{}
	if err := proto.Unmarshal(e.GetData(), cc); err != nil {
		return nil, fmt.Errorf("kv: corrupt conf change: %w", err)
	}
	return cc, nil
}
