package jepsen

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The register checker's tests: hand-built histories of one or two keys
// with a known verdict. Times are in ns; process p's ops never overlap.

func write(h *history, p int, key, value string, t0, t1 int64, typ OpType, version uint64) {
	h.add(p, fWrite, key, registerArgs{Value: value}, t0, t1, typ, registerResult{Version: version})
}

func read(h *history, p int, key, value string, t0, t1 int64, version uint64) {
	res := registerResult{Found: value != "", Value: value, Version: version}
	h.add(p, fRead, key, nil, t0, t1, OK, res)
}

func cas(h *history, p int, key string, expected uint64, value string, t0, t1 int64, typ OpType, res registerResult) {
	h.add(p, fCAS, key, registerArgs{Value: value, Expected: expected}, t0, t1, typ, res)
}

func TestRegisterValid(t *testing.T) {
	h := &history{}
	read(h, 0, "k", "", 0, 5, 0) // absent at first
	write(h, 0, "k", "1", 10, 20, OK, 100)
	// Concurrent with the write: may see either.
	read(h, 1, "k", "", 12, 14, 0)
	read(h, 2, "k", "1", 15, 25, 100)
	cas(h, 1, "k", 100, "2", 30, 40, OK, registerResult{Swapped: true, Version: 200})
	// A cas at a stale version fails and reports the current value.
	cas(h, 2, "k", 100, "3", 50, 60, OK, registerResult{Found: true, Value: "2", Version: 200})
	read(h, 0, "k", "2", 70, 80, 200)
	// Another key is independent.
	write(h, 3, "j", "9", 0, 100, OK, 50)
	read(h, 3, "j", "9", 110, 120, 50)
	wantVerdict(t, h.check(t, "register", CheckOptions{}), Valid)
}

// A read that returns a value overwritten before it began: the stale read
// of a deposed leader.
func TestRegisterStaleRead(t *testing.T) {
	dir := t.TempDir()
	h := &history{}
	write(h, 0, "k", "1", 0, 10, OK, 100)
	write(h, 0, "k", "2", 20, 30, OK, 200)
	read(h, 1, "k", "1", 40, 50, 100)
	res := h.check(t, "register", CheckOptions{Dir: dir})
	wantVerdict(t, res, Invalid, "key k", "not linearizable", "read → 1@100", "(see register-k.html)")
	if len(res.Files) != 1 || res.Files[0] != "register-k.html" {
		t.Fatalf("files %v, want register-k.html", res.Files)
	}
	if _, err := os.Stat(filepath.Join(dir, res.Files[0])); err != nil {
		t.Errorf("visualisation: %v", err)
	}
}

// Every non-linearizable key gets porcupine's visualisation,
// register-<key>.html (slashes made safe), with the faults during its
// operations as annotations; a linearizable key gets none.
func TestRegisterVisualization(t *testing.T) {
	dir := t.TempDir()
	h := &history{}
	for i, key := range []string{"jepsen/register/0/1", "jepsen/register/1/1"} {
		p := 2 * i
		write(h, p, key, "1"+key, 0, 10, OK, 100)
		write(h, p, key, "2"+key, 20, 30, OK, 200)
		read(h, p+1, key, "1"+key, 40, 50, 100)
	}
	write(h, 4, "fine", "x", 0, 10, OK, 100)
	read(h, 4, "fine", "x", 20, 30, 100)
	kill := Fault{Nemesis: "kill", Nodes: []int{2}}
	h.ops = append(h.ops,
		Op{Process: NemesisProcess, Type: Info, F: "kill", Time: 15, Value: mustJSON(nemesisEvent{Phase: "start", Fault: kill})},
		Op{Process: NemesisProcess, Type: Info, F: "kill", Time: 35, Value: mustJSON(nemesisEvent{Phase: "stop", Fault: kill})},
		Op{Process: NemesisProcess, Type: Info, F: "kill", Time: 60, Value: mustJSON(nemesisEvent{Phase: "start", Fault: kill})},
	)
	res := h.check(t, "register", CheckOptions{Dir: dir})
	wantVerdict(t, res, Invalid, "see register-jepsen_register_0_1.html", "see register-jepsen_register_1_1.html")
	want := []string{"register-jepsen_register_0_1.html", "register-jepsen_register_1_1.html"}
	if !slices.Equal(res.Files, want) {
		t.Fatalf("files %v, want %v", res.Files, want)
	}
	for _, f := range want {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		// The fault inside the key's span is annotated; the one after it
		// is not.
		html := string(b)
		if !strings.Contains(html, "<html") || strings.Count(html, `"Tag":"nemesis"`) != 1 || !strings.Contains(html, "kill n2 from 15ns to 35ns") {
			t.Errorf("%s does not hold porcupine's visualisation with the kill annotated", f)
		}
	}
	if files, _ := filepath.Glob(filepath.Join(dir, "*")); len(files) != 2 {
		t.Errorf("files in the run directory: %v", files)
	}
}

// An acknowledged write that a later read does not see (lost on a crash).
func TestRegisterLostWrite(t *testing.T) {
	h := &history{}
	write(h, 0, "k", "1", 0, 10, OK, 100)
	read(h, 1, "k", "", 20, 30, 0)
	wantVerdict(t, h.check(t, "register", CheckOptions{}), Invalid, "not linearizable")
}

// Two compare-and-swaps from the same version both succeed: one update
// is lost.
func TestRegisterLostUpdate(t *testing.T) {
	h := &history{}
	write(h, 0, "k", "1", 0, 10, OK, 100)
	cas(h, 1, "k", 100, "2", 20, 30, OK, registerResult{Swapped: true, Version: 200})
	cas(h, 2, "k", 100, "3", 21, 31, OK, registerResult{Swapped: true, Version: 300})
	wantVerdict(t, h.check(t, "register", CheckOptions{}), Invalid, "not linearizable")
}

// Versions must grow with writes (design T3): a write acknowledged at a
// lower version than one it follows is an anomaly even if values look
// right.
func TestRegisterVersionsGrow(t *testing.T) {
	h := &history{}
	write(h, 0, "k", "1", 0, 10, OK, 200)
	write(h, 0, "k", "2", 20, 30, OK, 100)
	wantVerdict(t, h.check(t, "register", CheckOptions{}), Invalid, "not linearizable")
}

// A write with an unknown outcome may take effect at any later time, or
// never; neither makes the history invalid.
func TestRegisterUnknownWrites(t *testing.T) {
	h := &history{}
	write(h, 0, "k", "1", 0, 10, OK, 100)
	write(h, 1, "k", "2", 20, 30, Info, 0) // lost answer…
	read(h, 2, "k", "1", 40, 50, 100)      // …not applied yet…
	read(h, 2, "k", "2", 60, 70, 200)      // …applied late
	write(h, 3, "k", "3", 80, 90, Info, 0) // never seen: dropped
	read(h, 2, "k", "2", 100, 110, 200)
	res := h.check(t, "register", CheckOptions{})
	wantVerdict(t, res, Valid)
	if res.Stats["unknown writes never seen"] != 1 {
		t.Errorf("stats %v: want one unseen unknown write dropped", res.Stats)
	}

	// But once seen, it cannot be un-applied: reading the old value again
	// after reading the new one is a stale read.
	read(h, 2, "k", "1", 120, 130, 100)
	wantVerdict(t, h.check(t, "register", CheckOptions{}), Invalid)
}

// A failed write (refused before applying) must not be seen.
func TestRegisterFailedWriteSeen(t *testing.T) {
	h := &history{}
	write(h, 0, "k", "1", 0, 10, Fail, 0)
	read(h, 1, "k", "1", 20, 30, 100)
	wantVerdict(t, h.check(t, "register", CheckOptions{}), Invalid)
}

func TestRegisterInconclusive(t *testing.T) {
	h := &history{}
	write(h, 0, "k", "1", 0, 10, OK, 100)
	read(h, 1, "k", "1", 20, 30, 100)
	wantVerdict(t, h.check(t, "register", CheckOptions{MinOK: 5}), Inconclusive, "only 1 successful reads")

	// Out of time is inconclusive too, never a pass.
	for i := range 10 {
		read(h, 1, "k", "1", int64(40+10*i), int64(45+10*i), 100)
		write(h, 0, "k2", "x", int64(40+10*i), int64(45+10*i), OK, uint64(100+i))
	}
	wantVerdict(t, h.check(t, "register", CheckOptions{MinOK: 5, CheckTimeout: 1}), Inconclusive, "porcupine decided 0 of 2 keys")
}

func snapshotRead(h *history, p int, key string, t0, t1 int64, snapshot uint64, first, again registerResult) {
	h.add(p, fSnapshotRead, key, nil, t0, t1, OK, snapshotReadResult{registerResult: first, Snapshot: snapshot, Again: again})
}

// A snapshot read's first answer is checked as a linearizable read, and
// reading its snapshot again must give the same answer.
func TestRegisterSnapshotReads(t *testing.T) {
	one := registerResult{Found: true, Value: "1", Version: 100}
	two := registerResult{Found: true, Value: "2", Version: 150}

	h := &history{}
	write(h, 0, "k", "1", 0, 10, OK, 100)
	snapshotRead(h, 1, "k", 20, 30, 160, one, one)
	write(h, 0, "k", "2", 40, 50, OK, 200)
	res := h.check(t, "register", CheckOptions{})
	wantVerdict(t, res, Valid)
	if res.Stats["snapshot reads repeated"] != 1 {
		t.Fatalf("stats %v: want 1 snapshot read repeated", res.Stats)
	}

	// The second read at the snapshot sees a write stamped below it that
	// the first missed (the bug TestSnapshotReadRepeatable found).
	h = &history{}
	write(h, 0, "k", "1", 0, 10, OK, 100)
	write(h, 0, "k", "2", 15, 35, OK, 150)
	snapshotRead(h, 1, "k", 20, 30, 160, one, two)
	wantVerdict(t, h.check(t, "register", CheckOptions{}), Invalid, "key k", "read 1@100 at snapshot 160, then 2@150")

	// A stale first answer is a stale read.
	h = &history{}
	write(h, 0, "k", "1", 0, 10, OK, 100)
	write(h, 0, "k", "2", 20, 30, OK, 200)
	snapshotRead(h, 1, "k", 40, 50, 210, one, one)
	wantVerdict(t, h.check(t, "register", CheckOptions{}), Invalid, "not linearizable")
}
