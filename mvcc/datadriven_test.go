package mvcc

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/cockroachdb/datadriven"
	"github.com/cockroachdb/pebble/v2"
)

// TestDataDriven checks MVCC visibility (invariants 2 and 4 of doc.go) with
// the scripts in testdata/*.txt. Every script runs on a fresh engine under
// each storage config below and must print the same output under all of
// them:
//
//   - memtable: every write command is its own committed batch; reads go
//     to the DB, so they are served by the memtable.
//   - sstables: as memtable, but every write command is followed by a flush
//     and a full compaction, so reads go through sstables (columnar blocks,
//     the cockroachkvs key seeker, bloom filters).
//   - batch: the whole script runs in one uncommitted indexed batch, which
//     reads its own writes.
//
// The DSL (keys and values are written Go-style without quotes, so a\x00 is
// "a" then a zero byte and v= is the empty value; timestamps are numbers or
// "latest"):
//
//	put b=<bucket> k=<key> ts=<ts> v=<value> [req=<id>]
//	    PutVersion (PutWrite with req): writes key's version at ts, keeping
//	    the id of the request that wrote it. Prints nothing.
//	del b=<bucket> k=<key> ts=<ts> [req=<id>]
//	    PutTombstone (PutWrite with req): writes a deletion of key at ts.
//	    Prints nothing.
//	written-by b=<bucket> k=<key> req=<id> [ts=<ts>]
//	    WrittenBy at ts (default latest). Prints "@<version>" or
//	    "<not found>".
//	get b=<bucket> k=<key> ts=<ts>
//	    Get at ts. Prints "<value> @<version>", "<deleted @<version>>" for a
//	    key whose newest version <= ts is a tombstone, or "<not found>".
//	scan b=<bucket> [prefix=<p>] [after=<key>] ts=<ts> [limit=<n>]
//	    Scan (limit defaults to 1000; after unset means from the start).
//	    Prints "<key> -> <value> @<version>" lines, then more=<bool>.
//	gc b=<bucket> before=<ts>
//	    GC. Prints the number of versions deleted.
//	dump
//	    Prints every engine key, in engine order, decoded:
//	    "b=<bucket> d <key> @<ts> -> <value>|<tombstone> [req <id>]" for
//	    versions.
//	_breakpoint
//	    Does nothing: set a debugger breakpoint on its handler to stop at a
//	    given line of a script.
//
// Regenerate the expected output with
//
//	go test ./mvcc -run TestDataDriven -rewrite
//
// and commit only diffs you understand.
func TestDataDriven(t *testing.T) {
	files, err := filepath.Glob("testdata/*.txt")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no testdata/*.txt scripts")
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			for _, cfg := range []ddConfig{ddMemtable, ddSSTables, ddBatch} {
				t.Run("config="+cfg.String(), func(t *testing.T) {
					env := newDDEnv(t, cfg)
					datadriven.RunTest(t, file, env.handle)
				})
			}
		})
	}
}

// ddConfig is how a script's writes reach storage.
type ddConfig int

const (
	ddMemtable ddConfig = iota
	ddSSTables
	ddBatch
)

func (c ddConfig) String() string {
	switch c {
	case ddMemtable:
		return "memtable"
	case ddSSTables:
		return "sstables"
	case ddBatch:
		return "batch"
	}
	return fmt.Sprintf("ddConfig(%d)", int(c))
}

// ddEnv is the state a script acts on.
type ddEnv struct {
	cfg ddConfig
	eng *Engine
	// batch is the script's one open batch under config batch; nil
	// otherwise.
	batch *pebble.Batch
}

func newDDEnv(t *testing.T, cfg ddConfig) *ddEnv {
	env := &ddEnv{cfg: cfg, eng: newTestEngine(t)}
	if cfg == ddBatch {
		env.batch = env.eng.NewBatch()
		t.Cleanup(func() { _ = env.batch.Close() })
	}
	return env
}

// reader is what reads go to.
func (env *ddEnv) reader() Reader {
	if env.batch != nil {
		return env.batch
	}
	return env.eng.DB()
}

// write runs fn on a batch and, unless the script runs in one batch,
// commits it (and under config sstables, flushes and compacts).
func (env *ddEnv) write(t *testing.T, fn func(rw ReadWriter) error) error {
	if env.batch != nil {
		return fn(env.batch)
	}
	b := env.eng.NewBatch()
	defer b.Close()
	if err := fn(b); err != nil {
		return err
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return err
	}
	if env.cfg == ddSSTables {
		flushAndCompact(t, env.eng)
	}
	return nil
}

// handle runs one command. Handlers are in datadriven_handlers_test.go.
func (env *ddEnv) handle(t *testing.T, d *datadriven.TestData) string {
	var (
		out string
		err error
	)
	switch d.Cmd {
	case "put":
		out, err = env.handlePut(t, d)
	case "del":
		out, err = env.handleDel(t, d)
	case "get":
		out, err = env.handleGet(t, d)
	case "scan":
		out, err = env.handleScan(t, d)
	case "gc":
		out, err = env.handleGC(t, d)
	case "written-by":
		out, err = env.handleWrittenBy(t, d)
	case "dump":
		out, err = env.handleDump(t, d)
	case "_breakpoint":
		// Set a breakpoint here to stop at this line of a script.
		return ""
	default:
		t.Fatalf("%s: unknown command %q", d.Pos, d.Cmd)
	}
	if err != nil {
		return "error: " + err.Error() + "\n"
	}
	return out
}
