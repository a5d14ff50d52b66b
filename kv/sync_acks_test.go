package kv

import (
	"testing"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// TestMessageHeader: the type and term read from an encoded Raft message
// without decoding it are those it was encoded with, entries or not; an
// unreadable message reads as MsgHup in term 0, which serveAcks never
// takes.
func TestMessageHeader(t *testing.T) {
	for _, m := range []*raftpb.Message{
		{Type: raftpb.MsgAppResp.Enum(), To: proto.Uint64(2), From: proto.Uint64(3), Term: proto.Uint64(7), Index: proto.Uint64(41)},
		{Type: raftpb.MsgHeartbeatResp.Enum(), Term: proto.Uint64(1 << 40)},
		{Type: raftpb.MsgApp.Enum(), Term: proto.Uint64(3), Entries: []*raftpb.Entry{{Term: proto.Uint64(3), Index: proto.Uint64(9), Data: []byte("put")}}},
		{Type: raftpb.MsgHup.Enum(), Term: proto.Uint64(5)},
	} {
		raw, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if typ, term := messageHeader(raw); typ != m.GetType() || term != m.GetTerm() {
			t.Errorf("messageHeader(%v) = %v, %d; want %v, %d", m, typ, term, m.GetType(), m.GetTerm())
		}
	}
	noTerm, _ := proto.Marshal(&raftpb.Message{Type: raftpb.MsgAppResp.Enum(), To: proto.Uint64(2)})
	for name, raw := range map[string][]byte{"empty": nil, "truncated": {0x08}, "garbage": {0xff, 0xff, 0xff}, "no term": noTerm} {
		if typ, term := messageHeader(raw); typ != raftpb.MsgHup || term != 0 {
			t.Errorf("messageHeader(%s) = %v, %d; want MsgHup, 0", name, typ, term)
		}
	}
}
