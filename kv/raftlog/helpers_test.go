package raftlog

import (
	"io"
	"log"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"

	"github.com/opencluster/opencluster/mvcc"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// openEngine opens the engine in dir "db" of fs, as production does.
func openEngine(t testing.TB, fs vfs.FS) *mvcc.Engine {
	t.Helper()
	e, err := mvcc.Open("db", mvcc.Config{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func mustLoad(t testing.TB, db *pebble.DB, group uint32, cfg Config) *Storage {
	t.Helper()
	s, err := Load(db, group, cfg)
	if err != nil {
		t.Fatalf("Load(group %d): %v", group, err)
	}
	return s
}

// stage runs f on a new batch of db (indexed if indexed) and commits it.
func stage(t testing.TB, db *pebble.DB, indexed bool, f func(b *pebble.Batch) error) {
	t.Helper()
	b := db.NewBatch()
	if indexed {
		b = db.NewIndexedBatch()
	}
	defer b.Close()
	if err := f(b); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		t.Fatal(err)
	}
}

func ent(index, term uint64, data string) *raftpb.Entry {
	return &raftpb.Entry{
		Index: new(index),
		Term:  new(term),
		Type:  raftpb.EntryType_EntryNormal.Enum(),
		Data:  []byte(data),
	}
}

func hardSt(term, vote, commit uint64) *raftpb.HardState {
	return &raftpb.HardState{Term: new(term), Vote: new(vote), Commit: new(commit)}
}

// discardLogger is a raft.Logger that drops everything (raft.SetLogger is
// never called: loggers are per group).
func discardLogger() raft.Logger {
	return &raft.DefaultLogger{Logger: log.New(io.Discard, "", 0)}
}

// equalEntries reports whether a and b hold equal entries.
func equalEntries(a, b []*raftpb.Entry) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !proto.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

// entryIndices renders the index range of ents for failure messages.
func entryIndices(ents []*raftpb.Entry) [2]uint64 {
	if len(ents) == 0 {
		return [2]uint64{}
	}
	return [2]uint64{ents[0].GetIndex(), ents[len(ents)-1].GetIndex()}
}
