package kv

import (
	"bytes"
	"context"
	"sync"

	"github.com/opencluster/opencluster/locks"
	"github.com/opencluster/opencluster/rpc/cmdpb"
)

// A contended lock changes hands in one Raft round: the waiter at the head
// of the queue offers its request, and the command that frees the lock
// carries it, so the release and the next grant apply together. Without
// it a grant costs two rounds: the release, then the woken waiter's own
// request. A named lock's Release carries its head waiter's acquire
// (NamedRelease.handoff); a ResolveKeys proposed on the bucket's leader
// carries the LockKeys of each released key's head waiter
// (ResolveKeys.handoffs, key_handoff.go).
//
// An offer is offered (in a handoffs registry), then either withdrawn by
// its waiter or claimed by one releasing command, whose proposer always
// settles it: granted, or not (the waiter then tries on its own, and a
// retry of a request that did apply finds its own code and gets the grant
// back).

// handoffOffer is a head waiter's request C, waiting for a release.
type handoffOffer[C any] struct {
	key     string // the lock name or key it waits for
	request C
	waiter  *locks.Waiter
	// settled receives the claim's outcome, once: the grant, or nil.
	settled chan *cmdpb.Result
}

// handoffs holds at most one offer per lock name or key: its head
// waiter's.
type handoffs[C any] struct {
	mu     sync.Mutex
	offers map[string]*handoffOffer[C]
}

// offer registers request as the head waiter w's offer for key.
func (h *handoffs[C]) offer(key string, request C, w *locks.Waiter) *handoffOffer[C] {
	o := &handoffOffer[C]{key: key, request: request, waiter: w, settled: make(chan *cmdpb.Result, 1)}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.offers == nil {
		h.offers = make(map[string]*handoffOffer[C])
	}
	h.offers[key] = o
	return o
}

// withdraw takes o back; false means a release claimed it first, and the
// outcome comes on o.settled.
func (h *handoffs[C]) withdraw(o *handoffOffer[C]) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.offers[o.key] != o {
		return false
	}
	delete(h.offers, o.key)
	return true
}

// claim takes the offer for key, if any; the caller must settle it.
func (h *handoffs[C]) claim(key string) *handoffOffer[C] {
	return h.claimIf(key, func(C) bool { return true })
}

// claimIf is claim, for an offer whose request ok accepts; another is left
// in place.
func (h *handoffs[C]) claimIf(key string, ok func(C) bool) *handoffOffer[C] {
	h.mu.Lock()
	defer h.mu.Unlock()
	o := h.offers[key]
	if o == nil || !ok(o.request) {
		return nil
	}
	delete(h.offers, key)
	return o
}

// settle reports a claimed offer's outcome to its waiter: the grant its
// request got, or nil if the release did not apply it.
func (o *handoffOffer[C]) settle(grant *cmdpb.Result) {
	o.settled <- grant
	o.waiter.Wake()
}

// reclaim ends the waiter's offer *o from h, if any (setting it to nil):
// nil if it was withdrawn unclaimed or its release did not grant it, else
// the grant it was handed.
func reclaim[C any](n *Node, h *handoffs[C], o **handoffOffer[C]) *cmdpb.Result {
	offer := *o
	*o = nil
	if offer == nil || h.withdraw(offer) {
		return nil
	}
	select {
	case grant := <-offer.settled:
		return grant
	case <-n.stopper:
		return nil
	}
}

// namedGrant is the grant a release's result res gave the acquire with
// code, if any.
func namedGrant(res *cmdpb.Result, code []byte) *cmdpb.Result {
	if res != nil && res.Error == cmdpb.ErrorCode_OK && res.Handoff != nil &&
		res.Handoff.Error == cmdpb.ErrorCode_OK && bytes.Equal(res.Handoff.Code, code) {
		return res.Handoff
	}
	return nil
}

// giveBack releases a lock handed to a waiter that left as it was handed
// (its deadline, set by the releaser, frees it if this fails). Until the
// release is done the code is in givingBack, so that a retry of the
// waiter's acquire does not take the grant back as it is released.
func (n *Node) giveBack(name string, code []byte) {
	n.givingBack.add(code)
	n.goBackground(func(ctx context.Context) {
		defer n.givingBack.remove(code)
		if err := n.expireOrRelease(ctx, name, code, false); err != nil {
			n.log.Warn("releasing a lock handed to a waiter that left", "lock", name, "err", err)
		}
	})
}

// codeSet is a set of lock codes, safe for concurrent use.
type codeSet struct {
	mu    sync.Mutex
	codes map[string]struct{}
}

func (s *codeSet) add(code []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.codes == nil {
		s.codes = make(map[string]struct{})
	}
	s.codes[string(code)] = struct{}{}
}

func (s *codeSet) remove(code []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.codes, string(code))
}

func (s *codeSet) has(code []byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.codes[string(code)]
	return ok
}
