package kv

import (
	"bytes"
	"context"
	"sync"

	"github.com/opencluster/opencluster/locks"
	"github.com/opencluster/opencluster/rpc/cmdpb"
)

// A contended named lock changes hands in one Raft round: the waiter at the
// head of the name's queue offers its acquire, and the Release that frees
// the lock carries it (NamedRelease.handoff), so the release and the next
// grant apply together. Without it a grant costs two rounds: the release,
// then the woken waiter's own acquire.
//
// An offer is offered (in handoffs), then either withdrawn by its waiter or
// claimed by one release, which always settles it: granted, or not (the
// waiter then tries on its own, and a retry of an acquire that did apply
// finds its own code and gets the grant back).

// handoffOffer is the head waiter's acquire, waiting for a release.
type handoffOffer struct {
	acquire *cmdpb.NamedAcquire // Ts is the releaser's
	waiter  *locks.Waiter
	// settled receives the claim's outcome, once: the grant, or nil.
	settled chan *cmdpb.Result
}

// handoffs holds at most one offer per lock name: its head waiter's.
type handoffs struct {
	mu     sync.Mutex
	offers map[string]*handoffOffer
}

// offer registers acquire as the head waiter w's offer and returns it.
func (h *handoffs) offer(acquire *cmdpb.NamedAcquire, w *locks.Waiter) *handoffOffer {
	o := &handoffOffer{acquire: acquire, waiter: w, settled: make(chan *cmdpb.Result, 1)}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.offers == nil {
		h.offers = make(map[string]*handoffOffer)
	}
	h.offers[acquire.Name] = o
	return o
}

// withdraw takes o back; false means a release claimed it first, and the
// outcome comes on o.settled.
func (h *handoffs) withdraw(o *handoffOffer) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.offers[o.acquire.Name] != o {
		return false
	}
	delete(h.offers, o.acquire.Name)
	return true
}

// claim takes the offer for name, if any; the caller must settle it.
func (h *handoffs) claim(name string) *handoffOffer {
	h.mu.Lock()
	defer h.mu.Unlock()
	o := h.offers[name]
	delete(h.offers, name)
	return o
}

// settle reports the outcome of a claimed offer's release to its waiter:
// the grant when res granted the offered code, else nil.
func (o *handoffOffer) settle(res *cmdpb.Result) {
	var grant *cmdpb.Result
	if res != nil && res.Error == cmdpb.ErrorCode_OK && res.Handoff != nil &&
		res.Handoff.Error == cmdpb.ErrorCode_OK && bytes.Equal(res.Handoff.Code, o.acquire.Code) {
		grant = res.Handoff
	}
	o.settled <- grant
	o.waiter.Wake()
}

// reclaim ends the waiter's offer *o, if any (setting it to nil): nil if it
// was withdrawn unclaimed or its release did not grant it, else the grant
// it was handed.
func (n *Node) reclaim(o **handoffOffer) *cmdpb.Result {
	offer := *o
	*o = nil
	if offer == nil || n.handoffs.withdraw(offer) {
		return nil
	}
	select {
	case grant := <-offer.settled:
		return grant
	case <-n.stopper:
		return nil
	}
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
