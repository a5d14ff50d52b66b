package mvcc

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/cockroachkvs"
	"github.com/cockroachdb/pebble/v2/sstable/block"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// Config configures an Engine. The zero value of every field means its
// default.
type Config struct {
	// FS is the filesystem; nil is the OS filesystem. Tests use vfs.NewMem().
	FS vfs.FS
	// CacheBytes is the block cache size (default 32 MiB), on top of the
	// memtables that Pebble charges to its cache (see Open).
	CacheBytes int64
	// MemTableBytes is the memtable size (default 16 MiB). A node's peak
	// resident set holds about two of them once they have grown to full
	// size: the one filling and one flushed that Pebble keeps for reuse.
	MemTableBytes uint64
	// Logger receives Pebble's log lines; nil discards them.
	Logger *slog.Logger
}

// Engine is a node's Pebble database with the MVCC key layout.
type Engine struct {
	db *pebble.DB
	// dir and opts are what db was opened with (opts after
	// EnsureDefaults); SST writers and ingestion use them.
	dir  string
	opts *pebble.Options
	// stalls counts Pebble's write stalls (see WriteStalls).
	stalls writeStalls
}

// writeStalls counts the times Pebble held writes back (too many
// memtables waiting for a flush, or too many L0 sublevels) and for how
// long. Every write waits through a stall: the Raft log write of every
// group on the node with it, so each one shows in the tail latency.
type writeStalls struct {
	log   *slog.Logger
	count atomic.Int64
	nanos atomic.Int64
	// began is when the stall in progress began (Unix nanoseconds), or 0.
	began atomic.Int64
}

func (w *writeStalls) begin(info pebble.WriteStallBeginInfo) {
	w.began.Store(time.Now().UnixNano())
	w.count.Add(1)
	if w.log != nil {
		w.log.Warn("storage write stall: writes wait for a flush or compaction", "reason", info.Reason)
	}
}

func (w *writeStalls) end() {
	if began := w.began.Swap(0); began != 0 {
		w.nanos.Add(time.Now().UnixNano() - began)
	}
}

// WriteStalls returns how many times Pebble has held writes back since
// the engine opened, and for how long in all (stalls that ended).
func (e *Engine) WriteStalls() (count int64, total time.Duration) {
	return e.stalls.count.Load(), time.Duration(e.stalls.nanos.Load())
}

// Reader reads engine keys: *pebble.DB, an indexed *pebble.Batch and
// *pebble.Snapshot all satisfy it.
type Reader interface {
	Get(key []byte) ([]byte, io.Closer, error)
	NewIter(o *pebble.IterOptions) (*pebble.Iterator, error)
}

// Writer writes engine keys: *pebble.Batch satisfies it.
type Writer interface {
	Set(key, value []byte, o *pebble.WriteOptions) error
	Delete(key []byte, o *pebble.WriteOptions) error
	DeleteRange(start, end []byte, o *pebble.WriteOptions) error
}

// ReadWriter is an indexed batch: reads see its own writes.
type ReadWriter interface {
	Reader
	Writer
}

var (
	_ Reader     = (*pebble.DB)(nil)
	_ Reader     = (*pebble.Snapshot)(nil)
	_ ReadWriter = (*pebble.Batch)(nil)
)

// Open opens (creating if needed) the engine in dir.
func Open(dir string, cfg Config) (*Engine, error) {
	if cfg.CacheBytes <= 0 {
		cfg.CacheBytes = 32 << 20
	}
	if cfg.MemTableBytes == 0 {
		cfg.MemTableBytes = 16 << 20
	}
	// Pebble reserves every memtable's size from the block cache (a bound
	// on its memory as a whole), so a cache no larger than the memtables
	// caches nothing: with a 64 MiB cache and 32 MiB memtables, once the
	// active memtable and the one kept for reuse were full size, every
	// block read missed and was read and decompressed again. The cache is
	// sized for CacheBytes of blocks besides the two memtables a node
	// usually holds; a flush backlog still shrinks it.
	cache := pebble.NewCache(cfg.CacheBytes + 2*int64(cfg.MemTableBytes))
	defer cache.Unref()
	opts := &pebble.Options{
		FS:           cfg.FS,
		Cache:        cache,
		Comparer:     &cockroachkvs.Comparer,
		KeySchema:    cockroachkvs.KeySchema.Name,
		KeySchemas:   map[string]*pebble.KeySchema{cockroachkvs.KeySchema.Name: &cockroachkvs.KeySchema},
		MemTableSize: cfg.MemTableBytes,
		// Two memtables stall writers on a 2-core machine; allow a few more
		// (64 MiB waiting for flushes).
		MemTableStopWritesThreshold: 4,
		FormatMajorVersion:          pebble.FormatNewest,
		Logger:                      pebbleLogger{cfg.Logger},
	}
	opts.Levels[0] = pebble.LevelOptions{
		// Bloom filters on the prefix (user key) make point reads of
		// missing keys cheap; they need the comparer's Split.
		FilterPolicy: bloom.FilterPolicy(10),
		Compression:  func() *block.CompressionProfile { return block.SnappyCompression },
	}
	// Older versions of a key stay in its data block rather than in
	// separate value blocks: an sstable writer holds every value block in
	// Go memory until the table is finished, so a flush of 32 MiB of
	// versions spiked the Go heap by 50-60 MiB (peak RSS under sustained
	// puts: 160-190 MB with them, 120 without, at the same throughput).
	// Value blocks pay off for scans that skip old versions of large
	// values; reads here are point reads of one version.
	opts.Experimental.SpanPolicyFunc = func([]byte) (pebble.SpanPolicy, []byte, error) {
		return pebble.SpanPolicy{DisableValueSeparationBySuffix: true}, nil, nil
	}
	e := &Engine{dir: dir, opts: opts}
	e.stalls.log = cfg.Logger
	opts.EventListener = &pebble.EventListener{
		WriteStallBegin: e.stalls.begin,
		WriteStallEnd:   e.stalls.end,
	}
	opts.EnsureDefaults()
	db, err := pebble.Open(dir, opts)
	if err != nil {
		return nil, fmt.Errorf("mvcc: open %s: %w", dir, err)
	}
	e.db = db
	return e, nil
}

// DB exposes the Pebble database to the packages that share it (Raft
// storage, snapshots).
func (e *Engine) DB() *pebble.DB { return e.db }

// NewBatch returns an indexed batch: its reads see its own writes.
func (e *Engine) NewBatch() *pebble.Batch { return e.db.NewIndexedBatch() }

// Close closes the database.
func (e *Engine) Close() error { return e.db.Close() }

type pebbleLogger struct{ l *slog.Logger }

func (p pebbleLogger) Infof(format string, args ...any) {
	if p.l != nil {
		p.l.Debug(fmt.Sprintf(format, args...), "component", "pebble")
	}
}

func (p pebbleLogger) Errorf(format string, args ...any) {
	if p.l != nil {
		p.l.Error(fmt.Sprintf(format, args...), "component", "pebble")
	}
}

func (p pebbleLogger) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf("pebble: "+format, args...))
}

// getRaw returns a copy of the value at engine key k, or nil, false.
func getRaw(r Reader, k []byte) ([]byte, bool, error) {
	v, closer, err := r.Get(k)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	out := append([]byte(nil), v...)
	return out, true, closer.Close()
}
