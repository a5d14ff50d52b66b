package locks

import (
	"fmt"
	"slices"
	"testing"

	"github.com/opencluster/opencluster/rpc/cmdpb"
)

func TestTracksKeyLocks(t *testing.T) {
	code, other, earlier := []byte("c"), []byte("o"), []byte("e")
	unresolved := []*cmdpb.TxnRecord{{Code: earlier, Status: cmdpb.TxnStatus_ABORTED}}
	for _, tc := range []struct {
		what string
		rec  *cmdpb.TxnRecord
		code []byte
		want bool
	}{
		{"pending with the code", &cmdpb.TxnRecord{Code: code, Status: cmdpb.TxnStatus_PENDING}, code, true},
		{"committed, not resolved", &cmdpb.TxnRecord{Code: code, Status: cmdpb.TxnStatus_COMMITTED}, code, true},
		{"aborted, not resolved", &cmdpb.TxnRecord{Code: code, Status: cmdpb.TxnStatus_ABORTED}, code, true},
		{"committed and resolved", &cmdpb.TxnRecord{Code: code, Status: cmdpb.TxnStatus_COMMITTED, Resolved: true}, code, false},
		{"earlier holder unresolved", &cmdpb.TxnRecord{Code: other, Status: cmdpb.TxnStatus_PENDING, Unresolved: unresolved}, earlier, true},
		{"earlier holder resolved", &cmdpb.TxnRecord{Code: other, Status: cmdpb.TxnStatus_PENDING, Unresolved: unresolved}, code, false},
		{"taken again, resolved", &cmdpb.TxnRecord{Code: other, Status: cmdpb.TxnStatus_PENDING}, code, false},
	} {
		if got := TracksKeyLocks(tc.rec, tc.code); got != tc.want {
			t.Errorf("%s: TracksKeyLocks = %v, want %v", tc.what, got, tc.want)
		}
	}
}

// TestLockedValues: the leader's read of the keys a LockKeys took gives the
// committed values of those that exist, in order, and refuses once a key
// is no longer held by the code (released, or taken by another).
func TestLockedValues(t *testing.T) {
	const W, R = cmdpb.KeyMode_WRITE, cmdpb.KeyMode_READ
	e := openEngine(t)
	for i, k := range []string{"a", "b"} {
		applyOne(t, e, &cmdpb.Command{Body: &cmdpb.Command_Put{Put: &cmdpb.Put{Key: []byte(k), Value: []byte("v" + k), Ts: uint64(10 + i)}}})
	}
	specs := keys("b", R, "missing", W, "a", W)
	if res := applyOne(t, e, &cmdpb.Command{Body: &cmdpb.Command_LockKeys{LockKeys: &cmdpb.LockKeys{Name: "T", Code: code(1), Keys: specs}}}); res.Error != cmdpb.ErrorCode_OK {
		t.Fatal(res)
	}
	values, held, err := LockedValues(e.DB(), 0, code(1), specs)
	if err != nil || !held {
		t.Fatalf("LockedValues = held %v, err %v", held, err)
	}
	var got []string
	for _, v := range values {
		got = append(got, fmt.Sprintf("%s=%s@%d", v.Key, v.Value, v.Version))
	}
	if want := []string{"b=vb@11", "a=va@10"}; !slices.Equal(got, want) {
		t.Fatalf("values %v, want %v", got, want)
	}
	if _, held, _ := LockedValues(e.DB(), 0, code(2), specs[:1]); held {
		t.Fatal("another code's read was answered")
	}
	applyOne(t, e, &cmdpb.Command{Body: &cmdpb.Command_ResolveKeys{ResolveKeys: &cmdpb.ResolveKeys{Name: "T", Code: code(1), Keys: [][]byte{[]byte("a")}}}})
	if values, held, _ := LockedValues(e.DB(), 0, code(1), specs); held || values != nil {
		t.Fatalf("after a key was released: held %v, values %v", held, values)
	}
}
