package jepsen

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"sync"
	"time"
)

// OpType is the kind of a history entry.
type OpType string

// The entry kinds (see the package doc's Model).
const (
	// Invoke is recorded before a request is sent.
	Invoke OpType = "invoke"
	// OK completes an operation that certainly happened.
	OK OpType = "ok"
	// Fail completes an operation that certainly did not happen.
	Fail OpType = "fail"
	// Info completes an operation whose outcome is unknown; nemesis
	// entries are info too.
	Info OpType = "info"
)

// NemesisProcess is the process id of nemesis entries.
const NemesisProcess = -1

// Op is one entry of a history.
type Op struct {
	// Index is the entry's position in the history.
	// Invariant: Index grows with Time (both are taken under one mutex).
	Index int `json:"index"`
	// Process is the logical client process (NemesisProcess for faults).
	Process int    `json:"process"`
	Type    OpType `json:"type"`
	// F names the operation: read, write, cas, acquire, release, transfer…
	F string `json:"f"`
	// Key is the register key or lock name, when the operation has one.
	Key string `json:"key,omitempty"`
	// Value is the workload's JSON value: arguments on an invoke, results
	// on a completion. Checkers decode exactly these bytes, so a history
	// read back from disk checks the same as the one recorded.
	Value json.RawMessage `json:"value,omitempty"`
	// Time is nanoseconds since the run began, on the harness's monotonic
	// clock.
	Time int64 `json:"time"`
	// Error is the error text of a fail or info completion.
	Error string `json:"error,omitempty"`
}

// Recorder appends Ops to a history. It is safe for concurrent use.
type Recorder struct {
	start time.Time
	mu    struct {
		sync.Mutex
		ops []Op
		// counts counts completions by type (for progress lines).
		counts map[OpType]int
	}
}

// NewRecorder returns an empty recorder whose clock starts now.
func NewRecorder() *Recorder {
	r := &Recorder{start: time.Now()}
	r.mu.counts = map[OpType]int{}
	return r
}

// record appends op, stamping its index and time.
func (r *Recorder) record(op Op) Op {
	r.mu.Lock()
	defer r.mu.Unlock()
	op.Index = len(r.mu.ops)
	op.Time = time.Since(r.start).Nanoseconds()
	r.mu.ops = append(r.mu.ops, op)
	if op.Type != Invoke && op.Process != NemesisProcess {
		r.mu.counts[op.Type]++
	}
	return op
}

// Invoke records the start of operation f by process with arguments v.
func (r *Recorder) Invoke(process int, f, key string, v any) Op {
	return r.record(Op{Process: process, Type: Invoke, F: f, Key: key, Value: mustJSON(v)})
}

// Complete records the completion of inv with type t, result v and err
// (nil for ok).
func (r *Recorder) Complete(inv Op, t OpType, v any, err error) Op {
	op := Op{Process: inv.Process, Type: t, F: inv.F, Key: inv.Key, Value: mustJSON(v)}
	if err != nil {
		op.Error = err.Error()
	}
	return r.record(op)
}

// Nemesis records a fault event (an info entry of NemesisProcess).
func (r *Recorder) Nemesis(f string, v any) Op {
	return r.record(Op{Process: NemesisProcess, Type: Info, F: f, Value: mustJSON(v)})
}

// Ops returns a copy of the history so far.
func (r *Recorder) Ops() []Op {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Op(nil), r.mu.ops...)
}

// Counts returns the number of ok, fail and info completions so far
// (nemesis entries excluded).
func (r *Recorder) Counts() (ok, fail, info int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.mu.counts[OK], r.mu.counts[Fail], r.mu.counts[Info]
}

// Elapsed returns the time since the recorder started.
func (r *Recorder) Elapsed() time.Duration { return time.Since(r.start) }

// mustJSON marshals v; nil stays empty. Workload values are plain structs,
// so a marshalling error is a bug.
func mustJSON(v any) json.RawMessage {
	if v == nil {
		return nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("jepsen: marshal %T: %s", v, err.Error()))
	}
	return b
}

// WriteHistory writes ops as JSON lines.
func WriteHistory(w io.Writer, ops []Op) error {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	for i := range ops {
		if err := enc.Encode(&ops[i]); err != nil {
			return fmt.Errorf("jepsen: write history: %w", err)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("jepsen: write history: %w", err)
	}
	return nil
}

// ReadHistory reads JSON lines written by WriteHistory.
func ReadHistory(r io.Reader) ([]Op, error) {
	dec := json.NewDecoder(r)
	var ops []Op
	for {
		var op Op
		err := dec.Decode(&op)
		if err == io.EOF {
			return ops, nil
		}
		if err != nil {
			return nil, fmt.Errorf("jepsen: read history entry %d: %w", len(ops), err)
		}
		ops = append(ops, op)
	}
}

// Never is the completion time of an operation that may take effect at any
// time after its invoke.
const Never = math.MaxInt64

// Pair is an operation: its invoke and its completion.
type Pair struct {
	Invoke Op
	// Complete is the completion; a zero Complete (Type "") means the
	// history ended first, which counts as info.
	Complete Op
}

// Type returns the completion's type, Info if there is none.
func (p Pair) Type() OpType {
	if p.Complete.Type == "" {
		return Info
	}
	return p.Complete.Type
}

// ReturnTime returns the completion time, or Never for an info operation
// (its effect, if any, may land at any later time).
func (p Pair) ReturnTime() int64 {
	if p.Type() == Info {
		return Never
	}
	return p.Complete.Time
}

// Pairs matches every client invoke with the next completion of the same
// process, in invoke order. Nemesis entries are skipped. A completion
// without an open invoke is an error: the history is malformed.
func Pairs(ops []Op) ([]Pair, error) {
	var pairs []Pair
	open := map[int]int{} // process → index into pairs of its open invoke
	for _, op := range ops {
		if op.Process == NemesisProcess {
			continue
		}
		if op.Type == Invoke {
			if _, busy := open[op.Process]; busy {
				return nil, fmt.Errorf("%w: process %d invoked entry %d with an operation still open", ErrBadHistory, op.Process, op.Index)
			}
			open[op.Process] = len(pairs)
			pairs = append(pairs, Pair{Invoke: op})
			continue
		}
		i, ok := open[op.Process]
		if !ok {
			return nil, fmt.Errorf("%w: entry %d completes nothing on process %d", ErrBadHistory, op.Index, op.Process)
		}
		if pairs[i].Invoke.F != op.F {
			return nil, fmt.Errorf("%w: entry %d (%s) completes %s", ErrBadHistory, op.Index, op.F, pairs[i].Invoke.F)
		}
		pairs[i].Complete = op
		delete(open, op.Process)
	}
	return pairs, nil
}

// decodeValue decodes an entry's value into v; an empty value leaves v
// zero.
func decodeValue(op Op, v any) error {
	if len(op.Value) == 0 {
		return nil
	}
	if err := json.Unmarshal(op.Value, v); err != nil {
		return fmt.Errorf("%w: entry %d value: %w", ErrBadHistory, op.Index, err)
	}
	return nil
}
