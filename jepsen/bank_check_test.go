package jepsen

import "testing"

// The bank checker's tests: three accounts of 10 (total 30).

func bankInit(h *history) {
	h.add(0, fInit, "", bankArgs{Balances: []int64{10, 10, 10}}, 0, 1, OK, nil)
}

func transfer(h *history, p, from, to int, amount int64, t0, t1 int64, typ OpType, version uint64) {
	h.add(p, fTransfer, "", bankArgs{From: from, To: to, Amount: amount}, t0, t1, typ, bankResult{Version: version})
}

func balances(h *history, p int, mode string, final bool, t0, t1 int64, version uint64, b map[int]int64) {
	h.add(p, fBalances, "", bankArgs{Mode: mode, Final: final}, t0, t1, OK, bankResult{Version: version, Balances: b})
}

func validBank() *history {
	h := &history{}
	bankInit(h)
	transfer(h, 1, 0, 1, 3, 10, 20, OK, 100)
	balances(h, 2, readLatest, false, 15, 25, 100, map[int]int64{0: 7, 1: 13, 2: 10})
	transfer(h, 1, 1, 2, 5, 30, 40, Info, 0)
	balances(h, 2, readAtVersion, false, 35, 45, 100, map[int]int64{0: 7, 1: 13, 2: 10})
	balances(h, 3, readLocked, false, 50, 60, 150, map[int]int64{0: 7, 1: 8, 2: 15})
	transfer(h, 1, 2, 0, 4, 50, 60, Fail, 0)
	balances(h, 0, readLatest, true, 100, 110, 200, map[int]int64{0: 7, 1: 8, 2: 15})
	return h
}

func TestBankValid(t *testing.T) {
	wantVerdict(t, validBank().check(t, "bank", CheckOptions{}), Valid)
}

// A read that sees the debit of a transfer but not its credit.
func TestBankPartialTransfer(t *testing.T) {
	h := validBank()
	balances(h, 4, readLatest, false, 31, 32, 120, map[int]int64{0: 7, 1: 8, 2: 10})
	wantVerdict(t, h.check(t, "bank", CheckOptions{}), Invalid, "balances [7 8 10] sum to 25, not 30")
}

func TestBankNegativeAndMissing(t *testing.T) {
	h := validBank()
	balances(h, 4, readLocked, false, 31, 32, 120, map[int]int64{0: -1, 1: 31})
	wantVerdict(t, h.check(t, "bank", CheckOptions{}), Invalid, "account 0 is negative (-1)", "account 2 missing")
}

// Two reads at one snapshot version must agree (repeatable snapshots).
func TestBankSnapshotChanged(t *testing.T) {
	h := validBank()
	balances(h, 4, readAtVersion, false, 70, 80, 100, map[int]int64{0: 10, 1: 10, 2: 10})
	wantVerdict(t, h.check(t, "bank", CheckOptions{}), Invalid, "differ from [7 13 10] read at the same snapshot")
}

func TestBankInconclusive(t *testing.T) {
	wantVerdict(t, validBank().check(t, "bank", CheckOptions{MinOK: 2}), Inconclusive, "only 1 successful transfers (need 2)")

	h := &history{}
	bankInit(h)
	transfer(h, 1, 0, 1, 3, 10, 20, OK, 100)
	balances(h, 2, readLatest, false, 15, 25, 100, map[int]int64{0: 7, 1: 13, 2: 10})
	wantVerdict(t, h.check(t, "bank", CheckOptions{}), Inconclusive, "final read")

	h = &history{}
	balances(h, 2, readLatest, true, 15, 25, 100, map[int]int64{0: 7, 1: 13, 2: 10})
	wantVerdict(t, h.check(t, "bank", CheckOptions{}), Inconclusive, "no successful init")
}
