package rebalance

import (
	"path/filepath"
	"testing"

	"github.com/cockroachdb/datadriven"
)

// TestDataDriven runs the planning scripts in testdata/*.txt. Each script
// builds a View by hand, asks for plans and applies them as the executor
// would once each move completes (applyMove: CheckMove must accept every
// move).
//
// The DSL (node lists are written (1,2,3); durations Go-style, 90s or 2m):
//
//	config [r=<R>] [dead-after=<dur>] [max-moves=<n>] [max-per-node=<n>]
//	    Starts over: an empty View and a planner with this Config (zero
//	    fields take the defaults). Prints nothing.
//	node id=<n>|(<n>,...) [down=<dur>] [draining] [in-flight=<k>]
//	    Adds or replaces nodes: live unless down= says for how long they
//	    have been down. Prints nothing.
//	buckets count=<k> nodes=(<n>,...) [first=<id>] [bytes=<b>] [leader=<n>]
//	    Adds buckets first..first+k-1 (first defaults to the next unused
//	    id). Bucket first+i has voters nodes[(i+j) mod len] for j < R, so
//	    consecutive buckets stripe across the list; its leader is its
//	    first voter unless leader= names one for all. Prints nothing.
//	bucket id=<b> voters=(<n>,...) [learners=(...)] [lagging=(...)]
//	       [leader=<n>] [bytes=<b>] [load=<x>] [busy]
//	    Adds or replaces one bucket. Prints nothing.
//	plan
//	    Prints the plan: a move a line (Move.String), then "problem"
//	    lines, then "limited" if the limits cut it short.
//	apply [rounds=<n>]
//	    Plans and applies, n times (default 1), printing each plan as plan
//	    does, under a "round <i>:" line when n > 1.
//	converge [max-rounds=<n>]
//	    Plans and applies until a plan has no moves (at most n rounds,
//	    default 100); prints the rounds, the moves by kind, the bytes
//	    copied, the last plan's problems, and then what show prints.
//	show [buckets]
//	    Prints each node's replicas and leaderships and the spread over
//	    the usable nodes; with buckets, each bucket's placement too
//	    (<n>* leads, <n>~ lags, +<n> is a learner).
//	_breakpoint
//	    Does nothing: set a debugger breakpoint on its handler to stop at
//	    a given line of a script.
//
// Regenerate the expected output with
//
//	go test ./rebalance -run TestDataDriven -rewrite
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
			env := &ddEnv{}
			env.reset(t, Config{})
			datadriven.RunTest(t, file, env.handle)
		})
	}
}

// ddEnv is the state a script acts on.
type ddEnv struct {
	planner *Planner
	view    View
}

func (env *ddEnv) reset(t *testing.T, cfg Config) {
	env.planner = mustPlanner(t, cfg)
	env.view = View{}
}

// handle runs one command. Handlers are in datadriven_handlers_test.go.
func (env *ddEnv) handle(t *testing.T, d *datadriven.TestData) string {
	var (
		out string
		err error
	)
	switch d.Cmd {
	case "config":
		out, err = env.handleConfig(t, d)
	case "node":
		out, err = env.handleNode(t, d)
	case "buckets":
		out, err = env.handleBuckets(t, d)
	case "bucket":
		out, err = env.handleBucket(t, d)
	case "plan":
		out, err = env.handlePlan(t, d)
	case "apply":
		out, err = env.handleApply(t, d)
	case "converge":
		out, err = env.handleConverge(t, d)
	case "show":
		out, err = env.handleShow(t, d)
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
