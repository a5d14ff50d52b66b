package kv

import (
	"bytes"
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

func (h *handoffs) offer(o *handoffOffer) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.offers == nil {
		h.offers = make(map[string]*handoffOffer)
	}
	h.offers[o.acquire.Name] = o
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
