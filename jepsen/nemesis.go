package jepsen

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"

	"google.golang.org/grpc"
)

// Nemesis injects one kind of fault and heals it. The scheduler runs one
// fault at a time and always heals what it injected.
//
// A nemesis that needs more than Cluster (a packet filter for
// partitions, an admin client for clock skew, a client for bucket moves)
// takes it in its constructor.
type Nemesis interface {
	// Name is the nemesis's name in --nemesis and in the history.
	Name() string
	// Inject starts a fault on targets picked with rng. On error it
	// returns what it did inject (Heal undoes it).
	Inject(ctx context.Context, c Cluster, rng *rand.Rand) (Fault, error)
	// Heal ends the fault. It must heal a partly injected fault too.
	Heal(ctx context.Context, c Cluster, f Fault) error
}

// Fault is one injected fault, as recorded in the history.
type Fault struct {
	Nemesis string `json:"nemesis"`
	// Nodes are the nodes the fault hit (for a partition: the nodes that
	// drop packets).
	Nodes []int `json:"nodes"`
	// Shape, Detail and Grudge describe a partition: its shape, the cut
	// for people ("n1 | n2,n3"), and each node's dropped sources.
	Shape  string `json:"shape,omitempty"`
	Detail string `json:"detail,omitempty"`
	Grudge Grudge `json:"grudge,omitempty"`
}

// String renders the fault as "kill n1,n2" or "partition majority n1 | n2,n3".
func (f Fault) String() string {
	if f.Detail != "" {
		return f.Nemesis + " " + f.Shape + " " + f.Detail
	}
	return f.Nemesis + " " + nodeList(f.Nodes)
}

// healNoter is a Nemesis whose heal learns something worth recording in
// the history (a partition: the packets it dropped).
type healNoter interface {
	// HealNote describes what the last Heal found.
	HealNote() string
}

// Targets picks the nodes a fault hits.
type Targets string

// The target sets (Jepsen's names).
const (
	TargetOne      Targets = "one"
	TargetMinority Targets = "minority"
	TargetMajority Targets = "majority"
	TargetAll      Targets = "all"
	// TargetPrimary hits the meta group's leader, which serves the
	// timestamp oracle (one random node when no majority of the nodes
	// names one).
	TargetPrimary Targets = "primary"
)

// primaryFunc reports the node most nodes name as the meta group's
// leader (0: none named).
type primaryFunc func(ctx context.Context) (int, error)

// choose returns the targets of one fault: for TargetPrimary the meta
// leader primary reports, else (or when it reports none) pick's. It draws
// from rng the same either way, so that a seed's fault schedule does not
// depend on whether the primary was found.
func (t Targets) choose(ctx context.Context, rng *rand.Rand, nodes []int, primary primaryFunc) []int {
	picked := t.pick(rng, nodes)
	if t == TargetPrimary && primary != nil {
		if n, err := primary(ctx); err == nil && slices.Contains(nodes, n) {
			return []int{n}
		}
	}
	return picked
}

// pick returns the targets among nodes, chosen with rng, ascending.
func (t Targets) pick(rng *rand.Rand, nodes []int) []int {
	var k int
	switch t {
	case TargetOne, TargetPrimary:
		k = 1
	case TargetMinority:
		k = max(1, (len(nodes)-1)/2)
	case TargetMajority:
		k = len(nodes)/2 + 1
	default:
		k = len(nodes)
	}
	shuffled := slices.Clone(nodes)
	rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	out := shuffled[:min(k, len(shuffled))]
	slices.Sort(out)
	return out
}

func (t Targets) valid() bool {
	switch t {
	case TargetOne, TargetMinority, TargetMajority, TargetAll, TargetPrimary:
		return true
	}
	return false
}

// NemesisNames returns the nemeses --nemesis knows.
func NemesisNames() []string {
	return []string{"kill", "pause", "partition", "clock", "move", "transfer"}
}

// NemesisOptions is what the nemeses need besides their names.
type NemesisOptions struct {
	// Targets picks the nodes kill and pause hit.
	Targets Targets
	// PartitionShapes are the shapes the partition nemesis picks from
	// (empty: all, PartitionShapes).
	PartitionShapes []string
	// Net cuts links for the partition nemesis; without it partition is
	// refused.
	Net Net
	// Endpoints are the nodes' gRPC addresses, node 1 first: the clock
	// nemesis calls their TestAdmin service, the move nemesis their
	// public API. Without them clock and move are refused.
	Endpoints []string
	// Dial is added to the gRPC options of those calls.
	Dial []grpc.DialOption
	// leaders reports the buckets each node leads, for isolate-leader
	// (nil: that shape cuts a random node).
	leaders leaderFunc
	// primary reports the meta group's leader, for TargetPrimary (nil:
	// a random node).
	primary primaryFunc
}

// NewNemeses returns the named nemeses ("none" and "" stand for no
// fault).
func NewNemeses(names []string, opts NemesisOptions) ([]Nemesis, error) {
	if err := validateNemeses(names, opts.Targets, opts.PartitionShapes); err != nil {
		return nil, err
	}
	var out []Nemesis
	for _, name := range nonEmpty(names) {
		switch name {
		case "kill":
			out = append(out, killNemesis{aim{opts.Targets, opts.primary}})
		case "pause":
			out = append(out, pauseNemesis{aim{opts.Targets, opts.primary}})
		case "partition":
			if opts.Net == nil {
				return nil, fmt.Errorf("%w: the partition nemesis needs a packet filter (Net)", ErrInvalidConfig)
			}
			shapes := opts.PartitionShapes
			if len(shapes) == 0 {
				shapes = PartitionShapes()
			}
			out = append(out, newPartitionNemesis(opts.Net, shapes, opts.leaders))
		case "clock", "move", "transfer":
			if len(opts.Endpoints) == 0 {
				return nil, fmt.Errorf("%w: the %s nemesis needs the nodes' endpoints", ErrInvalidConfig, name)
			}
			switch name {
			case "clock":
				eps := opts.Endpoints
				out = append(out, clockNemesis{addr: func(n int) string { return eps[n-1] }, dial: opts.Dial})
			case "move":
				out = append(out, moveNemesis{endpoints: opts.Endpoints, dial: opts.Dial})
			default:
				out = append(out, transferNemesis{endpoints: opts.Endpoints, dial: opts.Dial})
			}
		}
	}
	return out, nil
}

// validateNemeses checks nemesis names, targets and partition shapes.
func validateNemeses(names []string, targets Targets, shapes []string) error {
	if !targets.valid() {
		return fmt.Errorf("%w: nemesis targets %q (one, minority, majority, all or primary)", ErrInvalidConfig, targets)
	}
	for _, name := range nonEmpty(names) {
		if !slices.Contains(NemesisNames(), name) {
			return fmt.Errorf("%w: unknown nemesis %q (known: %s)", ErrInvalidConfig, name, strings.Join(NemesisNames(), ", "))
		}
	}
	for _, s := range shapes {
		if !slices.Contains(PartitionShapes(), s) {
			return fmt.Errorf("%w: partition shape %q (known: %s)", ErrInvalidConfig, s, strings.Join(PartitionShapes(), ", "))
		}
	}
	return nil
}

// aim is how kill and pause pick the nodes of a fault: their targets,
// and for TargetPrimary how to find the meta leader.
type aim struct {
	targets Targets
	primary primaryFunc
}

func (a aim) nodes(ctx context.Context, rng *rand.Rand, nodes []int) []int {
	return a.targets.choose(ctx, rng, nodes, a.primary)
}

// killNemesis kills nodes with SIGKILL and restarts them on their data.
type killNemesis struct{ aim }

func (k killNemesis) Name() string { return "kill" }

func (k killNemesis) Inject(ctx context.Context, c Cluster, rng *rand.Rand) (Fault, error) {
	f := Fault{Nemesis: k.Name()}
	for _, n := range k.nodes(ctx, rng, c.Nodes()) {
		f.Nodes = append(f.Nodes, n)
		if err := c.Kill(ctx, n); err != nil {
			return f, err
		}
	}
	return f, nil
}

func (k killNemesis) Heal(ctx context.Context, c Cluster, f Fault) error {
	var errs []error
	for _, n := range f.Nodes {
		errs = append(errs, c.Start(ctx, n))
	}
	return errors.Join(errs...)
}

// pauseNemesis freezes nodes with SIGSTOP and thaws them with SIGCONT.
type pauseNemesis struct{ aim }

func (p pauseNemesis) Name() string { return "pause" }

func (p pauseNemesis) Inject(ctx context.Context, c Cluster, rng *rand.Rand) (Fault, error) {
	f := Fault{Nemesis: p.Name()}
	for _, n := range p.nodes(ctx, rng, c.Nodes()) {
		f.Nodes = append(f.Nodes, n)
		if err := c.Pause(ctx, n); err != nil {
			return f, err
		}
	}
	return f, nil
}

func (p pauseNemesis) Heal(ctx context.Context, c Cluster, f Fault) error {
	var errs []error
	for _, n := range f.Nodes {
		errs = append(errs, c.Resume(ctx, n))
	}
	return errors.Join(errs...)
}
