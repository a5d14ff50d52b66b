package kv

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/opencluster/opencluster/mvcc"
	"github.com/opencluster/opencluster/rpc/cmdpb"
)

// Membership and placement. A group with fewer than Replicas voters (five
// for the meta group) grows onto live, active nodes in the order they
// joined, and steps off draining and removed ones (nextConfChange); with
// the rebalancer on (rebalancer.go) this is left to the meta group only.
// Without it, bucket leaderships spread over the voters by a fixed
// preference (preferredLeader). Requests reach their bucket's leader by
// forwarding (forward.go). The meta group's leader, the primary, serves
// timestamps and admits joining nodes.

const (
	// maxReplicas bounds Config.Replicas (the meta group never exceeds it).
	maxReplicas = 7
	// maintainEveryTicks: the cluster maintenance runs every few ticks.
	maintainEveryTicks = 2
	// metaReplicas is how many nodes the meta group grows to (when there
	// are that many): more than a bucket's, so that most nodes know the
	// registry and the placement table and can route any request.
	metaReplicas = 5
)

// Directory is the failure detector and address book (memberlist): it
// feeds addresses and liveness, never placement.
type Directory interface {
	// Addr returns a node's gRPC address ("" if unknown).
	Addr(id uint64) string
	// GossipAddr returns a node's gossip address ("" if unknown).
	GossipAddr(id uint64) string
	// Alive reports whether the node is seen alive now.
	Alive(id uint64) bool
}

// ErrNotLeader reports a request on a node that is not the primary; a
// NotLeaderError says where the primary is.
var ErrNotLeader = errors.New("kv: not the leader")

// NotLeaderError names the primary's address ("" if unknown).
type NotLeaderError struct {
	LeaderID uint64
	Addr     string
}

func (e *NotLeaderError) Error() string {
	return fmt.Sprintf("kv: not the leader; the leader is node %d at %q", e.LeaderID, e.Addr)
}

// Is makes a NotLeaderError match ErrNotLeader, ErrNotApplied and
// ErrUnavailable.
func (e *NotLeaderError) Is(target error) bool {
	return target == ErrNotLeader || target == ErrNotApplied || target == ErrUnavailable
}

// leaderWait bounds how long a request waits for this node to become a
// group's ready leader: a few election timeouts.
func (n *Node) leaderWait() time.Duration {
	return 3 * time.Duration(n.cfg.ElectionTicks) * n.cfg.TickInterval
}

// Route reports whether this node serves requests now (it is the ready
// primary) and, if not, the primary's address ("" while none is known).
func (n *Node) Route() (local bool, leader uint64, addr string) {
	if n.tso.isReady() {
		return true, n.id, ""
	}
	leader, _, _ = n.meta.membership()
	if leader == 0 || leader == n.id {
		return false, 0, ""
	}
	return false, leader, n.AddrOf(leader)
}

// AddrOf returns a node's gRPC address from the failure detector or the
// registry ("" if unknown).
func (n *Node) AddrOf(id uint64) string {
	if n.cfg.Directory != nil {
		if a := n.cfg.Directory.Addr(id); a != "" {
			return a
		}
	}
	for _, rec := range n.registry() {
		if rec.GetNodeId() == id {
			return rec.GetAddr()
		}
	}
	return ""
}

// registry returns the nodes of the meta group's registry as this node's
// replica last applied it (empty if it holds none).
func (n *Node) registry() []*cmdpb.NodeRecord { return n.metaView().state.GetNodes() }

// metaView is the meta group's state as this node's replica last applied
// it, decoded once per applied index: routing, status and placement read
// it on every request, the engine only when the meta group moved on.
type metaView struct {
	applied uint64
	state   *cmdpb.MetaState // never modified once built
	// table is state's placement by bucket.
	table map[uint32]*cmdpb.BucketPlacement
}

func (n *Node) metaView() *metaView {
	n.meta.mu.Lock()
	applied := n.meta.mu.applied
	n.meta.mu.Unlock()
	n.metaCache.Lock()
	defer n.metaCache.Unlock()
	if v := n.metaCache.view; v != nil && v.applied == applied {
		return v
	}
	state := &cmdpb.MetaState{}
	if _, err := mvcc.GetProto(n.eng.DB(), mvcc.MetaKey("state"), state); err != nil {
		n.log.Warn("reading the meta state", "err", err)
		return &metaView{state: state} // not cached: read again next time
	}
	v := &metaView{applied: applied, state: state, table: make(map[uint32]*cmdpb.BucketPlacement, len(state.GetPlacement()))}
	for _, p := range state.GetPlacement() {
		v.table[p.GetBucket()] = p
	}
	n.metaCache.view = v
	return v
}

func (n *Node) alive(id uint64) bool {
	return id == n.id || n.cfg.Directory == nil || n.cfg.Directory.Alive(id)
}

// Join registers a node with the cluster; only the primary accepts it.
func (n *Node) Join(ctx context.Context, req *cmdpb.JoinRequest) (*cmdpb.JoinResponse, error) {
	if req.GetNodeId() == 0 || req.GetAddr() == "" {
		return nil, fmt.Errorf("%w: join needs a node id and an address", ErrInvalid)
	}
	if local, leader, addr := n.Route(); !local {
		return nil, &NotLeaderError{LeaderID: leader, Addr: addr}
	}
	if rec := n.record(req.GetNodeId()); rec.GetRemoved() {
		return nil, fmt.Errorf("%w: node %d was removed from the cluster; start it with an empty data directory to join as a new node", ErrPrecondition, req.GetNodeId())
	}
	cmd := &cmdpb.Command{Body: &cmdpb.Command_RegisterNode{RegisterNode: &cmdpb.RegisterNode{NodeId: req.GetNodeId(), Addr: req.GetAddr()}}}
	if _, err := n.meta.propose(ctx, cmd); err != nil {
		return nil, err
	}
	return &cmdpb.JoinResponse{ClusterId: n.cluster, Buckets: uint32(n.buckets), Replicas: uint32(n.cfg.Replicas)}, nil
}

// applyRegister adds or updates a registry record.
func applyRegister(state *cmdpb.MetaState, c *cmdpb.RegisterNode) {
	for _, rec := range state.Nodes {
		if rec.NodeId == c.NodeId {
			rec.Addr = c.Addr
			return
		}
	}
	state.Nodes = append(state.Nodes, &cmdpb.NodeRecord{NodeId: c.NodeId, Addr: c.Addr})
}

// maintain runs on the scheduler goroutine every few ticks, for the
// groups this node leads: it hands each bucket's leadership to its
// preferred leader, and grows each group toward its target replicas.
func (n *Node) maintain() {
	if n.cfg.Transport == nil {
		return
	}
	now := time.Now()
	electionTimeout := time.Duration(n.cfg.ElectionTicks) * n.cfg.TickInterval
	// Read once, if some group needs them.
	var (
		candidates []uint64
		leaving    map[uint64]bool
	)
	for _, r := range n.replicas {
		if r.rn.BasicStatus().RaftState != raft.StateLeader {
			continue
		}
		if !r.isMeta() {
			n.reportPlacement(r)
			if n.cfg.Rebalance {
				continue // the rebalancer places buckets and their leaders
			}
		}
		transferDue := now.Sub(r.lastTransfer) >= electionTimeout
		changeDue := now.Sub(r.lastConfChange) >= electionTimeout
		if !transferDue && !changeDue {
			continue
		}
		if candidates == nil {
			candidates, leaving = n.placeableNodes()
		}
		st := r.rn.Status() // one copy of the progress map for both steps
		if transferDue {
			to := n.preferredLeader(r, st)
			if _, ok := leaving[n.id]; ok {
				to = bestFollower(st, n.id, leaving) // a leaving node hands its leaderships on
			}
			if to != 0 && to != n.id {
				r.lastTransfer = now
				r.rn.TransferLeader(to)
				continue
			}
		}
		if !changeDue {
			continue
		}
		want := min(n.cfg.Replicas, len(candidates))
		if r.isMeta() {
			want = n.cfg.MetaVoters(len(candidates))
		}
		if cc := nextConfChange(st, n.id, want, candidates, leaving); cc != nil {
			r.lastConfChange = now
			if err := r.rn.ProposeConfChange(cc); err != nil {
				n.log.Debug("propose conf change", "group", r.group, "err", err)
			}
		}
	}
}

// preferredLeader spreads bucket leaderships over the voters: bucket b
// prefers the (b mod voters)-th voter in id order, if it is alive and
// caught up; otherwise whoever leads keeps it (0). Every node computes the
// same preference, so leaderships settle without coordination. The meta
// group has no preference: it stays with the primary.
func (n *Node) preferredLeader(r *replica, st raft.Status) uint64 {
	if r.isMeta() || len(st.Config.Voters[1]) > 0 || len(st.Config.Learners) > 0 {
		return 0 // a move is under way: leave leadership where it is
	}
	voters := make([]uint64, 0, len(st.Config.Voters[0]))
	for id := range st.Config.Voters[0] {
		voters = append(voters, id)
	}
	if len(voters) < 2 {
		return 0
	}
	slices.Sort(voters)
	to := voters[int(r.bucket)%len(voters)]
	pr, ok := st.Progress[to]
	if to == n.id || !ok || !pr.RecentActive || pr.Match < st.GetCommit() || !n.alive(to) {
		return 0
	}
	return to
}

// placeableNodes returns the live nodes of the registry that may receive
// replicas, in the order they joined (where new replicas go first), and
// the nodes that are leaving: draining (false) or removed (true).
func (n *Node) placeableNodes() (candidates []uint64, leaving map[uint64]bool) {
	leaving = make(map[uint64]bool)
	for _, rec := range n.registry() {
		id := rec.GetNodeId()
		switch {
		case rec.GetRemoved() || rec.GetDraining():
			leaving[id] = rec.GetRemoved()
		case n.alive(id):
			candidates = append(candidates, id)
		}
	}
	return candidates, leaving
}

// nextConfChange returns the next step toward want voters off leaving
// nodes for a group that node self leads: drop a learner on a leaving
// node, promote a learner that has caught up, or add the first candidate
// (registry order) that holds no replica as a learner; once there are
// enough, remove a voter on a leaving node: a removed node's at once, a draining node's only while
// the group keeps more than three voters (a drain must not cost a small
// group its fault tolerance). One step at a time; nil when nothing is due.
// A group that has its voters is left alone otherwise, learner or not:
// moving replicas is the business of MoveReplica and the rebalancer, and
// this must not undo them.
func nextConfChange(st raft.Status, self uint64, want int, candidates []uint64, leaving map[uint64]bool) *raftpb.ConfChangeV2 {
	if len(st.Config.Voters[1]) > 0 {
		return nil // joint configuration: raft leaves it by itself (auto)
	}
	voters := st.Config.Voters[0]
	learners := slices.Sorted(maps.Keys(st.Config.Learners))
	for _, id := range learners {
		if _, ok := leaving[id]; ok { // a learner holds no vote: always safe to drop
			return &raftpb.ConfChangeV2{Changes: []*raftpb.ConfChangeSingle{{Type: raftpb.ConfChangeRemoveNode.Enum(), NodeId: new(id)}}}
		}
	}
	staying := 0
	for id := range voters {
		if _, ok := leaving[id]; !ok {
			staying++
		}
	}
	if staying >= want {
		ids := slices.Sorted(maps.Keys(voters))
		for _, id := range ids {
			if removed, ok := leaving[id]; ok && id != self && (removed || len(voters) > 3) && quorumActiveWithout(st, self, id) {
				return &raftpb.ConfChangeV2{Changes: []*raftpb.ConfChangeSingle{{Type: raftpb.ConfChangeRemoveNode.Enum(), NodeId: new(id)}}}
			}
		}
		return nil
	}
	for _, id := range learners {
		if pr, ok := st.Progress[id]; ok && pr.Match >= st.GetCommit() {
			return &raftpb.ConfChangeV2{Changes: []*raftpb.ConfChangeSingle{{Type: raftpb.ConfChangeAddNode.Enum(), NodeId: new(id)}}}
		}
	}
	if len(learners) > 0 {
		return nil // let it catch up
	}
	for _, t := range candidates {
		if _, ok := voters[t]; !ok {
			return &raftpb.ConfChangeV2{Changes: []*raftpb.ConfChangeSingle{{Type: raftpb.ConfChangeAddLearnerNode.Enum(), NodeId: new(t)}}}
		}
	}
	return nil
}

// quorumActiveWithout reports whether the voters other than id, recently
// active (self, the leader, always is), are a quorum of the configuration
// without id: removing a leaving node's voter must not leave the group
// unable to commit (a node marked removed may well be the one still up).
func quorumActiveWithout(st raft.Status, self, id uint64) bool {
	remaining, active := 0, 0
	for v := range st.Config.Voters[0] {
		if v == id {
			continue
		}
		remaining++
		if pr, ok := st.Progress[v]; v == self || ok && pr.RecentActive {
			active++
		}
	}
	return active >= remaining/2+1
}

// ClusterID returns the cluster's id.
func (n *Node) ClusterID() string { return n.cluster }

// ReadNodeID returns the node id stored in a data directory, and whether
// the directory has one (a new directory has none). Call it before Open,
// never while a Node has the directory open.
func ReadNodeID(dir string) (uint64, bool, error) {
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return 0, false, nil
	}
	eng, err := mvcc.Open(dir, mvcc.Config{CacheBytes: 1 << 20, MemTableBytes: 1 << 20})
	if err != nil {
		return 0, false, err
	}
	defer eng.Close()
	ident := &cmdpb.NodeIdent{}
	found, err := mvcc.GetProto(eng.DB(), mvcc.LocalKey("ident"), ident)
	return ident.GetNodeId(), found, err
}

// HandOff moves every leadership this node holds to other voters and
// returns once it holds none, or when ctx ends. Close calls it, so that a
// planned stop costs a leader transfer instead of an election timeout.
// The meta group's leadership goes to its most caught-up live follower;
// buckets follow it there (they keep their leaders with the primary).
func (n *Node) HandOff(ctx context.Context) {
	if n.cfg.Transport == nil {
		return
	}
	// From now on this node declines leadership transfers to it (see
	// stepInbox), so the others' preferences cannot hand it back.
	n.draining.Store(true)
	for {
		led := make(chan bool, 1)
		n.submit(func() { led <- n.transferAll() })
		select {
		case still := <-led:
			if !still {
				return
			}
		case <-ctx.Done():
			return
		case <-n.stopper:
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// transferAll starts a leadership transfer in every group this node leads
// and reports whether it led any (scheduler goroutine).
func (n *Node) transferAll() bool {
	target := bestFollower(n.meta.rn.Status(), n.id, nil)
	if lead := n.meta.rn.BasicStatus().Lead; lead != 0 && lead != n.id {
		target = lead // the meta group moved already: follow it
	}
	led := false
	for _, r := range n.replicas {
		st := r.rn.Status()
		if st.RaftState != raft.StateLeader {
			continue
		}
		led = true
		if st.LeadTransferee != 0 {
			continue // a transfer is under way
		}
		to := target
		if _, ok := st.Progress[to]; !ok || to == n.id {
			to = bestFollower(st, n.id, nil)
		}
		if to != 0 {
			r.rn.TransferLeader(to)
		}
	}
	return led
}

// bestFollower returns the recently active voter, other than self and the
// nodes in skip, with the highest match index (0 if none).
func bestFollower(st raft.Status, self uint64, skip map[uint64]bool) uint64 {
	var best, match uint64
	for id, pr := range st.Progress {
		if _, skipped := skip[id]; id == self || skipped || pr.IsLearner || !pr.RecentActive {
			continue
		}
		if _, voter := st.Config.Voters[0][id]; !voter {
			continue
		}
		if best == 0 || pr.Match > match || pr.Match == match && id < best {
			best, match = id, pr.Match
		}
	}
	return best
}

// applyPlacement records a bucket's placement unless a newer one is
// there already (meta group apply). Replicas report different epochs for
// one configuration (one applied the change, another got it by a later
// snapshot), so a report of the same configuration at a lower epoch still
// updates the leader, if its term is not older.
func applyPlacement(state *cmdpb.MetaState, p *cmdpb.BucketPlacement) {
	if p == nil {
		return
	}
	for i, old := range state.Placement {
		if old.GetBucket() == p.GetBucket() {
			switch {
			case sameConfig(p, old):
				if p.GetTerm() >= old.GetTerm() {
					old.Leader, old.Term = p.GetLeader(), p.GetTerm()
				}
				old.Epoch = max(old.GetEpoch(), p.GetEpoch())
			case p.GetEpoch() > old.GetEpoch():
				state.Placement[i] = p
			}
			return
		}
	}
	state.Placement = append(state.Placement, p)
	slices.SortFunc(state.Placement, func(a, b *cmdpb.BucketPlacement) int { return int(a.GetBucket()) - int(b.GetBucket()) })
}

func sameConfig(a, b *cmdpb.BucketPlacement) bool {
	return slices.Equal(a.GetVoters(), b.GetVoters()) && slices.Equal(a.GetLearners(), b.GetLearners())
}

// reportPlacement records, in the background, the configuration of a
// bucket this node leads in the meta group's placement table, if it
// changed since this node last did (scheduler goroutine).
func (n *Node) reportPlacement(r *replica) {
	r.mu.Lock()
	if !r.mu.ready || r.mu.reporting || r.mu.reported == r.mu.epoch {
		r.mu.Unlock()
		return
	}
	r.mu.reporting = true
	p := &cmdpb.BucketPlacement{
		Bucket: uint32(r.bucket), Voters: slices.Sorted(slices.Values(r.mu.voters)), Learners: slices.Sorted(slices.Values(r.mu.learners)),
		Epoch: r.mu.epoch, Leader: n.id, Term: r.rn.BasicStatus().GetTerm(),
	}
	r.mu.Unlock()
	n.goBackground(func(ctx context.Context) {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, err := n.metaPropose(ctx, &cmdpb.Command{Body: &cmdpb.Command_UpdatePlacement{UpdatePlacement: &cmdpb.UpdatePlacement{Placement: p}}})
		r.mu.Lock()
		defer r.mu.Unlock()
		r.mu.reporting = false
		if err == nil && r.mu.leader {
			r.mu.reported = p.Epoch
		}
	})
}

// metaPropose replicates a command in the meta group on its leader.
func (n *Node) metaPropose(ctx context.Context, cmd *cmdpb.Command) (*cmdpb.Result, error) {
	leader, err := n.leaderOf(ctx, n.meta)
	if err != nil {
		return nil, err
	}
	if leader == 0 {
		return n.meta.propose(ctx, cmd)
	}
	return n.cfg.Remote.Propose(ctx, leader, &cmdpb.BucketProposeRequest{Group: metaGroup, Command: cmd})
}

// placementTable is Placement by bucket.
func (n *Node) placementTable() map[uint32]*cmdpb.BucketPlacement { return n.metaView().table }

// Placement returns the meta group's placement table as this node last
// applied it, in bucket order (empty if it holds no meta replica).
func (n *Node) Placement() []*cmdpb.BucketPlacement { return n.metaView().state.GetPlacement() }
