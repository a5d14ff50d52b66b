package jepsen

import "testing"

// The fenced checker's tests: one key guarded by lock L.

func fencedWriteOp(h *history, p int, value string, fence uint64, zombie bool, t0, t1 int64, typ OpType, version uint64) {
	h.add(p, fFencedWrite, "L/data", fencedArgs{Value: value, Lock: "L", Fence: fence, Zombie: zombie}, t0, t1, typ, fencedResult{Version: version})
}

func fencedFinal(h *history, value string, version uint64, t int64) {
	h.add(99, fFencedRead, "L/data", nil, t, t+1, OK, fencedResult{Found: value != "", Value: value, Version: version})
}

func checkFencedOnly(t *testing.T, h *history) Result {
	t.Helper()
	pairs, err := Pairs(h.build())
	if err != nil {
		t.Fatal(err)
	}
	return checkFenced(t.Context(), pairs, CheckOptions{MinOK: 1})
}

func TestFencedValid(t *testing.T) {
	h := &history{}
	fencedWriteOp(h, 0, "a", 1, false, 0, 10, OK, 100)
	// A zombie (fence 2, expired) writes before its successor's first
	// write: accepted, then overwritten. Fencing allows that.
	fencedWriteOp(h, 1, "b", 2, true, 20, 30, OK, 200)
	fencedWriteOp(h, 2, "c", 3, false, 25, 35, OK, 300)
	// A zombie writing after its successor is refused.
	fencedWriteOp(h, 1, "d", 2, true, 40, 50, Fail, 0)
	fencedWriteOp(h, 3, "e", 4, false, 60, 70, Info, 0)
	fencedFinal(h, "e", 400, 100) // the unknown write landed
	wantVerdict(t, checkFencedOnly(t, h), Valid)
}

// A stale holder's write accepted after its successor's: a lost update
// (what the unfenced control shows).
func TestFencedStaleWriteAccepted(t *testing.T) {
	h := &history{}
	fencedWriteOp(h, 0, "a", 5, false, 0, 10, OK, 100)
	fencedWriteOp(h, 1, "b", 4, true, 20, 30, OK, 200)
	fencedFinal(h, "b", 200, 100)
	wantVerdict(t, checkFencedOnly(t, h), Invalid, "lost update: process 1's write b with fence 4 of L (zombie true) was accepted at version 200, after process 0's write a with fence 5 at version 100")
}

func TestFencedAcknowledgedWriteLost(t *testing.T) {
	h := &history{}
	fencedWriteOp(h, 0, "a", 1, false, 0, 10, OK, 100)
	fencedWriteOp(h, 1, "b", 2, false, 20, 30, OK, 200)
	fencedFinal(h, "a", 100, 100)
	wantVerdict(t, checkFencedOnly(t, h), Invalid, "acknowledged write b (version 200) lost")
}

func TestFencedInconclusive(t *testing.T) {
	h := &history{}
	fencedWriteOp(h, 0, "a", 1, false, 0, 10, OK, 100)
	wantVerdict(t, checkFencedOnly(t, h), Inconclusive, "no successful final read")
}

func forgedWriteOp(h *history, p int, value string, t0, t1 int64, typ OpType, version uint64) {
	h.add(p, fFencedWrite, "L/data", fencedArgs{Value: value, Lock: "L", Fence: forgedFenceBase, Forged: true}, t0, t1, typ, fencedResult{Version: version})
}

// Forged writes (tokens L never granted) refused, or of unknown outcome
// and not seen after: valid, and they count for nothing else.
func TestFencedForgedRefused(t *testing.T) {
	h := &history{}
	fencedWriteOp(h, 0, "a", 1, false, 0, 10, OK, 100)
	forgedWriteOp(h, 1, "f1", 20, 30, Fail, 0)
	forgedWriteOp(h, 1, "f2", 40, 50, Info, 0)
	fencedWriteOp(h, 2, "b", 2, false, 60, 70, OK, 200)
	fencedFinal(h, "b", 200, 100)
	wantVerdict(t, checkFencedOnly(t, h), Valid)
}

// A forged write acknowledged, or one of unknown outcome read after
// healing: the store took a token its lock never granted.
func TestFencedForgedAccepted(t *testing.T) {
	h := &history{}
	fencedWriteOp(h, 0, "a", 1, false, 0, 10, OK, 100)
	forgedWriteOp(h, 1, "f1", 20, 30, OK, 150)
	fencedFinal(h, "a", 100, 100)
	wantVerdict(t, checkFencedOnly(t, h), Invalid, "write f1 with token 1099511627776, which L never granted, was acknowledged")

	h = &history{}
	fencedWriteOp(h, 0, "a", 1, false, 0, 10, OK, 100)
	forgedWriteOp(h, 1, "f2", 20, 30, Info, 0)
	fencedFinal(h, "f2", 150, 100)
	wantVerdict(t, checkFencedOnly(t, h), Invalid, "the final read found forged write f2 (version 150)")
}
