package kv

import (
	"errors"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/opencluster/opencluster/rpc/cmdpb"
)

// Serving acknowledgements during a round's fsync.
//
// A round's log fsync is most of its time under load, and the scheduler
// would sit through it idle. Meanwhile followers' acknowledgements reach
// this node for groups it leads that are not in the round: their entries
// are durable here already, so an acknowledgement may commit them. Left
// in the inbox, it would wait for the fsync to end and for the next
// round, half a round on average, before its entries were applied and
// their proposers answered: on a three-node cluster under load, the
// leader's part of every write's wait. serveAcks steps such
// acknowledgements at once and runs a round of the groups they touched.
//
// Only acknowledgements of a leader in its current term are taken: they
// cannot change a group's term, vote or role, nor, with no proposal
// handed over meanwhile, give it entries to persist, so the round they
// start moves commit indexes and applies, and its log write (the commit
// index) needs no fsync of its own. Should a Ready still carry entries,
// that round syncs them before it sends or advances, as any round does.
// Every other message, and any message of a group in the syncing round
// or following one held back, waits in the inbox, in order, for the next
// cycle.

// syncWaitServingAcks waits for the fsync of logBatch, the log write of
// the round of work, serving acknowledgements (serveAcks) whenever
// messages arrive meanwhile.
func (s *scheduler) syncWaitServingAcks(logBatch *pebble.Batch, work []readyWork) error {
	synced := make(chan error, 1)
	go func() { synced <- logBatch.SyncWait() }()
	done := false
	defer func() {
		// Even if serving panicked: the caller closes logBatch, which must
		// not happen while its fsync is in flight.
		if !done {
			<-synced
		}
	}()
	for _, w := range work {
		w.r.inRound = true
	}
	defer func() {
		for _, w := range work {
			w.r.inRound = false
		}
	}()
	woken := false
	var serveErr error
	finish := func(err error) error {
		done = true
		// A wake-up taken here may have been for proposals or functions,
		// which the next cycle takes.
		if woken {
			s.wake()
		}
		return errors.Join(err, serveErr)
	}
	for {
		select {
		case err := <-synced:
			return finish(err)
		case <-s.wakeCh:
			woken = true
			// The round's own work comes first once its fsync has ended
			// (select picks at random among ready cases).
			select {
			case err := <-synced:
				return finish(err)
			default:
			}
			if serveErr == nil {
				serveErr = s.serveAcks()
			}
		}
	}
}

// serveAcks steps the inbox's acknowledgements to leaders in their term
// of groups not in the syncing round, puts every other message back at
// the head of the inbox, and runs a round of the groups it stepped.
func (s *scheduler) serveAcks() error {
	n := s.n
	s.mu.Lock()
	inbox := s.mu.inbox
	s.mu.inbox = nil
	s.mu.Unlock()
	if len(inbox) == 0 {
		return nil
	}
	var later []*cmdpb.GroupMessage
	var held map[uint32]bool // groups with a message held back: the rest wait too
	stepped := 0
	for _, gm := range inbox {
		r := n.groupReplica(gm.GetGroup())
		if r == nil {
			continue // stepInbox would drop it too
		}
		if !held[gm.GetGroup()] && !r.inRound {
			if typ, term := messageHeader(gm.GetMessage()); typ == raftpb.MsgAppResp || typ == raftpb.MsgHeartbeatResp {
				if st := r.rn.BasicStatus(); st.RaftState == raft.StateLeader && st.GetTerm() == term {
					n.stepInbox([]*cmdpb.GroupMessage{gm})
					stepped++
					continue
				}
			}
		}
		if held == nil {
			held = make(map[uint32]bool)
		}
		held[gm.GetGroup()] = true
		later = append(later, gm)
	}
	if len(later) > 0 {
		s.mu.Lock()
		s.mu.inbox = append(later, s.mu.inbox...)
		s.mu.Unlock()
	}
	if stepped == 0 {
		return nil
	}
	n.metrics.acksServedDuringSync.Add(float64(stepped))
	_, err := s.round(&s.ackWork, false, false)
	return err
}

// messageHeader reads the type and term of an encoded Raft message
// without decoding the rest (its entries, for an append). Both are
// varint fields ahead of the others; an unreadable message comes back
// as MsgHup with term 0, which no caller takes.
func messageHeader(raw []byte) (raftpb.MessageType, uint64) {
	var typ raftpb.MessageType
	for len(raw) > 0 {
		num, wt, k := protowire.ConsumeTag(raw)
		if k < 0 || num > 4 {
			break
		}
		raw = raw[k:]
		if wt == protowire.VarintType && (num == 1 || num == 4) {
			v, k := protowire.ConsumeVarint(raw)
			if k < 0 {
				break
			}
			raw = raw[k:]
			if num == 4 {
				return typ, v
			}
			typ = raftpb.MessageType(v)
			continue
		}
		if k = protowire.ConsumeFieldValue(num, wt, raw); k < 0 {
			break
		}
		raw = raw[k:]
	}
	return raftpb.MsgHup, 0
}
