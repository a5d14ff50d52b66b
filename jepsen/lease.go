package jepsen

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"time"
)

// Lease operation names (acquire and release are the lock workload's).
const (
	// fRenew is one keep-alive of a holder's lock.
	fRenew = "renew"
	// fStop marks a holder that stops renewing (it stays alive, idle).
	fStop = "stop"
	// fKill is the SIGKILL of a holder process, from signal to reaping.
	fKill = "kill"
)

// leaseArgs is the value of every lease invoke.
type leaseArgs struct {
	// Holder numbers the holder process; each holder acquires at most
	// once, so it names the hold.
	Holder int `json:"holder"`
	// TTL and Wait are an acquire's ttl and server-side wait.
	TTL  time.Duration `json:"ttl_ns,omitempty"`
	Wait time.Duration `json:"wait_ns,omitempty"`
	// Takeover marks an acquire made right after a holder of the lock died.
	Takeover bool `json:"takeover,omitempty"`
	// Fence is the hold's fence (renew, release, stop, kill).
	Fence uint64 `json:"fence,omitempty"`
	// InFlight marks a kill sent while a renewal was in flight.
	InFlight bool `json:"in_flight,omitempty"`
}

// leaseWorkload has holders, each a separate process (a lease holder),
// take one of a few named locks with a short ttl, renew it a few times
// (each renewal one request the harness records), and then end in one of
// three ways: release it; stop renewing while staying alive; or be killed
// with SIGKILL (sometimes with a renewal in flight). After a death the
// same worker starts a new holder that waits for the lock (a takeover),
// which may die in turn; a stopped holder sometimes renews once more
// after the takeover (a zombie). The checker (checkLease) finds grants
// made before the previous holder's lease could have run out, and
// measures how long a dead holder's lock took to be taken over.
type leaseWorkload struct {
	cfg   *Config
	names []string
	// holders numbers holder processes.
	holders atomic.Int64
}

// maxChain bounds the holders that die in a row in one Step.
const maxChain = 3

func newLease(cfg *Config) workload {
	w := &leaseWorkload{cfg: cfg}
	for i := range cfg.LockNames {
		w.names = append(w.names, fmt.Sprintf("jepsen/lease/%d", i))
	}
	return w
}

func (w *leaseWorkload) Setup(context.Context, *process) error { return nil }

func (w *leaseWorkload) Final(context.Context, *process) {}

// leaseHold is a holder process and the lock it holds.
type leaseHold struct {
	agent leaseAgent
	id    int
	name  string
	code  string
	fence uint64
	ttl   time.Duration
}

// takeoverWait is how long a new holder waits for a dead holder's lock:
// the checker's bound plus a second.
func (w *leaseWorkload) takeoverWait() time.Duration {
	return time.Duration(float64(w.cfg.LeaseTTL)*(1+w.cfg.ClockDrift)) + w.cfg.ElectionTimeout + time.Second
}

func (w *leaseWorkload) Step(ctx context.Context, p *process) {
	name := w.names[p.Rand.IntN(len(w.names))]
	// A plain acquire queues for up to a ttl; a takeover waits long
	// enough for the dead holder's lock to expire.
	h := w.acquire(ctx, p, name, w.cfg.LeaseTTL, false)
	for chain := 0; h != nil; chain++ {
		if !w.renewSome(ctx, p, h) {
			w.closeAgent(ctx, h.agent)
			return
		}
		x := p.Rand.IntN(100)
		switch {
		case x < 40 || chain >= maxChain || p.stopping():
			w.release(ctx, p, h)
			return
		case x < 70:
			w.kill(ctx, p, h)
			h = w.acquire(ctx, p, name, w.takeoverWait(), true)
		default:
			p.complete(p.invoke(fStop, name, leaseArgs{Holder: h.id, Fence: h.fence}), OK, nil, nil)
			next := w.acquire(ctx, p, name, w.takeoverWait(), true)
			if p.Rand.IntN(2) == 0 {
				// A zombie: the stopped holder wakes up and renews.
				w.renew(ctx, p, h)
			}
			w.closeAgent(ctx, h.agent)
			h = next
		}
	}
}

// startAgent starts a lease holder.
func (w *leaseWorkload) startAgent(p *process) (leaseAgent, error) {
	if w.cfg.InProcessHolders {
		return startMemAgent(p.endpoints, w.cfg.DialOptions), nil
	}
	return startProcAgent(w.cfg.Binary, []string{"jepsen", "lease-holder", "--endpoints", strings.Join(p.endpoints, ",")}, w.cfg.Env)
}

// acquire starts a holder and has it acquire name, waiting up to wait on
// the server; an unknown outcome is retried with the same request id. It
// returns the hold, or nil (the holder then is gone: a grant we never
// learned of expires by itself).
func (w *leaseWorkload) acquire(ctx context.Context, p *process, name string, wait time.Duration, takeover bool) *leaseHold {
	agent, err := w.startAgent(p)
	if err != nil {
		w.cfg.Logger.Warn("jepsen: lease holder did not start", "err", err)
		sleep(ctx, 100*time.Millisecond)
		return nil
	}
	h := &leaseHold{agent: agent, id: int(w.holders.Add(1)), name: name}
	inv := p.invoke(fAcquire, name, leaseArgs{Holder: h.id, TTL: w.cfg.LeaseTTL, Wait: wait, Takeover: takeover})
	req := holderRequest{Op: holderAcquire, Name: name, TTL: w.cfg.LeaseTTL, Wait: wait,
		Timeout: p.OpTimeout + wait, RequestID: newRequestID()}
	resp := w.retry(ctx, p, agent, req, 2*p.OpTimeout+wait)
	if resp.Type != OK {
		p.complete(inv, resp.Type, nil, resp.err())
		w.killAgent(ctx, agent)
		return nil
	}
	h.code, h.fence, h.ttl = resp.Code, resp.Fence, resp.TTL
	p.complete(inv, OK, lockResult{Fence: h.fence, TTL: h.ttl}, nil)
	return h
}

// retry calls the holder until it answers ok or fail, or budget has
// passed; a fail after an unknown answer is unknown (the first attempt
// may have done the work). A holder that does not answer at all is
// killed, and the answer is unknown.
func (w *leaseWorkload) retry(ctx context.Context, p *process, agent leaseAgent, req holderRequest, budget time.Duration) holderResponse {
	deadline := time.Now().Add(budget)
	ambiguous := false
	for {
		resp := w.call(ctx, agent, req)
		switch {
		case resp.Type == Fail && ambiguous:
			resp.Type, resp.Error = Info, "after an unknown outcome: "+resp.Error
			return resp
		case resp.Type != Info || resp.noAnswer || ctx.Err() != nil || time.Now().After(deadline):
			return resp
		}
		ambiguous = true
		sleep(ctx, 100*time.Millisecond)
	}
}

// call sends one request and waits for its answer, which the holder gives
// within the request's timeout; a holder silent past that is killed, so
// that no late answer is taken for the next request's.
func (w *leaseWorkload) call(ctx context.Context, agent leaseAgent, req holderRequest) holderResponse {
	cctx, cancel := context.WithTimeout(ctx, req.Timeout+time.Second)
	defer cancel()
	resp := agent.call(cctx, req)
	if cctx.Err() != nil {
		w.killAgent(ctx, agent)
		resp.noAnswer = true
	}
	return resp
}

// renewSome renews h a few times, a third of the ttl apart; it reports
// whether every renewal succeeded.
func (w *leaseWorkload) renewSome(ctx context.Context, p *process, h *leaseHold) bool {
	for range p.Rand.IntN(5) {
		if p.stopping() {
			break
		}
		sleep(ctx, h.ttl/3-h.ttl/20+time.Duration(p.Rand.Int64N(int64(h.ttl/10)+1)))
		if w.renew(ctx, p, h) != OK {
			return false
		}
	}
	return true
}

// renew sends one keep-alive for h's lock and records it.
func (w *leaseWorkload) renew(ctx context.Context, p *process, h *leaseHold) OpType {
	inv := p.invoke(fRenew, h.name, leaseArgs{Holder: h.id, Fence: h.fence})
	resp := w.call(ctx, h.agent, holderRequest{Op: holderRenew, Name: h.name, Code: h.code, Timeout: p.OpTimeout})
	var result any
	if resp.Type == OK {
		result = lockResult{Fence: h.fence, TTL: resp.TTL}
	}
	p.complete(inv, resp.Type, result, resp.err())
	return resp.Type
}

// release releases h's lock and ends its holder.
func (w *leaseWorkload) release(ctx context.Context, p *process, h *leaseHold) {
	inv := p.invoke(fRelease, h.name, leaseArgs{Holder: h.id, Fence: h.fence})
	resp := w.retry(ctx, p, h.agent, holderRequest{Op: holderRelease, Name: h.name, Code: h.code,
		Timeout: p.OpTimeout, RequestID: newRequestID()}, 3*p.OpTimeout)
	p.complete(inv, resp.Type, nil, resp.err())
	w.closeAgent(ctx, h.agent)
}

// kill kills h's holder, one time in three with a renewal in flight.
func (w *leaseWorkload) kill(ctx context.Context, p *process, h *leaseHold) {
	inFlight := p.Rand.IntN(3) == 0
	if inFlight {
		inv := p.invoke(fRenew, h.name, leaseArgs{Holder: h.id, Fence: h.fence})
		err := h.agent.send(holderRequest{Op: holderRenew, Name: h.name, Code: h.code, Timeout: p.OpTimeout})
		sleep(ctx, time.Duration(p.Rand.Int64N(int64(3*time.Millisecond))))
		if err == nil {
			err = errHolderKilled
		}
		// Unknown: the renewal may reach the server at any later time.
		p.complete(inv, Info, nil, err)
	}
	inv := p.invoke(fKill, h.name, leaseArgs{Holder: h.id, Fence: h.fence, InFlight: inFlight})
	err := w.killAgent(ctx, h.agent)
	p.complete(inv, outcome(err), nil, err)
}

// errHolderKilled completes a renewal in flight when its holder is killed.
var errHolderKilled = fmt.Errorf("jepsen: lease holder killed with the renewal in flight")

// killAgent kills a holder and waits until it is gone.
func (w *leaseWorkload) killAgent(ctx context.Context, agent leaseAgent) error {
	kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	err := agent.kill(kctx)
	if err != nil {
		w.cfg.Logger.Warn("jepsen: lease holder", "err", err)
	}
	return err
}

// closeAgent ends a holder gracefully.
func (w *leaseWorkload) closeAgent(ctx context.Context, agent leaseAgent) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer cancel()
	if err := agent.close(cctx); err != nil {
		w.cfg.Logger.Warn("jepsen: lease holder", "err", err)
	}
}
