package rebalance

import (
	"errors"
	"testing"
	"time"
)

// TestCheckMove checks that CheckMove refuses each kind of bad move with
// the right error, and accepts the good ones (doc.go invariant 1).
func TestCheckMove(t *testing.T) {
	v := &View{
		Nodes: []Node{
			{ID: 1, Live: true}, {ID: 2, Live: true}, {ID: 3, Live: true},
			{ID: 4, Live: true}, {ID: 5, Live: true, Draining: true},
			{ID: 6, DownFor: time.Hour},
		},
		Buckets: []Bucket{
			// Healthy, led by n1.
			{ID: 1, Leader: 1, Replicas: []Replica{{Node: 1}, {Node: 2}, {Node: 3}}},
			// n6 is down and n3 lags: 1 of 3 up to date.
			{ID: 2, Leader: 1, Replicas: []Replica{{Node: 1}, {Node: 3, Lagging: true}, {Node: 6}}},
			// Busy.
			{ID: 3, Leader: 1, Busy: true, Replicas: []Replica{{Node: 1}, {Node: 2}, {Node: 3}}},
			// Two up to date of three: no voter that is up to date can go.
			{ID: 4, Leader: 1, Replicas: []Replica{{Node: 1}, {Node: 2}, {Node: 6}, {Node: 4, Learner: true}}},
		},
	}
	for _, tc := range []struct {
		m    Move
		want error
	}{
		{Move{Kind: AddReplica, Bucket: 1, To: 4}, nil},
		{Move{Kind: AddReplica, Bucket: 4, To: 4}, nil}, // promotes the learner
		{Move{Kind: MoveReplica, Bucket: 1, From: 2, To: 4}, nil},
		{Move{Kind: MoveReplica, Bucket: 1, From: 1, To: 4, NewLeader: 4}, nil},
		{Move{Kind: MoveReplica, Bucket: 1, From: 1, To: 4, NewLeader: 2}, nil},
		{Move{Kind: MoveReplica, Bucket: 4, From: 6, To: 3}, nil},
		{Move{Kind: RemoveReplica, Bucket: 1, From: 3}, nil},
		{Move{Kind: RemoveReplica, Bucket: 4, From: 6}, nil},
		{Move{Kind: RemoveReplica, Bucket: 4, From: 4}, nil},
		{Move{Kind: TransferLeader, Bucket: 1, From: 1, To: 3}, nil},

		{Move{Kind: AddReplica, Bucket: 9, To: 4}, ErrInvalidMove},
		{Move{Kind: AddReplica, Bucket: 1, To: 2}, ErrInvalidMove}, // holds a voter
		{Move{Kind: AddReplica, Bucket: 1, To: 5}, ErrInvalidMove}, // draining
		{Move{Kind: AddReplica, Bucket: 1, To: 6}, ErrInvalidMove}, // dead
		{Move{Kind: AddReplica, Bucket: 1, To: 7}, ErrInvalidMove}, // unknown
		{Move{Kind: AddReplica, Bucket: 1, From: 1, To: 4}, ErrInvalidMove},
		{Move{Kind: RemoveReplica, Bucket: 1, From: 4}, ErrInvalidMove}, // no replica
		{Move{Kind: MoveReplica, Bucket: 1, From: 2, To: 2}, ErrInvalidMove},
		{Move{Kind: MoveReplica, Bucket: 1, From: 2, To: 4, NewLeader: 3}, ErrInvalidMove}, // n2 does not lead
		{Move{Kind: MoveReplica, Bucket: 1, From: 1, To: 4, NewLeader: 1}, ErrInvalidMove},
		{Move{Kind: TransferLeader, Bucket: 1, From: 2, To: 3}, ErrInvalidMove}, // n2 does not lead
		{Move{Kind: TransferLeader, Bucket: 4, From: 1, To: 6}, ErrInvalidMove}, // n6 is down
		{Move{Kind: TransferLeader, Bucket: 4, From: 1, To: 4}, ErrInvalidMove}, // a learner
		{Move{Kind: 0, Bucket: 1, From: 1, To: 2}, ErrInvalidMove},

		{Move{Kind: AddReplica, Bucket: 3, To: 4}, ErrBusy},
		{Move{Kind: AddReplica, Bucket: 2, To: 4}, ErrNoQuorum},
		{Move{Kind: RemoveReplica, Bucket: 4, From: 2}, ErrUnsafe},
		{Move{Kind: RemoveReplica, Bucket: 4, From: 1, NewLeader: 2}, ErrUnsafe},
	} {
		err := CheckMove(v, tc.m)
		if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
			t.Errorf("CheckMove(%v) = %v, want %v", tc.m, err, tc.want)
		}
	}
}

// TestPlanRefusesInvalidView checks the View invariants Plan enforces.
func TestPlanRefusesInvalidView(t *testing.T) {
	p := mustPlanner(t, Config{})
	for name, v := range map[string]*View{
		"node 0":          {Nodes: []Node{{ID: 0}}},
		"node twice":      {Nodes: []Node{{ID: 1}, {ID: 1}}},
		"bucket twice":    {Buckets: []Bucket{{ID: 1}, {ID: 1}}},
		"replica on 0":    {Buckets: []Bucket{{ID: 1, Replicas: []Replica{{Node: 0}}}}},
		"replicas on one": {Nodes: []Node{{ID: 1}}, Buckets: []Bucket{{ID: 1, Replicas: []Replica{{Node: 1}, {Node: 1, Learner: true}}}}},
		"unknown twice":   {Buckets: []Bucket{{ID: 1, Replicas: []Replica{{Node: 9}, {Node: 9}}}}},
	} {
		if _, err := p.Plan(v); !errors.Is(err, ErrInvalidView) {
			t.Errorf("%s: Plan = %v, want ErrInvalidView", name, err)
		}
	}
}

// TestConfig checks the defaults and Validate.
func TestConfig(t *testing.T) {
	p := mustPlanner(t, Config{})
	if got, want := p.Config(), DefaultConfig(); got != want {
		t.Errorf("zero Config gives %+v, want %+v", got, want)
	}
	for _, cfg := range []Config{
		{Replicas: -1}, {DeadAfter: -time.Second}, {MaxMoves: -1}, {MaxMovesPerNode: -1},
	} {
		if _, err := NewPlanner(cfg); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("NewPlanner(%+v) = %v, want ErrInvalidConfig", cfg, err)
		}
	}
}
