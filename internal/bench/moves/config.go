package moves

import (
	"errors"
	"fmt"
	"io"
	"time"
)

var (
	// ErrInvalid marks a Config that Validate refuses.
	ErrInvalid = errors.New("moves: invalid config")
	// ErrTimeout marks a wait that did not end in time (a bucket not
	// replicated, a node not joining, a cluster not balancing).
	ErrTimeout = errors.New("moves: timed out")
)

// Config is one measurement. A zero field means its default.
type Config struct {
	// Exe is the opencluster binary the nodes run (`Exe start ...`).
	// Required.
	Exe string
	// WorkDir holds the nodes' data directories and logs. Required.
	WorkDir string
	// Log receives progress lines (nil: none).
	Log io.Writer

	// BucketMB is the data (keys plus values, MiB) loaded into the one
	// bucket that parts 1 and 2 move. Default 100.
	BucketMB int
	// ClusterMB is the data (MiB) loaded over all buckets of the cluster a
	// fourth node joins in part 3. Default 1024.
	ClusterMB int
	// Buckets is the clusters' bucket count. Default 64.
	Buckets int
	// ValueKB is the size of a loaded value, KiB (at most 1024, the
	// server's limit). Default 64.
	ValueKB int
	// Clients is the goroutines (each with a client connection of its own)
	// of the put workload of part 2. Default 8.
	Clients int
	// PutBytes is the value size of that workload. Default 128.
	PutBytes int
	// Window is each measured window of part 2; the move window lasts at
	// least until the move ends. Default 10s.
	Window time.Duration
	// Warmup precedes each window (puts in it are not counted). Default 1s.
	Warmup time.Duration
	// JoinTimeout bounds part 3's wait for the new node's share. Default
	// 20m.
	JoinTimeout time.Duration
	// LeaderWait bounds how much longer part 3 waits, after the replicas
	// are balanced, for the leaderships to be. Default 1m.
	LeaderWait time.Duration
	// HostBase: node i (from 0) listens on 127.0.0.(HostBase+i). Default
	// 140.
	HostBase int
	// Seed seeds the values and the workload's keys. Default 1.
	Seed uint64
}

// Replicas is the replica count of every bucket (the server's default).
const Replicas = 3

// DefaultConfig returns the sizes the rebalancing issue asks about.
func DefaultConfig() Config {
	return Config{
		BucketMB:    100,
		ClusterMB:   1024,
		Buckets:     64,
		ValueKB:     64,
		Clients:     8,
		PutBytes:    128,
		Window:      10 * time.Second,
		Warmup:      time.Second,
		JoinTimeout: 20 * time.Minute,
		LeaderWait:  time.Minute,
		HostBase:    140,
		Seed:        1,
	}
}

// Validate fills in defaults and checks the fields.
func (c Config) Validate() (Config, error) {
	d := DefaultConfig()
	def := func(v *int, dv int) {
		if *v == 0 {
			*v = dv
		}
	}
	def(&c.BucketMB, d.BucketMB)
	def(&c.ClusterMB, d.ClusterMB)
	def(&c.Buckets, d.Buckets)
	def(&c.ValueKB, d.ValueKB)
	def(&c.Clients, d.Clients)
	def(&c.PutBytes, d.PutBytes)
	def(&c.HostBase, d.HostBase)
	for _, f := range []struct{ v, d *time.Duration }{
		{&c.Window, &d.Window}, {&c.Warmup, &d.Warmup}, {&c.JoinTimeout, &d.JoinTimeout}, {&c.LeaderWait, &d.LeaderWait},
	} {
		if *f.v == 0 {
			*f.v = *f.d
		}
	}
	if c.Seed == 0 {
		c.Seed = d.Seed
	}
	switch {
	case c.Exe == "":
		return c, fmt.Errorf("%w: Exe is empty", ErrInvalid)
	case c.WorkDir == "":
		return c, fmt.Errorf("%w: WorkDir is empty", ErrInvalid)
	case c.BucketMB < 0:
		return c, fmt.Errorf("%w: BucketMB = %d, want > 0", ErrInvalid, c.BucketMB)
	case c.ClusterMB < 0:
		return c, fmt.Errorf("%w: ClusterMB = %d, want > 0", ErrInvalid, c.ClusterMB)
	case c.Buckets < 1 || c.Buckets > 4096:
		return c, fmt.Errorf("%w: Buckets = %d, want 1..4096", ErrInvalid, c.Buckets)
	case c.ValueKB < 0 || c.ValueKB > 1023:
		// 1023: a value of 1024 KiB plus its key is over the server's limit.
		return c, fmt.Errorf("%w: ValueKB = %d, want 1..1023", ErrInvalid, c.ValueKB)
	case c.Clients < 0 || c.Clients > 1024:
		return c, fmt.Errorf("%w: Clients = %d, want 1..1024", ErrInvalid, c.Clients)
	case c.PutBytes < 0 || c.PutBytes > 1<<20:
		return c, fmt.Errorf("%w: PutBytes = %d, want 1..1048576", ErrInvalid, c.PutBytes)
	case c.Window < 0 || c.Warmup < 0 || c.JoinTimeout < 0 || c.LeaderWait < 0:
		return c, fmt.Errorf("%w: Window, Warmup, JoinTimeout and LeaderWait must not be negative", ErrInvalid)
	case c.HostBase < 2 || c.HostBase+5 > 254:
		return c, fmt.Errorf("%w: HostBase = %d, want 2..249", ErrInvalid, c.HostBase)
	}
	return c, nil
}
