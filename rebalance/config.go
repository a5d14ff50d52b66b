package rebalance

import (
	"fmt"
	"time"
)

// Config is the placement policy. A zero field means "use the default".
type Config struct {
	// Replicas is R, the number of voters every bucket should have, on R
	// distinct nodes. Default 3. With fewer usable nodes than R a bucket
	// gets a voter on every usable node and the plan reports
	// ProblemTooFewNodes.
	Replicas int
	// DeadAfter is how long a node must have been down (Node.DownFor)
	// before its replicas are re-created elsewhere (the --dead-after
	// flag). Default 1 minute. Shorter means faster repair but more data
	// copied for nodes that were only restarting; memberlist's false
	// positives under load argue against going much lower (design anchors
	// §4.4).
	DeadAfter time.Duration
	// MaxMoves bounds the moves of one plan: it bounds the planner's work
	// per call and the executor's queue. Default 100.
	MaxMoves int
	// MaxMovesPerNode bounds, per node, the moves of one plan that add a
	// replica to the node or remove one from it, less Node.MovesInFlight:
	// each is a snapshot to receive or a span to delete, and one node
	// should not take them all. Removing a replica from a node that is not
	// live costs that node nothing and is not counted. Leadership transfers
	// are cheap and count only against MaxMoves. Default 8.
	MaxMovesPerNode int
}

// Defaults of Config's fields.
const (
	DefaultReplicas        = 3
	DefaultDeadAfter       = time.Minute
	DefaultMaxMoves        = 100
	DefaultMaxMovesPerNode = 8
)

// DefaultConfig returns the defaults, spelled out.
func DefaultConfig() Config {
	return Config{
		Replicas:        DefaultReplicas,
		DeadAfter:       DefaultDeadAfter,
		MaxMoves:        DefaultMaxMoves,
		MaxMovesPerNode: DefaultMaxMovesPerNode,
	}
}

// withDefaults returns c with its zero fields set to the defaults.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.Replicas == 0 {
		c.Replicas = d.Replicas
	}
	if c.DeadAfter == 0 {
		c.DeadAfter = d.DeadAfter
	}
	if c.MaxMoves == 0 {
		c.MaxMoves = d.MaxMoves
	}
	if c.MaxMovesPerNode == 0 {
		c.MaxMovesPerNode = d.MaxMovesPerNode
	}
	return c
}

// Validate reports the first field out of range. Zero fields are valid
// (they mean the default).
func (c Config) Validate() error {
	switch {
	case c.Replicas < 0:
		return fmt.Errorf("%w: Replicas = %d, want >= 1 (or 0 for %d)", ErrInvalidConfig, c.Replicas, DefaultReplicas)
	case c.DeadAfter < 0:
		return fmt.Errorf("%w: DeadAfter = %s, want > 0 (or 0 for %s)", ErrInvalidConfig, c.DeadAfter, DefaultDeadAfter)
	case c.MaxMoves < 0:
		return fmt.Errorf("%w: MaxMoves = %d, want >= 1 (or 0 for %d)", ErrInvalidConfig, c.MaxMoves, DefaultMaxMoves)
	case c.MaxMovesPerNode < 0:
		return fmt.Errorf("%w: MaxMovesPerNode = %d, want >= 1 (or 0 for %d)", ErrInvalidConfig, c.MaxMovesPerNode, DefaultMaxMovesPerNode)
	}
	return nil
}
