package jepsen

import (
	"context"
	"fmt"
	"hash/fnv"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"time"

	"github.com/anishathalye/porcupine"
)

// Register operation names.
const (
	fRead  = "read"
	fWrite = "write"
	fCAS   = "cas"
	// fSnapshotRead is a read at a fresh snapshot (checked as a read)
	// repeated at that snapshot (the answers must be equal).
	fSnapshotRead = "snapshot-read"
)

// snapshotReadResult is the value of an ok snapshot read: the first
// answer, the snapshot's version and the answer read again at it.
type snapshotReadResult struct {
	registerResult
	Snapshot uint64         `json:"snapshot"`
	Again    registerResult `json:"again"`
}

// registerArgs is the value of a register invoke.
type registerArgs struct {
	// Value is the value a write or cas writes; unique in the run.
	Value string `json:"value,omitempty"`
	// Expected is the version a cas expects (0: the key must not exist).
	Expected uint64 `json:"expected,omitempty"`
}

// registerResult is the value of an ok register completion.
type registerResult struct {
	// Found reports that a read, or a cas that did not swap, saw the key.
	Found bool `json:"found,omitempty"`
	// Value is the value a read, or a cas that did not swap, saw.
	Value string `json:"value,omitempty"`
	// Version is the version read, written, or seen by a cas that did not
	// swap.
	Version uint64 `json:"version,omitempty"`
	// Swapped reports that a cas wrote.
	Swapped bool `json:"swapped,omitempty"`
}

// regInput and regOutput are porcupine's view of one operation.
type regInput struct {
	F        string
	Value    string
	Expected uint64
}

type regOutput struct {
	// Unknown marks an info write: it may have happened (once) or not.
	Unknown bool
	registerResult
}

// regState is the register's state in the model.
type regState struct {
	Exists bool
	Value  string
	// Version is the value's version; 0 while unknown (the value came from
	// a write whose answer was lost). Values are unique, so a later read
	// of the value tells its version.
	Version uint64
}

// knownVersion reports whether s has a version to compare with.
func (s regState) knownVersion() bool { return s.Exists && s.Version != 0 }

// matches reports whether s can be the state a read observed.
func (s regState) matches(found bool, value string, version uint64) bool {
	if !found {
		return !s.Exists
	}
	return s.Exists && s.Value == value && (s.Version == 0 || s.Version == version)
}

// casCanSwap reports whether a cas expecting version expected may swap in
// state s. An unknown version never matches: the cas's process learnt
// the version it expects from an operation that saw the value, and that
// operation, linearized before the cas, made the version known.
func (s regState) casCanSwap(expected uint64) bool {
	if !s.Exists {
		return expected == 0
	}
	return s.Version != 0 && s.Version == expected
}

// registerStep is the sequential specification of one key: a register
// with versions that grow with every write (design T3).
//
// An unknown (info) write is applied when the model may apply it. That is
// complete because porcupine can always linearize an info operation last
// (its return time is Never), where applying it changes nothing.
func registerStep(state, input, output any) (bool, any) {
	s, in, out := state.(regState), input.(regInput), output.(regOutput)
	switch in.F {
	case fRead:
		if !s.matches(out.Found, out.Value, out.Version) {
			return false, s
		}
		if out.Found {
			s.Version = out.Version
		}
		return true, s
	case fWrite:
		if out.Unknown {
			return true, regState{Exists: true, Value: in.Value}
		}
		if s.knownVersion() && out.Version <= s.Version {
			return false, s
		}
		return true, regState{Exists: true, Value: in.Value, Version: out.Version}
	case fCAS:
		canSwap := s.casCanSwap(in.Expected)
		switch {
		case out.Unknown:
			if canSwap {
				return true, regState{Exists: true, Value: in.Value}
			}
			return true, s
		case out.Swapped:
			if !canSwap || (s.knownVersion() && out.Version <= s.Version) {
				return false, s
			}
			return true, regState{Exists: true, Value: in.Value, Version: out.Version}
		default:
			// No swap: the cas read the current value, which must not be
			// at the expected version.
			if !s.matches(out.Found, out.Value, out.Version) {
				return false, s
			}
			if out.Found {
				if out.Version == in.Expected {
					return false, s
				}
				s.Version = out.Version
			} else if in.Expected == 0 {
				return false, s
			}
			return true, s
		}
	}
	panic(fmt.Sprintf("jepsen: register op %q", in.F))
}

// registerModel is the porcupine model of one key (we partition by key
// ourselves, so it has no Partition function).
var registerModel = porcupine.Model{
	Init: func() any { return regState{} },
	Step: registerStep,
	Hash: func(state any) uint64 {
		s := state.(regState)
		h := fnv.New64a()
		_, _ = fmt.Fprintf(h, "%t/%s/%d", s.Exists, s.Value, s.Version)
		return h.Sum64()
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(regInput), output.(regOutput)
		res := "?"
		if !out.Unknown {
			switch {
			case in.F == fWrite || out.Swapped:
				res = "ok@" + strconv.FormatUint(out.Version, 10)
			case !out.Found:
				res = "absent"
			default:
				res = fmt.Sprintf("%s@%d", out.Value, out.Version)
			}
		}
		switch in.F {
		case fRead:
			return "read → " + res
		case fWrite:
			return fmt.Sprintf("write %s → %s", in.Value, res)
		}
		return fmt.Sprintf("cas @%d→%s → %s", in.Expected, in.Value, res)
	},
	DescribeState: func(state any) string {
		s := state.(regState)
		if !s.Exists {
			return "absent"
		}
		if s.Version == 0 {
			return s.Value + "@?"
		}
		return fmt.Sprintf("%s@%d", s.Value, s.Version)
	},
}

// registerHistory is the register operations of a history, by key.
type registerHistory struct {
	byKey map[string][]porcupine.Operation
	stats map[string]int64
}

// registerOps turns a history's register pairs into porcupine operations:
// ok operations with their results, info writes with return time Never,
// failed operations and reads without an answer dropped.
func registerOps(pairs []Pair) (registerHistory, error) {
	rh := registerHistory{byKey: map[string][]porcupine.Operation{}, stats: map[string]int64{}}
	for _, p := range pairs {
		f := p.Invoke.F
		if f == fSnapshotRead {
			f = fRead // its first answer is a linearizable read
		}
		if f != fRead && f != fWrite && f != fCAS {
			continue
		}
		var args registerArgs
		if err := decodeValue(p.Invoke, &args); err != nil {
			return rh, err
		}
		in := regInput{F: f, Value: args.Value, Expected: args.Expected}
		var out regOutput
		switch p.Type() {
		case Fail:
			rh.stats["failed"]++
			continue
		case Info:
			if f == fRead {
				continue
			}
			rh.stats["unknown writes"]++
			out.Unknown = true
		case OK:
			if err := decodeValue(p.Complete, &out.registerResult); err != nil {
				return rh, err
			}
			switch {
			case f == fRead && out.Found:
				rh.stats["reads"]++
			case f == fRead:
				rh.stats["empty reads"]++
			case f == fWrite || out.Swapped:
				rh.stats["writes"]++
			default:
				rh.stats["failed cas"]++
			}
		}
		rh.byKey[p.Invoke.Key] = append(rh.byKey[p.Invoke.Key], porcupine.Operation{
			ClientId: p.Invoke.Process,
			Input:    in,
			Call:     p.Invoke.Time,
			Output:   out,
			Return:   p.ReturnTime(),
		})
	}
	for key, ops := range rh.byKey {
		rh.byKey[key] = patchUnknownWrites(ops, rh.stats)
	}
	rh.stats["keys"] = int64(len(rh.byKey))
	return rh, nil
}

// patchUnknownWrites shrinks porcupine's search the way etcd's robustness
// tests do (validate/patch_history.go), using the uniqueness of values:
//
//   - an unknown write whose value no operation ever saw is dropped: it
//     can be linearized last in any linearization of the rest (its return
//     is Never), and it cannot be needed by one, since a later cas cannot
//     match its unknown version and any read of it would have seen it;
//   - an unknown write that was seen must precede the first operation
//     that saw it, so its return time becomes that operation's.
func patchUnknownWrites(ops []porcupine.Operation, stats map[string]int64) []porcupine.Operation {
	seenBy := map[string]int64{} // value → earliest return of an op that saw it
	for _, op := range ops {
		out := op.Output.(regOutput)
		if out.Unknown || !out.Found {
			continue
		}
		if t, ok := seenBy[out.Value]; !ok || op.Return < t {
			seenBy[out.Value] = op.Return
		}
	}
	kept := ops[:0]
	for _, op := range ops {
		if op.Output.(regOutput).Unknown {
			t, seen := seenBy[op.Input.(regInput).Value]
			if !seen {
				stats["unknown writes never seen"]++
				continue
			}
			op.Return = max(t, op.Call)
		}
		kept = append(kept, op)
	}
	return kept
}

// checkRegister checks every key's operations for linearizability with
// porcupine, within opts.CheckTimeout in all. A key porcupine cannot
// decide in time makes the result Inconclusive (unless another key is
// Illegal). Every illegal key gets porcupine's HTML visualisation in
// opts.Dir (registerVisualization), listed in the result's Files.
func checkRegister(ctx context.Context, pairs []Pair, opts CheckOptions) (res Result) {
	start := time.Now()
	res = Result{Checker: "linearizable register (porcupine)", Verdict: Valid}
	defer func() { res.Elapsed = time.Since(start) }()
	rh, err := registerOps(pairs)
	if err != nil {
		res.Verdict, res.Reason = Inconclusive, err.Error()
		return res
	}
	res.Stats = rh.stats
	if err := checkSnapshotRepeats(pairs, &res); err != nil {
		res.Verdict, res.Reason = Inconclusive, err.Error()
		return res
	}
	keys := make([]string, 0, len(rh.byKey))
	for k := range rh.byKey {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	deadline := start.Add(opts.CheckTimeout)
	var undecided int
	for _, key := range keys {
		ops := rh.byKey[key]
		left := time.Until(deadline)
		if ctx.Err() != nil || left <= 0 {
			undecided++
			continue
		}
		switch porcupine.CheckOperationsTimeout(registerModel, ops, left) {
		case porcupine.Ok:
		case porcupine.Unknown:
			undecided++
		case porcupine.Illegal:
			detail, file := explainRegister(key, ops, opts)
			msg := fmt.Sprintf("key %s: %d operations are not linearizable%s", key, len(ops), detail)
			if file != "" {
				res.Files = append(res.Files, file)
				msg += " (see " + file + ")"
			}
			res.anomaly("%s", msg)
		}
	}
	if undecided > 0 && res.Verdict != Invalid {
		res.Verdict = Inconclusive
		res.Reason = fmt.Sprintf("porcupine decided %d of %d keys within %s", len(keys)-undecided, len(keys), opts.CheckTimeout)
	}
	res.requireOK("successful reads of a value", rh.stats["reads"], opts.MinOK)
	res.requireOK("successful writes", rh.stats["writes"], opts.MinOK)
	return res
}

// checkSnapshotRepeats reports every snapshot read whose second answer,
// at the first one's snapshot, differs from the first (T4).
func checkSnapshotRepeats(pairs []Pair, res *Result) error {
	for _, p := range pairs {
		if p.Invoke.F != fSnapshotRead || p.Type() != OK {
			continue
		}
		var out snapshotReadResult
		if err := decodeValue(p.Complete, &out); err != nil {
			return err
		}
		res.Stats["snapshot reads repeated"]++
		if out.registerResult != out.Again {
			res.anomaly("key %s: process %d read %s at snapshot %d, then %s at the same snapshot",
				p.Invoke.Key, p.Invoke.Process, describeRead(out.registerResult), out.Snapshot, describeRead(out.Again))
		}
	}
	return nil
}

func describeRead(r registerResult) string {
	if !r.Found {
		return "absent"
	}
	return fmt.Sprintf("%s@%d", r.Value, r.Version)
}

// explainRegister re-checks an illegal key verbosely: it names the first
// operation (by call time) outside porcupine's longest linearizable
// prefix and, when opts.Dir is set, writes porcupine's HTML
// visualisation of the key there, with the faults that overlap the key's
// operations as annotations, and returns its name.
func explainRegister(key string, ops []porcupine.Operation, opts CheckOptions) (detail, file string) {
	_, info := porcupine.CheckOperationsVerbose(registerModel, ops, opts.CheckTimeout)
	if lins := info.PartialLinearizations(); len(lins) == 1 {
		longest := 0
		in := map[int]bool{}
		for _, l := range lins[0] {
			if len(l) >= longest {
				longest = len(l)
				clear(in)
				for _, id := range l {
					in[id] = true
				}
			}
		}
		order := make([]int, len(ops))
		for i := range order {
			order[i] = i
		}
		sort.SliceStable(order, func(a, b int) bool { return ops[order[a]].Call < ops[order[b]].Call })
		for _, i := range order {
			if !in[i] {
				op := ops[i]
				detail = fmt.Sprintf("; longest linearizable prefix has %d, and cannot take process %d's %s (called at %s)",
					longest, op.ClientId, registerModel.DescribeOperation(op.Input, op.Output), time.Duration(op.Call))
				break
			}
		}
	}
	if opts.Dir == "" {
		return detail, ""
	}
	info.AddAnnotations(faultAnnotations(ops, opts.faults))
	name := registerVisualization(key)
	if err := porcupine.VisualizePath(registerModel, info, filepath.Join(opts.Dir, name)); err != nil {
		return detail + " (visualisation failed: " + err.Error() + ")", ""
	}
	return detail, name
}

// registerVisualization names the HTML visualisation of a key:
// register-<key>.html, with characters unsafe in a file name (the keys'
// slashes) replaced by underscores.
func registerVisualization(key string) string {
	return "register-" + unsafeFileChars.ReplaceAllString(key, "_") + ".html"
}

var unsafeFileChars = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// faultAnnotations returns the fault windows that overlap ops as
// porcupine annotations (tag "nemesis"), cut to the span of ops so that
// the timeline keeps its scale.
func faultAnnotations(ops []porcupine.Operation, faults []faultWindow) []porcupine.Annotation {
	if len(ops) == 0 {
		return nil
	}
	from, to := ops[0].Call, ops[0].Return
	for _, op := range ops {
		from, to = min(from, op.Call), max(to, op.Return)
	}
	var out []porcupine.Annotation
	for _, w := range faults {
		if w.to < from || w.from > to {
			continue
		}
		details := fmt.Sprintf("%s from %s to ", w.what, time.Duration(w.from))
		if w.to == Never {
			details += "the end"
		} else {
			details += time.Duration(w.to).String()
		}
		out = append(out, porcupine.Annotation{
			Tag:             "nemesis",
			Start:           max(w.from, from),
			End:             min(w.to, to),
			Description:     w.what,
			Details:         details,
			BackgroundColor: "#f4cccc",
		})
	}
	return out
}
