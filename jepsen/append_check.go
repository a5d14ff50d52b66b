package jepsen

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Append operation name, micro-operations and transaction modes.
const (
	fAppendTxn = "txn"

	mopAppend = "append"
	mopRead   = "r"

	// appendLocked runs under a strict-mode restrictive lock.
	appendLocked = "locked"
	// appendLockedSnapshot runs under a snapshot-mode restrictive lock.
	appendLockedSnapshot = "locked-snapshot"
	// appendSnapshot is a lock-free read-only transaction: one BatchGet
	// at a fresh snapshot.
	appendSnapshot = "snapshot"
)

// appendMop is one micro-operation of an append transaction.
type appendMop struct {
	// F is mopAppend or mopRead.
	F string `json:"f"`
	// Key is the list's number (its store key is appendKey(Key)).
	Key int `json:"k"`
	// Value is what an append adds; unique in the run.
	Value int64 `json:"v,omitempty"`
	// List is what a read returned, in an ok completion (nil: empty).
	List []int64 `json:"list,omitempty"`
	// Garbage is a value read that is not a list.
	Garbage string `json:"garbage,omitempty"`
}

// appendArgs is the value of an append transaction's invoke.
type appendArgs struct {
	Mops []appendMop `json:"mops"`
	// Mode is appendLocked, appendLockedSnapshot or appendSnapshot.
	Mode string `json:"mode"`
	// Final marks the reads after the cluster healed.
	Final bool `json:"final,omitempty"`
}

// appendResult is the value of an ok append transaction.
type appendResult struct {
	// Mops are the invoke's micro-operations with the reads' lists.
	Mops []appendMop `json:"mops"`
	// Version is the commit version, or the snapshot a BatchGet read.
	Version uint64 `json:"version,omitempty"`
}

// Dependency edge kinds (Adya): a -ww-> b: b appended the element after
// a's; a -wr-> b: b read a list ending with a's element; a -rw-> b: a
// read a list that b's element (the next one) extends.
const (
	edgeWW uint8 = 1 << iota
	edgeWR
	edgeRW
)

// edgeNames names the edge kinds, by their index in appendEdge.why.
var edgeNames = [3]string{"ww", "wr", "rw"}

// appendMaxSearches bounds the rw edges tried per strongly connected
// component when looking for a G-single cycle.
const appendMaxSearches = 200

// appendTxn is one transaction as the checker sees it.
type appendTxn struct {
	// index is the invoke's history index; the transaction is called
	// "T<index>" in anomalies.
	index   int
	process int
	typ     OpType
	args    appendArgs
	// mops are the completion's micro-operations when ok, else the
	// invoke's.
	mops []appendMop
	// appends[k] are the values the transaction appended to key k, in
	// order.
	appends map[int][]int64
	// committed: ok, or info and one of its elements was read.
	committed bool
	// version is an ok transaction's commit version, or the snapshot a
	// lock-free read read at (0: unknown).
	version uint64
}

func (t *appendTxn) name() string { return "T" + strconv.Itoa(t.index) }

// appendRead is one ok read of a key.
type appendRead struct {
	txn, mop int
	list     []int64
	// external: the transaction had not appended to the key before.
	external bool
}

// appendEdge is a dependency from one transaction to another, with one
// explanation per kind it has.
type appendEdge struct {
	from, to int
	kinds    uint8
	why      [3]string
}

// appendChecker holds one check's state; its phases run in order.
type appendChecker struct {
	ctx   context.Context
	res   *Result
	stats map[string]int64
	txns  []*appendTxn
	// writer[k][v] is the transaction that appended v to key k.
	writer map[int]map[int64]int
	// reads[k] are the ok reads of key k (garbage excluded).
	reads map[int][]appendRead
	// order[k] is key k's version order: its longest ok read. pos[k][v]
	// is v's index in it. bad[k] marks a key whose reads are not all
	// prefixes of one another (no edges come from it).
	order map[int][]int64
	pos   map[int]map[int64]int
	bad   map[int]bool

	out   [][]*appendEdge // by source transaction
	edges map[[2]int]*appendEdge
}

// checkAppend checks list-append transactions (Elle's method: Kingsbury
// and Alvaro, VLDB 2020) for the anomalies snapshot isolation forbids.
// Every appended value is unique, so a read names the writers of its
// elements, and the longest read of a key gives its version order, of
// which every other read must be a prefix (else incompatible-order).
//
// Without cycles it reports: G1a (aborted read: a read shows an element
// of a failed transaction), G1b (intermediate read: a read ends on an
// element a transaction followed with another append to the key),
// internal inconsistency (a transaction does not see its own appends or
// its earlier read), duplicate, unknown and garbage elements, a
// non-atomic commit (a transaction's appends to a key appear partly, or
// out of order, not at the end of the order), lost updates (two committed
// transactions read the same version of a key and both appended to it)
// and lost appends (an acknowledged append missing from the read after
// healing).
//
// It then builds the dependency graph of committed transactions (ok, and
// info ones whose elements were read: an observed value proves the
// commit) with ww, wr and rw edges, finds its strongly connected
// components (Tarjan) and, inside each, a short cycle of each kind: G0
// (ww edges only), G1c (ww and wr, at least one wr) and G-single (exactly
// one rw edge; Adya's G-SIb, read skew, which snapshot isolation forbids
// too: a lost update is one). It also checks the store's versions
// against every edge whose ends have one (checkVersions). Cycles with
// two or more rw edges (G2,
// write skew) are allowed under snapshot isolation: they are counted
// and noted, not anomalies.
//
// Info transactions whose elements nobody read may or may not have
// committed; they take no part.
func checkAppend(ctx context.Context, pairs []Pair, opts CheckOptions) (res Result) {
	start := time.Now()
	res = Result{Checker: "append (list-append, snapshot isolation)", Verdict: Valid}
	defer func() { res.Elapsed = time.Since(start) }()
	c := &appendChecker{
		ctx: ctx, res: &res, stats: map[string]int64{},
		writer: map[int]map[int64]int{}, reads: map[int][]appendRead{},
		order: map[int][]int64{}, pos: map[int]map[int64]int{}, bad: map[int]bool{},
		edges: map[[2]int]*appendEdge{},
	}
	res.Stats = c.stats
	if err := c.load(pairs); err != nil {
		res.Verdict, res.Reason = Inconclusive, err.Error()
		return res
	}
	c.checkReads()
	c.versionOrders()
	c.checkInternal()
	c.checkAtomicCommits()
	c.checkIntermediateReads()
	c.checkLostUpdates()
	unread := c.checkLostAppends()
	c.buildGraph()
	c.checkVersions()
	if err := c.findCycles(); err != nil {
		res.Verdict, res.Reason = Inconclusive, err.Error()
		return res
	}
	if unread > 0 && res.Verdict != Invalid {
		res.Verdict, res.Reason = Inconclusive, fmt.Sprintf("the final read after healing did not succeed for %d keys written", unread)
	}
	res.requireOK("successful transactions that append", c.stats["txn ok appending"], opts.MinOK)
	res.requireOK("successful transactions that read", c.stats["txn ok reading"], opts.MinOK)
	return res
}

// load decodes the transactions and indexes their appends.
func (c *appendChecker) load(pairs []Pair) error {
	for _, p := range pairs {
		if p.Invoke.F != fAppendTxn {
			continue
		}
		t := &appendTxn{index: p.Invoke.Index, process: p.Invoke.Process, typ: p.Type(), appends: map[int][]int64{}}
		if err := decodeValue(p.Invoke, &t.args); err != nil {
			return err
		}
		t.mops = t.args.Mops
		if t.typ == OK {
			var r appendResult
			if err := decodeValue(p.Complete, &r); err != nil {
				return err
			}
			if err := sameMops(t.args.Mops, r.Mops); err != nil {
				return fmt.Errorf("%w: entry %d: %w", ErrBadHistory, p.Complete.Index, err)
			}
			t.mops = r.Mops
			t.committed = true
			t.version = r.Version
		}
		i := len(c.txns)
		c.txns = append(c.txns, t)
		for _, m := range t.mops {
			if m.F != mopAppend {
				continue
			}
			t.appends[m.Key] = append(t.appends[m.Key], m.Value)
			w := c.writer[m.Key]
			if w == nil {
				w = map[int64]int{}
				c.writer[m.Key] = w
			}
			if prev, dup := w[m.Value]; dup {
				return fmt.Errorf("%w: %s and %s both append %d to key %d", ErrBadHistory, c.txns[prev].name(), t.name(), m.Value, m.Key)
			}
			w[m.Value] = i
		}
		c.stats["txn "+string(t.typ)]++
		if t.typ == OK {
			switch {
			case t.args.Final:
				c.stats["final read ok"]++
			case len(t.appends) > 0:
				c.stats["txn ok appending"]++
				c.stats["appends ok"] += int64(countAppends(t))
			}
			if !t.args.Final && slices.ContainsFunc(t.mops, func(m appendMop) bool { return m.F == mopRead }) {
				c.stats["txn ok reading"]++
				if len(t.appends) == 0 {
					c.stats["txn ok read-only "+t.args.Mode]++
				}
			}
		}
	}
	c.stats["keys"] = int64(len(c.writer))
	return nil
}

// sameMops checks that a completion reports the invoke's
// micro-operations.
func sameMops(inv, done []appendMop) error {
	if len(inv) != len(done) {
		return fmt.Errorf("%d micro-operations invoked, %d completed", len(inv), len(done))
	}
	for i := range inv {
		if inv[i].F != done[i].F || inv[i].Key != done[i].Key || inv[i].Value != done[i].Value {
			return fmt.Errorf("micro-operation %d invoked as %v, completed as %v", i, inv[i], done[i])
		}
	}
	return nil
}

func countAppends(t *appendTxn) int {
	n := 0
	for _, vs := range t.appends {
		n += len(vs)
	}
	return n
}

// checkReads collects the ok reads and checks their elements: no
// garbage, no duplicates, every element appended by some transaction,
// none by a failed one (G1a). An element of an info transaction proves
// that it committed.
func (c *appendChecker) checkReads() {
	for i, t := range c.txns {
		if t.typ != OK {
			continue
		}
		appended := map[int]bool{}
		for j, m := range t.mops {
			if m.F == mopAppend {
				appended[m.Key] = true
				continue
			}
			if m.Garbage != "" {
				c.res.anomaly("garbage: %s read key %d as %q, not a list", t.name(), m.Key, m.Garbage)
				continue
			}
			c.reads[m.Key] = append(c.reads[m.Key], appendRead{txn: i, mop: j, list: m.List, external: !appended[m.Key]})
			c.stats["reads ok"]++
			seen := map[int64]bool{}
			for _, v := range m.List {
				if seen[v] {
					c.res.anomaly("duplicate elements: %s read key %d as %s, with %d twice", t.name(), m.Key, fmtList(m.List), v)
				}
				seen[v] = true
				w, ok := c.writer[m.Key][v]
				switch {
				case !ok:
					c.res.anomaly("unknown element: %s read key %d as %s, but nobody appended %d to it", t.name(), m.Key, fmtList(m.List), v)
				case c.txns[w].typ == Fail:
					c.res.anomaly("G1a (aborted read): %s read key %d as %s, with %d appended by %s, which failed (%s)",
						t.name(), m.Key, fmtList(m.List), v, c.txns[w].name(), c.txns[w].args.Mode)
				case !c.txns[w].committed:
					c.txns[w].committed = true
					c.stats["txn info committed"]++
				}
			}
		}
	}
}

// versionOrders takes each key's longest read as its version order and
// checks that every read is a prefix of it.
func (c *appendChecker) versionOrders() {
	for _, k := range slices.Sorted(maps.Keys(c.reads)) {
		rs := c.reads[k]
		var longest []int64
		for _, r := range rs {
			if len(r.list) > len(longest) {
				longest = r.list
			}
		}
		c.order[k] = longest
		pos := make(map[int64]int, len(longest))
		for i, v := range longest {
			if _, dup := pos[v]; !dup {
				pos[v] = i
			}
		}
		c.pos[k] = pos
		for _, r := range rs {
			if !isPrefix(r.list, longest) {
				c.bad[k] = true
				c.res.anomaly("incompatible order: %s read key %d as %s, which is not a prefix of %s (the longest read)",
					c.txns[r.txn].name(), k, fmtList(r.list), fmtList(longest))
				break
			}
		}
	}
	c.stats["keys with incompatible orders"] = int64(len(c.bad))
}

// checkInternal checks that each ok transaction's reads agree with its
// own earlier reads and appends.
func (c *appendChecker) checkInternal() {
	for _, t := range c.txns {
		if t.typ != OK {
			continue
		}
		known := map[int][]int64{} // the list the transaction must read next
		own := map[int][]int64{}   // its appends so far
		for _, m := range t.mops {
			switch {
			case m.F == mopAppend:
				own[m.Key] = append(own[m.Key], m.Value)
				if l, ok := known[m.Key]; ok {
					known[m.Key] = append(slices.Clone(l), m.Value)
				}
			case m.Garbage != "":
				delete(known, m.Key)
			default:
				if want, ok := known[m.Key]; ok && !slices.Equal(m.List, want) {
					c.res.anomaly("internal: %s read key %d as %s, but its earlier read and appends make it %s",
						t.name(), m.Key, fmtList(m.List), fmtList(want))
				} else if !ok && !hasSuffix(m.List, own[m.Key]) {
					c.res.anomaly("internal: %s read key %d as %s, without its own appends %v",
						t.name(), m.Key, fmtList(m.List), own[m.Key])
				}
				known[m.Key] = m.List
			}
		}
	}
}

// checkAtomicCommits checks that a committed transaction's appends to a
// key appear in its order, and all of them unless the version order
// ends among them (then the longest read was itself an intermediate
// read, which checkIntermediateReads reports).
func (c *appendChecker) checkAtomicCommits() {
	for _, t := range c.txns {
		if !t.committed {
			continue
		}
		for _, k := range slices.Sorted(maps.Keys(t.appends)) {
			vs := t.appends[k]
			if c.bad[k] {
				continue
			}
			order, pos := c.order[k], c.pos[k]
			present := 0
			ok := true
			for i, v := range vs {
				p, in := pos[v]
				switch {
				case !in:
					continue
				case i != present || (i > 0 && p <= pos[vs[i-1]]):
					ok = false
				}
				present++
			}
			if ok && present > 0 && present < len(vs) && pos[vs[present-1]] != len(order)-1 {
				ok = false
			}
			if !ok {
				c.res.anomaly("non-atomic commit: %s appended %v to key %d, but its version order is %s",
					t.name(), vs, k, fmtList(order))
			}
		}
	}
}

// checkIntermediateReads reports G1b: an external read that ends on an
// element its writer followed with another append to the key.
func (c *appendChecker) checkIntermediateReads() {
	for _, k := range slices.Sorted(maps.Keys(c.reads)) {
		for _, r := range c.reads[k] {
			if !r.external || len(r.list) == 0 {
				continue
			}
			last := r.list[len(r.list)-1]
			w, ok := c.writer[k][last]
			if !ok || w == r.txn {
				continue
			}
			vs := c.txns[w].appends[k]
			if vs[len(vs)-1] != last {
				c.res.anomaly("G1b (intermediate read): %s read key %d as %s, ending with %d, but %s appended %v to it",
					c.txns[r.txn].name(), k, fmtList(r.list), last, c.txns[w].name(), vs)
			}
		}
	}
}

// checkLostUpdates reports two committed transactions that read the same
// version of a key (before appending to it) and both appended to it:
// under snapshot isolation the second to commit must abort.
func (c *appendChecker) checkLostUpdates() {
	type version struct {
		key  int
		list string
	}
	readers := map[version][]int{}
	for i, t := range c.txns {
		if t.typ != OK {
			continue
		}
		first := map[int]bool{}
		for _, m := range t.mops {
			if first[m.Key] {
				continue
			}
			first[m.Key] = true
			if m.F == mopRead && m.Garbage == "" && len(t.appends[m.Key]) > 0 {
				v := version{m.Key, string(encodeList(m.List))}
				readers[v] = append(readers[v], i)
			}
		}
	}
	for _, v := range slices.SortedFunc(maps.Keys(readers), func(a, b version) int {
		return cmp.Or(cmp.Compare(readers[a][0], readers[b][0]), cmp.Compare(a.key, b.key), cmp.Compare(a.list, b.list))
	}) {
		ts := readers[v]
		if len(ts) < 2 {
			continue
		}
		var who []string
		for _, i := range ts {
			who = append(who, fmt.Sprintf("%s appended %v", c.txns[i].name(), c.txns[i].appends[v.key]))
		}
		list, _ := decodeList([]byte(v.list))
		c.res.anomaly("lost update: %d committed transactions read key %d as %s and appended to it: %s",
			len(ts), v.key, fmtList(list), strings.Join(who, ", "))
	}
}

// checkLostAppends checks every acknowledged append against the final
// read of its key, and returns how many keys with possibly committed
// appends have no final read.
func (c *appendChecker) checkLostAppends() int {
	final := map[int][]int64{}
	for _, t := range c.txns {
		if t.typ != OK || !t.args.Final {
			continue
		}
		for _, m := range t.mops {
			if m.F == mopRead && m.Garbage == "" && len(m.List) >= len(final[m.Key]) {
				final[m.Key] = m.List
			}
		}
	}
	unread := map[int]bool{}
	for _, t := range c.txns {
		if t.typ == Fail {
			continue
		}
		for _, k := range slices.Sorted(maps.Keys(t.appends)) {
			vs := t.appends[k]
			l, ok := final[k]
			if !ok {
				unread[k] = true
				continue
			}
			if t.typ != OK {
				continue
			}
			for _, v := range vs {
				if !slices.Contains(l, v) {
					c.res.anomaly("lost append: %s appended %d to key %d and committed, but the final read found %s",
						t.name(), v, k, fmtList(l))
				}
			}
		}
	}
	return len(unread)
}

// buildGraph adds the ww, wr and rw edges between committed
// transactions, from every key whose reads agree.
func (c *appendChecker) buildGraph() {
	c.out = make([][]*appendEdge, len(c.txns))
	node := func(k int, v int64) (int, bool) {
		w, ok := c.writer[k][v]
		return w, ok && c.txns[w].committed
	}
	for _, k := range slices.Sorted(maps.Keys(c.order)) {
		order := c.order[k]
		if c.bad[k] {
			continue
		}
		for i := 1; i < len(order); i++ {
			a, okA := node(k, order[i-1])
			b, okB := node(k, order[i])
			if okA && okB {
				c.addEdge(a, b, edgeWW, func() string {
					return fmt.Sprintf("%s appended %d to key %d, then %s appended %d", c.txns[a].name(), order[i-1], k, c.txns[b].name(), order[i])
				})
			}
		}
		for _, r := range c.reads[k] {
			if !r.external {
				continue
			}
			name := c.txns[r.txn].name()
			if n := len(r.list); n > 0 {
				if w, ok := node(k, r.list[n-1]); ok {
					c.addEdge(w, r.txn, edgeWR, func() string {
						return fmt.Sprintf("%s appended %d to key %d, and %s read %s", c.txns[w].name(), r.list[n-1], k, name, fmtList(r.list))
					})
				}
			}
			if n := len(r.list); n < len(order) {
				if w, ok := node(k, order[n]); ok {
					c.addEdge(r.txn, w, edgeRW, func() string {
						return fmt.Sprintf("%s read key %d as %s, then %s appended %d", name, k, fmtList(r.list), c.txns[w].name(), order[n])
					})
				}
			}
		}
	}
}

// checkVersions checks that the store's versions agree with the
// dependency graph. A restrictive lock holds its keys until it commits,
// so whatever a locked transaction depends on (ww, wr: it appended after
// it or read it; rw: it appended after the other read) committed at a
// smaller version; a lock-free snapshot read sees exactly the commits at
// or below its snapshot version.
func (c *appendChecker) checkVersions() {
	for _, es := range c.out {
		for _, e := range es {
			a, b := c.txns[e.from], c.txns[e.to]
			if a.version == 0 || b.version == 0 {
				continue
			}
			c.stats["edges with versions"]++
			ok := a.version < b.version
			if b.args.Mode == appendSnapshot && e.kinds == edgeWR {
				ok = a.version <= b.version
			}
			if !ok {
				k := kindIndex(e.kinds & -e.kinds)
				c.res.anomaly("version order: %s -%s-> %s, but %s is at version %d and %s at %d: %s",
					a.name(), edgeNames[k], b.name(), a.name(), a.version, b.name(), b.version, e.why[k])
			}
		}
	}
}

// addEdge adds kind to the edge a→b (never a self-loop), explained by
// why() the first time.
func (c *appendChecker) addEdge(a, b int, kind uint8, why func() string) {
	if a == b {
		return
	}
	e := c.edges[[2]int{a, b}]
	if e == nil {
		e = &appendEdge{from: a, to: b}
		c.edges[[2]int{a, b}] = e
		c.out[a] = append(c.out[a], e)
	}
	if e.kinds&kind == 0 {
		e.kinds |= kind
		e.why[kindIndex(kind)] = why()
		c.stats["edges "+edgeNames[kindIndex(kind)]]++
	}
}

func kindIndex(kind uint8) int {
	switch kind {
	case edgeWW:
		return 0
	case edgeWR:
		return 1
	}
	return 2
}

// findCycles looks in each strongly connected component for a G0, a G1c
// and a G-single cycle (anomalies), and for a G2 cycle only when it has
// none of those (allowed under snapshot isolation: a note).
func (c *appendChecker) findCycles() error {
	var nodes []int
	for i, t := range c.txns {
		if t.committed {
			nodes = append(nodes, i)
		}
	}
	all := func(int) bool { return true }
	comps := c.sccs(nodes, edgeWW|edgeWR|edgeRW, all)
	slices.SortFunc(comps, func(a, b []int) int { return cmp.Compare(slices.Min(a), slices.Min(b)) })
	for _, comp := range comps {
		if len(comp) < 2 {
			continue
		}
		if err := c.ctx.Err(); err != nil {
			return err
		}
		c.stats["cyclic components"]++
		member := make(map[int]bool, len(comp))
		for _, n := range comp {
			member[n] = true
		}
		in := func(n int) bool { return member[n] }
		found := false
		for _, sub := range c.sccs(comp, edgeWW, in) {
			if len(sub) > 1 {
				c.reportCycle("G0 (write cycle)", c.shortestCycle(sub, edgeWW), edgeWW, false)
				found = true
			}
		}
		for _, sub := range c.sccs(comp, edgeWW|edgeWR, in) {
			if len(sub) < 2 {
				continue
			}
			subIn := setOf(sub)
			if cyc := c.cycleThrough(sub, edgeWR, edgeWW|edgeWR, subIn); cyc != nil {
				c.reportCycle("G1c (circular information flow)", cyc, edgeWW|edgeWR, false)
				found = true
			}
		}
		if cyc := c.cycleThrough(comp, edgeRW, edgeWW|edgeWR, in); cyc != nil {
			c.reportCycle("G-single (read skew)", cyc, edgeWW|edgeWR, true)
			found = true
		}
		if !found {
			if cyc := c.cycleThrough(comp, edgeRW, edgeWW|edgeWR|edgeRW, in); cyc != nil {
				c.stats["G2 cycles (allowed)"]++
				if len(c.res.Notes) < maxAnomalies {
					c.res.Notes = append(c.res.Notes, "G2 (write skew, allowed under snapshot isolation): "+c.explain(cyc, edgeWW|edgeWR|edgeRW, true))
				}
			}
		}
	}
	return nil
}

func setOf(ns []int) func(int) bool {
	m := make(map[int]bool, len(ns))
	for _, n := range ns {
		m[n] = true
	}
	return func(n int) bool { return m[n] }
}

// shortestCycle returns a shortest cycle through the first node of comp
// over edges of mask, as its nodes with the first repeated at the end.
func (c *appendChecker) shortestCycle(comp []int, mask uint8) []int {
	s := slices.Min(comp)
	return c.path(s, s, mask, setOf(comp))
}

// cycleThrough returns the shortest cycle found that starts with an edge
// of kind first (of at most appendMaxSearches tried) and returns over
// edges of mask, inside the nodes in; nil if there is none.
func (c *appendChecker) cycleThrough(comp []int, first, mask uint8, in func(int) bool) []int {
	var best []int
	tries := 0
	for _, a := range slices.Sorted(slices.Values(comp)) {
		for _, e := range c.out[a] {
			if e.kinds&first == 0 || !in(e.to) {
				continue
			}
			if tries++; tries > appendMaxSearches {
				return best
			}
			if p := c.path(e.to, a, mask, in); p != nil && (best == nil || len(p)+1 < len(best)) {
				best = append([]int{a}, p...)
			}
		}
	}
	return best
}

// path returns a shortest path from → to over edges of mask inside in
// (a cycle when from == to), as its nodes; nil if there is none.
func (c *appendChecker) path(from, to int, mask uint8, in func(int) bool) []int {
	prev := map[int]int{}
	visited := map[int]bool{from: true}
	queue := []int{from}
	for len(queue) > 0 {
		v := queue[0]
		queue = queue[1:]
		for _, e := range c.out[v] {
			if e.kinds&mask == 0 || !in(e.to) {
				continue
			}
			if e.to == to {
				p := []int{to}
				for u := v; ; u = prev[u] {
					p = append(p, u)
					if u == from {
						break
					}
				}
				slices.Reverse(p)
				return p
			}
			if !visited[e.to] {
				visited[e.to] = true
				prev[e.to] = v
				queue = append(queue, e.to)
			}
		}
	}
	return nil
}

// reportCycle adds a cycle anomaly.
func (c *appendChecker) reportCycle(kind string, cycle []int, mask uint8, firstRW bool) {
	if cycle == nil {
		panic("jepsen: append checker: no cycle in a cyclic component")
	}
	c.stats[strings.Fields(kind)[0]+" cycles"]++
	c.res.anomaly("%s: %s", kind, c.explain(cycle, mask, firstRW))
}

// explain renders a cycle as "T1 -ww-> T2 -wr-> T1: why; why", taking
// for each step the first kind of ww, wr, rw in mask the edge has (rw
// for the first step if firstRW).
func (c *appendChecker) explain(cycle []int, mask uint8, firstRW bool) string {
	var b strings.Builder
	var whys []string
	b.WriteString(c.txns[cycle[0]].name())
	for i := 0; i+1 < len(cycle); i++ {
		e := c.edges[[2]int{cycle[i], cycle[i+1]}]
		kinds := e.kinds & mask
		if i == 0 && firstRW {
			kinds = edgeRW
		}
		k := 0
		for ; k < 3 && kinds&(1<<k) == 0; k++ {
		}
		fmt.Fprintf(&b, " -%s-> %s", edgeNames[k], c.txns[cycle[i+1]].name())
		whys = append(whys, e.why[k])
	}
	return b.String() + ": " + strings.Join(whys, "; ")
}

// sccs returns the strongly connected components of the graph over
// nodes and edges of mask whose targets are in (Tarjan, iterative).
func (c *appendChecker) sccs(nodes []int, mask uint8, in func(int) bool) [][]int {
	index := make(map[int]int, len(nodes))
	low := make(map[int]int, len(nodes))
	onStack := map[int]bool{}
	var stack []int
	var comps [][]int
	type frame struct{ v, next int }
	visit := func(v int) {
		index[v], low[v] = len(index), len(index)
		stack = append(stack, v)
		onStack[v] = true
	}
	for _, root := range nodes {
		if _, seen := index[root]; seen {
			continue
		}
		visit(root)
		calls := []frame{{v: root}}
		for len(calls) > 0 {
			f := &calls[len(calls)-1]
			v := f.v
			if f.next < len(c.out[v]) {
				e := c.out[v][f.next]
				f.next++
				if e.kinds&mask == 0 || !in(e.to) {
					continue
				}
				if _, seen := index[e.to]; !seen {
					visit(e.to)
					calls = append(calls, frame{v: e.to})
				} else if onStack[e.to] {
					low[v] = min(low[v], index[e.to])
				}
				continue
			}
			if low[v] == index[v] {
				var comp []int
				for {
					w := stack[len(stack)-1]
					stack = stack[:len(stack)-1]
					onStack[w] = false
					comp = append(comp, w)
					if w == v {
						break
					}
				}
				comps = append(comps, comp)
			}
			calls = calls[:len(calls)-1]
			if len(calls) > 0 {
				u := calls[len(calls)-1].v
				low[u] = min(low[u], low[v])
			}
		}
	}
	return comps
}

// isPrefix reports whether a is a prefix of b.
func isPrefix(a, b []int64) bool { return len(a) <= len(b) && slices.Equal(a, b[:len(a)]) }

// hasSuffix reports whether a ends with b.
func hasSuffix(a, b []int64) bool { return len(b) <= len(a) && slices.Equal(a[len(a)-len(b):], b) }

// fmtList renders a list, eliding all but its last few elements.
func fmtList(l []int64) string {
	const tail = 4
	if len(l) <= tail+1 {
		return fmt.Sprint(l)
	}
	return fmt.Sprintf("[… %s] (%d elements)", strings.Trim(fmt.Sprint(l[len(l)-tail:]), "[]"), len(l))
}
