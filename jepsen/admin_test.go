package jepsen

import (
	"context"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/opencluster/opencluster/rpc/cmdpb"
	"github.com/opencluster/opencluster/rpc/ocpb"
)

// fakeAdmin is a TestAdmin server that records the calls it gets.
type fakeAdmin struct {
	cmdpb.UnimplementedTestAdminServer
	mu     sync.Mutex
	clocks []*cmdpb.SetClockRequest
	faults []*cmdpb.SetFaultsRequest
}

func (f *fakeAdmin) SetClock(_ context.Context, r *cmdpb.SetClockRequest) (*cmdpb.RaftAck, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.clocks = append(f.clocks, r)
	return &cmdpb.RaftAck{}, nil
}

func (f *fakeAdmin) SetFaults(_ context.Context, r *cmdpb.SetFaultsRequest) (*cmdpb.RaftAck, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults = append(f.faults, r)
	return &cmdpb.RaftAck{}, nil
}

// startFakeAdmins serves n fake admin services on 127.0.0.1.
func startFakeAdmins(t *testing.T, n int) ([]string, []*fakeAdmin) {
	t.Helper()
	var addrs []string
	var admins []*fakeAdmin
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := grpc.NewServer()
		a := &fakeAdmin{}
		cmdpb.RegisterTestAdminServer(srv, a)
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = srv.Serve(l)
		}()
		t.Cleanup(func() {
			srv.Stop()
			<-done
		})
		addrs = append(addrs, l.Addr().String())
		admins = append(admins, a)
	}
	return addrs, admins
}

// The clock nemesis skews some nodes' oracle clocks and heal resets
// exactly those to offset 0, rate 1.
func TestClockNemesis(t *testing.T) {
	addrs, admins := startFakeAdmins(t, 3)
	nems, err := NewNemeses([]string{"clock"}, NemesisOptions{Targets: TargetOne, Endpoints: addrs})
	if err != nil {
		t.Fatal(err)
	}
	c := newMemCluster(3)
	rng := rand.New(rand.NewPCG(1, 2))
	ctx := context.Background()
	for range 10 {
		f, err := nems[0].Inject(ctx, c, rng)
		if err != nil {
			t.Fatal(err)
		}
		if len(f.Nodes) == 0 || f.Detail == "" || !strings.HasPrefix(f.String(), "clock skew n") {
			t.Fatalf("fault %+v (%s)", f, f)
		}
		for _, n := range f.Nodes {
			a := admins[n-1]
			a.mu.Lock()
			last := a.clocks[len(a.clocks)-1]
			a.mu.Unlock()
			if last.GetOffsetMs() == 0 && last.GetRate() == 1 {
				t.Errorf("%s: n%d got no skew", f, n)
			}
			if off := last.GetOffsetMs(); off > maxClockOffset.Milliseconds() || off < -maxClockOffset.Milliseconds() {
				t.Errorf("%s: offset %dms", f, off)
			}
		}
		if err := nems[0].Heal(ctx, c, f); err != nil {
			t.Fatal(err)
		}
		for _, n := range f.Nodes {
			a := admins[n-1]
			a.mu.Lock()
			last := a.clocks[len(a.clocks)-1]
			a.mu.Unlock()
			if last.GetOffsetMs() != 0 || last.GetRate() != 1 {
				t.Errorf("%s: n%d healed to %v", f, n, last)
			}
		}
	}

	if err := setPlantedBugs(ctx, addrs, nil, PlantedBugs{NoFenceCheck: true}); err != nil {
		t.Fatal(err)
	}
	for i, a := range admins {
		if len(a.faults) != 1 || !a.faults[0].GetNoFenceCheck() || a.faults[0].GetStaleReads() {
			t.Errorf("node %d faults %v", i+1, a.faults)
		}
	}
}

func TestNemesesNeedEndpoints(t *testing.T) {
	for _, name := range []string{"clock", "move", "transfer"} {
		if _, err := NewNemeses([]string{name}, NemesisOptions{Targets: TargetOne}); err == nil {
			t.Errorf("%s without endpoints accepted", name)
		}
	}
	for _, b := range []string{BugStaleReads, BugNoFenceCheck, BugEarlyExpiry} {
		p, err := ParsePlantedBug(b)
		if err != nil || p.String() != b {
			t.Errorf("ParsePlantedBug(%q) = %v, %v", b, p, err)
		}
	}
	if _, err := ParsePlantedBug("typo"); err == nil {
		t.Error("unknown bug accepted")
	}
}

// fakeMover serves Status (4 members, buckets on the first 3) and records
// MoveReplica calls.
type fakeMover struct {
	ocpb.UnimplementedClusterServer
	mu        sync.Mutex
	moves     []*ocpb.MoveReplicaRequest
	transfers []*ocpb.TransferLeaderRequest
}

func (f *fakeMover) Status(context.Context, *ocpb.StatusRequest) (*ocpb.StatusResponse, error) {
	st := &ocpb.StatusResponse{NodeId: "a", BucketCount: 2}
	for i, id := range []string{"a", "b", "c", "d"} {
		st.Members = append(st.Members, &ocpb.Member{Id: id, Addr: NodeIP(i+1) + ":7000", Alive: true})
	}
	for b := range 2 {
		st.Buckets = append(st.Buckets, &ocpb.BucketStatus{Bucket: uint32(b), Replicas: []string{"a", "b", "c"}, Leader: "a"})
	}
	return st, nil
}

func (f *fakeMover) MoveReplica(_ context.Context, r *ocpb.MoveReplicaRequest) (*ocpb.MoveReplicaResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.moves = append(f.moves, r)
	return &ocpb.MoveReplicaResponse{}, nil
}

func (f *fakeMover) TransferLeader(_ context.Context, r *ocpb.TransferLeaderRequest) (*ocpb.TransferLeaderResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.transfers = append(f.transfers, r)
	return &ocpb.TransferLeaderResponse{Leader: r.GetTo()}, nil
}

// serveFakeMover serves a fakeMover and returns its address.
func serveFakeMover(t *testing.T) (*fakeMover, string) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	fm := &fakeMover{}
	ocpb.RegisterClusterServer(srv, fm)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(l)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return fm, l.Addr().String()
}

// The transfer nemesis hands the leadership of every bucket (up to its
// storm size) to a voter that does not lead it, and needs no healing.
func TestTransferNemesis(t *testing.T) {
	fm, addr := serveFakeMover(t)
	nems, err := NewNemeses([]string{"transfer"}, NemesisOptions{Targets: TargetOne, Endpoints: []string{addr},
		Dial: []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}})
	if err != nil {
		t.Fatal(err)
	}
	f, err := nems[0].Inject(context.Background(), newMemCluster(4), rand.New(rand.NewPCG(5, 6)))
	if err != nil {
		t.Fatal(err)
	}
	if f.Nemesis != "transfer" || !strings.HasPrefix(f.Detail, "2 of 2 done") {
		t.Errorf("fault %s: detail %q", f, f.Detail)
	}
	if err := nems[0].Heal(context.Background(), newMemCluster(4), f); err != nil {
		t.Fatal(err)
	}
	fm.mu.Lock()
	defer fm.mu.Unlock()
	buckets := map[uint32]bool{}
	for _, tr := range fm.transfers {
		if tr.GetTo() == "a" || tr.GetTo() == "d" || buckets[tr.GetBucket()] {
			t.Errorf("transfer %v: to the leader, to a node without a replica, or twice", tr)
		}
		buckets[tr.GetBucket()] = true
	}
	if len(buckets) != 2 {
		t.Fatalf("transfers %v, want one per bucket", fm.transfers)
	}
}

// The move nemesis moves a replica of some bucket to the node without
// one, and needs no healing.
func TestMoveNemesis(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	fm := &fakeMover{}
	ocpb.RegisterClusterServer(srv, fm)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(l)
	}()
	defer func() {
		srv.Stop()
		<-done
	}()
	nems, err := NewNemeses([]string{"move"}, NemesisOptions{Targets: TargetOne, Endpoints: []string{l.Addr().String()},
		Dial: []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for range 5 {
		f, err := nems[0].Inject(context.Background(), newMemCluster(4), rng)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(f.String(), "move bucket ") || !strings.Contains(f.Detail, "->n4") || !slices.Contains(f.Nodes, 4) {
			t.Errorf("fault %s %v", f, f.Nodes)
		}
		if err := nems[0].Heal(context.Background(), newMemCluster(4), f); err != nil {
			t.Fatal(err)
		}
	}
	fm.mu.Lock()
	defer fm.mu.Unlock()
	if len(fm.moves) != 5 {
		t.Fatalf("%d moves", len(fm.moves))
	}
	for _, m := range fm.moves {
		if m.GetTo() != "d" || m.GetFrom() == "d" || m.GetBucket() > 1 {
			t.Errorf("move %v", m)
		}
	}
}
