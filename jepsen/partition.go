package jepsen

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/opencluster/opencluster/rpc/client"
)

// Partition shapes (--partition-shapes), after Jepsen's nemesis/combined.
const (
	// ShapeOne cuts one random node off from all the others.
	ShapeOne = "one"
	// ShapeIsolateLeader cuts off the node leading the most buckets (as
	// the nodes' Status reports it).
	ShapeIsolateLeader = "isolate-leader"
	// ShapeMajority splits the nodes into two random halves, a minority
	// and a majority, that cannot reach each other.
	ShapeMajority = "majority"
	// ShapeMajoritiesRing makes every node see a majority (itself
	// included), no two nodes the same one: a ring of overlapping
	// majorities, each node dropping the packets of the nodes outside its
	// own. On 4 and 5 nodes every cut link is cut both ways; on 3 nodes
	// (where no symmetric ring exists) each link is cut one way only.
	ShapeMajoritiesRing = "majorities-ring"
	// ShapeBridge splits the nodes into two halves except one node that
	// still sees both.
	ShapeBridge = "bridge"
)

// PartitionShapes returns every partition shape, the default set.
func PartitionShapes() []string {
	return []string{ShapeOne, ShapeIsolateLeader, ShapeMajority, ShapeMajoritiesRing, ShapeBridge}
}

// minNodes is the fewest nodes a shape can cut.
func minNodes(shape string) int {
	switch shape {
	case ShapeMajoritiesRing, ShapeBridge:
		return 3
	}
	return 2
}

// Grudge is a partition as Jepsen writes it: each node maps to the nodes
// whose packets it drops (only packets between node addresses: clients,
// which connect from 127.0.0.1, reach every node).
type Grudge map[int][]int

// Link is one dropped direction: packets from From to To.
type Link struct{ From, To int }

// Links returns the dropped directions, sorted.
func (g Grudge) Links() []Link {
	var out []Link
	for to, froms := range g {
		for _, from := range froms {
			out = append(out, Link{From: from, To: to})
		}
	}
	slices.SortFunc(out, func(a, b Link) int {
		if a.From != b.From {
			return a.From - b.From
		}
		return a.To - b.To
	})
	return slices.Compact(out)
}

// Victims returns the nodes that drop anything, ascending.
func (g Grudge) Victims() []int {
	var out []int
	for n, froms := range g {
		if len(froms) > 0 {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

// completeGrudge cuts every node off from the nodes outside its component,
// both ways.
func completeGrudge(components ...[]int) Grudge {
	g := Grudge{}
	for i, comp := range components {
		for _, n := range comp {
			for j, other := range components {
				if i != j {
					g[n] = append(g[n], other...)
				}
			}
			slices.Sort(g[n])
		}
	}
	return g
}

// shapeGrudge builds the grudge of shape over nodes. leader is the node
// that isolate-leader cuts off (0: unknown, then it cuts a random node).
// The victims are the side cut off (the isolated node, the minority, the
// bridge node; for a ring every node), and the detail describes the
// partition for people.
func shapeGrudge(shape string, nodes []int, leader int, rng *rand.Rand) (g Grudge, victims []int, detail string, err error) {
	if len(nodes) < minNodes(shape) {
		return nil, nil, "", fmt.Errorf("%w: partition %s needs at least %d nodes, not %d", ErrInvalidConfig, shape, minNodes(shape), len(nodes))
	}
	shuffled := slices.Clone(nodes)
	rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	isolate := func(x int) (Grudge, string) {
		rest := slices.DeleteFunc(slices.Clone(nodes), func(n int) bool { return n == x })
		return completeGrudge([]int{x}, rest), components([]int{x}, rest)
	}
	switch shape {
	case ShapeOne:
		victims = shuffled[:1]
		g, detail = isolate(victims[0])
	case ShapeIsolateLeader:
		if leader == 0 || !slices.Contains(nodes, leader) {
			victims = shuffled[:1]
			g, detail = isolate(victims[0])
			detail += " (leader unknown: random node)"
		} else {
			victims = []int{leader}
			g, detail = isolate(leader)
		}
	case ShapeMajority:
		half := len(shuffled) / 2
		minority, majority := sortedNodes(shuffled[:half]), sortedNodes(shuffled[half:])
		victims = minority
		g, detail = completeGrudge(minority, majority), components(minority, majority)
	case ShapeMajoritiesRing:
		g = majoritiesRing(shuffled)
		victims = g.Victims()
		detail = "ring " + linksString(g.Links())
	case ShapeBridge:
		half := len(shuffled) / 2
		a, b := sortedNodes(shuffled[:half]), sortedNodes(shuffled[half:])
		bridge := shuffled[half]
		victims = []int{bridge}
		g = completeGrudge(a, b)
		delete(g, bridge)
		for n := range g {
			g[n] = slices.DeleteFunc(g[n], func(m int) bool { return m == bridge })
		}
		detail = fmt.Sprintf("%s, n%d bridging", components(a, slices.DeleteFunc(slices.Clone(b), func(m int) bool { return m == bridge })), bridge)
	default:
		return nil, nil, "", fmt.Errorf("%w: partition shape %q (known: %s)", ErrInvalidConfig, shape, strings.Join(PartitionShapes(), ", "))
	}
	return g, sortedNodes(victims), detail, nil
}

// majoritiesRing is Jepsen's majorities-ring over nodes in ring order:
// each window of a majority of consecutive nodes is seen by its middle
// node, which drops the packets of every node outside it.
func majoritiesRing(ring []int) Grudge {
	n := len(ring)
	m := n/2 + 1
	g := Grudge{}
	for i := range n {
		window := make([]int, m)
		for j := range m {
			window[j] = ring[(i+j)%n]
		}
		middle := window[m/2]
		for _, other := range ring {
			if !slices.Contains(window, other) {
				g[middle] = append(g[middle], other)
			}
		}
		slices.Sort(g[middle])
	}
	return g
}

func sortedNodes(nodes []int) []int {
	out := slices.Clone(nodes)
	slices.Sort(out)
	return out
}

// components renders "n1 | n2,n3".
func components(comps ...[]int) string {
	parts := make([]string, len(comps))
	for i, c := range comps {
		parts[i] = nodeList(c)
	}
	return strings.Join(parts, " | ")
}

func nodeList(nodes []int) string {
	parts := make([]string, len(nodes))
	for i, n := range nodes {
		parts[i] = "n" + strconv.Itoa(n)
	}
	return strings.Join(parts, ",")
}

// linksString renders dropped directions as "n1>n2 n2>n3"; a link cut
// both ways is "n1<>n2".
func linksString(links []Link) string {
	set := map[Link]bool{}
	for _, l := range links {
		set[l] = true
	}
	var parts []string
	for _, l := range links {
		back := Link{From: l.To, To: l.From}
		switch {
		case set[back] && l.From < l.To:
			parts = append(parts, fmt.Sprintf("n%d<>n%d", l.From, l.To))
		case !set[back]:
			parts = append(parts, fmt.Sprintf("n%d>n%d", l.From, l.To))
		}
	}
	return strings.Join(parts, " ")
}

// Net cuts links between node addresses (NodeIP). Implementations: the
// nftables one (NewNFTNet), which needs a private network namespace, and
// fakes in tests.
type Net interface {
	// Partition replaces the partition in place, if any, with g.
	Partition(ctx context.Context, g Grudge) error
	// Heal removes every cut and returns how many packets the cuts
	// dropped since Partition.
	Heal(ctx context.Context) (dropped uint64, err error)
	// Close heals and releases the handle.
	Close() error
}

// leaderFunc reports how many buckets each node leads.
type leaderFunc func(ctx context.Context) (map[int]int, error)

// partitionNemesis cuts links between nodes in one of its shapes, picked
// at random per fault, and heals by removing every cut.
type partitionNemesis struct {
	net     Net
	shapes  []string
	leaders leaderFunc

	mu struct {
		sync.Mutex
		// note says what the last heal found (packets dropped).
		note string
		// dropped counts the packets all cuts dropped.
		dropped uint64
	}
}

func newPartitionNemesis(net Net, shapes []string, leaders leaderFunc) *partitionNemesis {
	return &partitionNemesis{net: net, shapes: shapes, leaders: leaders}
}

func (p *partitionNemesis) Name() string { return "partition" }

func (p *partitionNemesis) Inject(ctx context.Context, c Cluster, rng *rand.Rand) (Fault, error) {
	nodes := c.Nodes()
	var usable []string
	for _, s := range p.shapes {
		if len(nodes) >= minNodes(s) {
			usable = append(usable, s)
		}
	}
	f := Fault{Nemesis: p.Name()}
	if len(usable) == 0 {
		return f, fmt.Errorf("%w: no partition shape fits %d nodes", ErrInvalidConfig, len(nodes))
	}
	f.Shape = usable[rng.IntN(len(usable))]
	leader := 0
	if f.Shape == ShapeIsolateLeader && p.leaders != nil {
		lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		counts, err := p.leaders(lctx)
		cancel()
		if err == nil {
			leader = mostLeader(counts)
		}
	}
	g, victims, detail, err := shapeGrudge(f.Shape, nodes, leader, rng)
	if err != nil {
		return f, err
	}
	f.Nodes, f.Detail, f.Grudge = victims, detail, g
	return f, p.net.Partition(ctx, g)
}

// mostLeader returns the node leading the most buckets (the lowest on a
// tie), or 0.
func mostLeader(counts map[int]int) int {
	best := 0
	for _, n := range slices.Sorted(maps.Keys(counts)) {
		if best == 0 || counts[n] > counts[best] {
			best = n
		}
	}
	if best != 0 && counts[best] == 0 {
		return 0
	}
	return best
}

func (p *partitionNemesis) Heal(ctx context.Context, _ Cluster, _ Fault) error {
	dropped, err := p.net.Heal(ctx)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mu.dropped += dropped
	p.mu.note = fmt.Sprintf("dropped %d packets", dropped)
	return err
}

// HealNote says what the last heal found (healNoter).
func (p *partitionNemesis) HealNote() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mu.note
}

// Dropped returns the packets all cuts dropped so far.
func (p *partitionNemesis) Dropped() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mu.dropped
}

// statusLeaders returns a leaderFunc that asks every node for its Status
// and counts, per node, the buckets it leads. Each bucket's leader is the
// one most nodes name (a node cut off may still name an old leader).
func statusLeaders(endpoints []string, dial []grpc.DialOption) leaderFunc {
	return func(ctx context.Context) (map[int]int, error) {
		votes, errs := gatherVotes(ctx, endpoints, dial)
		if len(votes) == 0 {
			return nil, errors.Join(append(errs, errors.New("jepsen: no node reported a leader"))...)
		}
		counts := map[int]int{}
		for group, byNode := range votes {
			if group == metaVote {
				continue
			}
			if n := mostLeader(byNode); n != 0 {
				counts[n]++
			}
		}
		return counts, nil
	}
}

// statusPrimary returns a primaryFunc that asks every node for its Status
// and returns the node most of them name as the meta group's leader.
func statusPrimary(endpoints []string, dial []grpc.DialOption) primaryFunc {
	return func(ctx context.Context) (int, error) {
		votes, errs := gatherVotes(ctx, endpoints, dial)
		n := mostLeader(votes[metaVote])
		if n == 0 {
			return 0, errors.Join(append(errs, errors.New("jepsen: no node named the meta leader"))...)
		}
		return n, nil
	}
}

// gatherVotes asks every endpoint for its Status: group (a bucket, or
// metaVote) → node → how many nodes name it the group's leader, and the
// errors of the endpoints that did not answer.
func gatherVotes(ctx context.Context, endpoints []string, dial []grpc.DialOption) (map[uint32]map[int]int, []error) {
	votes := map[uint32]map[int]int{}
	var errs []error
	for _, ep := range endpoints {
		if err := statusVotes(ctx, ep, dial, votes); err != nil {
			errs = append(errs, err)
		}
	}
	return votes, errs
}

// metaVote is the key statusVotes files the meta group's leader under
// (no bucket number comes near it).
const metaVote = ^uint32(0)

// statusVotes adds endpoint's view of every bucket's leader to votes.
func statusVotes(ctx context.Context, endpoint string, dial []grpc.DialOption, votes map[uint32]map[int]int) error {
	cl, err := client.New(ctx, []string{endpoint}, client.WithRetry(1, 10*time.Millisecond), client.WithDialOptions(dial...))
	if err != nil {
		return err
	}
	defer cl.Close()
	sctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	st, err := cl.Status(sctx)
	if err != nil {
		return fmt.Errorf("jepsen: status of %s: %w", endpoint, err)
	}
	nodeOf := map[string]int{} // member id → node number
	for _, m := range st.GetMembers() {
		if n := nodeOfAddr(m.GetAddr()); n != 0 {
			nodeOf[m.GetId()] = n
		}
	}
	vote := func(group uint32, leader string) {
		if n := nodeOf[leader]; n != 0 {
			if votes[group] == nil {
				votes[group] = map[int]int{}
			}
			votes[group][n]++
		}
	}
	for _, b := range st.GetBuckets() {
		vote(b.GetBucket(), b.GetLeader())
	}
	if m := st.GetMeta(); m != nil {
		vote(metaVote, m.GetLeader())
	}
	return nil
}

// nodeOfAddr maps a node's address (NodeIP(n):port) to n, or 0.
func nodeOfAddr(addr string) int {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	ip := net.ParseIP(host).To4()
	if ip == nil || ip[0] != 127 || ip[1] != 0 || ip[2] != 0 || ip[3] <= 10 {
		return 0
	}
	return int(ip[3]) - 10
}
