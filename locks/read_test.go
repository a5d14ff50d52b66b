package locks

import (
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
