package kv

import (
	"bytes"
	"context"
	"slices"
	"sync"
	"time"

	"github.com/opencluster/opencluster/rpc/cmdpb"
)

// resolvedMarkDelay is how long a resolved mark waits for a command on its
// name to carry it before the sweeper proposes it on its own.
const resolvedMarkDelay = 500 * time.Millisecond

// resolvedMarks holds the restrictive-lock holders whose key locks this
// node released but whose records do not say so yet. Marking a record
// resolved was a Raft round of its own per lock (TxnResolved), one in
// seven of a two-bucket transaction's; instead the mark rides on the next
// TxnBegin or TxnFinish this node proposes for the name (their resolved
// lists), which under load comes within milliseconds, as a name is
// usually taken again soon. The resolve sweeper proposes the marks that
// waited resolvedMarkDelay in vain. A lost mark (a failed proposal, a
// leadership change) costs only work: the record stays unresolved and the
// sweeper resolves its keys again, which is idempotent.
type resolvedMarks struct {
	mu sync.Mutex
	m  map[string][]resolvedMark
}

type resolvedMark struct {
	code  []byte
	since time.Time
}

// add records that the key locks of name's holder code are all released.
func (r *resolvedMarks) add(name string, code []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = make(map[string][]resolvedMark)
	}
	if !slices.ContainsFunc(r.m[name], func(m resolvedMark) bool { return bytes.Equal(m.code, code) }) {
		r.m[name] = append(r.m[name], resolvedMark{code: code, since: time.Now()})
	}
}

// take removes and returns name's marks, for a command to carry.
func (r *resolvedMarks) take(name string) [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	marks := r.m[name]
	delete(r.m, name)
	codes := make([][]byte, len(marks))
	for i, m := range marks {
		codes[i] = m.code
	}
	return codes
}

// restore puts back marks taken for a command that may not have applied.
func (r *resolvedMarks) restore(name string, codes [][]byte) {
	for _, c := range codes {
		r.add(name, c)
	}
}

// has reports whether name's holder code is marked.
func (r *resolvedMarks) has(name string, code []byte) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.ContainsFunc(r.m[name], func(m resolvedMark) bool { return bytes.Equal(m.code, code) })
}

// due removes and returns the marks older than d, by name.
func (r *resolvedMarks) due(d time.Duration) map[string][][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string][][]byte)
	for name, marks := range r.m {
		kept := marks[:0]
		for _, m := range marks {
			if time.Since(m.since) >= d {
				out[name] = append(out[name], m.code)
			} else {
				kept = append(kept, m)
			}
		}
		if len(kept) == 0 {
			delete(r.m, name)
		} else {
			r.m[name] = kept
		}
	}
	return out
}

// proposeDueMarks proposes, as TxnResolved, the marks no command carried
// within resolvedMarkDelay, on the names this node still leads (others
// are dropped: their new leader's sweeper resolves them again). A name
// counts as in flight for the sweeper until its marks are proposed, so
// that it is not resolved again meanwhile.
func (s *resolveSweeper) proposeDueMarks() {
	n := s.n
	for name, codes := range n.marks.due(resolvedMarkDelay) {
		rr := n.replicaOfName(name)
		if !rr.isReadyLeader() {
			continue
		}
		if !s.begin(name) { // being resolved: the next sweep proposes them
			n.marks.restore(name, codes)
			continue
		}
		n.goBackground(func(ctx context.Context) {
			defer s.done(name)
			ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			for _, code := range codes {
				if _, err := rr.propose(ctx, &cmdpb.Command{Body: &cmdpb.Command_TxnResolved{TxnResolved: &cmdpb.TxnResolved{Name: name, Code: code}}}); err != nil {
					n.log.Debug("marking a restrictive lock resolved; the sweeper resolves it again", "lock", name, "err", err)
					return
				}
			}
		})
	}
}
