package server

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ErrInvalidConfig reports a Config that Validate refuses, or a nil Backend
// given to New.
var ErrInvalidConfig = errors.New("server: invalid config")

// minRecvMsgBytes is the smallest MaxRecvMsgBytes Validate accepts: a Put of
// the largest key and value, with every other field at its limit, fits.
const minRecvMsgBytes = 2 << 20

// Config configures a Server. The zero value of every field means its
// default; DefaultConfig spells the defaults out.
type Config struct {
	// Logger receives one debug line per request (method, status code,
	// duration, peer; never the request or response), an error line per
	// recovered panic and per error mapped to codes.Internal. Logged error
	// texts and panic values are passed through a filter that masks
	// anything shaped like a lock code. nil discards everything.
	Logger *slog.Logger
	// Registerer receives the request metrics (opencluster_rpc_requests_total,
	// opencluster_rpc_request_duration_seconds, opencluster_rpc_panics_total).
	// nil means no metrics. New fails if they are already registered there,
	// so two Servers need two registries (or prometheus.WrapRegistererWith).
	Registerer prometheus.Registerer
	// MaxRecvMsgBytes is the largest request message, in bytes, that the
	// gRPC server decodes (default 4 MiB); a bigger one is refused with
	// ResourceExhausted before validation. It must be at least 2 MiB, so
	// that a Put of a 1 MiB value always fits. Note that a BatchGet or
	// Restrict with 1024 keys of the full 4096 bytes is about 4.01 MiB and
	// needs a larger setting. It only takes effect through
	// GRPCServerOptions.
	MaxRecvMsgBytes int
	// DefaultTTL is the ttl written into an Acquire or Restrict request that
	// sets none (default 15s). It must lie in [MinTTL, MaxTTL].
	DefaultTTL time.Duration
}

// DefaultConfig returns the production defaults: no logging, no metrics,
// 4 MiB requests, 15s ttl.
func DefaultConfig() Config {
	return Config{
		MaxRecvMsgBytes: 4 << 20,
		DefaultTTL:      DefaultLockTTL,
	}
}

// TestConfig returns a profile for tests: the defaults with the shortest
// allowed ttl, so that a lock abandoned by a test expires quickly.
func TestConfig() Config {
	cfg := DefaultConfig()
	cfg.DefaultTTL = MinTTL
	return cfg
}

// Validate reports the first field that is out of range, naming it and its
// value. Zero values are valid (they mean the default).
func (c Config) Validate() error {
	if c.MaxRecvMsgBytes != 0 && c.MaxRecvMsgBytes < minRecvMsgBytes {
		return fmt.Errorf("%w: MaxRecvMsgBytes = %d, want 0 (default 4 MiB) or at least %d",
			ErrInvalidConfig, c.MaxRecvMsgBytes, minRecvMsgBytes)
	}
	if c.DefaultTTL != 0 && (c.DefaultTTL < MinTTL || c.DefaultTTL > MaxTTL) {
		return fmt.Errorf("%w: DefaultTTL = %s, want 0 (default %s) or %s..%s",
			ErrInvalidConfig, c.DefaultTTL, DefaultLockTTL, MinTTL, MaxTTL)
	}
	return nil
}

// withDefaults returns c with every zero field set to its default.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.MaxRecvMsgBytes == 0 {
		c.MaxRecvMsgBytes = d.MaxRecvMsgBytes
	}
	if c.DefaultTTL == 0 {
		c.DefaultTTL = d.DefaultTTL
	}
	return c
}
