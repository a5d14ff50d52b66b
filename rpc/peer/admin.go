package peer

import (
	"context"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/opencluster/opencluster/kv"
	"github.com/opencluster/opencluster/mvcc/ts"
	"github.com/opencluster/opencluster/rpc/cmdpb"
)

// TestAdmin is the test-only fault-injection service (see cmdpb.TestAdmin):
// it skews the oracle's clock and switches planted bugs. A server registers
// it only when started for tests (--test-admin).
type TestAdmin struct {
	cmdpb.UnimplementedTestAdminServer
	clock  *ts.SkewedClock
	faults *kv.Faults
}

// NewTestAdmin returns the service over the node's skewable oracle clock
// and its fault switches.
func NewTestAdmin(clock *ts.SkewedClock, faults *kv.Faults) *TestAdmin {
	return &TestAdmin{clock: clock, faults: faults}
}

// Register registers the service on g.
func (a *TestAdmin) Register(g *grpc.Server) { cmdpb.RegisterTestAdminServer(g, a) }

// SetClock skews the oracle clock.
func (a *TestAdmin) SetClock(_ context.Context, req *cmdpb.SetClockRequest) (*cmdpb.RaftAck, error) {
	rate := req.GetRate()
	if rate == 0 {
		rate = 1
	}
	if rate < 0 || rate > 100 {
		return nil, status.Errorf(codes.InvalidArgument, "rate %g, want (0, 100]", rate)
	}
	a.clock.Set(time.Duration(req.GetOffsetMs())*time.Millisecond, rate)
	return &cmdpb.RaftAck{}, nil
}

// SetFaults switches the planted bugs.
func (a *TestAdmin) SetFaults(_ context.Context, req *cmdpb.SetFaultsRequest) (*cmdpb.RaftAck, error) {
	a.faults.StaleReads.Store(req.GetStaleReads())
	a.faults.NoFenceCheck.Store(req.GetNoFenceCheck())
	a.faults.EarlyExpiry.Store(req.GetEarlyExpiry())
	return &cmdpb.RaftAck{}, nil
}
