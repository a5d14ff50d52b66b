package rebalance

import "fmt"

// CheckMove reports whether m may run on v: it fits the View (the bucket,
// replicas and nodes it names exist and are in the right state) and it is
// safe (the bucket has a quorum of up-to-date voters now, and keeps one in
// every configuration the move goes through). The executor can call it on
// a hand-made move (`bucket move`, `bucket transfer-leader`) before running
// it; every move a Plan returns passes it. It costs O(nodes + buckets).
//
// The errors wrap ErrInvalidMove, ErrBusy, ErrNoQuorum or ErrUnsafe.
func CheckMove(v *View, m Move) error {
	switch {
	case m.Kind == AddReplica && (m.From != 0 || m.NewLeader != 0),
		m.Kind == RemoveReplica && m.To != 0,
		m.Kind == TransferLeader && m.NewLeader != 0,
		m.Kind != RemoveReplica && m.To == 0,
		m.Kind != AddReplica && m.From == 0,
		m.From == m.To:
		return fmt.Errorf("%w: %v: malformed", ErrInvalidMove, m)
	}
	var b *Bucket
	for i := range v.Buckets {
		if v.Buckets[i].ID == m.Bucket {
			b = &v.Buckets[i]
			break
		}
	}
	if b == nil {
		return fmt.Errorf("%w: %v: no bucket %d", ErrInvalidMove, m, m.Bucket)
	}
	if b.Busy {
		return fmt.Errorf("%w: %v", ErrBusy, m)
	}
	// A handful of lookups: a scan each costs less than building a map.
	node := func(id NodeID) *Node {
		for i := range v.Nodes {
			if v.Nodes[i].ID == id {
				return &v.Nodes[i]
			}
		}
		return nil
	}
	live := func(id NodeID) bool { n := node(id); return n != nil && n.Live }
	replica := func(id NodeID) (Replica, bool) {
		for _, r := range b.Replicas {
			if r.Node == id {
				return r, true
			}
		}
		return Replica{}, false
	}
	upToDate := func(r Replica) bool { return !r.Learner && !r.Lagging && live(r.Node) }
	voters, up := 0, 0
	for _, r := range b.Replicas {
		if !r.Learner {
			voters++
			if upToDate(r) {
				up++
			}
		}
	}
	if up < quorum(voters) {
		return fmt.Errorf("%w: %v: %d of %d voters up to date", ErrNoQuorum, m, up, voters)
	}
	// target checks that a new voter may go on id.
	target := func(id NodeID) error {
		n := node(id)
		switch r, ok := replica(id); {
		case n == nil || !n.Live:
			return fmt.Errorf("%w: %v: target n%d is not live", ErrInvalidMove, m, id)
		case n.Draining:
			return fmt.Errorf("%w: %v: target n%d is draining", ErrInvalidMove, m, id)
		case ok && !r.Learner:
			return fmt.Errorf("%w: %v: n%d holds a voter already", ErrInvalidMove, m, id)
		}
		return nil
	}
	leader := b.Leader
	if r, ok := replica(leader); !ok || r.Learner || !live(leader) {
		leader = 0
	}
	// newLeader checks m.NewLeader: set exactly when From leads, to a
	// live, up-to-date voter of the new configuration (To counts: it is
	// caught up before it is promoted).
	newLeader := func() error {
		if leader == 0 || m.From != leader {
			if m.NewLeader != 0 {
				return fmt.Errorf("%w: %v: n%d does not lead, so nothing to hand over", ErrInvalidMove, m, m.From)
			}
			return nil
		}
		if m.NewLeader == 0 {
			return nil // the leader steps down; an election follows
		}
		if m.NewLeader == m.From {
			return fmt.Errorf("%w: %v: the leaving leader cannot stay leader", ErrInvalidMove, m)
		}
		if m.Kind == MoveReplica && m.NewLeader == m.To {
			return nil
		}
		if r, ok := replica(m.NewLeader); !ok || !upToDate(r) {
			return fmt.Errorf("%w: %v: n%d is not an up-to-date voter", ErrInvalidMove, m, m.NewLeader)
		}
		return nil
	}

	switch m.Kind {
	case AddReplica:
		// One more up-to-date voter: a quorum of the old voters plus the
		// new one is a quorum of the new voters.
		return target(m.To)
	case RemoveReplica:
		r, ok := replica(m.From)
		if !ok {
			return fmt.Errorf("%w: %v: n%d holds no replica", ErrInvalidMove, m, m.From)
		}
		if r.Learner {
			return nil
		}
		if err := newLeader(); err != nil {
			return err
		}
		left := up
		if upToDate(r) {
			left--
		}
		if voters == 1 || left < quorum(voters-1) {
			return fmt.Errorf("%w: %v: %d up-to-date voters of %d left", ErrUnsafe, m, left, voters-1)
		}
		return nil
	case MoveReplica:
		r, ok := replica(m.From)
		if !ok || r.Learner {
			return fmt.Errorf("%w: %v: n%d holds no voter", ErrInvalidMove, m, m.From)
		}
		if err := target(m.To); err != nil {
			return err
		}
		if err := newLeader(); err != nil {
			return err
		}
		// Joint configuration: the old voters have their quorum (checked
		// above); the new ones are the old less From plus To, caught up.
		left := up + 1
		if upToDate(r) {
			left--
		}
		if left < quorum(voters) {
			return fmt.Errorf("%w: %v: %d up-to-date voters of %d in the new configuration", ErrUnsafe, m, left, voters)
		}
		return nil
	case TransferLeader:
		if leader == 0 || m.From != leader {
			return fmt.Errorf("%w: %v: n%d does not lead", ErrInvalidMove, m, m.From)
		}
		r, ok := replica(m.To)
		if !ok || !upToDate(r) {
			return fmt.Errorf("%w: %v: n%d is not an up-to-date voter", ErrInvalidMove, m, m.To)
		}
		return nil
	}
	return fmt.Errorf("%w: %v: unknown kind", ErrInvalidMove, m)
}
