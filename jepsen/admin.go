package jepsen

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/opencluster/opencluster/rpc/client"
	"github.com/opencluster/opencluster/rpc/cmdpb"
	"github.com/opencluster/opencluster/rpc/ocpb"
)

// PlantedBugs are the server's planted bugs (negative controls), switched
// on through its test-only admin service (`start --test-admin`). A run with
// any of them on must come out INVALID: that is what `jepsen selftest`
// asserts.
type PlantedBugs struct {
	// StaleReads makes Get read as of 500 ms ago without a barrier.
	StaleReads bool `json:"stale_reads,omitempty"`
	// NoFenceCheck makes the leader accept a write with a lower fence.
	NoFenceCheck bool `json:"no_fence_check,omitempty"`
	// EarlyExpiry expires locks after half their ttl.
	EarlyExpiry bool `json:"early_expiry,omitempty"`
}

// Any reports whether a bug is on.
func (b PlantedBugs) Any() bool { return b.StaleReads || b.NoFenceCheck || b.EarlyExpiry }

// String lists the bugs on ("stale_reads,early_expiry"), or "none".
func (b PlantedBugs) String() string {
	var out []string
	if b.StaleReads {
		out = append(out, BugStaleReads)
	}
	if b.NoFenceCheck {
		out = append(out, BugNoFenceCheck)
	}
	if b.EarlyExpiry {
		out = append(out, BugEarlyExpiry)
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, ",")
}

// The planted bugs' names.
const (
	BugStaleReads   = "stale_reads"
	BugNoFenceCheck = "no_fence_check"
	BugEarlyExpiry  = "early_expiry"
)

// ParsePlantedBug returns the PlantedBugs with the named bug on.
func ParsePlantedBug(name string) (PlantedBugs, error) {
	switch name {
	case BugStaleReads:
		return PlantedBugs{StaleReads: true}, nil
	case BugNoFenceCheck:
		return PlantedBugs{NoFenceCheck: true}, nil
	case BugEarlyExpiry:
		return PlantedBugs{EarlyExpiry: true}, nil
	}
	return PlantedBugs{}, fmt.Errorf("%w: planted bug %q (known: %s, %s, %s)", ErrInvalidConfig, name,
		BugStaleReads, BugNoFenceCheck, BugEarlyExpiry)
}

// SelftestCase is one planted bug and the workload that must catch it.
type SelftestCase struct {
	Bug      string
	Workload string
}

// SelftestCases returns the planted bugs and the workload that catches
// each: a stale read breaks the register's linearizability, an accepted
// lower fence breaks the fenced order, an early expiry grants a lease
// while its holder still holds it.
func SelftestCases() []SelftestCase {
	return []SelftestCase{
		{Bug: BugStaleReads, Workload: "register"},
		{Bug: BugNoFenceCheck, Workload: "fenced"},
		{Bug: BugEarlyExpiry, Workload: "lease"},
	}
}

// adminDial is the dial options of the admin connections: plain text
// unless the run's own options say otherwise.
func adminDial(dial []grpc.DialOption) []grpc.DialOption {
	return append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, dial...)
}

// adminCall calls f on the TestAdmin service of the server at addr.
func adminCall(ctx context.Context, addr string, dial []grpc.DialOption, f func(context.Context, cmdpb.TestAdminClient) error) error {
	conn, err := grpc.NewClient(addr, adminDial(dial)...)
	if err != nil {
		return fmt.Errorf("jepsen: admin %s: %w", addr, err)
	}
	defer conn.Close()
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if err := f(cctx, cmdpb.NewTestAdminClient(conn)); err != nil {
		return fmt.Errorf("jepsen: admin %s: %w", addr, err)
	}
	return nil
}

// setPlantedBugs switches bugs on every endpoint.
func setPlantedBugs(ctx context.Context, endpoints []string, dial []grpc.DialOption, bugs PlantedBugs) error {
	var errs []error
	for _, ep := range endpoints {
		errs = append(errs, adminCall(ctx, ep, dial, func(ctx context.Context, a cmdpb.TestAdminClient) error {
			_, err := a.SetFaults(ctx, &cmdpb.SetFaultsRequest{
				StaleReads: bugs.StaleReads, NoFenceCheck: bugs.NoFenceCheck, EarlyExpiry: bugs.EarlyExpiry,
			})
			return err
		}))
	}
	return errors.Join(errs...)
}

// clockNemesis skews the clock the timestamp oracle of some nodes reads
// (TestAdmin.SetClock): an offset of up to ±maxClockOffset, or a rate
// between 0.25 and 4; heal sets offset 0, rate 1. Lock deadlines use the
// monotonic clock, so only versions and snapshot reads see the skew.
type clockNemesis struct {
	addr func(n int) string
	dial []grpc.DialOption
}

const maxClockOffset = 5 * time.Minute

func (c clockNemesis) Name() string { return "clock" }

func (c clockNemesis) Inject(ctx context.Context, cl Cluster, rng *rand.Rand) (Fault, error) {
	nodes := cl.Nodes()
	f := Fault{Nemesis: c.Name(), Shape: "skew"}
	picked := slices.Clone(nodes)
	rng.Shuffle(len(picked), func(i, j int) { picked[i], picked[j] = picked[j], picked[i] })
	picked = sortedNodes(picked[:1+rng.IntN(len(picked))])
	var details []string
	for _, n := range picked {
		req := &cmdpb.SetClockRequest{Rate: 1}
		if rng.IntN(3) == 0 {
			rates := []float64{0.25, 0.5, 2, 4}
			req.Rate = rates[rng.IntN(len(rates))]
			details = append(details, fmt.Sprintf("n%d rate %g", n, req.Rate))
		} else {
			off := time.Duration(rng.Int64N(int64(2*maxClockOffset))) - maxClockOffset
			off = off.Truncate(time.Millisecond)
			req.OffsetMs = off.Milliseconds()
			details = append(details, fmt.Sprintf("n%d %+.1fs", n, off.Seconds()))
		}
		f.Nodes = append(f.Nodes, n)
		f.Detail = strings.Join(details, ", ")
		err := adminCall(ctx, c.addr(n), c.dial, func(ctx context.Context, a cmdpb.TestAdminClient) error {
			_, err := a.SetClock(ctx, req)
			return err
		})
		if err != nil {
			return f, err
		}
	}
	return f, nil
}

func (c clockNemesis) Heal(ctx context.Context, _ Cluster, f Fault) error {
	var errs []error
	for _, n := range f.Nodes {
		errs = append(errs, adminCall(ctx, c.addr(n), c.dial, func(ctx context.Context, a cmdpb.TestAdminClient) error {
			_, err := a.SetClock(ctx, &cmdpb.SetClockRequest{OffsetMs: 0, Rate: 1})
			return err
		}))
	}
	return errors.Join(errs...)
}

// minMoveNodes is the fewest nodes the move nemesis works on: a bucket has
// 3 voters, and a move needs a node without one.
const minMoveNodes = 4

// moveNemesis moves one replica of a random bucket to a node that has
// none (Cluster.MoveReplica: learner, catch-up, joint swap); Inject
// returns when the move is done. A move needs no healing.
type moveNemesis struct {
	endpoints []string
	dial      []grpc.DialOption
}

func (m moveNemesis) Name() string { return "move" }

// clusterStatus connects to the cluster through endpoints and reads its
// status, for the nemeses that act through the public API. The caller
// closes the client.
func clusterStatus(ctx context.Context, nemesis string, endpoints []string, dial []grpc.DialOption) (*client.Client, *ocpb.StatusResponse, error) {
	cl, err := client.New(ctx, endpoints, client.WithRetry(3, 50*time.Millisecond), client.WithDialOptions(dial...))
	if err != nil {
		return nil, nil, err
	}
	sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	st, err := cl.Status(sctx)
	if err != nil {
		cl.Close()
		return nil, nil, fmt.Errorf("jepsen: %s: status: %w", nemesis, err)
	}
	return cl, st, nil
}

func (m moveNemesis) Inject(ctx context.Context, _ Cluster, rng *rand.Rand) (Fault, error) {
	f := Fault{Nemesis: m.Name()}
	cl, st, err := clusterStatus(ctx, m.Name(), m.endpoints, m.dial)
	if err != nil {
		return f, err
	}
	defer cl.Close()
	nodeOf := map[string]int{}
	for _, mem := range st.GetMembers() {
		if n := nodeOfAddr(mem.GetAddr()); n != 0 {
			nodeOf[mem.GetId()] = n
		}
	}
	type move struct {
		bucket   uint32
		from, to string
	}
	var moves []move
	for _, b := range st.GetBuckets() {
		reps := b.GetReplicas()
		for _, mem := range slices.Sorted(maps.Keys(nodeOf)) {
			if slices.Contains(reps, mem) {
				continue
			}
			for _, from := range reps {
				moves = append(moves, move{b.GetBucket(), from, mem})
			}
		}
	}
	if len(moves) == 0 {
		return f, fmt.Errorf("jepsen: move: no bucket has a node without a replica to move to (%d members)", len(nodeOf))
	}
	mv := moves[rng.IntN(len(moves))]
	f.Nodes = sortedNodes([]int{nodeOf[mv.from], nodeOf[mv.to]})
	f.Shape = fmt.Sprintf("bucket %d", mv.bucket)
	f.Detail = fmt.Sprintf("n%d->n%d", nodeOf[mv.from], nodeOf[mv.to])
	start := time.Now()
	_, err = cl.MoveReplica(ctx, mv.bucket, mv.from, mv.to)
	took := time.Since(start).Round(time.Millisecond)
	if err != nil {
		return f, fmt.Errorf("jepsen: move bucket %d %s (after %s): %w", mv.bucket, f.Detail, took, err)
	}
	f.Detail += " in " + took.String()
	return f, nil
}

func (m moveNemesis) Heal(context.Context, Cluster, Fault) error { return nil }

// transferStorm is how many leadership transfers one transfer fault asks
// for at once.
const transferStorm = 8

// transferNemesis is a leadership-transfer storm: it hands the leadership
// of up to transferStorm random buckets to random other voters, all at
// once (Cluster.TransferLeader), and returns when every transfer is done
// or failed. Failures are expected while other faults run, so they are
// counted in the fault's detail, not returned; it needs no healing.
type transferNemesis struct {
	endpoints []string
	dial      []grpc.DialOption
}

func (t transferNemesis) Name() string { return "transfer" }

func (t transferNemesis) Inject(ctx context.Context, _ Cluster, rng *rand.Rand) (Fault, error) {
	f := Fault{Nemesis: t.Name()}
	cl, st, err := clusterStatus(ctx, t.Name(), t.endpoints, t.dial)
	if err != nil {
		return f, err
	}
	defer cl.Close()
	type transfer struct {
		bucket uint32
		to     string
	}
	var transfers []transfer
	nodes := map[int]bool{}
	for _, i := range rng.Perm(len(st.GetBuckets())) {
		b := st.GetBuckets()[i]
		var others []string
		for _, r := range b.GetReplicas() {
			if r != b.GetLeader() {
				others = append(others, r)
			}
		}
		if b.GetLeader() == "" || len(others) == 0 {
			continue
		}
		to := others[rng.IntN(len(others))]
		transfers = append(transfers, transfer{b.GetBucket(), to})
		for _, m := range st.GetMembers() {
			if m.GetId() == to || m.GetId() == b.GetLeader() {
				if n := nodeOfAddr(m.GetAddr()); n != 0 {
					nodes[n] = true
				}
			}
		}
		if len(transfers) == transferStorm {
			break
		}
	}
	if len(transfers) == 0 {
		return f, fmt.Errorf("jepsen: transfer: no bucket has a leader and another voter")
	}
	f.Nodes = sortedNodes(slices.Collect(maps.Keys(nodes)))
	f.Shape = fmt.Sprintf("%d buckets", len(transfers))
	start := time.Now()
	var (
		wg     sync.WaitGroup
		failed atomic.Int32
	)
	for _, tr := range transfers {
		wg.Go(func() {
			tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			if _, err := cl.TransferLeader(tctx, tr.bucket, tr.to); err != nil {
				failed.Add(1)
			}
		})
	}
	wg.Wait()
	f.Detail = fmt.Sprintf("%d of %d done in %s", len(transfers)-int(failed.Load()), len(transfers), time.Since(start).Round(time.Millisecond))
	return f, nil
}

func (t transferNemesis) Heal(context.Context, Cluster, Fault) error { return nil }
