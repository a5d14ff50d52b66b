package mvcc

import (
	"bytes"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/opencluster/opencluster/mvcc/ts"
)

var (
	flagSeed = flag.Uint64("seed", 0, "TestDifferential: seed of the first run (0: from the clock)")
	flagRuns = flag.Int("runs", 0, "TestDifferential: number of runs, with seeds seed, seed+1, ... (0: 6, or 2 with -race or -short)")
	flagOps  = flag.Int("ops", 0, "TestDifferential: operations per run (0: 1000, or 500 with -race or -short)")
)

// The small alphabets random operations draw from. Keys are prefixes of one
// another ("a" < "a\x00" < "a\x00b" < "ab" < "abc" < "a\xff"), and the two
// buckets are neighbours whose bucket bytes both differ (0x00ff, 0x0100).
var (
	diffBuckets  = []Bucket{255, 256}
	diffKeys     = []string{"", "a", "a\x00", "a\x00b", "ab", "abc", "a\xff", "b", "\xff"}
	diffPrefixes = []string{"", "a", "a\x00", "ab", "b", "\xff"}
	diffAfters   = []string{"", "a", "a\x00", "aa", "ab", "b"}
)

// diffMaxTS is the largest timestamp written; reads also use diffMaxTS+1
// and Latest.
const diffMaxTS = 40

// TestDifferential runs seeded random operation streams (puts, tombstones,
// GC, gets and scans over two buckets and a small alphabet of keys that are
// prefixes of one another) against the engine and the naive model in
// model_test.go, and checks that every read agrees. At each GC it also
// checks invariant 4 of doc.go directly on the engine: reads at timestamps
// >= the GC timestamp (the GC timestamp itself, the next one, one above
// every version, Latest and a few drawn in between) return the same values
// before and after.
//
// Each run also draws a storage config from its seed: how many operations
// share a batch before it commits (reads go to that indexed batch, which
// sees its own writes, or to the DB when nothing is pending), and how often
// the memtable is flushed and compacted into sstables.
//
// Every run logs its seed. A failing run prints its operations as a
// testdata script (paste it into testdata/ and run TestDataDriven with
// -rewrite) and can be replayed with
//
//	go test ./mvcc -run TestDifferential -seed=<seed> -runs=1 -v
func TestDifferential(t *testing.T) {
	seed := *flagSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	runs, ops := 6, 1000
	if raceEnabled || testing.Short() {
		runs, ops = 2, 500
	}
	if *flagRuns > 0 {
		runs = *flagRuns
	}
	if *flagOps > 0 {
		ops = *flagOps
	}
	for i := range runs {
		s := seed + uint64(i)
		t.Run(fmt.Sprintf("seed=%d", s), func(t *testing.T) {
			t.Logf("replay: go test ./mvcc -run 'TestDifferential/seed=%d$' -seed=%d -runs=1 -ops=%d", s, s, ops)
			newDiffRun(t, s).run(ops)
		})
	}
}

// diffRun is one seeded run.
type diffRun struct {
	t   *testing.T
	rng *rand.Rand
	eng *Engine
	m   model
	// batch holds pending writes; reads see them.
	batch   *pebble.Batch
	pending int
	// The run's storage config, drawn from the seed.
	commitEvery int     // operations per batch
	flushProb   float64 // chance of a flush and compaction after a commit
	// history is every operation so far, for the failure report.
	history []diffOp
	seed    uint64
}

func newDiffRun(t *testing.T, seed uint64) *diffRun {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	r := &diffRun{
		t:           t,
		rng:         rng,
		eng:         newTestEngine(t),
		m:           model{},
		commitEvery: []int{1, 1, 3, 16}[rng.IntN(4)],
		flushProb:   []float64{0, 0.02, 0.2}[rng.IntN(3)],
		seed:        seed,
	}
	r.batch = r.eng.NewBatch()
	t.Cleanup(func() { _ = r.batch.Close() })
	t.Logf("config: commitEvery=%d flushProb=%.2f", r.commitEvery, r.flushProb)
	return r
}

// diffOp is one random operation. Its String is a line of the TestDataDriven
// DSL (or a comment, for storage operations that must not change results).
type diffOp struct {
	kind   string // put, del, get, scan, gc, commit, flush
	b      Bucket
	key    []byte
	at     ts.Timestamp // ts of put/del/get/scan, before of gc
	value  []byte
	prefix []byte
	after  []byte // nil: unset
	limit  int
}

func (o diffOp) String() string {
	q := func(k []byte) string { s := fmtKey(k); return s[1 : len(s)-1] }
	switch o.kind {
	case "put":
		return fmt.Sprintf("put b=%d k=%s ts=%s v=%s", o.b, q(o.key), fmtTS(o.at), q(o.value))
	case "del":
		return fmt.Sprintf("del b=%d k=%s ts=%s", o.b, q(o.key), fmtTS(o.at))
	case "get":
		return fmt.Sprintf("get b=%d k=%s ts=%s", o.b, q(o.key), fmtTS(o.at))
	case "scan":
		s := fmt.Sprintf("scan b=%d prefix=%s", o.b, q(o.prefix))
		if o.after != nil {
			s += " after=" + q(o.after)
		}
		return s + fmt.Sprintf(" ts=%s limit=%d", fmtTS(o.at), o.limit)
	case "gc":
		return fmt.Sprintf("gc b=%d before=%s", o.b, fmtTS(o.at))
	default:
		return "# " + o.kind
	}
}

func (r *diffRun) randTS() ts.Timestamp { return ts.Timestamp(1 + r.rng.IntN(diffMaxTS)) }

func (r *diffRun) randReadTS() ts.Timestamp {
	if r.rng.IntN(10) == 0 {
		return Latest
	}
	return ts.Timestamp(1 + r.rng.IntN(diffMaxTS+1))
}

func (r *diffRun) randOp(i int) diffOp {
	o := diffOp{
		b:   diffBuckets[r.rng.IntN(len(diffBuckets))],
		key: []byte(diffKeys[r.rng.IntN(len(diffKeys))]),
	}
	switch p := r.rng.IntN(100); {
	case p < 35:
		o.kind, o.at = "put", r.randTS()
		if r.rng.IntN(8) != 0 {
			o.value = fmt.Appendf(nil, "v%d", i)
		}
	case p < 50:
		o.kind, o.at = "del", r.randTS()
	case p < 72:
		o.kind, o.at = "get", r.randReadTS()
	case p < 92:
		o.kind, o.at, o.limit = "scan", r.randReadTS(), 1+r.rng.IntN(5)
		o.prefix = []byte(diffPrefixes[r.rng.IntN(len(diffPrefixes))])
		if r.rng.IntN(2) == 0 {
			o.after = []byte(diffAfters[r.rng.IntN(len(diffAfters))])
		}
	case p < 97:
		o.kind, o.at = "gc", r.randTS()
		if r.rng.IntN(10) == 0 {
			o.at = Latest
		}
	case p < 99:
		o.kind = "commit"
	default:
		o.kind = "flush"
	}
	return o
}

func (r *diffRun) run(ops int) {
	for i := range ops {
		o := r.randOp(i)
		r.history = append(r.history, o)
		r.apply(o)
		if i%100 == 99 {
			r.checkAll(false)
		}
	}
	r.commit()
	r.checkAll(true)
}

// reader returns what reads go to: the batch when it holds pending writes,
// else either the batch or the DB.
func (r *diffRun) reader() Reader {
	if r.pending > 0 || r.rng.IntN(2) == 0 {
		return r.batch
	}
	return r.eng.DB()
}

func (r *diffRun) commit() {
	if r.pending > 0 {
		r.must(r.batch.Commit(pebble.Sync))
		r.must(r.batch.Close())
		r.batch, r.pending = r.eng.NewBatch(), 0
	}
	if r.rng.Float64() < r.flushProb {
		r.flush()
	}
}

func (r *diffRun) flush() {
	r.must(r.eng.DB().Flush())
	r.must(r.eng.DB().Compact(r.t.Context(), encode(nil), encode([]byte{0xff}), false))
}

func (r *diffRun) wrote() {
	r.pending++
	if r.pending >= r.commitEvery {
		r.commit()
	}
}

func (r *diffRun) apply(o diffOp) {
	switch o.kind {
	case "put":
		r.must(PutVersion(r.batch, o.b, o.key, o.at, o.value))
		r.m.write(o.b, o.key, o.at, o.value, false)
		r.wrote()
	case "del":
		r.must(PutTombstone(r.batch, o.b, o.key, o.at))
		r.m.write(o.b, o.key, o.at, nil, true)
		r.wrote()
	case "get":
		r.checkGet(r.reader(), o.b, o.key, o.at)
	case "scan":
		r.checkScan(r.reader(), o.b, o.prefix, o.after, o.at, o.limit)
	case "gc":
		tss := r.observeTS(o.at)
		before := r.observe(r.batch, o.b, tss)
		n, err := GC(r.batch, o.b, o.at)
		r.must(err)
		if want := r.m.gc(o.b, o.at); n != want {
			r.fail("GC deleted %d versions, model deleted %d", n, want)
		}
		// Invariant 4: reads at timestamps >= the GC timestamp are
		// unchanged. Deleted keys read as not found either way; only the
		// Version of a not-found read (the tombstone's) may change.
		after := r.observe(r.batch, o.b, tss)
		for i := range before {
			if !sameVisible(before[i], after[i]) {
				r.fail("invariant 4: %s changed by GC: before %s after %s", before[i].read, before[i].result, after[i].result)
			}
		}
		r.wrote()
	case "commit":
		r.commit()
	case "flush":
		r.commit()
		r.flush()
	default:
		panic("unknown op " + o.kind)
	}
}

// observation is a read and what it returned.
type observation struct {
	read   string
	result string
	found  string // result with the Versions of not-found reads left out
}

func sameVisible(x, y observation) bool { return x.read == y.read && x.found == y.found }

// observeTS returns the timestamps GC at before is checked at: before
// itself and just above it, diffMaxTS+1 and Latest (above every version),
// and a few drawn at random in between.
func (r *diffRun) observeTS(before ts.Timestamp) []ts.Timestamp {
	if before == Latest {
		return []ts.Timestamp{Latest}
	}
	tss := []ts.Timestamp{before, before + 1, diffMaxTS + 1, Latest}
	for range 4 {
		if before < diffMaxTS {
			tss = append(tss, before+ts.Timestamp(r.rng.IntN(int(diffMaxTS-before))))
		}
	}
	return tss
}

// observe reads every key of bucket b, and scans it, at each of tss.
func (r *diffRun) observe(rd Reader, b Bucket, tss []ts.Timestamp) []observation {
	var obs []observation
	for _, t := range tss {
		for _, k := range diffKeys {
			v, err := Get(rd, b, []byte(k), t)
			r.must(err)
			found := fmtValue(v)
			if !v.Found {
				found = "<not found>"
			}
			obs = append(obs, observation{
				read:   diffOp{kind: "get", b: b, key: []byte(k), at: t}.String(),
				result: fmtValue(v),
				found:  found,
			})
		}
		kvs, more, err := Scan(rd, b, nil, nil, t, 1000, 0)
		r.must(err)
		s := fmtScan(kvs, more)
		obs = append(obs, observation{read: diffOp{kind: "scan", b: b, at: t, limit: 1000}.String(), result: s, found: s})
	}
	return obs
}

func (r *diffRun) checkGet(rd Reader, b Bucket, key []byte, at ts.Timestamp) {
	got, err := Get(rd, b, key, at)
	r.must(err)
	want := r.m.get(b, key, at)
	if got.Found != want.Found || !bytes.Equal(got.Bytes, want.Bytes) || got.Version != want.Version {
		r.fail("%s: engine %s, model %s", diffOp{kind: "get", b: b, key: key, at: at}, fmtValue(got), fmtValue(want))
	}
}

func (r *diffRun) checkScan(rd Reader, b Bucket, prefix, after []byte, at ts.Timestamp, limit int) {
	kvs, more, err := Scan(rd, b, prefix, after, at, limit, 0)
	r.must(err)
	wkvs, wmore := r.m.scan(b, prefix, after, at, limit)
	if got, want := fmtScan(kvs, more), fmtScan(wkvs, wmore); got != want {
		o := diffOp{kind: "scan", b: b, prefix: prefix, after: after, at: at, limit: limit}
		r.fail("%s:\nengine:\n%smodel:\n%s", o, got, want)
	}
}

// checkAll compares every key and a full scan of both buckets at every
// timestamp, reading from the batch and, when it is empty and this is the
// final check, also from the DB.
func (r *diffRun) checkAll(final bool) {
	readers := []Reader{r.reader()}
	if final && r.pending == 0 {
		readers = []Reader{r.batch, r.eng.DB()}
	}
	for _, rd := range readers {
		for _, b := range diffBuckets {
			for t := ts.Timestamp(1); t <= diffMaxTS+1; t++ {
				for _, k := range diffKeys {
					r.checkGet(rd, b, []byte(k), t)
				}
				r.checkScan(rd, b, nil, nil, t, 1000)
			}
			r.checkScan(rd, b, nil, nil, Latest, 1000)
		}
	}
}

func (r *diffRun) must(err error) {
	r.t.Helper()
	if err != nil {
		r.fail("unexpected error: %s", err.Error())
	}
}

// fail reports a divergence with the seed and the operations that led to
// it, written out as a testdata script.
func (r *diffRun) fail(format string, args ...any) {
	r.t.Helper()
	var script strings.Builder
	fmt.Fprintf(&script, "# TestDifferential seed=%d commitEvery=%d flushProb=%.2f\n", r.seed, r.commitEvery, r.flushProb)
	for _, o := range r.history {
		s := o.String()
		if strings.HasPrefix(s, "#") {
			fmt.Fprintf(&script, "%s\n\n", s)
			continue
		}
		fmt.Fprintf(&script, "%s\n----\n\n", s)
	}
	fmt.Fprintf(&script, "dump\n----\n")
	path := "<not saved>"
	if f, err := os.CreateTemp("", fmt.Sprintf("mvcc-differential-%d-*.txt", r.seed)); err == nil {
		_, _ = f.WriteString(script.String())
		_ = f.Close()
		path = f.Name()
	}
	last := r.history[max(0, len(r.history)-20):]
	lines := make([]string, len(last))
	for i, o := range last {
		lines[i] = o.String()
	}
	dump, err := dumpEngine(r.batch)
	if err != nil {
		dump = "error: " + err.Error()
	}
	r.t.Fatalf("seed %d, op %d: %s\nlast operations:\n%s\nengine:\n%smodel:\n%s\nwhole history as a testdata script: %s\nreplay: go test ./mvcc -run TestDifferential -seed=%d -runs=1",
		r.seed, len(r.history)-1, fmt.Sprintf(format, args...), strings.Join(lines, "\n"), dump, r.m, path, r.seed)
}
