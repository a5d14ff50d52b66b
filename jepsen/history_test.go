package jepsen

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/opencluster/opencluster/rpc/client"
	"github.com/opencluster/opencluster/rpc/client/clienttest"
)

func TestRecorderOrdersIndexAndTime(t *testing.T) {
	rec := NewRecorder()
	var wg sync.WaitGroup
	for p := range 8 {
		wg.Go(func() {
			for range 100 {
				inv := rec.Invoke(p, fWrite, "k", registerArgs{Value: "v"})
				rec.Complete(inv, OK, registerResult{Version: 1}, nil)
			}
		})
	}
	wg.Wait()
	rec.Nemesis("kill", nemesisEvent{Phase: "start"})
	ops := rec.Ops()
	for i, op := range ops {
		if op.Index != i {
			t.Fatalf("op %d has index %d", i, op.Index)
		}
		if i > 0 && op.Time < ops[i-1].Time {
			t.Fatalf("op %d at %d before op %d at %d", i, op.Time, i-1, ops[i-1].Time)
		}
	}
	if ok, fail, info := rec.Counts(); ok != 800 || fail != 0 || info != 0 {
		t.Errorf("counts %d/%d/%d, want 800 ok (nemesis entries not counted)", ok, fail, info)
	}
	pairs, err := Pairs(ops)
	if err != nil || len(pairs) != 800 {
		t.Fatalf("Pairs: %d pairs, %v", len(pairs), err)
	}
}

func TestHistoryRoundTrip(t *testing.T) {
	rec := NewRecorder()
	inv := rec.Invoke(3, fCAS, "k", registerArgs{Value: "v", Expected: 7})
	rec.Complete(inv, Info, nil, errors.New("deadline"))
	rec.Nemesis("pause", nemesisEvent{Phase: "stop", Fault: Fault{Nemesis: "pause", Nodes: []int{1}}})
	var buf bytes.Buffer
	if err := WriteHistory(&buf, rec.Ops()); err != nil {
		t.Fatal(err)
	}
	back, err := ReadHistory(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, rec.Ops()) {
		t.Errorf("round trip:\n got %+v\nwant %+v", back, rec.Ops())
	}
}

func TestPairsRejectsMalformedHistories(t *testing.T) {
	twoOpen := (&history{}).
		add(1, fRead, "k", nil, 0, 0, "", nil).
		add(1, fRead, "k", nil, 1, 2, OK, registerResult{}).build()
	if _, err := Pairs(twoOpen); !errors.Is(err, ErrBadHistory) {
		t.Errorf("two open ops on one process: %v", err)
	}
	orphan := []Op{{Index: 0, Process: 1, Type: OK, F: fRead}}
	if _, err := Pairs(orphan); !errors.Is(err, ErrBadHistory) {
		t.Errorf("completion without invoke: %v", err)
	}
	open := (&history{}).add(1, fWrite, "k", registerArgs{Value: "1"}, 0, 0, "", nil).build()
	pairs, err := Pairs(open)
	if err != nil || len(pairs) != 1 || pairs[0].Type() != Info || pairs[0].ReturnTime() != Never {
		t.Errorf("an op the history ended on is info, returning never: %+v, %v", pairs, err)
	}
}

func TestVerdicts(t *testing.T) {
	for _, tc := range []struct {
		in   []Verdict
		want Verdict
	}{
		{nil, Inconclusive},
		{[]Verdict{Valid, Valid}, Valid},
		{[]Verdict{Valid, Inconclusive}, Inconclusive},
		{[]Verdict{Inconclusive, Invalid, Valid}, Invalid},
	} {
		if got := Combine(tc.in...); got != tc.want {
			t.Errorf("Combine(%v) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

// A refusal after an attempt whose outcome is unknown is unknown too: the
// first attempt may have done it (a Release applied but not answered is
// refused with "not holder" on retry).
func TestRetryAmbiguousOutcomes(t *testing.T) {
	h := clienttest.Start(t, "n1")
	c, err := client.New(t.Context(), clienttest.Targets("n1"), client.WithRetry(1, time.Millisecond),
		client.WithDialOptions(h.DialOption()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Releasing a lock nobody holds is refused: not holder.
	release := func(unavailableFirst int) (OpType, int) {
		h.Fake.Fail("Release", codes.Unavailable, unavailableFirst)
		calls := 0
		err := retryAmbiguous(t.Context(), func(ctx context.Context) error {
			calls++
			return c.Release(ctx, "L", strings.Repeat("ab", 16))
		})
		return outcome(err), calls
	}
	if got, calls := release(0); got != Fail || calls != 1 {
		t.Errorf("refused at once: %s after %d calls, want fail after 1", got, calls)
	}
	if got, calls := release(2); got != Info || calls != 3 {
		t.Errorf("refused after unknown attempts: %s after %d calls, want info after 3", got, calls)
	}
}
