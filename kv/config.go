package kv

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/opencluster/opencluster/mvcc"
	"github.com/opencluster/opencluster/mvcc/ts"
	"github.com/opencluster/opencluster/rpc/cmdpb"
)

// Config configures a Node. A zero field means its default.
type Config struct {
	// DataDir holds the node's Pebble database. Required unless FS is an
	// in-memory filesystem.
	DataDir string
	// FS is the filesystem (nil: the OS). Tests use vfs.NewMem().
	FS vfs.FS
	// AdvertiseAddr is the gRPC address clients reach this node at (shown
	// by Status).
	AdvertiseAddr string
	// Buckets is the bucket count used when the data directory is created
	// (default 64, 1..4096). An existing directory keeps its own count.
	Buckets int
	// Clock is the time source for lock deadlines and ttls (the elapsed
	// time a lease depends on); it should be monotonic.
	Clock ts.Clock
	// OracleClock is the wall clock timestamps are taken from (default:
	// Clock). The test-only admin surface skews it; timestamps stay
	// correct (T1-T3) however it jumps.
	OracleClock ts.Clock
	// Faults plants bugs for the consistency harness's negative controls
	// (nil: none). Only a test-only admin surface sets it.
	Faults *Faults
	// Knobs are hooks for tests that must stop a request at a chosen point
	// (nil: none).
	Knobs *TestingKnobs
	// Rand is the source of lock codes (default crypto/rand).
	Rand io.Reader
	// Logger receives the node's logs (default: discard).
	Logger *slog.Logger
	// Registerer receives the node's metrics (nil: none).
	Registerer prometheus.Registerer
	// TickInterval is one Raft tick (default 100ms).
	TickInterval time.Duration
	// ElectionTicks is the Raft election timeout in ticks (default 10).
	ElectionTicks int
	// HeartbeatTicks is the Raft heartbeat interval in ticks (default 1).
	HeartbeatTicks int
	// GCWindow is how long old versions stay readable (default 10m).
	GCWindow time.Duration
	// GCInterval is how often each bucket collects garbage (default 1m).
	GCInterval time.Duration
	// ExpiryInterval is how often the leader checks lock deadlines
	// (default 100ms).
	ExpiryInterval time.Duration
	// DisableLeaseReads makes every linearizable read take a ReadIndex
	// round, as if no leader ever held a read lease (lease.go); the
	// oracle then confirms every timestamp it issues by one too (tso.go).
	DisableLeaseReads bool
	// OrphanSweepInterval is how often each bucket's leader lists its key
	// locks to release orphans (default 2s; see orphanSweeper).
	OrphanSweepInterval time.Duration
	// MemTableBytes is passed to the engine (default: mvcc's).
	MemTableBytes uint64

	// NodeID is the id a new data directory gets (default: 1 for the node
	// that bootstraps a cluster, random for one that joins). Ids are never
	// reused.
	NodeID uint64
	// Join, when set, makes a new data directory join an existing cluster
	// instead of bootstrapping one: it registers the node id with the
	// cluster and returns the cluster's identity. An existing directory
	// never calls it.
	Join func(ctx context.Context, nodeID uint64) (*cmdpb.JoinResponse, error)
	// Transport carries Raft messages to other nodes (nil: a one-node
	// cluster).
	Transport Transport
	// Remote runs bucket operations on other nodes' leaders (nil: every
	// operation runs here, as in a one-node cluster).
	Remote Remote
	// Directory is the failure detector's view of the nodes (nil: the
	// meta group's registry only, every registered node alive).
	Directory Directory
	// Replicas is the replica count each group grows to (default 3).
	Replicas int
	// Rebalance runs the rebalancer on the meta leader: it owns bucket
	// placement (repair after DeadAfter, balance of replicas and leaders)
	// instead of the simple growth and leader preferences.
	Rebalance bool
	// RebalanceInterval is how often the rebalancer plans (default 2s).
	RebalanceInterval time.Duration
	// DeadAfter is how long a node must be down before its replicas are
	// re-created elsewhere (default 1m).
	DeadAfter time.Duration
	// RaftLogKeep is how many applied entries a group's log keeps; it is
	// truncated once twice as many accumulate (default 1000). A follower
	// that falls further behind catches up by snapshot.
	RaftLogKeep int
	// SnapshotSSTBytes is the size (keys plus values) from which a received
	// snapshot is written to SST files and ingested instead of applied as
	// one batch through the WAL and memtable (default 4 MiB; 1 ingests
	// every non-empty snapshot). See snapshotSSTBytes for the trade-off.
	SnapshotSSTBytes int
	// SnapshotRate bounds the bytes per second this node streams in
	// snapshots, over all of them at once (default 64 MiB/s; negative:
	// unbounded), so that moving replicas leaves room for requests.
	SnapshotRate int64
}

// DefaultConfig returns the production defaults.
func DefaultConfig() Config {
	return Config{
		Buckets:             64,
		Replicas:            3,
		RaftLogKeep:         1000,
		SnapshotSSTBytes:    snapshotSSTBytes,
		SnapshotRate:        64 << 20,
		RebalanceInterval:   2 * time.Second,
		DeadAfter:           time.Minute,
		Clock:               ts.RealClock{},
		Rand:                rand.Reader,
		TickInterval:        100 * time.Millisecond,
		ElectionTicks:       10,
		HeartbeatTicks:      1,
		GCWindow:            10 * time.Minute,
		GCInterval:          time.Minute,
		ExpiryInterval:      100 * time.Millisecond,
		OrphanSweepInterval: 2 * time.Second,
	}
}

// TestConfig returns fast settings for tests: an in-memory filesystem,
// 8 buckets and short intervals.
func TestConfig() Config {
	c := DefaultConfig()
	c.FS = vfs.NewMem()
	c.Buckets = 8
	c.TickInterval = 10 * time.Millisecond
	c.ExpiryInterval = 10 * time.Millisecond
	c.OrphanSweepInterval = time.Second
	return c
}

func (c *Config) fillDefaults() {
	d := DefaultConfig()
	if c.Buckets == 0 {
		c.Buckets = d.Buckets
	}
	if c.Replicas == 0 {
		c.Replicas = d.Replicas
	}
	if c.RaftLogKeep == 0 {
		c.RaftLogKeep = d.RaftLogKeep
	}
	if c.SnapshotSSTBytes == 0 {
		c.SnapshotSSTBytes = d.SnapshotSSTBytes
	}
	if c.SnapshotRate == 0 {
		c.SnapshotRate = d.SnapshotRate
	}
	if c.RebalanceInterval == 0 {
		c.RebalanceInterval = d.RebalanceInterval
	}
	if c.DeadAfter == 0 {
		c.DeadAfter = d.DeadAfter
	}
	if c.Clock == nil {
		c.Clock = d.Clock
	}
	if c.OracleClock == nil {
		c.OracleClock = c.Clock
	}
	if c.Rand == nil {
		c.Rand = d.Rand
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.TickInterval == 0 {
		c.TickInterval = d.TickInterval
	}
	if c.ElectionTicks == 0 {
		c.ElectionTicks = d.ElectionTicks
	}
	if c.HeartbeatTicks == 0 {
		c.HeartbeatTicks = d.HeartbeatTicks
	}
	if c.GCWindow == 0 {
		c.GCWindow = d.GCWindow
	}
	if c.GCInterval == 0 {
		c.GCInterval = d.GCInterval
	}
	if c.ExpiryInterval == 0 {
		c.ExpiryInterval = d.ExpiryInterval
	}
	if c.OrphanSweepInterval == 0 {
		c.OrphanSweepInterval = d.OrphanSweepInterval
	}
}

// MetaVoters is how many voters the meta group grows to in a cluster of
// nodes nodes: metaReplicas, or Replicas if more, but no more than nodes.
func (c Config) MetaVoters(nodes int) int {
	return min(max(c.Replicas, metaReplicas), nodes)
}

// Validate reports the first invalid field, after defaults are filled.
func (c Config) Validate() error {
	c.fillDefaults()
	switch {
	case c.DataDir == "" && c.FS == nil:
		return fmt.Errorf("%w: Config.DataDir is required", ErrInvalid)
	case c.Buckets < 1 || c.Buckets > mvcc.MaxBuckets:
		return fmt.Errorf("%w: Config.Buckets = %d, want 1..%d", ErrInvalid, c.Buckets, mvcc.MaxBuckets)
	case c.TickInterval < time.Millisecond:
		return fmt.Errorf("%w: Config.TickInterval = %s, want >= 1ms", ErrInvalid, c.TickInterval)
	case c.ElectionTicks <= c.HeartbeatTicks:
		return fmt.Errorf("%w: Config.ElectionTicks = %d must exceed HeartbeatTicks = %d", ErrInvalid, c.ElectionTicks, c.HeartbeatTicks)
	case c.Replicas < 1 || c.Replicas > maxReplicas:
		return fmt.Errorf("%w: Config.Replicas = %d, want 1..%d", ErrInvalid, c.Replicas, maxReplicas)
	case c.SnapshotSSTBytes < 0:
		return fmt.Errorf("%w: Config.SnapshotSSTBytes = %d, want >= 0", ErrInvalid, c.SnapshotSSTBytes)
	case c.GCWindow < time.Second:
		return fmt.Errorf("%w: Config.GCWindow = %s, want >= 1s", ErrInvalid, c.GCWindow)
	}
	return nil
}
