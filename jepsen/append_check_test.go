package jepsen

import (
	"slices"
	"strings"
	"testing"
)

// The append checker's tests: hand-made histories in the style of Elle's
// test suite, one per anomaly, each of which must come out INVALID, on
// top of a valid history that must come out VALID. Transactions are
// named T<invoke index> in anomalies; keys are small integers.

func ap(k int, v int64) appendMop { return appendMop{F: mopAppend, Key: k, Value: v} }

// rd is a read of key k that returned l (nothing: the empty list).
func rd(k int, l ...int64) appendMop { return appendMop{F: mopRead, Key: k, List: l} }

// txn records a transaction of process p from t0 to t1; the invoke has
// the micro-operations without the reads' lists.
func txn(h *history, p int, mode string, final bool, t0, t1 int64, typ OpType, mops ...appendMop) {
	versioned(h, p, mode, t0, t1, 0, mops...)
	h.ops[len(h.ops)-2].Value = mustJSON(appendArgs{Mops: h.invoked(mops), Mode: mode, Final: final})
	if typ != OK {
		h.ops[len(h.ops)-1].Type, h.ops[len(h.ops)-1].Value = typ, nil
	}
}

// versioned records an ok transaction with its commit or snapshot
// version.
func versioned(h *history, p int, mode string, t0, t1 int64, version uint64, mops ...appendMop) {
	h.add(p, fAppendTxn, "", appendArgs{Mops: h.invoked(mops), Mode: mode}, t0, t1, OK, appendResult{Mops: mops, Version: version})
}

// invoked strips the reads' results.
func (h *history) invoked(mops []appendMop) []appendMop {
	inv := slices.Clone(mops)
	for i := range inv {
		inv[i].List, inv[i].Garbage = nil, ""
	}
	return inv
}

// locked records a transaction under a restrictive lock.
func locked(h *history, p int, t0, t1 int64, typ OpType, mops ...appendMop) {
	txn(h, p, appendLocked, false, t0, t1, typ, mops...)
}

// final records a read after healing.
func final(h *history, t int64, mops ...appendMop) {
	txn(h, 0, appendSnapshot, true, t, t+1, OK, mops...)
}

// validAppend is a valid history over keys 0, 1 and 2: read-modify-write
// transactions, a lock-free snapshot read, a failed append nobody
// reads, an info append somebody reads (so it committed), an info append
// nobody reads, and the final reads.
func validAppend() *history {
	h := &history{}
	locked(h, 1, 10, 20, OK, ap(0, 1), ap(1, 1))
	locked(h, 2, 25, 35, OK, rd(0, 1), ap(0, 2))
	locked(h, 3, 30, 99, Info, ap(2, 5))
	txn(h, 4, appendSnapshot, false, 40, 45, OK, rd(0, 1, 2), rd(1, 1))
	locked(h, 5, 46, 55, Fail, ap(0, 3))
	locked(h, 6, 50, 60, OK, rd(2, 5), ap(2, 6), rd(2, 5, 6))
	locked(h, 7, 61, 99, Info, ap(1, 7))
	locked(h, 8, 70, 80, OK, rd(1, 1), ap(1, 8), ap(1, 9), rd(1, 1, 8, 9))
	locked(h, 9, 81, 90, OK, rd(2, 5, 6), rd(1, 1, 8, 9))
	final(h, 100, rd(0, 1, 2), rd(1, 1, 8, 9), rd(2, 5, 6))
	return h
}

func TestAppendValid(t *testing.T) {
	res := validAppend().check(t, "append", CheckOptions{})
	wantVerdict(t, res, Valid)
	st := res.Stats
	if st["txn ok appending"] != 4 || st["txn info committed"] != 1 || st["edges ww"] == 0 || st["edges wr"] == 0 || st["edges rw"] == 0 {
		t.Errorf("stats %v", st)
	}
}

// G0: two transactions append to keys 3 and 4 in opposite orders.
func TestAppendG0(t *testing.T) {
	h := validAppend()
	locked(h, 10, 110, 120, OK, ap(3, 10), ap(4, 10))
	locked(h, 11, 111, 121, OK, ap(3, 11), ap(4, 11))
	final(h, 200, rd(3, 10, 11), rd(4, 11, 10))
	wantVerdict(t, h.check(t, "append", CheckOptions{}), Invalid,
		"G0 (write cycle): T", " -ww-> T", "appended 10 to key 3, then T", "appended 11 to key 4, then T")
}

// G1a: a committed read sees the append of a failed transaction.
func TestAppendG1a(t *testing.T) {
	h := validAppend()
	locked(h, 10, 110, 120, OK, rd(0, 1, 2, 3))
	wantVerdict(t, h.check(t, "append", CheckOptions{}), Invalid, "G1a (aborted read)", "with 3 appended by T", "which failed")
}

// G1b: a read ends on an append its transaction followed with another
// to the same key.
func TestAppendG1b(t *testing.T) {
	h := validAppend()
	txn(h, 10, appendSnapshot, false, 85, 86, OK, rd(1, 1, 8))
	wantVerdict(t, h.check(t, "append", CheckOptions{}), Invalid, "G1b (intermediate read)", "ending with 8, but T", "appended [8 9]")
}

// G1c: each of two transactions reads the other's append.
func TestAppendG1c(t *testing.T) {
	h := validAppend()
	locked(h, 10, 110, 120, OK, ap(3, 30), rd(4, 40))
	locked(h, 11, 111, 121, OK, ap(4, 40), rd(3, 30))
	final(h, 200, rd(3, 30), rd(4, 40))
	wantVerdict(t, h.check(t, "append", CheckOptions{}), Invalid, "G1c (circular information flow)", " -wr-> T")
}

// G1c through a transaction with an unknown outcome: its append was read,
// so it committed, and it appended after the reader on another key.
func TestAppendG1cThroughInfo(t *testing.T) {
	h := validAppend()
	locked(h, 10, 110, 199, Info, ap(3, 30), ap(5, 51))
	locked(h, 11, 111, 121, OK, ap(5, 50), rd(3, 30))
	final(h, 200, rd(3, 30), rd(5, 50, 51))
	res := h.check(t, "append", CheckOptions{})
	wantVerdict(t, res, Invalid, "G1c (circular information flow)", " -ww-> T", " -wr-> T")
	if res.Stats["txn info committed"] != 2 {
		t.Errorf("stats %v: want 2 info transactions known committed", res.Stats)
	}
}

// Lost update: two committed transactions read the same list and both
// appended to it (also a G-single cycle).
func TestAppendLostUpdate(t *testing.T) {
	h := validAppend()
	locked(h, 10, 110, 120, OK, rd(3), ap(3, 60))
	locked(h, 11, 111, 121, OK, rd(3), ap(3, 61))
	final(h, 200, rd(3, 60, 61))
	wantVerdict(t, h.check(t, "append", CheckOptions{}), Invalid,
		"lost update: 2 committed transactions read key 3 as [] and appended to it", "appended [60]", "appended [61]",
		"G-single (read skew)")
}

// G-single (read skew): a snapshot read sees one of a transaction's two
// appends.
func TestAppendGSingle(t *testing.T) {
	h := validAppend()
	locked(h, 10, 110, 120, OK, ap(3, 70), ap(4, 70))
	txn(h, 11, appendSnapshot, false, 115, 116, OK, rd(3), rd(4, 70))
	final(h, 200, rd(3, 70), rd(4, 70))
	wantVerdict(t, h.check(t, "append", CheckOptions{}), Invalid, "G-single (read skew): T", " -rw-> T", "read key 3 as [], then T")
}

// G2 (write skew) is allowed under snapshot isolation: noted, not an
// anomaly.
func TestAppendG2Allowed(t *testing.T) {
	h := validAppend()
	locked(h, 10, 110, 120, OK, rd(3), ap(4, 80))
	locked(h, 11, 111, 121, OK, rd(4), ap(3, 81))
	final(h, 200, rd(3, 81), rd(4, 80))
	res := h.check(t, "append", CheckOptions{})
	wantVerdict(t, res, Valid)
	if res.Stats["G2 cycles (allowed)"] != 1 || len(res.Notes) != 1 || !strings.Contains(res.Notes[0], "-rw->") {
		t.Errorf("stats %v notes %q: want one G2 cycle noted", res.Stats, res.Notes)
	}
}

// Versions must agree with the dependencies: a transaction commits above
// whatever it depends on, and a snapshot read sees exactly the commits at
// or below its version.
func TestAppendVersions(t *testing.T) {
	h := validAppend()
	versioned(h, 10, appendLocked, 110, 120, 50, ap(3, 1))
	versioned(h, 11, appendSnapshot, 121, 122, 50, rd(3, 1))
	versioned(h, 12, appendSnapshot, 121, 122, 49, rd(3))
	versioned(h, 13, appendLockedSnapshot, 130, 140, 60, rd(3, 1), ap(3, 2))
	final(h, 200, rd(3, 1, 2))
	res := h.check(t, "append", CheckOptions{})
	wantVerdict(t, res, Valid)
	if res.Stats["edges with versions"] != 4 {
		t.Errorf("stats %v: want 4 edges checked against versions", res.Stats)
	}

	versioned(h, 14, appendSnapshot, 150, 151, 55, rd(3, 1, 2))
	versioned(h, 15, appendSnapshot, 150, 151, 60, rd(3, 1))
	wantVerdict(t, h.check(t, "append", CheckOptions{}), Invalid,
		"version order: T", " -wr-> T", "is at version 60 and T", "at 55: T", "appended 2 to key 3, and T",
		" -rw-> T", "is at version 60 and T", "read key 3 as [1], then T")
}

func TestAppendIncompatibleOrder(t *testing.T) {
	h := validAppend()
	locked(h, 10, 110, 120, OK, rd(1, 1, 7))
	wantVerdict(t, h.check(t, "append", CheckOptions{}), Invalid, "incompatible order", "as [1 7], which is not a prefix of [1 8 9]")
}

// Internal: a transaction does not see its own append.
func TestAppendInternal(t *testing.T) {
	h := validAppend()
	locked(h, 10, 110, 120, OK, ap(3, 90))
	locked(h, 11, 121, 130, OK, rd(3, 90), ap(3, 91), rd(3, 90))
	locked(h, 12, 131, 140, OK, ap(3, 92), rd(3, 90, 91))
	final(h, 200, rd(3, 90, 91, 92))
	wantVerdict(t, h.check(t, "append", CheckOptions{}), Invalid,
		"internal: T", "read key 3 as [90], but its earlier read and appends make it [90 91]",
		"read key 3 as [90 91], without its own appends [92]")
}

// Lost append: an acknowledged append is missing from the final read.
func TestAppendLostAppend(t *testing.T) {
	h := validAppend()
	locked(h, 10, 110, 120, OK, ap(3, 95))
	final(h, 200, rd(3))
	wantVerdict(t, h.check(t, "append", CheckOptions{}), Invalid, "lost append: T", "appended 95 to key 3 and committed, but the final read found []")
}

// A committed transaction's two appends, with another's in place of the
// first: a non-atomic commit (and a lost append).
func TestAppendNonAtomicCommit(t *testing.T) {
	h := validAppend()
	locked(h, 10, 110, 120, OK, ap(3, 100), ap(3, 101))
	locked(h, 11, 121, 130, OK, ap(3, 102))
	final(h, 200, rd(3, 100, 102))
	wantVerdict(t, h.check(t, "append", CheckOptions{}), Invalid,
		"non-atomic commit: T", "appended [100 101] to key 3, but its version order is [100 102]", "lost append")
}

func TestAppendBadElements(t *testing.T) {
	h := validAppend()
	locked(h, 10, 110, 120, OK, rd(2, 5, 5))
	locked(h, 11, 121, 130, OK, rd(0, 1, 2, 999))
	locked(h, 12, 131, 140, OK, appendMop{F: mopRead, Key: 1, Garbage: "1,x"})
	wantVerdict(t, h.check(t, "append", CheckOptions{}), Invalid,
		"duplicate elements", "with 5 twice", "unknown element", "nobody appended 999", `garbage: T`, `"1,x"`)
}

func TestAppendInconclusive(t *testing.T) {
	wantVerdict(t, validAppend().check(t, "append", CheckOptions{MinOK: 5}), Inconclusive,
		"only 4 successful transactions that append (need 5)")

	h := validAppend()
	locked(h, 10, 110, 120, OK, ap(3, 1))
	wantVerdict(t, h.check(t, "append", CheckOptions{}), Inconclusive, "final read after healing did not succeed for 1 keys")

	h = &history{}
	locked(h, 1, 10, 20, Fail, ap(0, 1))
	final(h, 100, rd(0))
	wantVerdict(t, h.check(t, "append", CheckOptions{}), Inconclusive, "only 0 successful transactions that append")
}

// A completion whose micro-operations differ from its invoke's is a
// malformed history.
func TestAppendMalformed(t *testing.T) {
	h := validAppend()
	h.add(10, fAppendTxn, "", appendArgs{Mops: []appendMop{ap(3, 1)}}, 110, 120, OK, appendResult{Mops: []appendMop{ap(3, 2)}})
	wantVerdict(t, h.check(t, "append", CheckOptions{}), Inconclusive, "malformed history", "invoked as")
}

func TestListEncoding(t *testing.T) {
	for _, l := range [][]int64{{}, {1}, {1, 22, 333}} {
		got, err := decodeList(encodeList(l))
		if err != nil || !slices.Equal(got, l) {
			t.Errorf("%v: round trip %v, %v", l, got, err)
		}
	}
	if _, err := decodeList([]byte("1,,2")); err == nil {
		t.Error("decoded 1,,2")
	}
}

// The append workload against the client's fake server: its client code,
// the runner and the checker together. The fake takes no key locks (a
// restrictive lock there excludes only its own name), so concurrent
// read-modify-write transactions on one key may lose updates; whatever
// the verdict, the run must have committed transactions, read them back
// and explained any anomaly it found.
func TestRunAppendAgainstFake(t *testing.T) {
	rep := runAgainstFake(t, "append")
	res := rep.Results[0]
	if res.Stats["txn ok appending"] < 5 || res.Stats["reads ok"] < 5 || res.Stats["final read ok"] == 0 {
		t.Fatalf("stats %v", res.Stats)
	}
	if rep.Verdict == Inconclusive {
		t.Fatalf("inconclusive: %s", res.Reason)
	}
	t.Logf("verdict %s, anomalies %q", rep.Verdict, res.Anomalies)
}
